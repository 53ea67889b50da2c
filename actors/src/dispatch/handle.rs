//! The dispatch handle: what socket sessions (and tests) call instead of holding actor
//! addresses, plus the address book of supervisors, associates and open requests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use actix::dev::Request;
use actix::{Actor, Addr, ArbiterHandle, Handler, Message, Recipient};
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use dashmap::mapref::one::Ref;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use geo::{LatLng, Neighbor, ShardId, ShardMap, Skills, TaskType};
use wire::model::{OfferEnd, UnixMs};
use wire::{
    AssociateId, Offer, OrderId, PartyId, RequestId, RequestReceived, TaskCatalog, TaskRequest,
    UserId,
};

use crate::allotment::CreateOrder;
use crate::clock::Clock;
use crate::config::DispatchConfig;
use crate::dispatch::associate::AssociateActor;
use crate::dispatch::lane::{IndexLane, IndexOp, Next, PositionSlot};
use crate::dispatch::messages;
use crate::dispatch::messages::{AssociateView, LocalNearest, Refusal, RequestRef};
use crate::dispatch::request::{RequestActor, RequestSpec};
use crate::dispatch::supervisor::ShardSupervisor;
use crate::dispatch::zone::ZoneFilter;
use crate::error::ActorError;
use crate::peers::messages::{ToAssociate, ToParty, ToRequest};
use crate::peers::{Peers, Place, Served, subjects};
use crate::registry::{Registry, Slot};
use crate::sessions::Sessions;

/// A cheap, cloneable handle on dispatch.
#[derive(Clone)]
pub struct Dispatch {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Dispatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatch")
            .field("shards", &self.shared.supervisors.len())
            .field("associates", &self.shared.associates.len())
            .field("open_requests", &self.shared.requests.len())
            .finish()
    }
}

pub(crate) struct Shared {
    pub(crate) config: DispatchConfig,
    pub(crate) store: storage::Store,
    pub(crate) catalog: TaskCatalog,
    pub(crate) map: ShardMap,
    pub(crate) sessions: Sessions,
    pub(crate) clock: Clock,
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: AtomicUsize,
    /// Shard supervisors, each with the lane of index changes waiting for it.
    pub(crate) supervisors: Registry<ShardId, ShardSupervisor, Arc<IndexLane>>,
    /// Associates' actors, each with the slot its newest position waits in.
    pub(crate) associates: Registry<AssociateId, AssociateActor, Arc<PositionSlot>>,
    pub(crate) requests: DashMap<RequestId, Addr<RequestActor>>,
    /// The offers each open request made here, for the ops console.
    trails: DashMap<RequestId, RequestTrail>,
    /// Trails of requests that ended here, newest last.
    ended_trails: std::sync::Mutex<std::collections::VecDeque<RequestTrail>>,
    /// Each user's open request, as told to them (re-sent when they reconnect).
    user_requests: DashMap<UserId, RequestReceived>,
    order_sink: OnceLock<Recipient<CreateOrder>>,
    /// The other nodes, in cluster mode.
    peers: OnceLock<Peers>,
}

/// What an associate's profile says about them when they connect.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AssociateProfileInfo {
    /// Task types from the profile.
    pub skills: Skills,
    /// Service zone from the profile.
    pub zone: Option<ZoneFilter>,
}

impl Dispatch {
    /// Dispatch over `arbiters` (none: everything on the current arbiter, as tests do),
    /// keeping open requests and presence in `store`.
    pub fn new(
        config: DispatchConfig,
        catalog: TaskCatalog,
        sessions: Sessions,
        clock: Clock,
        arbiters: Vec<ArbiterHandle>,
        store: storage::Store,
    ) -> Result<Self, ActorError> {
        config.validate().map_err(ActorError::InvalidConfig)?;
        let map = ShardMap::new(config.shard_resolution)
            .map_err(|e| ActorError::InvalidConfig(e.to_string()))?;
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                store,
                catalog,
                map,
                sessions,
                clock,
                arbiters,
                next_arbiter: AtomicUsize::new(0),
                supervisors: Registry::new(crate::telemetry::SHARD_SUPERVISORS, "supervisor"),
                associates: Registry::new(crate::telemetry::ASSOCIATE_ACTORS, "associate"),
                requests: DashMap::new(),
                trails: DashMap::new(),
                ended_trails: Default::default(),
                user_requests: DashMap::new(),
                order_sink: OnceLock::new(),
                peers: OnceLock::new(),
            }),
        })
    }

    /// Sets where accepted offers go to become orders (once, at start-up).
    pub fn set_order_sink(&self, sink: Recipient<CreateOrder>) {
        let _ = self.shared.order_sink.set(sink);
    }

    pub(crate) fn order_sink(&self) -> Option<&Recipient<CreateOrder>> {
        self.shared.order_sink.get()
    }

    /// Joins a cluster (once, at start-up, before orders start; then
    /// [`crate::peers::wire_up`]).
    pub fn join_cluster(&self, peers: Peers) {
        let _ = self.shared.peers.set(peers);
    }

    /// The other nodes, in cluster mode.
    pub fn peers(&self) -> Option<&Peers> {
        self.shared.peers.get()
    }

    /// Where `shard` is served from.
    pub(crate) fn place(&self, shard: ShardId) -> Place {
        self.peers().map_or(Place::Here, |p| p.place(shard))
    }

    /// In cluster mode, tells the node holding an older connection of `party` to let it
    /// go.
    pub fn take_over(&self, party: PartyId) {
        if let Some(peers) = self.peers() {
            crate::peers::serve::take_over(peers, party);
        }
    }

    /// The settings.
    pub fn config(&self) -> &DispatchConfig {
        &self.shared.config
    }

    /// The task catalog.
    pub fn catalog(&self) -> &TaskCatalog {
        &self.shared.catalog
    }

    /// The store.
    pub fn store(&self) -> &storage::Store {
        &self.shared.store
    }

    /// The session registry.
    pub fn sessions(&self) -> &Sessions {
        &self.shared.sessions
    }

    /// The clock.
    pub fn clock(&self) -> Clock {
        self.shared.clock
    }

    /// Starts `actor` on the next arbiter in turn (or the current one if there are none).
    pub(crate) fn spawn<A>(&self, make: impl FnOnce() -> A + Send + 'static) -> Addr<A>
    where
        A: Actor<Context = actix::Context<A>>,
    {
        match self.next_arbiter() {
            Some(arbiter) => A::start_in_arbiter(arbiter, move |_| make()),
            None => make().start(),
        }
    }

    /// The next arbiter in turn, if there are any.
    fn next_arbiter(&self) -> Option<&ArbiterHandle> {
        let arbiters = &self.shared.arbiters;
        (!arbiters.is_empty()).then(|| {
            &arbiters[self.shared.next_arbiter.fetch_add(1, Ordering::Relaxed) % arbiters.len()]
        })
    }

    /// Asks the supervisor of `shard`, started on first use.
    pub(crate) fn ask_supervisor<M>(&self, shard: ShardId, msg: M) -> Request<ShardSupervisor, M>
    where
        ShardSupervisor: Handler<M>,
        M: Message + Send + 'static,
        M::Result: Send,
    {
        self.supervisor(shard).ask(msg)
    }

    fn supervisor(
        &self,
        shard: ShardId,
    ) -> Ref<'_, ShardId, Slot<ShardSupervisor, Arc<IndexLane>>> {
        self.shared.supervisors.get_or_start(shard, |mailbox| {
            let dispatch = self.clone();
            let bucket_m = self.shared.config.index_bucket_m;
            let lane = Arc::new(IndexLane::default());
            let theirs = lane.clone();
            let addr = self
                .spawn(move || ShardSupervisor::new(shard, bucket_m, theirs, mailbox, dispatch));
            (addr, lane)
        })
    }

    /// Queues `op` on the lane of `shard`'s supervisor (started on first use), waking it
    /// if it has no drain on its way; in cluster mode, wherever the shard is served.
    pub(crate) fn to_lane(&self, shard: ShardId, op: IndexOp) {
        match self.place(shard) {
            Place::Here => Self::push(&self.supervisor(shard), op),
            Place::Elsewhere => self.publish_op(shard, op),
            // Outside the market nobody indexes anyone.
            Place::Outside => {}
        }
    }

    /// Queues `op` on the lane of `shard`'s supervisor if it runs; false if it does not
    /// (in cluster mode a shard served elsewhere always takes it).
    pub(crate) fn to_existing_lane(&self, shard: ShardId, op: IndexOp) -> bool {
        match self.place(shard) {
            Place::Here => self.to_existing_lane_here(shard, op),
            Place::Elsewhere => {
                self.publish_op(shard, op);
                true
            }
            Place::Outside => true,
        }
    }

    fn to_existing_lane_here(&self, shard: ShardId, op: IndexOp) -> bool {
        match self.shared.supervisors.get(&shard) {
            Some(slot) => {
                Self::push(&slot, op);
                true
            }
            None => false,
        }
    }

    fn publish_op(&self, shard: ShardId, op: IndexOp) {
        if let Some(peers) = self.peers() {
            peers.publish(subjects::cell_index(shard), &op);
        }
    }

    /// An index change from another node for a shard served here.
    pub(crate) fn to_lane_here(&self, shard: ShardId, op: IndexOp) {
        match op {
            IndexOp::Upsert { .. } => Self::push(&self.supervisor(shard), op),
            IndexOp::Move { .. } | IndexOp::Remove { .. } => {
                self.to_existing_lane_here(shard, op);
            }
        }
    }

    /// A search of the shard `shard` alone, wherever it is served; nobody if its node
    /// does not answer in time.
    pub(crate) fn search_shard(
        &self,
        shard: ShardId,
        search: LocalNearest,
    ) -> Option<BoxFuture<'static, Vec<Neighbor<AssociateId>>>> {
        match self.place(shard) {
            Place::Here => Some(self.search_here(shard, search)),
            Place::Elsewhere => {
                let peers = self.peers()?;
                let asked =
                    peers.call::<Vec<Neighbor<AssociateId>>>(subjects::cell_search(shard), &search);
                Some(
                    async move {
                        asked.await.unwrap_or_else(|e| {
                            tracing::debug!(%shard, error = %e, "a neighbouring cell's search went unanswered");
                            Vec::new()
                        })
                    }
                    .boxed(),
                )
            }
            Place::Outside => None,
        }
    }

    /// A search of a shard served here (nobody if its supervisor does not run).
    pub(crate) fn search_here(
        &self,
        shard: ShardId,
        search: LocalNearest,
    ) -> BoxFuture<'static, Vec<Neighbor<AssociateId>>> {
        match self.ask_existing_supervisor(shard, search) {
            Some(asked) => async move { asked.await.unwrap_or_default() }.boxed(),
            None => futures_util::future::ready(Vec::new()).boxed(),
        }
    }

    fn push(slot: &Slot<ShardSupervisor, Arc<IndexLane>>, op: IndexOp) {
        if slot.extra.push(op) {
            slot.send(messages::DrainLane {});
        }
    }

    /// Sends `msg` to the supervisor of `shard` if it runs (one that does not has no
    /// associates and no requests); false if it does not.
    pub(crate) fn to_existing_supervisor<M>(&self, shard: ShardId, msg: M) -> bool
    where
        ShardSupervisor: Handler<M>,
        M: Message + Send + 'static,
        M::Result: Send,
    {
        match self.shared.supervisors.get(&shard) {
            Some(slot) => {
                slot.send(msg);
                true
            }
            None => false,
        }
    }

    /// Asks the supervisor of `shard` if it runs.
    pub(crate) fn ask_existing_supervisor<M>(
        &self,
        shard: ShardId,
        msg: M,
    ) -> Option<Request<ShardSupervisor, M>>
    where
        ShardSupervisor: Handler<M>,
        M: Message + Send + 'static,
        M::Result: Send,
    {
        self.shared
            .supervisors
            .get(&shard)
            .map(|slot| slot.ask(msg))
    }

    /// Sends `msg` to the associate's actor if it runs; false if it does not.
    pub(crate) fn to_associate<M>(&self, id: AssociateId, msg: M) -> bool
    where
        AssociateActor: Handler<M>,
        M: Message + Send + 'static,
        M::Result: Send,
    {
        match self.shared.associates.get(&id) {
            Some(slot) => {
                slot.send(msg);
                true
            }
            None => false,
        }
    }

    /// Asks the associate's actor if it runs.
    pub(crate) fn ask_associate<M>(
        &self,
        id: AssociateId,
        msg: M,
    ) -> Option<Request<AssociateActor, M>>
    where
        AssociateActor: Handler<M>,
        M: Message + Send + 'static,
        M::Result: Send,
    {
        self.shared.associates.get(&id).map(|slot| slot.ask(msg))
    }

    /// The associate's actor, started (from their presence: `read`, or read now) if it
    /// does not run.
    fn associate(
        &self,
        id: AssociateId,
        info: &AssociateProfileInfo,
        read: Option<Result<Option<storage::Presence>, storage::StorageError>>,
    ) -> Ref<'_, AssociateId, Slot<AssociateActor, Arc<PositionSlot>>> {
        self.shared.associates.get_or_start(id, |mailbox| {
            let dispatch = self.clone();
            let info = info.clone();
            let position = Arc::new(PositionSlot::default());
            let slot = position.clone();
            // Whether they were taking offers before their actor stopped (idle, or a
            // restart).
            let presence = match read.unwrap_or_else(|| self.shared.store.presence(id)) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(associate = %id, error = %e, "could not read presence; starting offline");
                    None
                }
            };
            let online = presence.filter(|p| p.online).map(|p| {
                p.skills
                    .iter()
                    .filter_map(|s| self.shared.catalog.get(s))
                    .collect()
            });
            let addr = self
                .spawn(move || AssociateActor::new(id, info, online, slot, mailbox, dispatch));
            if let Some(peers) = self.peers() {
                crate::peers::serve::serve_associate(peers, self, id);
            }
            (addr, position)
        })
    }

    /// An associate's app connected: returns what they should see again (an open offer,
    /// an order in progress).
    pub async fn associate_connected(
        &self,
        id: AssociateId,
        info: AssociateProfileInfo,
    ) -> Result<AssociateView, ActorError> {
        let busy = match self.peers() {
            Some(_) => self.busy_on(id)?,
            None => None,
        };
        // Their presence, awaited here (not read on this thread) unless the actor runs.
        let running = self.shared.associates.get(&id).is_some();
        let presence = match running {
            true => None,
            false => Some(self.shared.store.presence_async(id).await),
        };
        let slot = self.associate(id, &info, presence);
        if let Some(order) = busy {
            slot.send(messages::MarkBusy { order });
        }
        let asked = slot.ask(messages::Connected { info });
        drop(slot);
        Ok(asked.await?)
    }

    /// An associate's app disconnected.
    pub fn associate_disconnected(&self, id: AssociateId) {
        self.to_associate(id, messages::Disconnected {});
    }

    /// An associate's actor retired: in cluster mode, stop serving them here.
    pub(crate) fn associate_retired(&self, id: AssociateId) {
        if let Some(peers) = self.peers() {
            peers.unserve(Served::Associate(id));
        }
    }

    /// Asks `associate` (wherever their actor runs) to reserve themselves for `request`
    /// and show `offer`. A node that does not answer in time counts as a refusal, and the
    /// offer is withdrawn in case it was shown after all.
    pub(crate) fn reserve(
        &self,
        associate: AssociateId,
        request: RequestRef,
        task: TaskType,
        pickup: LatLng,
        offer: Offer,
    ) -> BoxFuture<'static, Result<UnixMs, Refusal>> {
        if self.shared.associates.get(&associate).is_some() {
            return self.reserve_here(associate, request, task, pickup, offer);
        }
        let Some(peers) = self.peers() else {
            // Their actor retired (away, idle): not available.
            return futures_util::future::ready(Err(Refusal::NotAvailable)).boxed();
        };
        let request_id = offer.request_id;
        let msg = ToAssociate::Reserve {
            request: request_id,
            task,
            pickup,
            offer,
        };
        let asked = peers.call::<Result<(), Refusal>>(subjects::associate(associate), &msg);
        let peers = peers.clone();
        let clock = self.shared.clock;
        async move {
            match asked.await {
                // Granted over there: shown no later than the answer arrived here.
                Ok(reply) => reply.map(|()| clock.now_ms()),
                Err(e) => {
                    if !matches!(e, crate::peers::PeerError::NoResponders(_)) {
                        peers.publish(
                            subjects::associate(associate),
                            &ToAssociate::Withdraw {
                                request: request_id,
                                reason: OfferEnd::Expired,
                            },
                        );
                    }
                    Err(Refusal::NotAvailable)
                }
            }
        }
        .boxed()
    }

    /// Asks the associate's actor here to reserve themselves.
    pub(crate) fn reserve_here(
        &self,
        associate: AssociateId,
        request: RequestRef,
        task: TaskType,
        pickup: LatLng,
        offer: Offer,
    ) -> BoxFuture<'static, Result<UnixMs, Refusal>> {
        let reserve = messages::Reserve {
            request,
            task,
            pickup,
            offer,
        };
        match self.ask_associate(associate, reserve) {
            Some(asked) => async move { asked.await.unwrap_or(Err(Refusal::NotAvailable)) }.boxed(),
            None => futures_util::future::ready(Err(Refusal::NotAvailable)).boxed(),
        }
    }

    /// Withdraws `request`'s offer from `associate`, wherever their actor runs.
    pub(crate) fn withdraw(&self, associate: AssociateId, request: RequestId, reason: OfferEnd) {
        let withdraw = messages::Withdraw {
            request_id: request,
            reason,
        };
        if !self.to_associate(associate, withdraw)
            && let Some(peers) = self.peers()
        {
            peers.publish(
                subjects::associate(associate),
                &ToAssociate::Withdraw { request, reason },
            );
        }
    }

    /// Withdraws `request`'s offer from `associate`, wherever their actor runs, and
    /// answers once their reservation has ended, with when (the engine's clock); none if
    /// that cannot be known (their actor is gone, or their node did not answer, in which
    /// case their actor ends the reservation by itself a grace period after its window).
    pub(crate) fn withdraw_confirmed(
        &self,
        associate: AssociateId,
        request: RequestId,
        reason: OfferEnd,
    ) -> BoxFuture<'static, Option<UnixMs>> {
        let withdraw = messages::Withdraw {
            request_id: request,
            reason,
        };
        if let Some(asked) = self.ask_associate(associate, withdraw) {
            return async move { asked.await.ok().flatten() }.boxed();
        }
        let Some(peers) = self.peers() else {
            return futures_util::future::ready(None).boxed();
        };
        let asked = peers.call::<Option<UnixMs>>(
            subjects::associate(associate),
            &ToAssociate::Withdraw { request, reason },
        );
        async move { asked.await.ok().flatten() }.boxed()
    }

    /// A message from another node for an associate whose actor runs here.
    pub(crate) fn to_associate_here(&self, id: AssociateId, msg: ToAssociate) {
        match msg {
            // Answered where it arrives.
            ToAssociate::Reserve { .. } => {}
            ToAssociate::Withdraw { request, reason } => {
                self.to_associate(
                    id,
                    messages::Withdraw {
                        request_id: request,
                        reason,
                    },
                );
            }
            ToAssociate::Release { order } => {
                self.to_associate(id, messages::Release { order });
            }
            ToAssociate::MarkBusy { order } => {
                self.to_associate(id, messages::MarkBusy { order });
            }
        }
    }

    /// An associate starts taking offers (for `skills`, or their profile's).
    pub async fn go_online(
        &self,
        id: AssociateId,
        skills: Option<Skills>,
    ) -> Result<AssociateView, ActorError> {
        let asked = self
            .ask_associate(id, messages::GoOnline { skills })
            .ok_or(ActorError::UnknownParty)?;
        asked.await?
    }

    /// An associate stops taking offers.
    pub async fn go_offline(&self, id: AssociateId) -> Result<AssociateView, ActorError> {
        let asked = self
            .ask_associate(id, messages::GoOffline {})
            .ok_or(ActorError::UnknownParty)?;
        asked.await?
    }

    /// An associate's position.
    pub fn associate_location(&self, id: AssociateId, point: LatLng) {
        let Some(slot) = self.shared.associates.get(&id) else {
            return;
        };
        let wake = match slot.extra.report(point) {
            Next::Nothing => false,
            Next::WakeActor => true,
            // Still inside the shard that indexes them: a move on its lane. Across the
            // border the actor hands them over.
            Next::Inside(shard) => {
                !self.to_existing_lane(shard, IndexOp::Move { id, point })
                    && slot.extra.wake_actor()
            }
            Next::Lane(shard) => {
                let disc = self.shared.map.locate(point);
                let inside = disc.shard() == shard;
                if inside {
                    slot.extra.located(disc);
                }
                !(inside && self.to_existing_lane(shard, IndexOp::Move { id, point }))
                    && slot.extra.wake_actor()
            }
        };
        if wake {
            slot.send(messages::Moved {});
        }
    }

    /// Sets or clears an associate's service zone.
    pub async fn set_zone(
        &self,
        id: AssociateId,
        zone: Option<ZoneFilter>,
    ) -> Result<(), ActorError> {
        let asked = self
            .ask_associate(id, messages::SetZone { zone })
            .ok_or(ActorError::UnknownParty)?;
        asked.await?;
        Ok(())
    }

    /// The associate accepts (`accept`) or declines an offer; on acceptance, the order.
    pub async fn answer_offer(
        &self,
        id: AssociateId,
        request_id: RequestId,
        accept: bool,
    ) -> Result<Option<OrderId>, ActorError> {
        let asked = self
            .ask_associate(id, messages::AnswerOffer { request_id, accept })
            .ok_or(ActorError::NotYourOffer)?;
        asked.await?
    }

    /// The associate's order ended: they may take offers again (wherever their actor
    /// runs).
    pub fn order_finished(&self, id: AssociateId, order: OrderId) {
        if !self.to_associate(id, messages::Release { order })
            && let Some(peers) = self.peers()
        {
            peers.publish(subjects::associate(id), &ToAssociate::Release { order });
        }
    }

    /// Marks an associate busy on a recovered order (at start-up).
    /// In cluster mode their actor lives with their session, wherever that is: it is told
    /// if it runs, and finds the order in the store when they connect if it does not.
    pub fn restore_busy(&self, id: AssociateId, order: OrderId, info: AssociateProfileInfo) {
        match self.peers() {
            None => self
                .associate(id, &info, None)
                .send(messages::MarkBusy { order }),
            Some(peers) => {
                if !self.to_associate(id, messages::MarkBusy { order }) {
                    peers.publish(subjects::associate(id), &ToAssociate::MarkBusy { order });
                }
            }
        }
    }

    /// In cluster mode, the open order an associate is on, from the store (their order
    /// may run on another node, or have been taken over while they were away).
    fn busy_on(&self, id: AssociateId) -> Result<Option<OrderId>, ActorError> {
        let open = crate::orders::open_order_in_store(&self.shared.store, PartyId::Associate(id))?;
        Ok(open.filter(|o| !o.owes_fee()).map(|o| o.order_id))
    }

    /// `request`, run on an actor thread: its durable write and the start of its offer
    /// loop then never wait in a busy socket worker's queue behind location sessions.
    pub async fn request_on_actor_thread(
        &self,
        user: UserId,
        frame: TaskRequest,
    ) -> Result<RequestReceived, ActorError> {
        let Some(arbiter) = self.next_arbiter() else {
            return self.request(user, frame).await;
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let dispatch = self.clone();
        // Runs to its end even if the asking session goes away meanwhile: a request is
        // never left half made (the user learns its outcome when they resume).
        let spawned = arbiter.spawn(async move {
            let _ = tx.send(dispatch.request(user, frame).await);
        });
        if !spawned {
            return Err(ActorError::ShuttingDown);
        }
        rx.await.unwrap_or(Err(ActorError::ShuttingDown))
    }

    /// A user asks for a task (frame already validated). The request is durable before
    /// the `request_received` frame is queued for the user and dispatch begins.
    pub async fn request(
        &self,
        user: UserId,
        frame: TaskRequest,
    ) -> Result<RequestReceived, ActorError> {
        self.shared
            .catalog
            .get(&frame.task)
            .ok_or(ActorError::UnknownTaskType)?;
        let pickup = frame
            .pickup
            .to_latlng()
            .map_err(|e| ActorError::Internal(format!("unvalidated pickup: {e}")))?;
        if self.place(self.shared.map.shard_of(pickup)) == Place::Outside {
            return Err(ActorError::InvalidState(
                "the pickup is outside the market this cluster serves".into(),
            ));
        }
        self.forget_stale_request(user);
        let created_at_ms = self.now_ms();
        let timeout_ms = self.shared.config.request_timeout.as_millis() as UnixMs;
        let stored = storage::OpenRequest {
            request_id: RequestId::new(),
            user_id: user,
            client_ref: frame.client_ref.clone(),
            task: frame.task.clone(),
            pickup: frame.pickup,
            note: frame.note.clone(),
            discount_code: frame.discount_code.clone(),
            created_at_ms,
            deadline_at_ms: created_at_ms + timeout_ms,
            refused: Vec::new(),
        };
        let received = RequestReceived {
            client_ref: frame.client_ref.clone(),
            request_id: stored.request_id,
            expires_at_ms: stored.deadline_at_ms,
        };
        match self.shared.user_requests.entry(user) {
            Entry::Occupied(open) => {
                return Err(ActorError::AlreadyActive(format!(
                    "request {} is still open: cancel it or wait for its outcome",
                    open.get().request_id
                )));
            }
            Entry::Vacant(e) => {
                e.insert(received.clone());
            }
        }
        if let Err(e) = crate::disk::write(self.shared.store.put_request(&stored)).await {
            self.shared.user_requests.remove(&user);
            return Err(e);
        }
        self.shared.sessions.to_user(user, received.clone());
        match self
            .start_request(stored.clone(), Provenance::JustStored)
            .await
        {
            Ok(()) => {}
            // Cluster mode: the request is durable, but its cell's owner did not take it
            // (the cell is between owners, or its node is slow). It stays accepted: the
            // cell's next owner resumes it from the store, and until the deadline this
            // node keeps handing it over (a start is idempotent).
            Err(ActorError::PeerUnavailable(why)) => {
                tracing::info!(request = %stored.request_id, %why, "a request waits for its cell's owner");
                self.keep_starting(stored);
            }
            Err(e) => {
                self.shared.user_requests.remove(&user);
                return Err(e);
            }
        }
        Ok(received)
    }

    /// Retries handing a stored request to its cell's owner every third of the call
    /// timeout until one takes it, the request ends, or its deadline passes.
    fn keep_starting(&self, stored: storage::OpenRequest) {
        let Some(peers) = self.peers() else {
            return;
        };
        let every = (peers.call_timeout() / 3).max(std::time::Duration::from_millis(50));
        let dispatch = self.clone();
        // Called from socket sessions (tokio tasks), not only from actors.
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let still_open = matches!(
                    dispatch.shared.store.request_async(stored.request_id).await,
                    Ok(Some(_))
                );
                if !still_open || dispatch.now_ms() >= stored.deadline_at_ms {
                    return;
                }
                match dispatch
                    .start_request(stored.clone(), Provenance::Handed)
                    .await
                {
                    Err(ActorError::PeerUnavailable(_)) => {}
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(request = %stored.request_id, error = %e, "a waiting request could not be handed over");
                        return;
                    }
                }
            }
        });
    }

    /// In cluster mode the request a user was last told of may have ended on another
    /// node while they were away: forget it if the store no longer has it.
    fn forget_stale_request(&self, user: UserId) {
        if self.peers().is_none() {
            return;
        }
        let Some(open) = self.shared.user_requests.get(&user).map(|r| r.request_id) else {
            return;
        };
        if matches!(self.shared.store.request(open), Ok(None)) {
            self.forget_user_request(user, open);
        }
    }

    /// Forgets that `user`'s open request is `request` (it ended on another node).
    pub(crate) fn forget_user_request(&self, user: UserId, request: RequestId) {
        self.shared
            .user_requests
            .remove_if(&user, |_, r| r.request_id == request);
    }

    /// Starts a stored request's offer loop on the supervisor of its pickup's shard,
    /// wherever that shard is served.
    async fn start_request(
        &self,
        stored: storage::OpenRequest,
        provenance: Provenance,
    ) -> Result<(), ActorError> {
        let pickup = stored
            .pickup
            .to_latlng()
            .map_err(|e| ActorError::Internal(format!("stored pickup: {e}")))?;
        let shard = self.shared.map.shard_of(pickup);
        match self.place(shard) {
            Place::Here => self.start_stored(stored, provenance).await,
            Place::Elsewhere => {
                let peers = self.peers().ok_or(ActorError::ShuttingDown)?;
                peers
                    .call::<Result<(), ActorError>>(subjects::cell_start(shard), &stored)
                    .await?
            }
            Place::Outside => Err(ActorError::InvalidState(
                "the pickup is outside the market this cluster serves".into(),
            )),
        }
    }

    /// Starts a stored request's offer loop here (once: a request already running here
    /// is left alone).
    pub(crate) async fn start_stored(
        &self,
        stored: storage::OpenRequest,
        provenance: Provenance,
    ) -> Result<(), ActorError> {
        let task = self
            .shared
            .catalog
            .get(&stored.task)
            .ok_or(ActorError::UnknownTaskType)?;
        let pickup = stored
            .pickup
            .to_latlng()
            .map_err(|e| ActorError::Internal(format!("stored pickup: {e}")))?;
        let shard = self.shared.map.shard_of(pickup);
        if self.place(shard) != Place::Here {
            return Err(ActorError::PeerUnavailable(format!(
                "cell {shard} is not served by this node any more"
            )));
        }
        if self.shared.requests.contains_key(&stored.request_id) {
            return Ok(());
        }
        // Handed over again after it ended here (allotted, cancelled, expired): done. A
        // request this node has just stored cannot have ended: nothing to read back.
        if provenance == Provenance::Handed
            && self
                .shared
                .store
                .request_async(stored.request_id)
                .await?
                .is_none()
        {
            return Ok(());
        }
        let spec = RequestSpec::resumed(&stored, task, pickup, &self.shared.clock);
        self.ask_supervisor(shard, messages::StartRequest { spec })
            .await?;
        Ok(())
    }

    /// The actor of a request running here.
    pub(crate) fn request_actor(&self, id: RequestId) -> Option<Addr<RequestActor>> {
        self.shared.requests.get(&id).map(|a| a.clone())
    }

    /// Resumes the requests that were open when the engine stopped, with their deadlines
    /// and the associates who already refused them; drops those whose deadline passed
    /// while it was down. Returns how many resumed and how many expired.
    pub async fn recover_requests(&self) -> Result<(usize, usize), ActorError> {
        self.resume_requests(|_| true).await
    }

    /// Resumes the stored open requests whose pickup shard `wanted` accepts and that do
    /// not run here yet.
    async fn resume_requests(
        &self,
        wanted: impl Fn(ShardId) -> bool,
    ) -> Result<(usize, usize), ActorError> {
        let mut resumed = 0;
        let mut expired = 0;
        for stored in self.shared.store.open_requests()? {
            let shard = stored
                .pickup
                .to_latlng()
                .ok()
                .map(|p| self.shared.map.shard_of(p));
            if shard.is_some_and(|s| !wanted(s))
                || self.shared.requests.contains_key(&stored.request_id)
            {
                continue;
            }
            let task = self.shared.catalog.get(&stored.task);
            let pickup = stored.pickup.to_latlng().ok();
            let (Some(task), Some(pickup)) = (task, pickup) else {
                tracing::warn!(request = %stored.request_id, task = %stored.task, "dropping a stored request this configuration cannot serve");
                crate::disk::write(self.shared.store.remove_request(stored.request_id)).await?;
                expired += 1;
                continue;
            };
            if stored.deadline_at_ms <= self.now_ms() {
                crate::disk::write(self.shared.store.remove_request(stored.request_id)).await?;
                expired += 1;
                continue;
            }
            self.shared.user_requests.insert(
                stored.user_id,
                RequestReceived {
                    client_ref: stored.client_ref.clone(),
                    request_id: stored.request_id,
                    expires_at_ms: stored.deadline_at_ms,
                },
            );
            let spec = RequestSpec::resumed(&stored, task, pickup, &self.shared.clock);
            let shard = self.shared.map.shard_of(pickup);
            self.ask_supervisor(shard, messages::StartRequest { spec })
                .await?;
            resumed += 1;
        }
        Ok((resumed, expired))
    }

    /// This node now serves `shards`: resume their open requests (their former owner
    /// is gone or handed them over).
    pub(crate) async fn cells_gained(&self, shards: &[ShardId]) {
        match self.resume_requests(|s| shards.contains(&s)).await {
            Ok((0, 0)) => {}
            Ok((resumed, expired)) => {
                tracing::info!(
                    resumed,
                    expired,
                    cells = shards.len(),
                    "open requests taken over with cells"
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "could not resume the open requests of gained cells")
            }
        }
    }

    /// This node no longer serves `shard`: stop the offer loops it ran there (their new
    /// owner resumes them from the store) without ending the requests; resolves once
    /// they are out of the address book.
    pub(crate) async fn cell_lost(&self, shard: ShardId) {
        crate::peers::relinquish_all(&self.shared.requests, shard).await;
    }

    /// Other nodes took `shards`: re-send the associates indexed there from here.
    pub(crate) fn reindex(&self, shards: &[ShardId]) {
        self.shared.associates.for_each(|slot| {
            if let Some(shard) = slot.extra.lane().filter(|s| shards.contains(s)) {
                slot.send(messages::Reindex { shard });
            }
        });
    }

    /// A user cancels their open request.
    pub async fn cancel_request(
        &self,
        user: UserId,
        request_id: RequestId,
    ) -> Result<(), ActorError> {
        let local = self.shared.requests.get(&request_id).map(|a| a.clone());
        if let Some(addr) = local {
            return addr.send(messages::Cancel { user }).await?;
        }
        let peers = self.peers().ok_or(ActorError::UnknownRequest)?;
        let asked = peers.call::<Result<(), ActorError>>(
            subjects::request(request_id),
            &ToRequest::Cancel { user },
        );
        match asked.await {
            Ok(result) => result,
            Err(crate::peers::PeerError::NoResponders(_)) => Err(ActorError::UnknownRequest),
            Err(e) => Err(e.into()),
        }
    }

    /// The user's open request, if any.
    pub fn open_request_of(&self, user: UserId) -> Option<RequestId> {
        self.shared.user_requests.get(&user).map(|r| r.request_id)
    }

    /// The user's open request as it was acknowledged to them, if any.
    pub fn open_request_frame(&self, user: UserId) -> Option<RequestReceived> {
        self.shared.user_requests.get(&user).map(|r| r.clone())
    }

    /// How many shard supervisors and associate actors run now.
    pub fn actor_counts(&self) -> (usize, usize) {
        (self.shared.supervisors.len(), self.shared.associates.len())
    }

    /// Where the associates whose actors run here are, and in which state, inside `view`
    /// (by default a box around them all): one by one while at most `max_points` are in
    /// view and the view is at most [`DETAIL_SPAN_M`] across, else counted per H3 cell at
    /// a resolution that suits the view's width; and how many are available in each shard
    /// cell.
    pub fn positions(&self, view: Option<geo::Viewport>, max_points: usize) -> MarketView {
        let mut points = Vec::new();
        let mut available: std::collections::HashMap<ShardId, usize> = Default::default();
        self.shared.associates.for_each(|slot| {
            let (latest, lane, availability) = slot.extra.seen();
            if let Some(shard) = lane {
                *available.entry(shard).or_default() += 1;
            }
            if let Some(p) = latest {
                points.push((p, availability));
            }
        });
        let located = points.len();
        let view = view.unwrap_or_else(|| geo::Viewport::around(points.iter().map(|(p, _)| *p)));
        points.retain(|(p, _)| view.contains(*p));
        let counted = |counts: std::collections::HashMap<ShardId, usize>| {
            counts
                .into_iter()
                .map(|(shard, count)| {
                    let c = shard.centre();
                    CellCount {
                        lat: c.lat(),
                        lng: c.lng(),
                        count,
                    }
                })
                .collect::<Vec<_>>()
        };
        let available = counted(available);
        if points.len() <= max_points && view.span_m() <= DETAIL_SPAN_M {
            return MarketView {
                located,
                points: points
                    .into_iter()
                    .map(|(p, availability)| AssociatePoint {
                        lat: p.lat(),
                        lng: p.lng(),
                        availability,
                    })
                    .collect(),
                cells: Vec::new(),
                resolution: None,
                available,
            };
        }
        let resolution = view.resolution_for(CELLS_ACROSS, FINEST_AGGREGATE);
        let map = geo::ShardMap::new(resolution).unwrap_or(self.shared.map);
        let mut per_cell: std::collections::HashMap<ShardId, usize> = Default::default();
        for (p, _) in &points {
            *per_cell.entry(map.shard_of(*p)).or_default() += 1;
        }
        MarketView {
            located,
            points: Vec::new(),
            cells: counted(per_cell),
            resolution: Some(map.resolution()),
            available,
        }
    }

    /// Starts the trail of a request whose offer loop runs here.
    pub(crate) fn open_trail(&self, spec: &RequestSpec) {
        self.shared.trails.insert(
            spec.request_id,
            RequestTrail {
                request_id: spec.request_id,
                task: spec.task_name.clone(),
                lat: spec.pickup.lat(),
                lng: spec.pickup.lng(),
                created_at_ms: spec.created_at_ms,
                offers: Vec::new(),
                outcome: None,
                ended_at_ms: None,
            },
        );
    }

    /// Opens an offer of `request` to `associate`, shown at `at_ms` until `expires_at_ms`.
    pub(crate) fn offer_started(
        &self,
        request: RequestId,
        associate: AssociateId,
        at_ms: UnixMs,
        expires_at_ms: UnixMs,
    ) {
        if let Some(mut trail) = self.shared.trails.get_mut(&request) {
            if trail.offers.len() >= MAX_TRAIL {
                trail.offers.remove(0);
            }
            trail.offers.push(OfferStep {
                associate,
                at_ms,
                expires_at_ms,
                ended_at_ms: None,
                outcome: "open",
            });
        }
    }

    /// Ends the open offer of `request` to `associate` at `at_ms` with `outcome`.
    pub(crate) fn offer_ended(
        &self,
        request: RequestId,
        associate: AssociateId,
        at_ms: UnixMs,
        outcome: &'static str,
    ) {
        let end = |trail: &mut RequestTrail| {
            if let Some(step) = trail
                .offers
                .iter_mut()
                .rev()
                .find(|s| s.associate == associate && s.outcome == "open")
            {
                step.outcome = outcome;
                step.ended_at_ms = Some(at_ms.max(step.at_ms));
            }
        };
        if let Some(mut trail) = self.shared.trails.get_mut(&request) {
            end(&mut trail);
            return;
        }
        // Ended meanwhile (a confirmation that came after the request's end).
        let mut recent = self
            .shared
            .ended_trails
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(trail) = recent.iter_mut().rev().find(|t| t.request_id == request) {
            end(trail);
        }
    }

    /// Ends a request's trail with `outcome`, keeping it among the recent ones.
    pub(crate) fn close_trail(&self, request: RequestId, outcome: &'static str) {
        if let Some((_, mut trail)) = self.shared.trails.remove(&request) {
            trail.outcome = Some(outcome);
            trail.ended_at_ms = Some(self.now_ms());
            let mut recent = self
                .shared
                .ended_trails
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if recent.len() >= MAX_ENDED_TRAILS {
                recent.pop_front();
            }
            recent.push_back(trail);
        }
    }

    /// The trail of a request whose offer loop runs here or ended here recently.
    pub fn trail(&self, request: RequestId) -> Option<RequestTrail> {
        if let Some(trail) = self.shared.trails.get(&request) {
            return Some(trail.clone());
        }
        let recent = self
            .shared
            .ended_trails
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        recent
            .iter()
            .rev()
            .find(|t| t.request_id == request)
            .cloned()
    }

    /// The open requests running here with their offers, at most `max`, oldest first.
    pub fn trails(&self, max: usize) -> Vec<RequestTrail> {
        let mut all: Vec<RequestTrail> = self.shared.trails.iter().map(|t| t.clone()).collect();
        all.sort_by_key(|t| t.created_at_ms);
        all.truncate(max);
        all
    }

    /// How many requests are looking for an associate.
    pub fn open_requests(&self) -> usize {
        self.shared.requests.len()
    }

    /// Forgets a finished request (telling the user's node, in cluster mode).
    pub(crate) fn request_finished(&self, request: RequestId, user: UserId) {
        self.request_stopped(request);
        self.forget_user_request(user, request);
        if let Some(peers) = self.peers() {
            peers.publish(
                subjects::party(PartyId::User(user)),
                &ToParty::RequestEnded { request },
            );
        }
    }

    /// A request's offer loop stopped here (ended, or handed over with its cell).
    pub(crate) fn request_stopped(&self, request: RequestId) {
        self.shared.requests.remove(&request);
        self.shared.trails.remove(&request);
        if let Some(peers) = self.peers() {
            peers.unserve(Served::Request(request));
        }
    }

    /// Unix milliseconds now.
    pub fn now_ms(&self) -> UnixMs {
        self.shared.clock.now_ms()
    }
}

/// Offers kept per request for the console (the oldest go first).
const MAX_TRAIL: usize = 32;
/// Ended requests whose trails are kept (the oldest go first).
pub const MAX_ENDED_TRAILS: usize = 65_536;

/// An open request and the offers it made, for the ops console.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestTrail {
    /// The request.
    pub request_id: RequestId,
    /// Its task type.
    pub task: String,
    /// Pickup latitude.
    pub lat: f64,
    /// Pickup longitude.
    pub lng: f64,
    /// When it was made.
    pub created_at_ms: UnixMs,
    /// Its offers, in order.
    pub offers: Vec<OfferStep>,
    /// How it ended (allotted, cancelled, no_associate, failed, handed_over); none while
    /// open.
    pub outcome: Option<&'static str>,
    /// When it ended here.
    pub ended_at_ms: Option<UnixMs>,
}

/// One offer of a request, its times on the engine's clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OfferStep {
    /// To whom.
    pub associate: AssociateId,
    /// When the associate was shown it.
    pub at_ms: UnixMs,
    /// When its window ends.
    pub expires_at_ms: UnixMs,
    /// When the associate's hold on it ended; none while open.
    pub ended_at_ms: Option<UnixMs>,
    /// `open`, or how it ended: accepted, declined, expired, withdrawn, disconnected,
    /// failed.
    pub outcome: &'static str,
}

/// Views wider than this (metres) show associates counted per cell.
pub const DETAIL_SPAN_M: f64 = 100_000.0;
/// Cells side to side across a view counted per cell.
const CELLS_ACROSS: f64 = 48.0;
/// The finest resolution associates are counted at (res 9 cells are ~350 m across).
const FINEST_AGGREGATE: u8 = 9;

/// Where associates are, for the ops console.
#[derive(Debug, Clone, PartialEq)]
pub struct MarketView {
    /// Associates with a known position.
    pub located: usize,
    /// Each of them, when they are few enough.
    pub points: Vec<AssociatePoint>,
    /// Otherwise, how many in each H3 cell at `resolution`.
    pub cells: Vec<CellCount>,
    /// The H3 resolution of `cells`, when counted per cell.
    pub resolution: Option<u8>,
    /// Available associates per shard cell (the load a cell's index carries).
    pub available: Vec<CellCount>,
}

/// One associate on the map.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AssociatePoint {
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lng: f64,
    /// Offline, available, reserved for an offer, or busy on an order.
    pub availability: wire::model::Availability,
}

/// Associates in one shard cell.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CellCount {
    /// The cell's centre latitude.
    pub lat: f64,
    /// The cell's centre longitude.
    pub lng: f64,
    /// How many.
    pub count: usize,
}

/// What dispatch needs from an associate's stored profile.
pub fn profile_info(
    profile: &storage::AssociateProfile,
    catalog: &TaskCatalog,
) -> AssociateProfileInfo {
    AssociateProfileInfo {
        skills: profile
            .skills
            .iter()
            .filter_map(|s| catalog.get(s))
            .collect(),
        zone: profile.home_zone.as_ref().and_then(ZoneFilter::from_wire),
    }
}

/// Where a stored request being started comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Provenance {
    /// Stored just now by the caller, which still holds the user's open request: it
    /// cannot have ended.
    JustStored,
    /// Handed over by another node, or a retry: it may have ended meanwhile.
    Handed,
}
