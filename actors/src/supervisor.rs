//! The shard supervisor: one per H3 shard cell. Owns the availability index of the
//! associates available in its cell, answers candidate searches (fanning out to the
//! neighbours a search circle reaches and merging by distance), and starts request
//! actors for pickups in its cell.

use actix::{Actor, Addr, Context, Handler, Message, ResponseFuture};
use futures_util::future::join_all;
use geo::{
    AvailabilityIndex, IndexConfig, LatLng, NearestQuery, Neighbor, ShardId, Skills, TaskType,
};
use wire::AssociateId;

use crate::dispatch::Dispatch;
use crate::request::{RequestActor, RequestSpec};
use crate::telemetry;

/// Put an available associate in the index, or move them.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct IndexUpsert {
    /// The associate.
    pub id: AssociateId,
    /// Where they are.
    pub point: LatLng,
    /// What they do.
    pub skills: Skills,
}

/// Take an associate out of the index (busy, offline, or moved to another shard).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct IndexRemove {
    /// The associate.
    pub id: AssociateId,
}

/// The nearest eligible associates in this shard's index only.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Vec<Neighbor<AssociateId>>")]
pub struct LocalNearest {
    /// Search centre.
    pub point: LatLng,
    /// Task type.
    pub task: TaskType,
    /// Radius in metres.
    pub radius_m: f64,
    /// At most this many.
    pub k: usize,
    /// Never these.
    pub exclude: Vec<AssociateId>,
}

/// The nearest eligible associates across every shard the circle reaches.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Vec<Neighbor<AssociateId>>")]
pub struct Candidates {
    /// The search.
    pub search: LocalNearest,
}

/// Start the request actor for a pickup in this shard.
#[derive(Debug, Message)]
#[rtype(result = "Addr<RequestActor>")]
pub struct StartRequest {
    /// The request.
    pub spec: RequestSpec,
}

/// The supervisor of one shard cell.
pub struct ShardSupervisor {
    shard: ShardId,
    label: String,
    index: AvailabilityIndex<AssociateId>,
    dispatch: Dispatch,
}

impl ShardSupervisor {
    /// A supervisor for `shard` with an empty index.
    pub fn new(shard: ShardId, bucket_m: f64, dispatch: Dispatch) -> Self {
        Self {
            shard,
            label: shard.to_string(),
            // expect: Dispatch::new validated the bucket size.
            index: AvailabilityIndex::new(IndexConfig { bucket_m }).expect("validated bucket size"),
            dispatch,
        }
    }

    fn local(&self, search: &LocalNearest) -> Vec<Neighbor<AssociateId>> {
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

    fn publish_count(&self) {
        telemetry::gauge_available(&self.label, self.index.len());
    }
}

impl Actor for ShardSupervisor {
    type Context = Context<Self>;
}

impl Handler<IndexUpsert> for ShardSupervisor {
    type Result = ();

    /// Inserts or moves; the count changes only on insert.
    fn handle(&mut self, msg: IndexUpsert, _: &mut Context<Self>) {
        let was = self.index.len();
        self.index.upsert(msg.id, msg.point, msg.skills);
        metrics::counter!(telemetry::INDEX_UPDATES).increment(1);
        if self.index.len() != was {
            self.publish_count();
        }
    }
}

impl Handler<IndexRemove> for ShardSupervisor {
    type Result = ();

    /// Removes if present.
    fn handle(&mut self, msg: IndexRemove, _: &mut Context<Self>) {
        if self.index.remove(&msg.id).is_some() {
            self.publish_count();
        }
    }
}

impl Handler<LocalNearest> for ShardSupervisor {
    type Result = Vec<Neighbor<AssociateId>>;

    /// Answers from this shard's index alone.
    fn handle(&mut self, msg: LocalNearest, _: &mut Context<Self>) -> Self::Result {
        self.local(&msg)
    }
}

impl Handler<Candidates> for ShardSupervisor {
    type Result = ResponseFuture<Vec<Neighbor<AssociateId>>>;

    /// Answers from this index and every neighbouring shard the circle reaches, merged.
    fn handle(&mut self, msg: Candidates, _: &mut Context<Self>) -> Self::Result {
        let search = msg.search;
        let map = &self.dispatch.shared.map;
        let shards = map
            .shards_touching(search.point, search.radius_m)
            .unwrap_or_else(|_| vec![map.shard_of(search.point)]);
        let mut answers = Vec::with_capacity(shards.len());
        let mut asks = Vec::new();
        for shard in shards {
            if shard == self.shard {
                answers.push(self.local(&search));
            } else if let Some(addr) = self.dispatch.existing_supervisor(shard) {
                asks.push(addr.send(search.clone()));
            }
        }
        let k = search.k;
        Box::pin(async move {
            // A neighbour that cannot answer is skipped: the search goes on without it.
            answers.extend(join_all(asks).await.into_iter().filter_map(Result::ok));
            geo::merge_nearest(answers, k)
        })
    }
}

impl Handler<StartRequest> for ShardSupervisor {
    type Result = actix::MessageResult<StartRequest>;

    /// Starts the request actor on this supervisor's arbiter and registers it before
    /// it can run, so it is findable (to cancel) from its first moment.
    fn handle(&mut self, msg: StartRequest, _: &mut Context<Self>) -> Self::Result {
        let request_id = msg.spec.request_id;
        let addr = RequestActor::new(msg.spec, self.dispatch.clone()).start();
        self.dispatch
            .shared
            .requests
            .insert(request_id, addr.clone());
        actix::MessageResult(addr)
    }
}
