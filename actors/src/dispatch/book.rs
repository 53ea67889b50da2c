//! The address book: who runs where (shard supervisors, associates, open requests) and
//! the refs that reach them on this node or another; actors are started here, on the
//! next arbiter in turn.

use std::borrow::Borrow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};

use actix::dev::Request;
use actix::{Actor, Addr, ArbiterHandle, Handler, Message, Recipient};
use dashmap::DashMap;
use dashmap::mapref::one::Ref as MapRef;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use geo::{LatLng, Neighbor, ShardId, ShardMap, TaskType};
use wire::model::{OfferEnd, UnixMs};
use wire::{AssociateId, Offer, RequestId, RequestReceived, TaskCatalog, UserId};

use super::handle::AssociateProfileInfo;
use super::views::RequestTrail;
use crate::allotment::CreateOrder;
use crate::clock::Clock;
use crate::config::DispatchConfig;
use crate::dispatch::associate::AssociateActor;
use crate::dispatch::lane::{IndexLane, IndexOp, PositionSlot};
use crate::dispatch::messages;
use crate::dispatch::messages::{LocalNearest, Refusal};
use crate::dispatch::request::RequestActor;
use crate::dispatch::supervisor::ShardSupervisor;
use crate::error::ActorError;
use crate::peers::remote::{self, Ref, Routes, Subject, Takes, Unreached};
use crate::peers::{Peers, Place, Served, subjects};
use crate::registry::{Mailbox, Registry, Slot};
use crate::sessions::Sessions;

use super::handle::Dispatch;

/// What the dispatch handle and its actors share: settings, the address book, the
/// open requests.
pub(in crate::dispatch) struct Shared {
    pub(in crate::dispatch) config: DispatchConfig,
    pub(in crate::dispatch) store: storage::Store,
    pub(in crate::dispatch) catalog: TaskCatalog,
    pub(in crate::dispatch) map: ShardMap,
    pub(in crate::dispatch) sessions: Sessions,
    pub(in crate::dispatch) clock: Clock,
    pub(in crate::dispatch) arbiters: Vec<ArbiterHandle>,
    pub(in crate::dispatch) next_arbiter: AtomicUsize,
    /// Shard supervisors, each with the lane of index changes waiting for it.
    pub(in crate::dispatch) supervisors: Registry<ShardId, ShardSupervisor, Arc<IndexLane>>,
    /// Associates' actors, each with the slot its newest position waits in.
    pub(in crate::dispatch) associates: Registry<AssociateId, AssociateActor, Arc<PositionSlot>>,
    pub(in crate::dispatch) requests: DashMap<RequestId, Addr<RequestActor>>,
    /// The offers each open request made here, for the ops console.
    pub(in crate::dispatch) trails: DashMap<RequestId, RequestTrail>,
    /// Trails of requests that ended here, newest last.
    pub(in crate::dispatch) ended_trails:
        std::sync::Mutex<std::collections::VecDeque<RequestTrail>>,
    /// Each user's open request, as told to them (re-sent when they reconnect).
    pub(in crate::dispatch) user_requests: DashMap<UserId, RequestReceived>,
    pub(in crate::dispatch) order_sink: OnceLock<Recipient<CreateOrder>>,
    /// The other nodes, in cluster mode.
    pub(in crate::dispatch) peers: OnceLock<Peers>,
}

impl Dispatch {
    /// Where `shard` is served from.
    pub(crate) fn place(&self, shard: ShardId) -> Place {
        self.peers().map_or(Place::Here, |p| p.place(shard))
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
    pub(super) fn next_arbiter(&self) -> Option<&ArbiterHandle> {
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

    pub(super) fn supervisor(
        &self,
        shard: ShardId,
    ) -> MapRef<'_, ShardId, Slot<ShardSupervisor, Arc<IndexLane>>> {
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

    /// Queues `op` on the lane of `shard`'s supervisor (started on first use for an
    /// upsert), wherever the shard is served; outside the market nobody indexes anyone.
    pub(crate) fn to_lane(&self, shard: ShardId, op: IndexOp) {
        if let Some(cell) = self.cell(shard) {
            cell.tell(op);
        }
    }

    /// Like [`Dispatch::to_lane`]; false if the shard is served here and its supervisor
    /// does not run for a move or a removal (a shard served elsewhere always takes it).
    pub(crate) fn to_existing_lane(&self, shard: ShardId, op: IndexOp) -> bool {
        self.cell(shard).is_none_or(|cell| cell.tell(op))
    }

    /// A search of the shard `shard` alone, wherever it is served; nobody if its node
    /// does not answer in time.
    pub(crate) fn search_shard(
        &self,
        shard: ShardId,
        search: LocalNearest,
    ) -> Option<BoxFuture<'static, Vec<Neighbor<AssociateId>>>> {
        let asked = self.cell(shard)?.ask(search);
        Some(
            async move {
                asked.await.unwrap_or_else(|e| {
                    tracing::debug!(%shard, error = ?e, "a neighbouring cell's search went unanswered");
                    Vec::new()
                })
            }
            .boxed(),
        )
    }

    /// Queues `op` on a supervisor's lane, waking it if it has no drain on its way.
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
    pub(super) fn associate(
        &self,
        id: AssociateId,
        info: &AssociateProfileInfo,
        read: Option<Result<Option<storage::Presence>, storage::StorageError>>,
    ) -> MapRef<'_, AssociateId, Slot<AssociateActor, Arc<PositionSlot>>> {
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
                self.serve_associate(peers, id);
            }
            (addr, position)
        })
    }

    /// Retires an idle associate's actor if it has handled every message sent to it
    /// (then, in cluster mode, stops serving them here); false if it must stay.
    pub(super) fn retire_associate(
        &self,
        id: AssociateId,
        addr: &Addr<AssociateActor>,
        mailbox: &Mailbox,
    ) -> bool {
        let retired = self.shared.associates.retire(&id, addr, mailbox, |_| true);
        if retired && let Some(peers) = self.peers() {
            peers.unserve(Served::Associate(id));
        }
        retired
    }

    /// Retires an idle shard supervisor if it has handled every message sent to it and
    /// its lane is empty; false if it must stay.
    pub(super) fn retire_supervisor(
        &self,
        shard: ShardId,
        addr: &Addr<ShardSupervisor>,
        mailbox: &Mailbox,
    ) -> bool {
        self.shared
            .supervisors
            .retire(&shard, addr, mailbox, |lane| lane.is_empty())
    }

    /// A request actor started here: in the address book (and, in cluster mode, served
    /// to the other nodes) before it runs.
    pub(super) fn request_started(&self, id: RequestId, addr: Addr<RequestActor>) {
        self.shared.requests.insert(id, addr.clone());
        if let Some(peers) = self.peers() {
            self.serve_request(peers, id, addr);
        }
    }

    /// The associate: their actor if it runs here, else (in cluster mode) their subject.
    pub(crate) fn associate_ref(&self, id: AssociateId) -> Option<AssociateRef> {
        if self.shared.associates.get(&id).is_some() {
            return Some(Ref::Here(AssociateHere {
                dispatch: self.clone(),
                id,
            }));
        }
        self.peers().map(|peers| Ref::There {
            peers: peers.clone(),
            subject: Subject::one(subjects::associate(id)),
        })
    }

    /// A request's offer loop: its actor if it runs here, else (in cluster mode) its
    /// subject.
    pub(crate) fn request_ref(&self, id: RequestId) -> Option<RequestRef> {
        if let Some(addr) = self.shared.requests.get(&id) {
            return Some(Ref::Here(addr.clone()));
        }
        self.peers().map(|peers| Ref::There {
            peers: peers.clone(),
            subject: Subject::one(subjects::request(id)),
        })
    }

    /// A shard cell: here, on its owner, or nowhere (outside the market).
    pub(crate) fn cell(&self, shard: ShardId) -> Option<CellRef<'_>> {
        match self.place(shard) {
            Place::Here => Some(Ref::Here(CellHere {
                dispatch: self,
                shard,
            })),
            Place::Elsewhere => self.peers().map(|peers| Ref::There {
                peers: peers.clone(),
                subject: Subject::per_message(subjects::cell(shard)),
            }),
            Place::Outside => None,
        }
    }

    /// Asks `associate` (wherever their actor runs) to reserve themselves for the
    /// request of `offer` and show it. A node that does not answer in time counts as a
    /// refusal, and the offer is withdrawn in case it was shown after all.
    pub(crate) fn reserve(
        &self,
        associate: AssociateId,
        task: TaskType,
        pickup: LatLng,
        offer: Offer,
    ) -> BoxFuture<'static, Result<UnixMs, Refusal>> {
        let Some(to) = self.associate_ref(associate) else {
            // Their actor retired (away, idle): not available.
            return futures_util::future::ready(Err(Refusal::NotAvailable)).boxed();
        };
        let request_id = offer.request_id;
        let asked = to.ask(messages::Reserve {
            task,
            pickup,
            offer,
        });
        async move {
            match asked.await {
                Ok(reply) => reply,
                Err(Unreached::Gone) => Err(Refusal::NotAvailable),
                Err(Unreached::Peer(_)) => {
                    to.tell(messages::Withdraw {
                        request_id,
                        reason: OfferEnd::Expired,
                    });
                    Err(Refusal::NotAvailable)
                }
            }
        }
        .boxed()
    }

    /// Withdraws `request`'s offer from `associate`, wherever their actor runs.
    pub(crate) fn withdraw(&self, associate: AssociateId, request: RequestId, reason: OfferEnd) {
        if let Some(to) = self.associate_ref(associate) {
            to.tell(messages::Withdraw {
                request_id: request,
                reason,
            });
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
        let Some(to) = self.associate_ref(associate) else {
            return futures_util::future::ready(None).boxed();
        };
        let asked = to.ask(messages::Withdraw {
            request_id: request,
            reason,
        });
        async move { asked.await.ok().flatten() }.boxed()
    }

    /// Other nodes took `shards`: re-send the associates indexed there from here.
    pub(crate) fn reindex(&self, shards: &[ShardId]) {
        self.shared.associates.for_each(|slot| {
            if let Some(shard) = slot.extra.lane().filter(|s| shards.contains(s)) {
                slot.send(messages::Reindex { shard });
            }
        });
    }
}

/// An associate, reached through their actor here (looked up at each send, so a
/// retired actor is never written to) or through their subject on another node.
pub(crate) type AssociateRef = Ref<AssociateHere>;
/// A request's offer loop, here or on another node.
pub(crate) type RequestRef = Ref<Addr<RequestActor>>;
/// A shard cell (its supervisor and index), here or on its owner; borrowed from the
/// handle while it is used, so the position path clones nothing.
pub(crate) type CellRef<'a> = Ref<CellHere<&'a Dispatch>>;

/// An associate whose actor runs on this node.
#[derive(Clone)]
pub(crate) struct AssociateHere {
    dispatch: Dispatch,
    id: AssociateId,
}

impl<M> Takes<M> for AssociateHere
where
    AssociateActor: Handler<M>,
    M: Message + Send + 'static,
    M::Result: Send,
{
    fn tell(&self, msg: M) -> bool {
        match self.dispatch.shared.associates.get(&self.id) {
            Some(slot) => {
                slot.send(msg);
                true
            }
            None => false,
        }
    }

    fn ask(&self, msg: M) -> BoxFuture<'static, Option<M::Result>> {
        match self.dispatch.shared.associates.get(&self.id) {
            Some(slot) => {
                let asked = slot.ask(msg);
                async move { asked.await.ok() }.boxed()
            }
            None => futures_util::future::ready(None).boxed(),
        }
    }
}

/// A shard cell served by this node.
#[derive(Clone)]
pub(crate) struct CellHere<D = Dispatch> {
    dispatch: D,
    shard: ShardId,
}

impl<D: Borrow<Dispatch>> Takes<IndexOp> for CellHere<D> {
    /// An upsert starts the supervisor if it does not run; a move or a removal is for
    /// one that does (false if it does not).
    fn tell(&self, op: IndexOp) -> bool {
        let dispatch: &Dispatch = self.dispatch.borrow();
        match op {
            IndexOp::Upsert { .. } => {
                Dispatch::push(&dispatch.supervisor(self.shard), op);
                true
            }
            IndexOp::Move { .. } | IndexOp::Remove { .. } => {
                match dispatch.shared.supervisors.get(&self.shard) {
                    Some(slot) => {
                        Dispatch::push(&slot, op);
                        true
                    }
                    None => false,
                }
            }
        }
    }

    fn ask(&self, op: IndexOp) -> BoxFuture<'static, Option<()>> {
        self.tell(op);
        futures_util::future::ready(Some(())).boxed()
    }
}

impl<D: Borrow<Dispatch>> Takes<LocalNearest> for CellHere<D> {
    fn tell(&self, _: LocalNearest) -> bool {
        true
    }

    /// Nobody if the cell's supervisor does not run (it has no associates).
    fn ask(&self, search: LocalNearest) -> BoxFuture<'static, Option<Vec<Neighbor<AssociateId>>>> {
        match self
            .dispatch
            .borrow()
            .ask_existing_supervisor(self.shard, search)
        {
            Some(asked) => async move { Some(asked.await.unwrap_or_default()) }.boxed(),
            None => futures_util::future::ready(Some(Vec::new())).boxed(),
        }
    }
}

impl<D: Borrow<Dispatch>> Takes<messages::StartStored> for CellHere<D> {
    fn tell(&self, msg: messages::StartStored) -> bool {
        let asked = Takes::<messages::StartStored>::ask(self, msg);
        tokio::spawn(asked);
        true
    }

    fn ask(
        &self,
        msg: messages::StartStored,
    ) -> BoxFuture<'static, Option<Result<(), ActorError>>> {
        let dispatch = self.dispatch.borrow().clone();
        async move { Some(dispatch.start_stored(msg.stored, msg.provenance).await) }.boxed()
    }
}

/// What an associate takes from other nodes.
static ASSOCIATE_ROUTES: LazyLock<Routes<AssociateHere>> = LazyLock::new(|| {
    Routes::new()
        .with::<messages::Reserve>()
        .with::<messages::Withdraw>()
        .with::<messages::Release>()
        .with::<messages::MarkBusy>()
});

/// What a request takes from other nodes.
static REQUEST_ROUTES: LazyLock<Routes<Addr<RequestActor>>> = LazyLock::new(|| {
    Routes::new()
        .with::<messages::AcceptOffer>()
        .with::<messages::OfferRefused>()
        .with::<messages::Cancel>()
});

/// What a cell takes from other nodes.
static CELL_ROUTES: LazyLock<Routes<CellHere>> = LazyLock::new(|| {
    Routes::new()
        .with::<IndexOp>()
        .with::<LocalNearest>()
        .with::<messages::StartStored>()
});

impl Dispatch {
    /// Serves an associate whose actor runs here to the other nodes.
    pub(super) fn serve_associate(&self, peers: &Peers, id: AssociateId) {
        let here = AssociateHere {
            dispatch: self.clone(),
            id,
        };
        let subject = Subject::one(subjects::associate(id));
        remote::serve(
            peers,
            Served::Associate(id),
            &subject,
            here,
            &ASSOCIATE_ROUTES,
        );
    }

    /// Serves a request whose offer loop runs here to the other nodes.
    pub(super) fn serve_request(&self, peers: &Peers, id: RequestId, addr: Addr<RequestActor>) {
        let subject = Subject::one(subjects::request(id));
        remote::serve(peers, Served::Request(id), &subject, addr, &REQUEST_ROUTES);
    }

    /// Serves a cell this node holds to the other nodes.
    pub(crate) fn serve_cell(&self, peers: &Peers, shard: ShardId) {
        let here = CellHere {
            dispatch: self.clone(),
            shard,
        };
        let subject = Subject::per_message(subjects::cell(shard));
        remote::serve(peers, Served::Cell(shard), &subject, here, &CELL_ROUTES);
    }
}
