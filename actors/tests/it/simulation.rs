//! Concurrency simulation in paused time: 10 000 associates and 2 000 requests with
//! random accepts (p = 0.6), declines, silences, disconnects, cancels and moves. Checks
//! that nobody is reserved twice or allotted to two open orders, every request ends in
//! exactly one outcome, nobody is re-offered a request they refused, and the metrics
//! count the same outcomes the apps saw.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::{Actor, Context, Handler};
use actors::{
    ActorError, AssociateProfileInfo, Clock, CreateOrder, Dispatch, DispatchConfig, Outbox,
    Sessions,
};
use geo::LatLng;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use wire::model::{OfferEnd, Point};
use wire::{AssociateId, OrderId, PartyId, RequestId, ServerMessage, TaskRequest, UserId};

use crate::harness::{catalog, skills};

const ASSOCIATES: usize = 10_000;
const USERS: usize = 2_000;
const TASKS: [&str; 3] = ["companion", "helper", "errand"];

/// The order desk of the simulation: refuses (and records) a second open order for an
/// associate.
struct Desk {
    open: Arc<Mutex<HashMap<AssociateId, OrderId>>>,
    violations: Arc<Mutex<Vec<String>>>,
    created: Arc<Mutex<Vec<(RequestId, AssociateId)>>>,
}

impl Actor for Desk {
    type Context = Context<Self>;
}

impl Handler<CreateOrder> for Desk {
    type Result = Result<OrderId, ActorError>;

    fn handle(&mut self, msg: CreateOrder, _: &mut Context<Self>) -> Self::Result {
        let a = msg.allotment.associate_id;
        let order = OrderId::new();
        if let Some(existing) = self.open.lock().unwrap().insert(a, order) {
            self.violations
                .lock()
                .unwrap()
                .push(format!("{a} allotted while on order {existing}"));
        }
        self.created
            .lock()
            .unwrap()
            .push((msg.allotment.request_id, a));
        Ok(order)
    }
}

/// Something the driver does when its timer fires.
#[derive(Debug)]
enum Action {
    Request(UserId),
    Answer(AssociateId, RequestId, bool),
    Disconnect(AssociateId),
    Reconnect(AssociateId),
    Move(AssociateId),
    Cancel(UserId, RequestId),
    FinishOrder(AssociateId),
}

enum Event {
    Frame(PartyId, actors::Outbound),
    Act(Action),
}

/// An event with its frame unwrapped, for matching.
enum Event2 {
    Frame(PartyId, ServerMessage),
    Act(Action),
}

fn point_in_metro(rng: &mut StdRng) -> LatLng {
    LatLng::new(
        rng.random_range(12.90..13.00),
        rng.random_range(77.55..77.65),
    )
    .unwrap()
}

fn later(tx: &mpsc::UnboundedSender<Event>, after: Duration, action: Action) {
    let tx = tx.clone();
    actix_rt::spawn(async move {
        tokio::time::sleep(after).await;
        let _ = tx.send(Event::Act(action));
    });
}

fn counter(
    snapshot: &[(
        metrics_util::CompositeKey,
        Option<metrics::Unit>,
        Option<metrics::SharedString>,
        DebugValue,
    )],
    name: &str,
    outcome: &str,
) -> u64 {
    snapshot
        .iter()
        .filter(|(k, ..)| {
            k.key().name() == name
                && k.key()
                    .labels()
                    .any(|l| l.key() == "outcome" && l.value() == outcome)
        })
        .map(|(.., v)| match v {
            DebugValue::Counter(c) => *c,
            _ => 0,
        })
        .sum()
}

#[actix_rt::test]
async fn ten_thousand_associates_two_thousand_requests() {
    tokio::time::pause();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _metrics = metrics::set_default_local_recorder(&recorder);

    let mut rng = StdRng::seed_from_u64(20_261_124);
    let config = DispatchConfig {
        request_timeout: Duration::from_secs(300),
        ..DispatchConfig::default()
    };
    let dispatch = Dispatch::new(
        config,
        catalog(),
        Sessions::default(),
        Clock::starting_at(0),
        vec![],
        storage::Store::temporary().expect("store"),
    )
    .unwrap();
    let open_orders = Arc::new(Mutex::new(HashMap::new()));
    let violations = Arc::new(Mutex::new(Vec::new()));
    let created = Arc::new(Mutex::new(Vec::new()));
    let desk = Desk {
        open: open_orders.clone(),
        violations: violations.clone(),
        created: created.clone(),
    }
    .start();
    dispatch.set_order_sink(desk.recipient());

    let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
    let attach = |party: PartyId| {
        let (outbox, mut inbox) = Outbox::channel(4096);
        dispatch.sessions().attach(party, outbox);
        let tx = tx.clone();
        actix_rt::spawn(async move {
            while let Some(frame) = inbox.recv().await {
                let _ = tx.send(Event::Frame(party, frame));
            }
        });
    };

    let mut infos = HashMap::new();
    for _ in 0..ASSOCIATES {
        let id = AssociateId::new();
        let n = rng.random_range(1..=2);
        let tasks: Vec<u8> = (0..n).map(|_| rng.random_range(0..3)).collect();
        let info = AssociateProfileInfo {
            skills: skills(&tasks),
            zone: None,
        };
        attach(PartyId::Associate(id));
        dispatch
            .associate_connected(id, info.clone())
            .await
            .unwrap();
        dispatch.associate_location(id, point_in_metro(&mut rng));
        dispatch.go_online(id, None).await.unwrap();
        infos.insert(id, info);
    }
    let associates: Vec<AssociateId> = infos.keys().copied().collect();
    let users: Vec<UserId> = (0..USERS).map(|_| UserId::new()).collect();
    for &u in &users {
        attach(PartyId::User(u));
        later(
            &tx,
            Duration::from_millis(rng.random_range(0..600_000)),
            Action::Request(u),
        );
    }
    for _ in 0..2_000 {
        let a = associates[rng.random_range(0..associates.len())];
        later(
            &tx,
            Duration::from_millis(rng.random_range(0..900_000)),
            Action::Move(a),
        );
    }

    // What the apps saw.
    let mut open_offer: HashMap<AssociateId, RequestId> = HashMap::new();
    let mut refused: HashSet<(AssociateId, RequestId)> = HashSet::new();
    let mut user_request: HashMap<UserId, RequestId> = HashMap::new();
    let mut outcomes: HashMap<RequestId, Vec<&'static str>> = HashMap::new();
    let mut offers_seen = 0u64;
    let mut requests_made = 0usize;
    let mut problems: Vec<String> = Vec::new();

    while outcomes.values().filter(|o| !o.is_empty()).count() < USERS {
        let Some(event) = tokio::time::timeout(Duration::from_secs(3_600), rx.recv())
            .await
            .ok()
            .flatten()
        else {
            panic!(
                "simulation stalled: {} of {USERS} requests finished",
                outcomes.values().filter(|o| !o.is_empty()).count()
            );
        };
        let event = match event {
            Event::Frame(party, frame) => {
                Event2::Frame(party, std::sync::Arc::unwrap_or_clone(frame))
            }
            Event::Act(a) => Event2::Act(a),
        };
        match event {
            Event2::Frame(PartyId::Associate(a), ServerMessage::Offer(offer)) => {
                offers_seen += 1;
                if let Some(other) = open_offer.insert(a, offer.request_id) {
                    problems.push(format!(
                        "{a} offered {} while holding {other}",
                        offer.request_id
                    ));
                }
                if refused.contains(&(a, offer.request_id)) {
                    problems.push(format!(
                        "{a} re-offered {} after refusing it",
                        offer.request_id
                    ));
                }
                let roll: f64 = rng.random();
                let delay = Duration::from_millis(rng.random_range(500..40_000));
                if roll < 0.60 {
                    later(&tx, delay, Action::Answer(a, offer.request_id, true));
                } else if roll < 0.75 {
                    later(&tx, delay, Action::Answer(a, offer.request_id, false));
                } else if roll < 0.80 {
                    later(&tx, delay, Action::Disconnect(a));
                } else if roll < 0.85 {
                    later(&tx, delay, Action::Move(a));
                    later(&tx, delay * 2, Action::Answer(a, offer.request_id, true));
                }
                // Otherwise silent: the window runs out.
            }
            Event2::Frame(PartyId::Associate(a), ServerMessage::OfferEnded(ended)) => {
                if open_offer.get(&a) == Some(&ended.request_id) {
                    open_offer.remove(&a);
                }
                if ended.reason == OfferEnd::Expired {
                    refused.insert((a, ended.request_id));
                }
            }
            Event2::Frame(PartyId::Associate(_), ServerMessage::Status(_)) => {}
            Event2::Frame(PartyId::User(u), ServerMessage::RequestReceived(r)) => {
                user_request.insert(u, r.request_id);
                outcomes.entry(r.request_id).or_default();
                if rng.random_bool(0.1) {
                    later(
                        &tx,
                        Duration::from_millis(rng.random_range(0..60_000)),
                        Action::Cancel(u, r.request_id),
                    );
                }
            }
            Event2::Frame(PartyId::User(_), ServerMessage::RequestCancelled(c)) => {
                outcomes.entry(c.request_id).or_default().push("cancelled");
            }
            Event2::Frame(PartyId::User(_), ServerMessage::NoAssociate(n)) => {
                outcomes
                    .entry(n.request_id)
                    .or_default()
                    .push("no_associate");
            }
            Event2::Frame(party, other) => {
                problems.push(format!("unexpected frame for {party:?}: {other:?}"))
            }
            Event2::Act(Action::Request(u)) => {
                // One request in twenty comes from a town nobody serves.
                let pickup = if rng.random_bool(0.05) {
                    LatLng::new(14.2, 78.9).unwrap()
                } else {
                    point_in_metro(&mut rng)
                };
                let frame = TaskRequest {
                    client_ref: format!("{u}"),
                    task: TASKS[rng.random_range(0..3)].into(),
                    pickup: Point::from(pickup),
                    note: None,
                    discount_code: None,
                };
                dispatch
                    .request(u, actors::NewRequest::new(frame).unwrap())
                    .await
                    .unwrap();
                requests_made += 1;
            }
            Event2::Act(Action::Answer(a, request, accept)) => {
                match dispatch.answer_offer(a, request, accept).await {
                    Ok(Some(_order)) => {
                        open_offer.remove(&a);
                        outcomes.entry(request).or_default().push("allotted");
                        later(
                            &tx,
                            Duration::from_secs(rng.random_range(60..900)),
                            Action::FinishOrder(a),
                        );
                    }
                    Ok(None) => {
                        open_offer.remove(&a);
                        refused.insert((a, request));
                    }
                    // The offer had moved on (expired, cancelled): the frame says so.
                    Err(_) => {}
                }
            }
            Event2::Act(Action::Disconnect(a)) => {
                if let Some(r) = open_offer.remove(&a) {
                    refused.insert((a, r));
                }
                dispatch.associate_disconnected(a);
                later(
                    &tx,
                    Duration::from_secs(rng.random_range(5..120)),
                    Action::Reconnect(a),
                );
            }
            Event2::Act(Action::Reconnect(a)) => {
                let view = dispatch
                    .associate_connected(a, infos[&a].clone())
                    .await
                    .unwrap();
                if view.offer.is_some() {
                    problems.push(format!("{a} reconnected still holding an offer"));
                }
            }
            Event2::Act(Action::Move(a)) => {
                dispatch.associate_location(a, point_in_metro(&mut rng));
            }
            Event2::Act(Action::Cancel(u, request)) => {
                // May lose to an allotment or the deadline: either way one outcome.
                let _ = dispatch.cancel_request(u, request).await;
            }
            Event2::Act(Action::FinishOrder(a)) => {
                if let Some(order) = open_orders.lock().unwrap().remove(&a) {
                    dispatch.order_finished(a, order);
                }
            }
        }
    }

    assert!(
        problems.is_empty(),
        "{} problems, first: {:?}",
        problems.len(),
        &problems[..problems.len().min(5)]
    );
    assert!(
        violations.lock().unwrap().is_empty(),
        "{:?}",
        violations.lock().unwrap()
    );
    assert_eq!(requests_made, USERS);
    for (request, seen) in &outcomes {
        assert_eq!(seen.len(), 1, "request {request} ended {seen:?}");
    }
    let created = created.lock().unwrap();
    let allotted_requests: HashSet<RequestId> = created.iter().map(|(r, _)| *r).collect();
    assert_eq!(
        allotted_requests.len(),
        created.len(),
        "a request allotted twice"
    );
    let count = |what| outcomes.values().filter(|o| o[0] == what).count() as u64;
    let (allotted, cancelled, nobody) =
        (count("allotted"), count("cancelled"), count("no_associate"));
    assert_eq!(allotted, created.len() as u64);
    assert!(
        allotted > 1_000,
        "the simulation should mostly allot: {allotted}"
    );
    assert!(
        cancelled > 50 && nobody > 50,
        "cancelled {cancelled}, no associate {nobody}"
    );

    let snapshot = snapshotter.snapshot().into_vec();
    let requests = |o| counter(&snapshot, actors::telemetry::REQUESTS, o);
    assert_eq!(requests("allotted"), allotted);
    assert_eq!(requests("cancelled"), cancelled);
    assert_eq!(requests("no_associate"), nobody);
    let offers = |o| counter(&snapshot, actors::telemetry::OFFERS, o);
    assert_eq!(offers("sent"), offers_seen);
    assert_eq!(offers("accepted"), allotted);
    assert_eq!(
        offers("sent"),
        offers("accepted")
            + offers("declined")
            + offers("expired")
            + offers("disconnected")
            + offers("withdrawn"),
        "every offer ends exactly once"
    );
    eprintln!(
        "simulation: {allotted} allotted, {cancelled} cancelled, {nobody} without associate; offers sent {}, declined {}, expired {}, disconnected {}, withdrawn {}",
        offers("sent"),
        offers("declined"),
        offers("expired"),
        offers("disconnected"),
        offers("withdrawn")
    );
}
