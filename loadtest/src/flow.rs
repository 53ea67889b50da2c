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
use wire::client::{Client, ClientReceiver, ClientSender, ConnectOptions, http_api};
use wire::model::{OrderState, PaymentMethod, PaymentStatus, Point};
use wire::{ClientMessage, Encoding, ErrorCode, OrderId, RequestId, ServerMessage};

use crate::stats::Stats;
use crate::target::{Target, source_ip};

/// Clock and delivery noise allowed when checking that offers of one request never
/// overlap: the apps see an offer a little after the engine sends it, and answer it a
/// little before the engine counts it answered.
const OFFER_SLACK_MS: u64 = 50;
/// How fast associates move: 30 km/h on the road.
const SPEED_MPS: f64 = 8.3;
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
    /// Apps whose connection drops reconnect (to the next node, for a cluster) and resync,
    /// instead of counting a protocol error.
    pub reconnect: bool,
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
            reconnect: false,
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
    /// The last step the associate's app took on each order (to resend after a reconnect).
    progress: DashMap<OrderId, OrderState>,
    /// The last `pay` each order's user sent (resent, same key, after a reconnect).
    last_pay: DashMap<OrderId, wire::Pay>,
    /// Each request's offers as the associates held them: (associate, from, until) in
    /// wall-clock milliseconds, to check that no two were open at once.
    offers_held: DashMap<RequestId, Vec<(usize, u64, u64)>>,
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

    /// Associate `who` holds an offer of `request` from now until `expires_at_ms`.
    fn offer_held(&self, request: RequestId, who: usize, expires_at_ms: u64) {
        self.offers_held
            .entry(request)
            .or_default()
            .push((who, wall_ms(), expires_at_ms));
    }

    /// Associate `who` let their offer of `request` go at `at_ms` (answered or ended).
    fn offer_let_go(&self, request: RequestId, who: usize, at_ms: u64) {
        if let Some(mut held) = self.offers_held.get_mut(&request)
            && let Some(last) = held.iter_mut().rev().find(|h| h.0 == who)
        {
            last.2 = last.2.min(at_ms);
        }
    }

    /// Requests that two associates held offers of at the same time (beyond `slack_ms`
    /// of clock and delivery noise), with who and when.
    fn offered_twice_at_once(&self, slack_ms: u64) -> Vec<String> {
        let mut found = Vec::new();
        for entry in self.offers_held.iter() {
            for (a, b, early_ms) in overlaps(entry.value(), slack_ms) {
                found.push(format!(
                    "{}: associate {b} offered {early_ms} ms before associate {a}'s offer ended",
                    entry.key()
                ));
            }
        }
        found
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
        // So are `overloaded` refusals, which the apps send again (PROTOCOL.md: nothing
        // was changed), and, for apps that reconnect and so send what queued up during
        // the outage at once, `rate_limited` ones, sent again too.
        let expected = matches!(
            code,
            ErrorCode::NotYourOffer
                | ErrorCode::UnknownRequest
                | ErrorCode::InvalidState
                | ErrorCode::Overloaded
        ) || (self.cfg.reconnect && code == ErrorCode::RateLimited);
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

/// One offer as the engine recorded it: to whom, shown from, held until (engine ms).
type Span = (String, u64, u64);

/// Reads every request's offer trail from the node that ran it and judges, from the
/// engine's times alone, that no request had two live offers and no associate held
/// two: the findings, and how many requests no node had a trail of any more.
async fn engine_overlaps(target: &Target, requests: &[RequestId]) -> (Vec<String>, usize) {
    let nodes: Vec<_> = std::iter::once(target.http)
        .chain(target.more_nodes.iter().copied())
        .collect();
    let mut found = Vec::new();
    let mut missing = 0;
    let mut by_associate: std::collections::HashMap<String, Vec<(u64, u64, RequestId)>> =
        std::collections::HashMap::new();
    for &request in requests {
        // A request handed over with its cell has part of its trail on each owner.
        let mut spans: Vec<Span> = Vec::new();
        let mut seen = false;
        for &node in &nodes {
            let r = http_api::request(
                node,
                "GET",
                &format!("/v1/requests/{request}/offers"),
                &[("x-admin-key", &target.admin_key)],
                None,
            )
            .await;
            // A node that is down (killed in a failover run) holds nothing to read.
            let Ok(r) = r else { continue };
            if r.status != 200 {
                continue;
            }
            seen = true;
            for o in r.body["offers"].as_array().into_iter().flatten() {
                let who = o["associate_id"].as_str().unwrap_or_default().to_owned();
                let from = o["shown_at_ms"].as_u64().unwrap_or(0);
                // Still open when read: held to this day.
                let until = o["ended_at_ms"].as_u64().unwrap_or(u64::MAX);
                spans.push((who, from, until));
            }
        }
        if !seen {
            missing += 1;
            continue;
        }
        spans.sort_by_key(|s| s.1);
        for pair in spans.windows(2) {
            if pair[1].1 < pair[0].2 {
                found.push(format!(
                    "{request}: offered to {} at {} while {} held it until {}",
                    pair[1].0, pair[1].1, pair[0].0, pair[0].2
                ));
            }
        }
        for (who, from, until) in spans {
            by_associate
                .entry(who)
                .or_default()
                .push((from, until, request));
        }
    }
    for (who, mut spans) in by_associate {
        spans.sort();
        for pair in spans.windows(2) {
            if pair[1].0 < pair[0].1 {
                found.push(format!(
                    "associate {who} held {} until {} and was shown {} at {}",
                    pair[0].2, pair[0].1, pair[1].2, pair[1].0
                ));
            }
        }
    }
    (found, missing)
}

/// Offers of one request, `(associate, from, until)`, that overlap by more than
/// `slack_ms`: `(earlier associate, later associate, by how much)`.
fn overlaps(held: &[(usize, u64, u64)], slack_ms: u64) -> Vec<(usize, usize, u64)> {
    let mut held = held.to_vec();
    held.sort_by_key(|h| h.1);
    let mut found = Vec::new();
    for (i, &(a, _, a_until)) in held.iter().enumerate() {
        for &(b, b_from, _) in &held[i + 1..] {
            if a != b && b_from + slack_ms < a_until {
                found.push((a, b, a_until - b_from));
            }
        }
    }
    found
}

/// Now, in wall-clock milliseconds (the engine's clock on this machine).
fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
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

/// A connected app: a writer task fed by a queue that outlives connections, and the
/// receiving half of the current connection.
struct App {
    out: mpsc::UnboundedSender<ClientMessage>,
    rx: ClientReceiver,
    /// Hands the writer a new connection's sending half after a reconnect.
    sinks: mpsc::UnboundedSender<ClientSender>,
    /// The node index the app connects to (the next one after a reconnect).
    index: usize,
    token: String,
    /// A retry after `overloaded` or `rate_limited` is on its way.
    retrying: Arc<AtomicBool>,
}

/// What an app hears next.
enum Incoming {
    /// A frame.
    Frame(ServerMessage),
    /// The connection dropped and a new one is up: time to resync.
    Reconnected,
}

async fn open(world: &World, index: usize, token: &str) -> anyhow::Result<Client> {
    let options = ConnectOptions {
        url: world.target.ws_url_for(index),
        token: token.to_owned(),
        encoding: world.encoding(),
        local_ip: source_ip(index, world.cfg.source_ips),
        recv_buffer_bytes: None,
    };
    Ok(Client::connect_with(&options).await?)
}

async fn connect(world: &Arc<World>, mut index: usize, token: &str) -> anyhow::Result<App> {
    let mut client = open(world, index, token).await;
    // With reconnecting apps, a node that is down is skipped for the next.
    let tries = if world.cfg.reconnect {
        world.target.more_nodes.len()
    } else {
        0
    };
    for _ in 0..tries {
        if client.is_ok() {
            break;
        }
        index += 1;
        client = open(world, index, token).await;
    }
    let client = client?;
    world.stats.connections.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = client.split();
    let (out, mut queue) = mpsc::unbounded_channel::<ClientMessage>();
    let (sinks, mut new_sinks) = mpsc::unbounded_channel::<ClientSender>();
    let stats = world.stats.clone();
    tokio::spawn(async move {
        let mut sink = Some(tx);
        while let Some(frame) = queue.recv().await {
            stats.sent.bump(frame.type_name());
            // A frame that fails on a dead connection goes out on the next one.
            loop {
                while let Ok(fresh) = new_sinks.try_recv() {
                    sink = Some(fresh);
                }
                let Some(current) = sink.as_mut() else {
                    // A position from before the outage is stale: the app sends a fresh
                    // one once it is back.
                    if matches!(frame, ClientMessage::Location(_)) {
                        break;
                    }
                    match new_sinks.recv().await {
                        Some(fresh) => {
                            sink = Some(fresh);
                            continue;
                        }
                        None => return,
                    }
                };
                if current.send(frame.clone()).await.is_ok() {
                    break;
                }
                sink = None;
            }
        }
        if let Some(mut s) = sink {
            let _ = s.close().await;
        }
    });
    Ok(App {
        out,
        rx,
        sinks,
        index,
        token: token.to_owned(),
        retrying: Arc::new(AtomicBool::new(false)),
    })
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

    /// Connects again, to the next node that answers, within 30 s.
    async fn reconnect(&mut self, world: &World) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline && !world.finished.load(Ordering::Relaxed) {
            self.index += 1;
            if let Ok(client) = open(world, self.index, &self.token).await {
                let (tx, rx) = client.split();
                self.rx = rx;
                let _ = self.sinks.send(tx);
                world.stats.outcomes.bump("reconnects");
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
}

/// Receives the next frame, counting it; none once the connection ends (and, with
/// `reconnect`, cannot be made again) or the run is over.
async fn next(world: &World, app: &mut App) -> Option<Incoming> {
    loop {
        if world.finished.load(Ordering::Relaxed) {
            return None;
        }
        match tokio::time::timeout(Duration::from_millis(200), app.rx.recv()).await {
            Err(_) => continue,
            Ok(Ok(frame)) => {
                world.stats.received.bump(frame.type_name());
                // Its node is stopping (a rolling restart): an app that reconnects goes
                // to another node, as it does when its connection drops.
                if world.cfg.reconnect
                    && matches!(frame, ServerMessage::Shutdown(_))
                    && !world.finished.load(Ordering::Relaxed)
                    && app.reconnect(world).await
                {
                    return Some(Incoming::Reconnected);
                }
                return Some(Incoming::Frame(frame));
            }
            Ok(Err(e)) => {
                if world.finished.load(Ordering::Relaxed) {
                    return None;
                }
                if world.cfg.reconnect && app.reconnect(world).await {
                    return Some(Incoming::Reconnected);
                }
                world
                    .stats
                    .protocol_errors
                    .bump(&format!("connection lost: {e}"));
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
    // Orders taken, and the last answer to an offer (sent again after `overloaded`).
    let mut mine: Vec<OrderId> = Vec::new();
    let mut last_answer: Option<ClientMessage> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                here = step(here, heading, SPEED_MPS * world.cfg.location_every_s);
                if here == heading {
                    heading = random_point(&mut rng);
                }
                app.send(wire::Location { point: here.into(), accuracy_m: Some(10) });
            }
            incoming = next(&world, &mut app) => {
                let frame = match incoming {
                    None => break,
                    // Available again once the engine knows where they are.
                    Some(Incoming::Reconnected) => {
                        app.send(wire::Location { point: here.into(), accuracy_m: Some(10) });
                        continue;
                    }
                    Some(Incoming::Frame(frame)) => frame,
                };
                match frame {
                    ServerMessage::Offer(offer) => {
                        world.first_offer(offer.request_id);
                        world.offer_held(offer.request_id, index, offer.expires_at_ms);
                        let roll: f64 = rng.random();
                        let think = world.real(rng.random_range(1.0..15.0));
                        let answer: Option<ClientMessage> = if roll < world.cfg.accept_p {
                            Some(wire::Accept { request_id: offer.request_id }.into())
                        } else if roll < world.cfg.accept_p + world.cfg.decline_p {
                            Some(wire::Decline { request_id: offer.request_id }.into())
                        } else {
                            None
                        };
                        if let Some(answer) = answer {
                            last_answer = Some(answer.clone());
                            app.later(think, answer);
                            let answered = wall_ms() + think.as_millis() as u64;
                            world.offer_let_go(offer.request_id, index, answered);
                        }
                    }
                    ServerMessage::OfferEnded(ended) => {
                        world.offer_let_go(ended.request_id, index, wall_ms());
                    }
                    ServerMessage::Allotted(a) => {
                        heading = a.order.pickup.to_latlng().unwrap_or(here);
                        take_order(&world, &app, &a.order, here, &mut rng);
                        mine.push(a.order.order_id);
                    }
                    // After a reconnect: the order they are on, as the engine has it.
                    ServerMessage::Order(o) => {
                        if !world.progress.contains_key(&o.order.order_id) {
                            heading = o.order.pickup.to_latlng().unwrap_or(here);
                            take_order(&world, &app, &o.order, here, &mut rng);
                        } else {
                            let total = o.order.invoice.as_ref().map(|i| i.total_minor);
                            catch_up(&world, &app.out, o.order.order_id, o.order.state, total);
                        }
                        mine.push(o.order.order_id);
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
                    ServerMessage::Error(e) => {
                        if matches!(e.code, ErrorCode::Overloaded | ErrorCode::RateLimited) {
                            retry_later(&world, &app, &mine, true, last_answer.clone());
                        }
                        world.error("associate", e.code, &e.message);
                    }
                    ServerMessage::Shutdown(_) => break,
                    _ => {}
                }
            }
        }
    }
    world.stats.connections.fetch_sub(1, Ordering::Relaxed);
}

/// The associate takes an order allotted to them: the order runs on its own task.
fn take_order(
    world: &Arc<World>,
    app: &App,
    order: &wire::model::OrderSnapshot,
    here: LatLng,
    rng: &mut StdRng,
) {
    let id = order.order_id;
    world.allotted(id);
    if world.progress.insert(id, OrderState::Allotted).is_some() {
        return;
    }
    let pickup = order.pickup.to_latlng().unwrap_or(here);
    let travel_s = (here.distance_m(&pickup) / SPEED_MPS).clamp(60.0, 1_200.0);
    let work_s = rng.random_range(900.0..3_600.0);
    let (world, out) = (world.clone(), app.out.clone());
    tokio::spawn(async move { run_order(world, out, id, travel_s, work_s).await });
}

/// After a reconnect, or a frame refused with `overloaded` (nothing changed: send it
/// again): the steps the associate took that the engine has not applied are taken
/// again, in order, and cash is confirmed again for a billed cash order. `state` and
/// `invoice_total` are the order as the engine has it.
fn catch_up(
    world: &World,
    out: &mpsc::UnboundedSender<ClientMessage>,
    id: OrderId,
    state: OrderState,
    invoice_total: Option<i64>,
) {
    let send = |m: ClientMessage| {
        let _ = out.send(m);
    };
    let taken = world.progress.get(&id).map(|p| *p);
    for step in [
        OrderState::EnRoute,
        OrderState::Arrived,
        OrderState::Started,
        OrderState::Completed,
    ] {
        if state >= step || taken.is_none_or(|t| t < step) {
            continue;
        }
        match step {
            OrderState::EnRoute => send(wire::EnRoute { order_id: id }.into()),
            OrderState::Arrived => send(wire::Arrived { order_id: id }.into()),
            OrderState::Started => {
                if let Some(pin) = world.pins.get(&id).map(|p| p.clone()) {
                    send(wire::Start { order_id: id, pin }.into());
                }
            }
            _ => send(wire::Complete { order_id: id }.into()),
        }
    }
    if state == OrderState::Billed
        && world.plan(id).cash
        && let Some(total) = invoice_total
    {
        send(
            wire::CashReceived {
                order_id: id,
                amount_minor: total,
            }
            .into(),
        );
    }
}

/// An order as the engine has it, read over HTTP from the node the app is on (`index`)
/// with the party's own token: its state and invoice total, if it has one.
async fn order_state(
    world: &World,
    index: usize,
    token: &str,
    order: OrderId,
) -> Option<(OrderState, Option<i64>)> {
    let auth = format!("Bearer {token}");
    let r = http_api::request(
        world.target.node_for(index),
        "GET",
        &format!("/v1/orders/{order}"),
        &[("authorization", &auth)],
        None,
    )
    .await
    .ok()?;
    let state = serde_json::from_value(r.body["order"]["state"].clone()).ok()?;
    Some((state, r.body["invoice"]["total_minor"].as_i64()))
}

/// After `overloaded` or `rate_limited` (nothing changed: send it again), once at a time:
/// a moment later, every open order of the app is brought up to date
/// (`associate`: its steps and cash; a user: the payment resent with its key), and the
/// associate's last answer to an offer is sent again.
fn retry_later(
    world: &Arc<World>,
    app: &App,
    mine: &[OrderId],
    associate: bool,
    last_answer: Option<ClientMessage>,
) {
    if app.retrying.swap(true, Ordering::SeqCst) {
        return;
    }
    let (world, out, token, index) = (world.clone(), app.out.clone(), app.token.clone(), app.index);
    let retrying = app.retrying.clone();
    let mine: Vec<OrderId> = mine
        .iter()
        .copied()
        .filter(|o| world.orders.get(o).is_some_and(|t| t.terminal.is_none()))
        .collect();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if let Some(answer) = last_answer {
            let _ = out.send(answer);
        }
        for order in mine {
            if associate {
                if let Some((state, total)) = order_state(&world, index, &token, order).await {
                    catch_up(&world, &out, order, state, total);
                }
            } else if let Some(pay) = world.last_pay.get(&order).map(|p| p.clone()) {
                let _ = out.send(pay.into());
            }
        }
        retrying.store(false, Ordering::SeqCst);
    });
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
    let took = |state: OrderState| {
        world.progress.insert(order, state);
    };
    took(OrderState::EnRoute);
    send(wire::EnRoute { order_id: order }.into());
    tokio::time::sleep(world.real(travel_s)).await;
    took(OrderState::Arrived);
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
    took(OrderState::Started);
    send(
        wire::Start {
            order_id: order,
            pin,
        }
        .into(),
    );
    tokio::time::sleep(world.real(work_s)).await;
    took(OrderState::Completed);
    send(wire::Complete { order_id: order }.into());
}

/// The user's first card payment of `order` (declined first if the plan says so), after
/// `delay`; remembered, to be sent again with the same key after a reconnect.
fn pay_for(world: &World, app: &App, order: OrderId, delay: Option<Duration>) {
    let plan = world.plan(order);
    let pay = wire::Pay {
        order_id: order,
        method: PaymentMethod::Card,
        instrument: if plan.declined_first {
            DECLINED_CARD
        } else {
            GOOD_CARD
        }
        .into(),
        idempotency_key: format!("{order}-1"),
        tip_minor: Some(plan.tip),
    };
    world.last_pay.entry(order).or_insert_with(|| pay.clone());
    match delay {
        Some(delay) => app.later(delay, pay),
        None => app.send(pay),
    }
}

/// After a reconnect: the user's orders that ended while the app was away, as the engine
/// has them (an app reads its order over HTTP with its own token).
async fn settle_ended(world: &World, app: &App, mine: &[OrderId]) {
    for order in mine {
        if world.orders.get(order).is_none_or(|t| t.terminal.is_some()) {
            continue;
        }
        if let Some((state @ (OrderState::Closed | OrderState::Cancelled), _)) =
            order_state(world, app.index, &app.token, *order).await
        {
            world.ended(*order, state);
        }
    }
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
    // Orders of this user, to look up after a reconnect.
    let mut mine: Vec<OrderId> = Vec::new();
    while let Some(incoming) = next(&world, &mut app).await {
        let frame = match incoming {
            Incoming::Reconnected => {
                settle_ended(&world, &app, &mine).await;
                continue;
            }
            Incoming::Frame(frame) => frame,
        };
        // An order the engine sends on reconnect that the app never heard allotted is
        // taken as allotted now.
        let frame = match frame {
            ServerMessage::Order(o) if world.orders.contains_key(&o.order.order_id) => {
                let order = *o.order;
                if order.state == OrderState::Billed && !world.plan(order.order_id).cash {
                    match world.last_pay.get(&order.order_id).map(|p| p.clone()) {
                        Some(pay) => app.send(pay),
                        None => pay_for(&world, &app, order.order_id, None),
                    }
                }
                continue;
            }
            ServerMessage::Order(o) => ServerMessage::Allotted(wire::Allotted {
                client_ref: None,
                order: o.order,
            }),
            other => other,
        };
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
                mine.push(order);
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
                    pay_started = Some(Instant::now());
                    pay_for(
                        &world,
                        &app,
                        order,
                        Some(world.real(rng.random_range(5.0..60.0))),
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
                        let pay = wire::Pay {
                            order_id: p.order_id,
                            method: PaymentMethod::Card,
                            instrument: GOOD_CARD.into(),
                            idempotency_key: format!("{}-2", p.order_id),
                            tip_minor: Some(plan.tip),
                        };
                        world.last_pay.insert(p.order_id, pay.clone());
                        app.send(pay);
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
            ServerMessage::Error(e) => {
                if matches!(e.code, ErrorCode::Overloaded | ErrorCode::RateLimited) {
                    retry_later(&world, &app, &mine, false, None);
                }
                world.error("user", e.code, &e.message);
            }
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
    /// Requests two associates held offers of at once, or associates who held two
    /// offers at once, judged from the engine's own offer trails.
    pub offered_twice: Vec<String>,
    /// Requests two associates held offers of at once as the apps saw them (their
    /// clocks and delivery delays included: a hint, not the verdict).
    pub offered_twice_by_apps: Vec<String>,
    /// Requests whose offer trail no node had any more (ended too long before the end).
    pub trails_missing: usize,
    /// Real seconds the run took.
    pub elapsed_s: f64,
}

impl FlowResult {
    /// Whether the run is clean: no protocol error, nothing lost, nothing unfinished.
    pub fn clean(&self) -> bool {
        self.unfinished.is_empty()
            && self.lost.is_empty()
            && self.protocol_errors.is_empty()
            && self.offered_twice.is_empty()
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
        progress: DashMap::new(),
        last_pay: DashMap::new(),
        offers_held: DashMap::new(),
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
    let requests: Vec<RequestId> = world.request_started.iter().map(|e| *e.key()).collect();
    let (offered_twice, trails_missing) = engine_overlaps(&target, &requests).await;
    Ok(FlowResult {
        config: cfg,
        orders_seen: orders.len(),
        unfinished,
        lost,
        protocol_errors: world.stats.protocol_errors.snapshot(),
        offered_twice,
        offered_twice_by_apps: world.offered_twice_at_once(OFFER_SLACK_MS),
        trails_missing,
        elapsed_s: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::overlaps;

    #[test]
    fn offers_one_after_another_pass_and_overlapping_ones_are_caught() {
        // 1 declines at 1 000, 2 is offered at 1 010 and lets it expire at 1 750, 3 next.
        assert!(overlaps(&[(1, 0, 1_000), (2, 1_010, 1_750), (3, 1_760, 2_500)], 50).is_empty());
        // Within the slack: delivery noise.
        assert!(overlaps(&[(1, 0, 1_000), (2, 980, 1_750)], 50).is_empty());
        // 3 offered while 2 still held theirs (and 1's, held to the end, overlaps both).
        assert_eq!(
            overlaps(&[(2, 1_010, 1_750), (3, 1_200, 1_900), (1, 0, 1_000)], 50),
            [(2, 3, 550)]
        );
        assert_eq!(
            overlaps(&[(1, 0, 2_000), (2, 500, 900)], 50),
            [(1, 2, 1_500)]
        );
        // The same associate offered again (after a restart) is not two at once.
        assert!(overlaps(&[(1, 0, 1_000), (1, 500, 1_500)], 50).is_empty());
    }
}
