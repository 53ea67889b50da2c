//! A dispatch with fake apps (session queues the test reads) and a fake order desk.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::{Actor, Context, Handler};
use actors::{
    ActorError, Allotment, AssociateProfileInfo, Clock, CreateOrder, Dispatch, DispatchConfig,
    Outbox, Sessions,
};
use geo::{LatLng, Skills};
use tokio::sync::mpsc;
use wire::model::Point;
use wire::{AssociateId, OrderId, PartyId, ServerMessage, TaskCatalog, TaskRequest, UserId};

/// The test's task types: 0 companion, 1 helper, 2 errand.
pub fn catalog() -> TaskCatalog {
    TaskCatalog::new(["companion", "helper", "errand"]).unwrap()
}

/// Skills from task numbers.
pub fn skills(tasks: &[u8]) -> Skills {
    tasks
        .iter()
        .map(|&t| geo::TaskType::new(t).unwrap())
        .collect()
}

/// A point.
pub fn at(lat: f64, lng: f64) -> LatLng {
    LatLng::new(lat, lng).unwrap()
}

/// Records allotments and answers with a fresh order id, like the order desk will.
pub struct FakeOrders {
    pub allotments: Arc<Mutex<Vec<(Allotment, OrderId)>>>,
}

impl Actor for FakeOrders {
    type Context = Context<Self>;
}

impl Handler<CreateOrder> for FakeOrders {
    type Result = Result<OrderId, ActorError>;

    fn handle(&mut self, msg: CreateOrder, _: &mut Context<Self>) -> Self::Result {
        let order = OrderId::new();
        self.allotments.lock().unwrap().push((msg.allotment, order));
        Ok(order)
    }
}

/// An associate's profile with `tasks` and no zone.
pub fn profile(tasks: &[u8]) -> AssociateProfileInfo {
    AssociateProfileInfo {
        skills: skills(tasks),
        zone: None,
    }
}

/// Dispatch plus the fake apps' inboxes.
pub struct Harness {
    pub dispatch: Dispatch,
    pub allotments: Arc<Mutex<Vec<(Allotment, OrderId)>>>,
    inboxes: HashMap<PartyId, mpsc::Receiver<actors::Outbound>>,
}

/// How long a test waits for a frame before failing (virtual time).
pub const PATIENCE: Duration = Duration::from_secs(3600);

impl Harness {
    /// Must run inside an actix system with tokio time paused.
    pub fn new(config: DispatchConfig) -> Self {
        Self::with_store(config, storage::Store::temporary().expect("store"))
    }

    /// Like [`Self::new`], with the records in `store`.
    pub fn with_store(config: DispatchConfig, store: storage::Store) -> Self {
        let dispatch = Dispatch::new(
            config,
            catalog(),
            Sessions::default(),
            Clock::starting_at(1_000_000),
            vec![],
            store,
        )
        .unwrap();
        let allotments = Arc::new(Mutex::new(Vec::new()));
        let orders = FakeOrders {
            allotments: allotments.clone(),
        }
        .start();
        dispatch.set_order_sink(orders.recipient());
        Self {
            dispatch,
            allotments,
            inboxes: HashMap::new(),
        }
    }

    fn attach(&mut self, party: PartyId) {
        let (outbox, rx) = Outbox::channel(1024);
        self.dispatch.sessions().attach(party, outbox);
        self.inboxes.insert(party, rx);
    }

    /// Connects an associate, puts them at `point` and online for `tasks`.
    pub async fn associate(&mut self, point: LatLng, tasks: &[u8]) -> AssociateId {
        let id = AssociateId::new();
        self.attach(PartyId::Associate(id));
        self.dispatch
            .associate_connected(id, profile(tasks))
            .await
            .unwrap();
        self.dispatch.associate_location(id, point);
        self.dispatch.go_online(id, None).await.unwrap();
        // The status frame go_online sends.
        assert!(matches!(
            self.next(PartyId::Associate(id)).await,
            ServerMessage::Status(_)
        ));
        id
    }

    /// Connects a user.
    pub fn user(&mut self) -> UserId {
        let id = UserId::new();
        self.attach(PartyId::User(id));
        id
    }

    /// The user asks for `task` at `pickup`.
    pub async fn request(&mut self, user: UserId, task: &str, pickup: LatLng) -> wire::RequestId {
        let frame = TaskRequest {
            client_ref: "r1".into(),
            task: task.into(),
            pickup: Point::from(pickup),
            note: None,
            discount_code: None,
        };
        let received = self
            .dispatch
            .request(user, actors::NewRequest::new(frame).unwrap())
            .await
            .unwrap();
        match self.next(PartyId::User(user)).await {
            ServerMessage::RequestReceived(r) => assert_eq!(r, received),
            other => panic!("expected request_received, got {other:?}"),
        }
        received.request_id
    }

    /// The party's next frame (fails after [`PATIENCE`] of virtual time).
    pub async fn next(&mut self, party: PartyId) -> ServerMessage {
        let rx = self.inboxes.get_mut(&party).expect("attached party");
        tokio::time::timeout(PATIENCE, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no frame for {party:?} within {PATIENCE:?}"))
            .map(std::sync::Arc::unwrap_or_clone)
            .expect("inbox open")
    }

    /// Whether the party has a frame waiting right now.
    pub fn pending(&mut self, party: PartyId) -> Option<ServerMessage> {
        self.inboxes
            .get_mut(&party)
            .expect("attached party")
            .try_recv()
            .ok()
            .map(std::sync::Arc::unwrap_or_clone)
    }

    /// The next frame of an associate, which must be an offer.
    pub async fn offer(&mut self, id: AssociateId) -> wire::Offer {
        match self.next(PartyId::Associate(id)).await {
            ServerMessage::Offer(o) => o,
            other => panic!("expected an offer, got {other:?}"),
        }
    }
}
