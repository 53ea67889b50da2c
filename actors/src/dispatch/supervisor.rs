//! The shard supervisor: one per H3 shard cell. Owns the availability index of the
//! associates available in its cell, answers candidate searches (fanning out to the
//! neighbours a search circle reaches and merging by distance), and starts request
//! actors for pickups in its cell.

use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, ActorContext, AsyncContext, Context, Handler, ResponseFuture};
use futures_util::future::join_all;
use geo::{AvailabilityIndex, IndexConfig, NearestQuery, Neighbor, ShardId};
use tokio::time::Instant;
use wire::AssociateId;

use crate::dispatch::Dispatch;
use crate::dispatch::lane::{IndexLane, IndexOp};
use crate::dispatch::messages::{Candidates, DrainLane, LocalNearest, RequestDone, StartRequest};
use crate::dispatch::request::RequestActor;
use crate::registry::{MAILBOX_CAPACITY, Mailbox};
use crate::telemetry;

/// Removed associates whose generations are remembered before they are forgotten.
const FORGET_AFTER: usize = 4_096;

/// The supervisor of one shard cell.
pub struct ShardSupervisor {
    shard: ShardId,
    index: AvailabilityIndex<AssociateId>,
    /// The newest actor generation each associate's changes came from (for those in the
    /// index, and recently removed ones).
    generations: rustc_hash::FxHashMap<AssociateId, u64>,
    /// Index changes not yet applied, in order.
    lane: Arc<IndexLane>,
    /// The batch being applied (kept to reuse its allocation).
    batch: Vec<IndexOp>,
    /// Request actors started here and still running.
    live_requests: usize,
    /// When the last message arrived.
    last_activity: Instant,
    mailbox: Mailbox,
    dispatch: Dispatch,
}

impl ShardSupervisor {
    /// A supervisor for `shard` with an empty index.
    pub(crate) fn new(
        shard: ShardId,
        bucket_m: f64,
        lane: Arc<IndexLane>,
        mailbox: Mailbox,
        dispatch: Dispatch,
    ) -> Self {
        Self {
            shard,
            // expect: Dispatch::new validated the bucket size.
            index: AvailabilityIndex::new(IndexConfig { bucket_m }).expect("validated bucket size"),
            generations: Default::default(),
            lane,
            batch: Vec::new(),
            live_requests: 0,
            last_activity: Instant::now(),
            mailbox,
            dispatch,
        }
    }

    /// Counts a message from the registry.
    fn received(&mut self) {
        self.mailbox.handled();
        self.last_activity = Instant::now();
    }

    /// Stops if nobody is in the index, no request runs here, nothing happened for the
    /// idle time and every message sent here was handled.
    fn retire_if_idle(&mut self, ctx: &mut Context<Self>) {
        self.apply_lane();
        let idle = self.dispatch.config().shard_idle;
        if self.index.is_empty()
            && self.live_requests == 0
            && self.last_activity.elapsed() >= idle
            && self
                .dispatch
                .retire_supervisor(self.shard, &ctx.address(), &self.mailbox)
        {
            ctx.stop();
        }
    }

    /// Applies every index change queued on the lane, in order.
    fn apply_lane(&mut self) {
        let mut batch = std::mem::take(&mut self.batch);
        self.lane.take(&mut batch);
        for op in batch.drain(..) {
            match op {
                IndexOp::Upsert {
                    id,
                    point,
                    skills,
                    generation,
                } => {
                    if self.newer_than(id, generation) {
                        continue;
                    }
                    let was = self.index.len();
                    self.index.upsert(id, point, skills);
                    telemetry::index_updated(self.index.len() != was);
                }
                IndexOp::Move { id, point } => {
                    if self.index.move_to(id, point) {
                        telemetry::index_updated(false);
                    }
                }
                IndexOp::Remove { id, generation } => {
                    if self.newer_than(id, generation) {
                        continue;
                    }
                    if self.index.remove(&id).is_some() {
                        telemetry::index_left();
                    }
                }
            }
        }
        self.batch = batch;
        // Forget the generations of associates long gone (the index holds the rest).
        if self.generations.len() > self.index.len() + FORGET_AFTER {
            let index = &self.index;
            self.generations.retain(|id, _| index.contains(id));
        }
    }

    /// Whether a newer actor of `id` than `generation` changed the index already; if
    /// not, `generation` is now the newest.
    fn newer_than(&mut self, id: AssociateId, generation: u64) -> bool {
        let newest = self.generations.entry(id).or_insert(generation);
        if *newest > generation {
            return true;
        }
        *newest = generation;
        false
    }

    /// Searches this shard's index, with every queued change applied first.
    fn local(&mut self, search: &LocalNearest) -> Vec<Neighbor<AssociateId>> {
        self.apply_lane();
        let query = NearestQuery {
            point: search.point,
            task: search.task,
            radius_m: search.radius_m,
            k: search.k,
            exclude: &search.exclude,
        };
        // A search is built by the request actor from validated settings; a bad one finds nobody.
        self.index.nearest(&query).unwrap_or_default()
    }
}

impl Actor for ShardSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        let every = (self.dispatch.config().shard_idle / 2).max(Duration::from_millis(1));
        ctx.run_interval(every, |act, ctx| act.retire_if_idle(ctx));
    }
}

impl Handler<DrainLane> for ShardSupervisor {
    type Result = ();

    /// Applies the lane once the batch interval has passed (or at once without one):
    /// until then reports gather without waking anyone.
    fn handle(&mut self, _: DrainLane, ctx: &mut Context<Self>) {
        self.received();
        let batch = self.dispatch.config().index_batch;
        if batch.is_zero() {
            self.apply_lane();
        } else {
            ctx.run_later(batch, |act, _| act.apply_lane());
        }
    }
}

impl Handler<LocalNearest> for ShardSupervisor {
    type Result = Vec<Neighbor<AssociateId>>;

    /// Answers from this shard's index alone.
    fn handle(&mut self, msg: LocalNearest, _: &mut Context<Self>) -> Self::Result {
        self.received();
        self.local(&msg)
    }
}

impl Handler<Candidates> for ShardSupervisor {
    type Result = ResponseFuture<Vec<Neighbor<AssociateId>>>;

    /// Answers from this index and every neighbouring shard the circle reaches, merged.
    fn handle(&mut self, msg: Candidates, _: &mut Context<Self>) -> Self::Result {
        self.received();
        let search = msg.search;
        let map = self.dispatch.shard_map();
        let shards = map
            .shards_touching(search.point, search.radius_m)
            .unwrap_or_else(|_| vec![map.shard_of(search.point)]);
        let mut answers = Vec::with_capacity(shards.len());
        let mut asks = Vec::new();
        for shard in shards {
            if shard == self.shard {
                answers.push(self.local(&search));
            } else if let Some(ask) = self.dispatch.search_shard(shard, search.clone()) {
                asks.push(ask);
            }
        }
        let k = search.k;
        Box::pin(async move {
            // A neighbour that cannot answer is skipped: the search goes on without it.
            answers.extend(join_all(asks).await);
            geo::merge_nearest(answers, k)
        })
    }
}

impl Handler<StartRequest> for ShardSupervisor {
    type Result = actix::MessageResult<StartRequest>;

    /// Starts the request actor on this supervisor's arbiter and registers it before
    /// it can run, so it is findable (to cancel) from its first moment.
    fn handle(&mut self, msg: StartRequest, _: &mut Context<Self>) -> Self::Result {
        self.received();
        self.live_requests += 1;
        let request_id = msg.spec.request_id;
        let addr = RequestActor::new(msg.spec, self.dispatch.clone()).start();
        self.dispatch.request_started(request_id, addr.clone());
        actix::MessageResult(addr)
    }
}

impl Handler<RequestDone> for ShardSupervisor {
    type Result = ();

    /// One request fewer running here.
    fn handle(&mut self, _: RequestDone, _: &mut Context<Self>) {
        self.received();
        self.live_requests = self.live_requests.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use geo::{LatLng, Skills, TaskType};
    use wire::{AssociateId, TaskCatalog};

    use crate::dispatch::lane::IndexOp;
    use crate::dispatch::messages::LocalNearest;
    use crate::{Clock, Dispatch, DispatchConfig, Sessions};

    #[actix_rt::test]
    async fn an_older_actors_change_never_undoes_a_newer_ones() {
        let dispatch = Dispatch::new(
            DispatchConfig::default(),
            TaskCatalog::new(["companion"]).unwrap(),
            Sessions::default(),
            Clock::system(),
            vec![],
            storage::Store::temporary().unwrap(),
        )
        .unwrap();
        let task = TaskType::new(0).unwrap();
        let skills = Skills::default().with(task);
        let point = LatLng::new(12.97, 77.59).unwrap();
        let shard = dispatch.shard_of(point);
        let id = AssociateId::new();
        let found = |dispatch: Dispatch| async move {
            let search = LocalNearest {
                point,
                task,
                radius_m: 1_000.0,
                k: 5,
                exclude: vec![],
            };
            let near = dispatch.search_shard(shard, search).unwrap().await;
            near.iter().map(|n| n.id).collect::<Vec<_>>()
        };
        // The associate reconnected elsewhere (generation 2); the old actor's removal
        // (generation 1) arrives after the new one's upsert, and is ignored, as is the
        // old one's late upsert after the new one's removal.
        let upsert = |generation| IndexOp::Upsert {
            id,
            point,
            skills,
            generation,
        };
        dispatch.to_lane(shard, upsert(2));
        dispatch.to_lane(shard, IndexOp::Remove { id, generation: 1 });
        assert_eq!(found(dispatch.clone()).await, [id]);
        dispatch.to_lane(shard, IndexOp::Remove { id, generation: 2 });
        dispatch.to_lane(shard, upsert(1));
        assert!(found(dispatch.clone()).await.is_empty());
        // A newer actor still can.
        dispatch.to_lane(shard, upsert(3));
        assert_eq!(found(dispatch).await, [id]);
    }
}
