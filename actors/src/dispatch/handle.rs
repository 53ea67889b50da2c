//! The dispatch handle: what socket sessions, HTTP and tests call. Associates connect,
//! go online and answer offers; users ask for a task and cancel it.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, OnceLock};

use actix::{ArbiterHandle, Recipient};
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use geo::{LatLng, ShardId, ShardMap, Skills};
use wire::model::UnixMs;
use wire::{
    AssociateId, OrderId, PartyId, RequestId, RequestReceived, TaskCatalog, TaskRequest, UserId,
};

use super::requests::Provenance;
use crate::allotment::CreateOrder;
use crate::clock::Clock;
use crate::config::DispatchConfig;
use crate::dispatch::lane::{IndexOp, Next};
use crate::dispatch::messages;
use crate::dispatch::messages::AssociateView;
use crate::dispatch::zone::ZoneFilter;
use crate::error::ActorError;
use crate::peers::remote::Unreached;
use crate::peers::{Peers, Place};
use crate::registry::Registry;
use crate::sessions::Sessions;

use super::book::Shared;

/// A cheap, cloneable handle on dispatch.
#[derive(Clone)]
pub struct Dispatch {
    pub(in crate::dispatch) shared: Arc<Shared>,
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

    /// The shard cell of `point`.
    pub fn shard_of(&self, point: LatLng) -> ShardId {
        self.shared.map.shard_of(point)
    }

    /// The shard cells of the market.
    pub(crate) fn shard_map(&self) -> &ShardMap {
        &self.shared.map
    }

    /// The clock.
    pub fn clock(&self) -> Clock {
        self.shared.clock
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
        if let Some(to) = self.associate_ref(id) {
            to.tell(messages::Release { order });
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
            Some(_) => {
                if let Some(to) = self.associate_ref(id) {
                    to.tell(messages::MarkBusy { order });
                }
            }
        }
    }

    /// In cluster mode, the open order an associate is on, from the store (their order
    /// may run on another node, or have been taken over while they were away).
    pub(super) fn busy_on(&self, id: AssociateId) -> Result<Option<OrderId>, ActorError> {
        let open = crate::orders::open_order_in_store(&self.shared.store, PartyId::Associate(id))?;
        Ok(open.filter(|o| !o.owes_fee()).map(|o| o.order_id))
    }

    /// `request`, run on an actor thread: its durable write and the start of its offer
    /// loop then never wait in a busy socket worker's queue behind location sessions.
    pub async fn request_on_actor_thread(
        &self,
        user: UserId,
        ask: NewRequest,
    ) -> Result<RequestReceived, ActorError> {
        let Some(arbiter) = self.next_arbiter() else {
            return self.request(user, ask).await;
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let dispatch = self.clone();
        // Runs to its end even if the asking session goes away meanwhile: a request is
        // never left half made (the user learns its outcome when they resume).
        let spawned = arbiter.spawn(async move {
            let _ = tx.send(dispatch.request(user, ask).await);
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
        ask: NewRequest,
    ) -> Result<RequestReceived, ActorError> {
        let NewRequest { frame, pickup } = ask;
        self.shared
            .catalog
            .get(&frame.task)
            .ok_or(ActorError::UnknownTaskType)?;
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
            pickup,
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

    /// A user cancels their open request.
    pub async fn cancel_request(
        &self,
        user: UserId,
        request_id: RequestId,
    ) -> Result<(), ActorError> {
        let request = self
            .request_ref(request_id)
            .ok_or(ActorError::UnknownRequest)?;
        match request.ask(messages::Cancel { user }).await {
            Ok(result) => result,
            Err(Unreached::Gone) => Err(ActorError::UnknownRequest),
            Err(Unreached::Peer(e)) => Err(e.into()),
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

    /// How many requests are looking for an associate.
    pub fn open_requests(&self) -> usize {
        self.shared.requests.len()
    }

    /// Unix milliseconds now.
    pub fn now_ms(&self) -> UnixMs {
        self.shared.clock.now_ms()
    }
}

/// A user's task request whose pickup was validated at the edge.
#[derive(Debug, Clone)]
pub struct NewRequest {
    frame: TaskRequest,
    pickup: LatLng,
}

impl NewRequest {
    /// The request in `frame`, with its pickup validated.
    pub fn new(frame: TaskRequest) -> Result<Self, geo::InvalidLatLng> {
        let pickup = frame.pickup.to_latlng()?;
        Ok(Self { frame, pickup })
    }
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
