//! End-to-end dispatch latency over real sockets: the engine binary is its own process
//! (pinned to a core if asked), associates stream their positions, users ask for tasks
//! at a steady rate, and each request is timed from its frame leaving the user's socket
//! to the offer frame arriving at an associate's. Once the offer is seen the user
//! cancels, so every associate stays available and every request measures a first offer.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use futures_util::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::sync::oneshot;
use wire::client::{Client, ConnectOptions};
use wire::model::Point;
use wire::{Encoding, RequestId, ServerMessage};

use crate::paced::{cpu_seconds, engine_frames, grid_home, online_associates};
use crate::scrape::{Buckets, metrics};
use crate::stats::{Latency, Percentiles};
use crate::target::{ChildEngine, source_ip};

/// What to run.
#[derive(Debug, Clone)]
pub struct LatencyConfig {
    /// Online associates, each streaming positions.
    pub associates: usize,
    /// Location frames per second per associate.
    pub location_rate: f64,
    /// Connected users taking turns to ask.
    pub users: usize,
    /// Requests per second over all users.
    pub request_rate: f64,
    /// Seconds of load before measuring.
    pub warm_up: f64,
    /// Seconds measured.
    pub seconds: f64,
    /// Engine actor threads (`--workers`).
    pub workers: usize,
    /// The cores the engine is pinned to, a taskset list (none: not pinned).
    pub engine_cores: Option<String>,
    /// Spread connections over this many source addresses.
    pub source_ips: usize,
}

/// The figures.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyReport {
    /// Associates online.
    pub associates: usize,
    /// Requests per second asked for.
    pub request_rate: f64,
    /// Requests sent in the window.
    pub requests: u64,
    /// Request frame sent → first offer frame received, over sockets.
    pub first_offer: Percentiles,
    /// Requests in the window that saw no offer within 10 s.
    pub no_offer: u64,
    /// What the engine's own histograms saw in the window (bucket upper bounds, ms).
    pub engine_side: EngineSide,
    /// Location frames the engine took in per second during the window.
    pub location_frames_per_s: f64,
    /// Share of one core the engine used during the window.
    pub engine_core_share: f64,
}

/// The engine's view of the window, from its /metrics histograms: p99 upper bounds in
/// milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct EngineSide {
    /// Request received → first offer sent.
    pub first_offer_p99_ms: Option<f64>,
    /// Handling a `request` frame, decode to reply queued (includes its durable write).
    pub request_frame_p99_ms: Option<f64>,
    /// Durable writes (group commit with fdatasync).
    pub durable_write_p99_ms: Option<f64>,
    /// Handling a `location` frame.
    pub location_frame_p99_ms: Option<f64>,
}

const ENGINE_SERIES: [(&str, &str); 4] = [
    ("speedy_time_to_first_offer_seconds", ""),
    ("speedy_frame_handling_seconds", "type=\"request\""),
    ("speedy_durable_write_seconds", ""),
    ("speedy_frame_handling_seconds", "type=\"location\""),
];

fn engine_buckets(text: &str) -> Vec<Buckets> {
    ENGINE_SERIES
        .iter()
        .map(|(series, label)| Buckets::parse(text, series, label))
        .collect()
}

/// Where a request stands between the user's socket and the associate's.
enum Seen {
    /// The user knows its id (and whether it was sent in the window); the offer has not
    /// arrived yet.
    Asked(Instant, bool, oneshot::Sender<()>),
    /// The offer arrived before the user learned the request's id.
    Offered(Instant),
}

struct Shared {
    seen: DashMap<RequestId, Seen>,
    first_offer: Latency,
    measuring: AtomicBool,
    requests: AtomicU64,
    no_offer: AtomicU64,
    stop: AtomicBool,
}

impl Shared {
    /// An offer for `request` reached an associate at `at`.
    fn offered(&self, request: RequestId, at: Instant) {
        match self.seen.entry(request) {
            Entry::Occupied(e) => {
                if let Seen::Asked(..) = e.get() {
                    if let (_, Seen::Asked(t0, measured, done)) = e.remove_entry() {
                        if measured {
                            self.first_offer.record(at.saturating_duration_since(t0));
                        }
                        let _ = done.send(());
                    }
                }
            }
            Entry::Vacant(e) => {
                e.insert(Seen::Offered(at));
            }
        }
    }

    /// The user learned `request`'s id; resolves when its offer has been seen.
    fn asked(&self, request: RequestId, t0: Instant, measured: bool) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        match self.seen.entry(request) {
            Entry::Occupied(e) => {
                if let (_, Seen::Offered(t1)) = e.remove_entry() {
                    if measured {
                        self.first_offer.record(t1.saturating_duration_since(t0));
                    }
                }
                let _ = tx.send(());
            }
            Entry::Vacant(e) => {
                e.insert(Seen::Asked(t0, measured, tx));
            }
        }
        rx
    }
}

/// An associate: moves at its rate and reports every offer it sees.
fn associate(client: Client, index: usize, rate: f64, shared: Arc<Shared>) {
    let (mut tx, mut rx) = client.split();
    let reader = shared.clone();
    tokio::spawn(async move {
        while let Ok(frame) = rx.recv().await {
            if let ServerMessage::Offer(offer) = frame {
                reader.offered(offer.request_id, Instant::now());
            }
        }
    });
    tokio::spawn(async move {
        let mut rng = StdRng::seed_from_u64(index as u64);
        let mut p = grid_home(index);
        let period = Duration::from_secs_f64(1.0 / rate.max(0.01));
        tokio::time::sleep(period.mul_f64(rng.random_range(0.0..1.0))).await;
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !shared.stop.load(Ordering::Relaxed) {
            tick.tick().await;
            p.lat += rng.random_range(-0.00005..0.00005);
            p.lng += rng.random_range(-0.00005..0.00005);
            let frame = wire::Location {
                point: p,
                accuracy_m: Some(rng.random_range(3..30)),
            };
            if tx.send(frame).await.is_err() {
                break;
            }
        }
    });
}

/// A user: every `period` asks near a random associate's home, waits for the offer,
/// cancels, and waits for the cancellation.
async fn user(
    mut client: Client,
    index: usize,
    period: Duration,
    associates: usize,
    shared: Arc<Shared>,
) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(1_000_000 + index as u64);
    tokio::time::sleep(period.mul_f64(rng.random_range(0.0..1.0))).await;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        tick.tick().await;
        n += 1;
        let client_ref = format!("l{index}-{n}");
        let near = grid_home(rng.random_range(0..associates));
        let measured = shared.measuring.load(Ordering::Relaxed);
        let t0 = Instant::now();
        client
            .send(wire::TaskRequest {
                client_ref: client_ref.clone(),
                task: "companion".into(),
                pickup: Point {
                    lat: near.lat + 0.0003,
                    lng: near.lng + 0.0003,
                },
                note: None,
                discount_code: None,
            })
            .await?;
        if measured {
            shared.requests.fetch_add(1, Ordering::Relaxed);
        }
        let request = client
            .recv_until(Duration::from_secs(10), |f| match f {
                ServerMessage::RequestReceived(r) if r.client_ref == client_ref => {
                    Some(r.request_id)
                }
                _ => None,
            })
            .await?;
        let offered = shared.asked(request, t0, measured);
        let got = tokio::time::timeout(Duration::from_secs(10), offered).await;
        if !matches!(got, Ok(Ok(()))) {
            shared.seen.remove(&request);
            if measured {
                shared.no_offer.fetch_add(1, Ordering::Relaxed);
            }
        }
        client
            .send(wire::CancelRequest {
                request_id: request,
            })
            .await?;
        let ended = client
            .recv_until(Duration::from_secs(10), |f| match f {
                ServerMessage::RequestCancelled(c) if c.request_id == request => Some(Ok(())),
                ServerMessage::NoAssociate(c) if c.request_id == request => Some(Ok(())),
                ServerMessage::Error(e) => Some(Err(e)),
                _ => None,
            })
            .await?;
        if let Err(e) = ended {
            bail!(
                "user {index}: the engine refused a frame: {:?} {}",
                e.code,
                e.message
            );
        }
    }
    Ok(())
}

/// Runs the engine binary and measures request → first offer over its sockets.
pub async fn run(engine_binary: &Path, cfg: LatencyConfig) -> anyhow::Result<LatencyReport> {
    if cfg.associates == 0 || cfg.users == 0 || cfg.request_rate <= 0.0 {
        bail!("need associates, users and a request rate");
    }
    let secret = format!("latency-secret-{}", uuid::Uuid::now_v7());
    let mut settings = engine::Config {
        workers: cfg.workers,
        ..engine::Config::default()
    };
    settings.socket.location_per_s = (cfg.location_rate.ceil() as u32 * 2).max(5);
    settings.socket.location_burst = settings.socket.location_per_s * 4;
    let engine = ChildEngine::start_configured(
        crate::paced::pinned(engine_binary, cfg.engine_cores.as_deref()),
        engine_binary,
        &settings,
        &secret,
    )?;
    let target = engine.target.clone();
    let shared = Arc::new(Shared {
        seen: DashMap::new(),
        first_offer: Latency::default(),
        measuring: AtomicBool::new(false),
        requests: AtomicU64::new(0),
        no_offer: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let associates = online_associates(&engine, &secret, cfg.associates, cfg.source_ips).await?;
    for (i, c) in associates.into_iter().enumerate() {
        associate(c, i, cfg.location_rate, shared.clone());
    }
    let users: Vec<(wire::UserId, String)> = futures_util::stream::iter(0..cfg.users)
        .map(|n| {
            let target = target.clone();
            async move { target.user(n).await }
        })
        .buffered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let url = target.ws_url();
    let mut tasks = Vec::new();
    let period = Duration::from_secs_f64(cfg.users as f64 / cfg.request_rate);
    for (i, (_, token)) in users.into_iter().enumerate() {
        let client = Client::connect_with(&ConnectOptions {
            url: url.clone(),
            token,
            encoding: Encoding::Json,
            local_ip: source_ip(cfg.associates + i, cfg.source_ips),
            recv_buffer_bytes: None,
        })
        .await?;
        tasks.push(tokio::spawn(user(
            client,
            i,
            period,
            cfg.associates,
            shared.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_secs_f64(cfg.warm_up)).await;
    let frames0 = engine_frames(&target).await?;
    let buckets0 = engine_buckets(&metrics(&target).await?);
    let cpu0 = cpu_seconds(engine.pid())?;
    let t0 = Instant::now();
    shared.measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(cfg.seconds)).await;
    shared.measuring.store(false, Ordering::Relaxed);
    let window = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(engine.pid())? - cpu0;
    let frames = engine_frames(&target).await? - frames0;
    let buckets1 = engine_buckets(&metrics(&target).await?);
    let p99 = |i: usize| {
        buckets1[i]
            .since(&buckets0[i])
            .quantile(0.99)
            .map(|s| s * 1000.0)
    };
    let engine_side = EngineSide {
        first_offer_p99_ms: p99(0),
        request_frame_p99_ms: p99(1),
        durable_write_p99_ms: p99(2),
        location_frame_p99_ms: p99(3),
    };
    shared.stop.store(true, Ordering::Relaxed);
    // Requests asked in the window finish (offer seen or 10 s passed) before counting.
    for t in tasks {
        match tokio::time::timeout(Duration::from_secs(30), t).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => bail!("a user failed: {e:#}"),
            Ok(Err(e)) => bail!("a user task panicked: {e}"),
            Err(_) => bail!("a user did not finish within 30 s of the end"),
        }
    }
    Ok(LatencyReport {
        associates: cfg.associates,
        request_rate: cfg.request_rate,
        requests: shared.requests.load(Ordering::Relaxed),
        first_offer: shared.first_offer.percentiles(),
        no_offer: shared.no_offer.load(Ordering::Relaxed),
        engine_side,
        location_frames_per_s: frames as f64 / window,
        engine_core_share: cpu / window,
    })
}
