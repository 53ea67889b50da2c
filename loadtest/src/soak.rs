//! The soak: an engine that runs for a long time, fed what would grow it without bound if
//! anything were kept too long. Distinct associates connect, go online and disconnect
//! (each a new profile); users ask for tasks at random points all over the world (each
//! a new shard cell, none served); some orders are abandoned mid-way (the associate
//! accepts, then their app goes away). The engine binary runs as a child process; its
//! resident memory and actor counts (from `/metrics`) are read after a warm-up and at
//! the end, once everything idle has had its idle time.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::json;
use wire::client::{Client, ConnectOptions};
use wire::model::{Availability, Point};
use wire::{AssociateId, Encoding, PartyId, ServerMessage, UserId};

use crate::target::{ChildEngine, Target, source_ip};

/// What the soak does.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// Connect, go-online, disconnect cycles, each by a new associate.
    pub cycles: u64,
    /// Cycles run at once.
    pub concurrency: usize,
    /// Cycles before the warm-up reading.
    pub warm_up: u64,
    /// Users asking for tasks at random points worldwide, at the same time.
    pub wanderers: usize,
    /// The pause between orders abandoned mid-way (one at a time, beside the cycles).
    pub abandon_pause: Duration,
    /// Spread connections over this many source addresses.
    pub source_ips: usize,
    /// How long everything may take to return to its baseline at the end.
    pub settle: Duration,
    /// Random seed.
    pub seed: u64,
    /// Cycle through this many associates created up front instead of a new one per
    /// cycle (0): separates what the data's growth costs from what the engine keeps.
    pub pool: usize,
}

impl Default for SoakConfig {
    fn default() -> Self {
        Self {
            cycles: 1_000_000,
            concurrency: 64,
            warm_up: 100_000,
            wanderers: 50,
            abandon_pause: Duration::from_millis(500),
            source_ips: 16,
            settle: Duration::from_secs(120),
            seed: 7,
            pool: 0,
        }
    }
}

/// The engine settings a soak runs with: short idle, stall and request times so that
/// everything it creates is due to go within seconds, and a small page cache.
pub fn engine_config() -> engine::Config {
    let mut c = engine::Config {
        workers: 1,
        ..engine::Config::default()
    };
    c.storage.cache_mib = 32;
    c.dispatch.shard_idle_ms = 2_000;
    c.dispatch.associate_idle_ms = 2_000;
    c.dispatch.request_timeout_ms = 3_000;
    c.dispatch.retry_interval_ms = 1_000;
    c.dispatch.offer_window_ms = 10_000;
    c.orders.stall_after_ms.allotted = 2_000;
    c.socket.frames_per_s = 1_000;
    c.socket.frames_burst = 1_000;
    c
}

/// A reading of the engine.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Reading {
    /// Cycles done when read.
    pub cycles: u64,
    /// Resident memory of the engine process.
    pub rss_bytes: u64,
    /// `speedy_associate_actors`.
    pub associate_actors: f64,
    /// `speedy_shard_supervisors`.
    pub shard_supervisors: f64,
    /// `speedy_order_actors`.
    pub order_actors: f64,
    /// `speedy_open_requests`.
    pub open_requests: f64,
    /// `speedy_connections` of both roles.
    pub connections: f64,
    /// Samples in /metrics (series, counting each histogram bucket).
    pub series: usize,
    /// Of those, labelled by shard cell (none may be: cells come and go without bound).
    pub per_cell_series: usize,
}

/// What the soak found.
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    /// Cycles run (associates connected, online, disconnected).
    pub cycles: u64,
    /// Associates cycled through (0: a new one per cycle).
    pub pool: usize,
    /// Cycles per second over the run.
    pub cycles_per_s: f64,
    /// Requests made by the wanderers.
    pub requests: u64,
    /// Distinct shard cells those requests came from.
    pub request_cells: usize,
    /// Orders abandoned mid-way (the associate went away after accepting).
    pub abandoned_orders: u64,
    /// Of those, cancelled by the engine's stall policy.
    pub abandoned_cancelled: u64,
    /// Before anything ran.
    pub baseline: Reading,
    /// After the warm-up.
    pub warm: Reading,
    /// The most seen during the run (`cycles`: when memory peaked).
    pub peak: Reading,
    /// At the end, once idle things had their idle time.
    pub end: Reading,
    /// End memory over warm memory.
    pub rss_end_over_warm: f64,
    /// Seconds from the last cycle until the counts were back at their baseline.
    pub settled_after_s: f64,
    /// Whether memory stayed within 10 % and the counts came back.
    pub passed: bool,
    /// Cycles that failed, by error.
    pub failures: u64,
}

/// The gauges the soak reads, from `/metrics`.
async fn read(target: &Target, engine: &ChildEngine, cycles: u64) -> anyhow::Result<Reading> {
    let text = crate::scrape::metrics(target).await?;
    let gauge = |name: &str| crate::scrape::sample_sum(&text, name, "");
    Ok(Reading {
        cycles,
        rss_bytes: engine.rss_bytes()?,
        associate_actors: gauge("speedy_associate_actors"),
        shard_supervisors: gauge("speedy_shard_supervisors"),
        order_actors: gauge("speedy_order_actors"),
        open_requests: gauge("speedy_open_requests"),
        connections: gauge("speedy_connections"),
        series: samples(&text).count(),
        per_cell_series: samples(&text)
            .filter(|l| l.contains("shard=\"") || l.contains("cell=\""))
            .count(),
    })
}

/// The sample lines of a Prometheus exposition.
fn samples(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

/// Signs tokens as the engine does (the soak starts the engine with its secret).
#[derive(Clone)]
struct Signer(engine::auth::Tokens);

impl Signer {
    fn token(&self, party: PartyId) -> String {
        self.0.issue(party, 3_600).0
    }
}

async fn connect(target: &Target, token: String, i: u64, spread: usize) -> anyhow::Result<Client> {
    let options = ConnectOptions {
        url: target.ws_url(),
        token,
        encoding: Encoding::Json,
        local_ip: source_ip(i as usize, spread),
        recv_buffer_bytes: Some(16 * 1024),
    };
    let mut c = Client::connect_with(&options).await?;
    c.recv_until(Duration::from_secs(30), |m| {
        matches!(m, ServerMessage::Welcome(_)).then_some(())
    })
    .await?;
    Ok(c)
}

async fn new_associate(target: &Target, signer: &Signer, n: u64) -> anyhow::Result<String> {
    let id = AssociateId::new();
    let body = json!({
        "id": id, "name": format!("soak-{n}"), "phone": format!("+91-7{n:09}"),
        "skills": ["companion"],
    });
    let r = target.admin("POST", "/v1/associates", Some(body)).await?;
    if r.status != 201 {
        bail!("creating associate {n}: {} {}", r.status, r.text);
    }
    Ok(signer.token(PartyId::Associate(id)))
}

/// A point in one of a few metro areas, where the cycling associates go online.
fn metro_point(rng: &mut StdRng) -> Point {
    const METROS: [(f64, f64); 4] = [
        (12.97, 77.59),
        (19.07, 72.87),
        (28.61, 77.20),
        (13.08, 80.27),
    ];
    let (lat, lng) = METROS[rng.random_range(0..METROS.len())];
    Point {
        lat: lat + rng.random_range(-0.2..0.2),
        lng: lng + rng.random_range(-0.2..0.2),
    }
}

/// One cycle: an associate (new, or `token` from the pool) connects, goes online
/// somewhere, and goes away.
async fn cycle(
    target: &Target,
    signer: &Signer,
    n: u64,
    token: Option<String>,
    spread: usize,
) -> anyhow::Result<()> {
    let token = match token {
        Some(t) => t,
        None => new_associate(target, signer, n).await?,
    };
    let mut c = connect(target, token, n, spread).await?;
    let point = metro_point(&mut StdRng::seed_from_u64(n));
    c.send(wire::Location {
        point,
        accuracy_m: None,
    })
    .await?;
    c.send(wire::GoOnline { skills: vec![] }).await?;
    c.recv_until(Duration::from_secs(30), |m| match m {
        ServerMessage::Status(s) if s.availability == Availability::Available => Some(()),
        _ => None,
    })
    .await?;
    c.close().await?;
    Ok(())
}

/// Where abandoned orders happen: far from every metro, one at a time.
const ABANDON_AT: Point = Point {
    lat: -23.55,
    lng: -46.63,
};

/// An order abandoned mid-way: a new associate goes online, a user asks, the associate
/// accepts and goes away. Returns whether the engine cancelled the order on its own.
async fn abandon(
    target: &Target,
    signer: &Signer,
    user: &mut Client,
    n: u64,
    spread: usize,
) -> anyhow::Result<bool> {
    let token = new_associate(target, signer, n).await?;
    let mut a = connect(target, token, n, spread).await?;
    a.send(wire::Location {
        point: ABANDON_AT,
        accuracy_m: None,
    })
    .await?;
    a.send(wire::GoOnline { skills: vec![] }).await?;
    a.recv_until(Duration::from_secs(30), |m| match m {
        ServerMessage::Status(s) if s.availability == Availability::Available => Some(()),
        _ => None,
    })
    .await?;
    user.send(wire::TaskRequest {
        client_ref: format!("abandon-{n}"),
        task: "companion".into(),
        pickup: ABANDON_AT,
        note: None,
        discount_code: None,
    })
    .await?;
    let offer = a
        .recv_until(Duration::from_secs(30), |m| match m {
            ServerMessage::Offer(o) => Some(o),
            _ => None,
        })
        .await?;
    a.send(wire::Accept {
        request_id: offer.request_id,
    })
    .await?;
    let order = user
        .recv_until(Duration::from_secs(30), |m| match m {
            ServerMessage::Allotted(x) => Some(x.order.order_id),
            _ => None,
        })
        .await?;
    // The app goes away mid-order and never comes back.
    drop(a);
    let cancelled = user
        .recv_until(Duration::from_secs(60), |m| match m {
            ServerMessage::OrderUpdate(u)
                if u.order_id == order && u.state == wire::model::OrderState::Cancelled =>
            {
                Some(())
            }
            _ => None,
        })
        .await
        .is_ok();
    Ok(cancelled)
}

/// A user asking for tasks at random points worldwide until `stop`, each request ending
/// with nobody available; returns how many, and their shard cells.
async fn wander(
    target: Target,
    signer: Signer,
    n: usize,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<(u64, HashSet<u64>)> {
    let id = UserId::new();
    let r = target
        .admin(
            "POST",
            "/v1/users",
            Some(json!({ "id": id, "name": format!("wanderer-{n}"), "phone": "1" })),
        )
        .await?;
    if r.status != 201 {
        bail!("creating a user: {} {}", r.status, r.text);
    }
    let mut c = connect(&target, signer.token(PartyId::User(id)), n as u64, 4).await?;
    let mut rng = StdRng::seed_from_u64(n as u64);
    let map = geo::ShardMap::new(engine::Config::default().dispatch.shard_resolution)?;
    let mut cells = HashSet::new();
    let mut requests = 0;
    while !stop.load(Ordering::Relaxed) {
        let lat = rng.random_range(-60.0..70.0);
        let lng = rng.random_range(-180.0..180.0);
        let pickup = geo::LatLng::new(lat, lng)?;
        cells.insert(map.shard_of(pickup).as_u64());
        c.send(wire::TaskRequest {
            client_ref: format!("w-{requests}"),
            task: "errand".into(),
            pickup: pickup.into(),
            note: None,
            discount_code: None,
        })
        .await?;
        requests += 1;
        c.recv_until(Duration::from_secs(60), |m| {
            matches!(m, ServerMessage::NoAssociate(_)).then_some(())
        })
        .await?;
    }
    Ok((requests, cells))
}

/// Runs the soak against the engine binary and reports.
pub async fn run(
    binary: &std::path::Path,
    cfg: SoakConfig,
    mut progress: impl FnMut(&str),
) -> anyhow::Result<SoakReport> {
    let dir = tempfile::tempdir()?;
    let secret = format!("soak-secret-{}", uuid::Uuid::now_v7());
    let config_path = dir.path().join("soak.toml");
    std::fs::write(&config_path, toml::to_string(&engine_config())?)?;
    let engine = ChildEngine::start(
        binary,
        &[
            "--config".into(),
            config_path.display().to_string(),
            "--token-secret".into(),
            secret.clone(),
        ],
    )?;
    let target = engine.target.clone();
    let signer = Signer(engine::auth::Tokens::new(&secret));
    let baseline = read(&target, &engine, 0).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let wanderers: Vec<_> = (0..cfg.wanderers)
        .map(|n| tokio::spawn(wander(target.clone(), signer.clone(), n, stop.clone())))
        .collect();
    let abandoned = Arc::new(AtomicU64::new(0));
    let abandoned_cancelled = Arc::new(AtomicU64::new(0));
    let abandoner = {
        let (target, signer, stop) = (target.clone(), signer.clone(), stop.clone());
        let (abandoned, cancelled) = (abandoned.clone(), abandoned_cancelled.clone());
        let spread = cfg.source_ips;
        let pace = cfg.abandon_pause;
        tokio::spawn(async move {
            let id = UserId::new();
            let r = target
                .admin(
                    "POST",
                    "/v1/users",
                    Some(json!({ "id": id, "name": "abandoned", "phone": "1" })),
                )
                .await?;
            if r.status != 201 {
                bail!("creating a user: {}", r.text);
            }
            let mut user = connect(&target, signer.token(PartyId::User(id)), 0, spread).await?;
            let mut n = u64::MAX / 2;
            while !stop.load(Ordering::Relaxed) {
                if abandon(&target, &signer, &mut user, n, spread).await? {
                    cancelled.fetch_add(1, Ordering::Relaxed);
                }
                abandoned.fetch_add(1, Ordering::Relaxed);
                n += 1;
                tokio::time::sleep(pace).await;
            }
            anyhow::Ok(())
        })
    };

    let pool: Arc<Vec<String>> = Arc::new(
        futures_util::stream::iter(0..cfg.pool as u64)
            .map(|n| {
                let (target, signer) = (target.clone(), signer.clone());
                async move { new_associate(&target, &signer, u64::MAX / 4 + n).await }
            })
            .buffered(cfg.concurrency.max(1))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<anyhow::Result<_>>()?,
    );
    let started = Instant::now();
    let done = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let mut warm = None;
    let mut peak = baseline.clone();
    let mut next_reading = Instant::now();
    let mut stream = futures_util::stream::iter(0..cfg.cycles)
        .map(|n| {
            let (target, signer) = (target.clone(), signer.clone());
            let spread = cfg.source_ips;
            let token = (!pool.is_empty()).then(|| pool[n as usize % pool.len()].clone());
            async move { cycle(&target, &signer, n, token, spread).await }
        })
        .buffer_unordered(cfg.concurrency.max(1));
    while let Some(result) = stream.next().await {
        let n = done.fetch_add(1, Ordering::Relaxed) + 1;
        if let Err(e) = result {
            let failed = failures.fetch_add(1, Ordering::Relaxed) + 1;
            if failed <= 5 {
                progress(&format!("cycle failed: {e:#}"));
            }
        }
        if n == cfg.warm_up {
            warm = Some(read(&target, &engine, n).await?);
        }
        if Instant::now() >= next_reading {
            next_reading = Instant::now() + Duration::from_secs(2);
            let r = read(&target, &engine, n).await?;
            if r.rss_bytes > peak.rss_bytes {
                peak.rss_bytes = r.rss_bytes;
                peak.cycles = n;
            }
            peak.associate_actors = peak.associate_actors.max(r.associate_actors);
            peak.shard_supervisors = peak.shard_supervisors.max(r.shard_supervisors);
            peak.order_actors = peak.order_actors.max(r.order_actors);
            peak.open_requests = peak.open_requests.max(r.open_requests);
            peak.connections = peak.connections.max(r.connections);
            progress(&format!(
                "{n}/{} cycles ({:.0}/s) | rss {} MiB | associate actors {} | supervisors {} | orders {} | requests {} | abandoned {} | failures {}",
                cfg.cycles,
                n as f64 / started.elapsed().as_secs_f64(),
                r.rss_bytes >> 20,
                r.associate_actors,
                r.shard_supervisors,
                r.order_actors,
                r.open_requests,
                abandoned.load(Ordering::Relaxed),
                failures.load(Ordering::Relaxed),
            ));
        }
    }
    let cycles_per_s = cfg.cycles as f64 / started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut requests = 0;
    let mut cells = HashSet::new();
    for w in wanderers {
        let (n, c) = w.await.context("wanderer")??;
        requests += n;
        cells.extend(c);
    }
    abandoner.await.context("abandoner")??;
    let warm = match warm {
        Some(w) => w,
        None => read(&target, &engine, cfg.cycles).await?,
    };

    // Everything idle gets its idle time; the counts must come back to the baseline.
    let ended = Instant::now();
    let end = loop {
        let r = read(&target, &engine, cfg.cycles).await?;
        let back = r.associate_actors <= baseline.associate_actors
            && r.shard_supervisors <= baseline.shard_supervisors
            && r.order_actors <= baseline.order_actors
            && r.open_requests <= baseline.open_requests;
        if back || ended.elapsed() >= cfg.settle {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let settled_after_s = ended.elapsed().as_secs_f64();
    let rss_end_over_warm = end.rss_bytes as f64 / warm.rss_bytes.max(1) as f64;
    let counts_back = end.associate_actors <= baseline.associate_actors
        && end.shard_supervisors <= baseline.shard_supervisors
        && end.order_actors <= baseline.order_actors
        && end.open_requests <= baseline.open_requests;
    let failures = failures.load(Ordering::Relaxed);
    Ok(SoakReport {
        cycles: cfg.cycles,
        pool: cfg.pool,
        cycles_per_s,
        requests,
        request_cells: cells.len(),
        abandoned_orders: abandoned.load(Ordering::Relaxed),
        abandoned_cancelled: abandoned_cancelled.load(Ordering::Relaxed),
        baseline,
        warm,
        peak,
        end,
        rss_end_over_warm,
        settled_after_s,
        passed: counts_back && rss_end_over_warm <= 1.10 && failures == 0,
        failures,
    })
}
