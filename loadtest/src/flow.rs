//! The full-flow simulation: associates move and answer offers; users arrive as a Poisson
//! process, request, get allotted, see the job done, pay (card, sometimes retried with the
//! same key or declined first, or cash) and rate. Time is compressed: every simulated
//! delay is divided by the compression factor, and the engine must run with its windows
//! divided by the same factor ([`engine_config`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use dashmap::{DashMap, DashSet};
use geo::LatLng;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp};
use serde::Serialize;
use tokio::sync::mpsc;
use wire::client::{Client, ClientReceiver, ConnectOptions};
use wire::model::{OrderState, PaymentMethod, PaymentStatus, Point};
use wire::{ClientMessage, Encoding, ErrorCode, OrderId, RequestId, ServerMessage};

use crate::stats::Stats;
use crate::target::{Target, source_ip};

/// The metro box the simulation lives in.
const METRO: ((f64, f64), (f64, f64)) = ((12.85, 13.10), (77.45, 77.75));
/// The engine's task types the simulation uses.
pub const TASKS: [&str; 3] = ["companion", "helper", "errand"];
/// A card the sandbox always declines.
const DECLINED_CARD: &str = "4000000000000002";
const GOOD_CARD: &str = "4242424242424242";

/// Simulation settings.
#[derive(Debug, Clone, Serialize)]
pub struct FlowConfig {
    /// Simulated associates.
    pub associates: usize,
    /// Simulated users.
    pub users: usize,
    /// Real seconds during which users arrive.
    pub duration: Duration,
    /// Real seconds to let open orders finish after that.
    pub drain: Duration,
    /// Simulated seconds per real second.
    pub compression: f64,
    /// Probability an associate accepts an offer.
    pub accept_p: f64,
    /// Probability an associate declines (the rest stay silent).
    pub decline_p: f64,
    /// Simulated seconds between an associate's location reports.
    pub location_every_s: f64,
    /// Probability a user pays cash.
    pub cash_p: f64,
    /// Probability a card payment is retried with the same key.
    pub retry_p: f64,
    /// Probability the first card is declined (then a good one is used).
    pub declined_first_p: f64,
    /// Probability a user cancels a request before it is allotted.
    pub cancel_p: f64,
    /// Source addresses to spread connections over (127.0.0.2 and up); 0 for the default.
    pub source_ips: usize,
    /// Frame encoding.
    pub encoding: EncodingChoice,
    /// Random seed.
    pub seed: u64,
}

/// Which encoding apps use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum EncodingChoice {
    /// JSON text frames.
    Json,
    /// Binary frames.
    Binary,
}

impl Default for FlowConfig {
    fn default() -> Self {
        Self {
            associates: 200,
            users: 100,
            duration: Duration::from_secs(60),
            drain: Duration::from_secs(60),
            compression: 60.0,
            accept_p: 0.6,
            decline_p: 0.2,
            location_every_s: 10.0,
            cash_p: 0.3,
            retry_p: 0.2,
            declined_first_p: 0.1,
            cancel_p: 0.05,
            source_ips: 0,
            encoding: EncodingChoice::Json,
            seed: 7,
        }
    }
}

/// Engine settings with every window divided by `compression`.
pub fn engine_config(compression: f64) -> engine::Config {
    let mut c = engine::Config::default();
    let ms = |real_ms: u64| ((real_ms as f64 / compression).round() as u64).max(1);
    c.dispatch.offer_window_ms = ms(45_000);
    c.dispatch.request_timeout_ms = ms(300_000);
    c.dispatch.retry_interval_ms = ms(5_000);
    c.orders.tracking_interval_ms = ms(1_000);
    c.payments.reconcile_every_ms = ms(5_000);
    c.payments.gateway_timeout_ms = 5_000;
    c.payments.sandbox_latency_ms = 2;
    // Apps report every few simulated seconds, which is many real ones per second.
    c.socket.location_per_s = ((compression / 2.0).ceil() as u32).max(5);
    c.socket.location_burst = c.socket.location_per_s * 4;
    c
}

/// How a user will pay for an order, decided once per order.
#[derive(Debug, Clone, Copy)]
struct Plan {
    cash: bool,
    retry: bool,
    declined_first: bool,
    tip: i64,
}

/// What the simulation knows about one order.
#[derive(Debug, Clone, Default)]
struct Track {
    terminal: Option<OrderState>,
}

/// State shared by every simulated app.
struct World {
    cfg: FlowConfig,
    target: Target,
    stats: Arc<Stats>,
    pins: DashMap<OrderId, String>,
    plans: DashMap<OrderId, Plan>,
    orders: DashMap<OrderId, Track>,
    open_orders: AtomicI64,
    open_requests: AtomicI64,
    /// request id → when the user sent it (set when `request_received` arrives).
    request_started: DashMap<RequestId, Instant>,
    /// Offers that arrived before their request's start was known.
    early_offers: DashMap<RequestId, Instant>,
    first_offer_seen: DashSet<RequestId>,
    arrivals_over: AtomicBool,
    finished: AtomicBool,
    seed: AtomicI64,
}

impl World {
    fn real(&self, sim_seconds: f64) -> Duration {
        Duration::from_secs_f64((sim_seconds / self.cfg.compression).max(0.0))
    }

    fn rng(&self) -> StdRng {
        StdRng::seed_from_u64(
            self.cfg
                .seed
                .wrapping_add(self.seed.fetch_add(1, Ordering::Relaxed) as u64),
        )
    }

    fn plan(&self, order: OrderId) -> Plan {
        *self.plans.entry(order).or_insert_with(|| {
            let mut rng = self.rng();
            Plan {
                cash: rng.random_bool(self.cfg.cash_p),
                retry: rng.random_bool(self.cfg.retry_p),
                declined_first: rng.random_bool(self.cfg.declined_first_p),
                tip: if rng.random_bool(0.3) {
                    rng.random_range(1..50) * 100
                } else {
                    0
                },
            }
        })
    }

    fn first_offer(&self, request: RequestId) {
        if !self.first_offer_seen.insert(request) {
            return;
        }
        let now = Instant::now();
        match self.request_started.get(&request) {
            Some(t0) => self.stats.first_offer.record(now.duration_since(*t0)),
            None => {
                self.early_offers.insert(request, now);
            }
        }
    }

    fn request_known(&self, request: RequestId, t0: Instant) {
        self.request_started.insert(request, t0);
        if let Some((_, t1)) = self.early_offers.remove(&request) {
            self.stats
                .first_offer
                .record(t1.saturating_duration_since(t0));
        }
    }

    fn allotted(&self, order: OrderId) {
        let mut fresh = false;
        self.orders.entry(order).or_insert_with(|| {
            fresh = true;
            Track::default()
        });
        if fresh {
            self.open_orders.fetch_add(1, Ordering::SeqCst);
            self.stats.outcomes.bump("allotted");
        }
    }

    fn ended(&self, order: OrderId, state: OrderState) {
        if let Some(mut t) = self.orders.get_mut(&order)
            && t.terminal.is_none()
        {
            t.terminal = Some(state);
            self.open_orders.fetch_sub(1, Ordering::SeqCst);
            self.stats.outcomes.bump(state.as_str());
        }
    }

    fn error(&self, who: &str, code: ErrorCode, message: &str) {
        self.stats.errors.bump(code.as_str());
        // Answers that lose a race with a window or a cancel are part of the game.
        let expected = matches!(
            code,
            ErrorCode::NotYourOffer | ErrorCode::UnknownRequest | ErrorCode::InvalidState
        );
        if !expected {
            self.stats
                .protocol_errors
                .bump(&format!("{who}: {}: {message}", code.as_str()));
        }
    }

    fn encoding(&self) -> Encoding {
        match self.cfg.encoding {
            EncodingChoice::Json => Encoding::Json,
            EncodingChoice::Binary => Encoding::Binary,
        }
    }
}

fn random_point(rng: &mut impl Rng) -> LatLng {
    let ((lat0, lat1), (lng0, lng1)) = METRO;
    // expect: the metro box is in range.
    LatLng::new(rng.random_range(lat0..lat1), rng.random_range(lng0..lng1)).expect("metro point")
}

/// Moves `from` towards `to` by at most `metres`.
fn step(from: LatLng, to: LatLng, metres: f64) -> LatLng {
    let d = from.distance_m(&to);
    if d <= metres || d == 0.0 {
        return to;
    }
    let f = metres / d;
    LatLng::new(
        from.lat() + (to.lat() - from.lat()) * f,
        from.lng() + (to.lng() - from.lng()) * f,
    )
    .unwrap_or(to)
}

/// A connected app: a writer task fed by a queue, and the receiving half.
struct App {
    out: mpsc::UnboundedSender<ClientMessage>,
    rx: ClientReceiver,
}

async fn connect(world: &Arc<World>, index: usize, token: &str) -> anyhow::Result<App> {
    let options = ConnectOptions {
        url: world.target.ws_url_for(index),
        token: token.to_owned(),
        encoding: world.encoding(),
        local_ip: source_ip(index, world.cfg.source_ips),
        recv_buffer_bytes: None,
    };
    let client = Client::connect_with(&options).await?;
    world.stats.connections.fetch_add(1, Ordering::Relaxed);
    let (mut tx, rx) = client.split();
    let (out, mut queue) = mpsc::unbounded_channel::<ClientMessage>();
    let stats = world.stats.clone();
    tokio::spawn(async move {
        while let Some(frame) = queue.recv().await {
            stats.sent.bump(frame.type_name());
            if tx.send(frame).await.is_err() {
                break;
            }
        }
        let _ = tx.close().await;
    });
    Ok(App { out, rx })
}

impl App {
    fn send(&self, frame: impl Into<ClientMessage>) {
        let _ = self.out.send(frame.into());
    }

    /// Sends `frame` after `delay`.
    fn later(&self, delay: Duration, frame: impl Into<ClientMessage>) {
        let out = self.out.clone();
        let frame = frame.into();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = out.send(frame);
        });
    }
}

/// Receives the next frame, counting it; none once the connection ends or the run is over.
async fn next(world: &World, rx: &mut ClientReceiver) -> Option<ServerMessage> {
    loop {
        if world.finished.load(Ordering::Relaxed) {
            return None;
        }
        match tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
            Err(_) => continue,
            Ok(Ok(frame)) => {
                world.stats.received.bump(frame.type_name());
                return Some(frame);
            }
            Ok(Err(e)) => {
                if !world.finished.load(Ordering::Relaxed) {
                    world
                        .stats
                        .protocol_errors
                        .bump(&format!("connection lost: {e}"));
                }
                return None;
            }
        }
    }
}

async fn run_associate(world: Arc<World>, index: usize, token: String) {
    let mut rng = world.rng();
    let mut app = match connect(&world, index, &token).await {
        Ok(a) => a,
        Err(e) => {
            world
                .stats
                .protocol_errors
                .bump(&format!("associate connect: {e}"));
            return;
        }
    };
    let mut here = random_point(&mut rng);
    let mut heading = random_point(&mut rng);
    app.send(wire::Location {
        point: here.into(),
        accuracy_m: Some(10),
    });
    app.send(wire::GoOnline { skills: vec![] });
    let every = world.real(world.cfg.location_every_s);
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + every.mul_f64(rng.random()),
        every,
    );
    // 30 km/h on the road.
    let speed_mps = 8.3;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                here = step(here, heading, speed_mps * world.cfg.location_every_s);
                if here == heading {
                    heading = random_point(&mut rng);
                }
                app.send(wire::Location { point: here.into(), accuracy_m: Some(10) });
            }
            frame = next(&world, &mut app.rx) => {
                let Some(frame) = frame else { break };
                match frame {
                    ServerMessage::Offer(offer) => {
                        world.first_offer(offer.request_id);
                        let roll: f64 = rng.random();
                        let think = world.real(rng.random_range(1.0..15.0));
                        if roll < world.cfg.accept_p {
                            app.later(think, wire::Accept { request_id: offer.request_id });
                        } else if roll < world.cfg.accept_p + world.cfg.decline_p {
                            app.later(think, wire::Decline { request_id: offer.request_id });
                        }
                    }
                    ServerMessage::Allotted(a) => {
                        let order = a.order.order_id;
                        world.allotted(order);
                        let pickup = a.order.pickup.to_latlng().unwrap_or(here);
                        heading = pickup;
                        let travel_s = (here.distance_m(&pickup) / speed_mps).clamp(60.0, 1_200.0);
                        let world2 = world.clone();
                        let out = app.out.clone();
                        let work_s = rng.random_range(900.0..3_600.0);
                        tokio::spawn(async move { run_order(world2, out, order, travel_s, work_s).await });
                    }
                    ServerMessage::Invoice(i) => {
                        let order = i.invoice.order_id;
                        if world.plan(order).cash {
                            app.later(world.real(rng.random_range(10.0..60.0)), wire::CashReceived { order_id: order, amount_minor: i.invoice.total_minor });
                        }
                    }
                    ServerMessage::OrderUpdate(u) if u.state == OrderState::Cancelled => world.ended(u.order_id, OrderState::Cancelled),
                    ServerMessage::OrderClosed(c) => world.ended(c.order_id, OrderState::Closed),
                    ServerMessage::FeedbackRequest(f) => {
                        app.later(world.real(rng.random_range(5.0..60.0)), wire::Feedback { order_id: f.order_id, rating: rng.random_range(3..=5), comment: None });
                    }
                    ServerMessage::Error(e) => world.error("associate", e.code, &e.message),
                    ServerMessage::Shutdown(_) => break,
                    _ => {}
                }
            }
        }
    }
    world.stats.connections.fetch_sub(1, Ordering::Relaxed);
}

/// The associate's side of an order: set out, arrive, start with the user's PIN, work,
/// complete.
async fn run_order(
    world: Arc<World>,
    out: mpsc::UnboundedSender<ClientMessage>,
    order: OrderId,
    travel_s: f64,
    work_s: f64,
) {
    let send = |m: ClientMessage| {
        let _ = out.send(m);
    };
    send(wire::EnRoute { order_id: order }.into());
    tokio::time::sleep(world.real(travel_s)).await;
    send(wire::Arrived { order_id: order }.into());
    // The user shows the PIN in person: wait for it to be known.
    let deadline = Instant::now() + Duration::from_secs(10);
    let pin = loop {
        if let Some(pin) = world.pins.get(&order) {
            break pin.clone();
        }
        if Instant::now() > deadline
            || world
                .orders
                .get(&order)
                .is_some_and(|t| t.terminal.is_some())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    send(
        wire::Start {
            order_id: order,
            pin,
        }
        .into(),
    );
    tokio::time::sleep(world.real(work_s)).await;
    send(wire::Complete { order_id: order }.into());
}

async fn run_user(world: Arc<World>, index: usize, token: String, first_arrival: Duration) {
    let mut rng = world.rng();
    tokio::time::sleep(first_arrival).await;
    let mut app = match connect(&world, index + world.cfg.associates, &token).await {
        Ok(a) => a,
        Err(e) => {
            world
                .stats
                .protocol_errors
                .bump(&format!("user connect: {e}"));
            return;
        }
    };
    let mut n = 0u32;
    let mut pay_started: Option<Instant> = None;
    let mut first_result: Option<wire::model::PaymentOutcome> = None;
    let mut retried = false;
    let request = |app: &App, rng: &mut StdRng, n: &mut u32| -> (String, Instant) {
        *n += 1;
        let home = random_point(rng);
        app.send(wire::Location {
            point: home.into(),
            accuracy_m: Some(5),
        });
        let client_ref = format!("u{index}-{n}");
        app.send(wire::TaskRequest {
            client_ref: client_ref.clone(),
            task: TASKS[rng.random_range(0..TASKS.len())].into(),
            pickup: Point::from(home),
            note: None,
            discount_code: None,
        });
        world.open_requests.fetch_add(1, Ordering::SeqCst);
        world.stats.outcomes.bump("requests");
        (client_ref, Instant::now())
    };
    let mut pending_ref = Some(request(&app, &mut rng, &mut n));
    let gap = Exp::new(3.0 / world.cfg.duration.as_secs_f64().max(1.0)).ok();
    // After a request or an order ends: how long until the user asks again, if they do.
    let again = |world: &World, rng: &mut StdRng| -> Option<Duration> {
        if world.arrivals_over.load(Ordering::Relaxed) {
            return None;
        }
        gap.map(|g| Duration::from_secs_f64(g.sample(rng)))
    };
    while let Some(frame) = next(&world, &mut app.rx).await {
        match frame {
            ServerMessage::RequestReceived(r) => {
                if let Some((_, t0)) = pending_ref.as_ref().filter(|(c, _)| *c == r.client_ref) {
                    world.request_known(r.request_id, *t0);
                }
                if rng.random_bool(world.cfg.cancel_p) {
                    app.later(
                        world.real(rng.random_range(1.0..40.0)),
                        wire::CancelRequest {
                            request_id: r.request_id,
                        },
                    );
                }
            }
            ServerMessage::Allotted(a) => {
                if let Some((_, t0)) = pending_ref.take() {
                    world.stats.allotment.record(t0.elapsed());
                }
                world.open_requests.fetch_sub(1, Ordering::SeqCst);
                let order = a.order.order_id;
                world.allotted(order);
                if let Some(pin) = a.order.pin.clone() {
                    world.pins.insert(order, pin);
                }
                app.send(wire::Location {
                    point: a.order.pickup,
                    accuracy_m: Some(5),
                });
            }
            ServerMessage::NoAssociate(_) | ServerMessage::RequestCancelled(_) => {
                let what = if matches!(frame, ServerMessage::NoAssociate(_)) {
                    "no_associate"
                } else {
                    "request_cancelled"
                };
                world.stats.outcomes.bump(what);
                world.open_requests.fetch_sub(1, Ordering::SeqCst);
                match again(&world, &mut rng) {
                    Some(wait) => {
                        tokio::time::sleep(wait).await;
                        pending_ref = Some(request(&app, &mut rng, &mut n));
                    }
                    None => break,
                }
            }
            ServerMessage::Invoice(i) => {
                let order = i.invoice.order_id;
                let plan = world.plan(order);
                first_result = None;
                retried = false;
                if !plan.cash {
                    let card = if plan.declined_first {
                        DECLINED_CARD
                    } else {
                        GOOD_CARD
                    };
                    pay_started = Some(Instant::now());
                    app.later(
                        world.real(rng.random_range(5.0..60.0)),
                        wire::Pay {
                            order_id: order,
                            method: PaymentMethod::Card,
                            instrument: card.into(),
                            idempotency_key: format!("{order}-1"),
                            tip_minor: Some(plan.tip),
                        },
                    );
                }
            }
            ServerMessage::PaymentResult(p) => {
                let p = *p.payment;
                if let Some(t0) = pay_started.take() {
                    world.stats.payment.record(t0.elapsed());
                }
                world.stats.outcomes.bump(match p.status {
                    PaymentStatus::Succeeded => "payment_succeeded",
                    PaymentStatus::Failed => "payment_failed",
                    PaymentStatus::Pending => "payment_pending",
                });
                let plan = world.plan(p.order_id);
                match (p.status, &first_result) {
                    (PaymentStatus::Failed, _) if !plan.cash => {
                        pay_started = Some(Instant::now());
                        app.send(wire::Pay {
                            order_id: p.order_id,
                            method: PaymentMethod::Card,
                            instrument: GOOD_CARD.into(),
                            idempotency_key: format!("{}-2", p.order_id),
                            tip_minor: Some(plan.tip),
                        });
                    }
                    (PaymentStatus::Succeeded, None) => {
                        first_result = Some(p.clone());
                        if plan.retry && !retried {
                            retried = true;
                            app.send(wire::Pay {
                                order_id: p.order_id,
                                method: PaymentMethod::Card,
                                instrument: GOOD_CARD.into(),
                                idempotency_key: p.idempotency_key.clone(),
                                tip_minor: Some(plan.tip),
                            });
                        }
                    }
                    (PaymentStatus::Succeeded, Some(first)) => {
                        if first.payment_id != p.payment_id
                            && first.idempotency_key == p.idempotency_key
                        {
                            world
                                .stats
                                .protocol_errors
                                .bump("a retried key charged a second payment");
                        }
                        world.stats.outcomes.bump("payment_retries_answered_once");
                    }
                    _ => {}
                }
            }
            ServerMessage::OrderClosed(c) => {
                world.ended(c.order_id, OrderState::Closed);
            }
            ServerMessage::OrderUpdate(u) if u.state == OrderState::Cancelled => {
                world.ended(u.order_id, OrderState::Cancelled)
            }
            ServerMessage::FeedbackRequest(f) => {
                app.send(wire::Feedback {
                    order_id: f.order_id,
                    rating: rng.random_range(3..=5),
                    comment: Some("thanks".into()),
                });
                match again(&world, &mut rng) {
                    Some(wait) => {
                        tokio::time::sleep(wait).await;
                        if world.arrivals_over.load(Ordering::Relaxed) {
                            break;
                        }
                        pending_ref = Some(request(&app, &mut rng, &mut n));
                    }
                    None => break,
                }
            }
            ServerMessage::Error(e) => world.error("user", e.code, &e.message),
            ServerMessage::Shutdown(_) => break,
            _ => {}
        }
    }
    world.stats.connections.fetch_sub(1, Ordering::Relaxed);
}

/// What a run found.
#[derive(Debug, Clone, Serialize)]
pub struct FlowResult {
    /// The settings.
    pub config: FlowConfig,
    /// Orders the apps saw allotted.
    pub orders_seen: usize,
    /// Orders whose flow did not finish before the drain ended.
    pub unfinished: Vec<String>,
    /// Orders the engine does not have in the state the apps saw.
    pub lost: Vec<String>,
    /// Protocol errors, by description.
    pub protocol_errors: std::collections::BTreeMap<String, u64>,
    /// Real seconds the run took.
    pub elapsed_s: f64,
}

impl FlowResult {
    /// Whether the run is clean: no protocol error, nothing lost, nothing unfinished.
    pub fn clean(&self) -> bool {
        self.unfinished.is_empty() && self.lost.is_empty() && self.protocol_errors.is_empty()
    }
}

/// Runs the simulation against `target`, calling `progress` every half second.
pub async fn run(
    target: Target,
    cfg: FlowConfig,
    stats: Arc<Stats>,
    progress: impl Fn(&Stats, i64, i64) + Send + 'static,
) -> anyhow::Result<FlowResult> {
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut skills_for = |_: usize| -> Vec<String> {
        let n = rng.random_range(1..=2);
        (0..n)
            .map(|_| TASKS[rng.random_range(0..TASKS.len())].to_owned())
            .collect()
    };
    let skills: Vec<Vec<String>> = (0..cfg.associates).map(&mut skills_for).collect();
    let associates = target
        .create_many(cfg.associates, 16, |i| {
            let target = target.clone();
            let skills = skills[i].clone();
            async move { target.associate(i, &skills).await }
        })
        .await?;
    let users = target
        .create_many(cfg.users, 16, |i| {
            let target = target.clone();
            async move { target.user(i).await }
        })
        .await?;
    let world = Arc::new(World {
        cfg: cfg.clone(),
        target: target.clone(),
        stats: stats.clone(),
        pins: DashMap::new(),
        plans: DashMap::new(),
        orders: DashMap::new(),
        open_orders: AtomicI64::new(0),
        open_requests: AtomicI64::new(0),
        request_started: DashMap::new(),
        early_offers: DashMap::new(),
        first_offer_seen: DashSet::new(),
        arrivals_over: AtomicBool::new(false),
        finished: AtomicBool::new(false),
        seed: AtomicI64::new(1),
    });
    let mut tasks = Vec::new();
    for (i, (_, token)) in associates.into_iter().enumerate() {
        tasks.push(tokio::spawn(run_associate(world.clone(), i, token)));
    }
    // Users arrive as a Poisson process over the first half of the run.
    let rate = cfg.users as f64 / (cfg.duration.as_secs_f64() / 2.0).max(0.1);
    let exp = Exp::new(rate.max(1e-6))?;
    let mut at = 0.0;
    for (i, (_, token)) in users.into_iter().enumerate() {
        at += exp.sample(&mut rng);
        tasks.push(tokio::spawn(run_user(
            world.clone(),
            i,
            token,
            Duration::from_secs_f64(at),
        )));
    }
    let ticker = {
        let world = world.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            let mut n = 0u64;
            loop {
                tick.tick().await;
                n += 1;
                if n % 2 == 0 {
                    world.stats.tick();
                }
                progress(
                    &world.stats,
                    world.open_requests.load(Ordering::SeqCst),
                    world.open_orders.load(Ordering::SeqCst),
                );
            }
        })
    };
    tokio::time::sleep(cfg.duration).await;
    world.arrivals_over.store(true, Ordering::SeqCst);
    // Drain: wait until every request and order the apps started has ended.
    let drain_end = Instant::now() + cfg.drain;
    while Instant::now() < drain_end
        && (world.open_orders.load(Ordering::SeqCst) > 0
            || world.open_requests.load(Ordering::SeqCst) > 0)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    world.finished.store(true, Ordering::SeqCst);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    ticker.abort();
    world.stats.tick();

    // Zero-loss check: every order the apps saw is in the engine in the state they saw.
    let mut unfinished = Vec::new();
    let mut lost = Vec::new();
    let orders: Vec<(OrderId, Track)> = world
        .orders
        .iter()
        .map(|e| (*e.key(), e.value().clone()))
        .collect();
    for (order, track) in &orders {
        let r = target
            .admin("GET", &format!("/v1/orders/{order}"), None)
            .await?;
        if r.status != 200 {
            lost.push(format!("{order}: engine answered {}", r.status));
            continue;
        }
        let state = r.body["order"]["state"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        match track.terminal {
            None => unfinished.push(format!("{order}: still {state}")),
            Some(seen) if seen.as_str() != state => lost.push(format!(
                "{order}: apps saw {}, engine has {state}",
                seen.as_str()
            )),
            Some(_) => {}
        }
        let succeeded = r.body["payments"].as_array().map_or(0, |p| {
            p.iter().filter(|p| p["status"] == "succeeded").count()
        });
        if succeeded > 1 {
            lost.push(format!("{order}: charged {succeeded} times"));
        }
    }
    Ok(FlowResult {
        config: cfg,
        orders_seen: orders.len(),
        unfinished,
        lost,
        protocol_errors: world.stats.protocol_errors.snapshot(),
        elapsed_s: started.elapsed().as_secs_f64(),
    })
}
