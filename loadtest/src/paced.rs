//! Paced location ingest, measured as production loads the engine: the server under
//! test is its own process pinned to one core, the load generator another (run it under
//! `taskset` on a different core), every connection sends R frames a second (a random
//! walk, in the engine's JSON shape), and the figure is the server's CPU time per frame,
//! read from /proc. The bare server (a tokio-tungstenite server that only counts frames)
//! runs the same way, on the same core, fed by the same client, in the same run: the
//! ratio of the two is the engine's cost over the floor any WebSocket server pays.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use wire::client::{Client, ConnectOptions};
use wire::model::Point;
use wire::{AssociateId, Encoding, PartyId};

use crate::target::{ChildEngine, Target, source_ip};

/// What to run.
#[derive(Debug, Clone)]
pub struct PacedConfig {
    /// Connections, each an online associate on the engine.
    pub connections: usize,
    /// Frames per second per connection.
    pub rate: f64,
    /// Seconds measured.
    pub seconds: f64,
    /// Seconds of load before the measurement starts.
    pub warm_up: f64,
    /// The cores the servers are pinned to, a taskset list such as `0` or `0,1` (none:
    /// not pinned).
    pub server_cores: Option<String>,
    /// Worker threads of each server (the engine's `--workers`, the bare server's runtime).
    pub workers: usize,
    /// Spread connections over this many source addresses.
    pub source_ips: usize,
}

/// One server's figures.
#[derive(Debug, Clone, Serialize)]
pub struct SideReport {
    /// Location frames the server took in during the window.
    pub frames: u64,
    /// Those per second.
    pub frames_per_s: f64,
    /// The server process's CPU time (user + system) during the window, seconds.
    pub cpu_s: f64,
    /// CPU time per frame, microseconds.
    pub cpu_us_per_frame: f64,
    /// Share of its core the server used.
    pub core_share: f64,
}

/// The comparison.
#[derive(Debug, Clone, Serialize)]
pub struct PacedReport {
    /// Connections.
    pub connections: usize,
    /// Frames per second per connection.
    pub rate: f64,
    /// Seconds measured per side.
    pub seconds: f64,
    /// The bare WebSocket server.
    pub bare: SideReport,
    /// The engine.
    pub engine: SideReport,
    /// Engine CPU per frame over the bare server's (target ≤ 1.4).
    pub cost_ratio: f64,
    /// The bare server's CPU per frame over the engine's (target ≥ 70 %).
    pub efficiency: f64,
}

/// CPU time (user + system) of process `pid`, in seconds, from /proc.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces: fields start after its closing parenthesis.
    let rest = stat.rsplit_once(')').context("/proc stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
    let utime: f64 = fields.get(11).context("utime")?.parse()?;
    let stime: f64 = fields.get(12).context("stime")?.parse()?;
    Ok((utime + stime) / ticks_per_second())
}

fn ticks_per_second() -> f64 {
    // The kernel's USER_HZ, which is 100 on every Linux this runs on.
    100.0
}

/// A command pinned to `cores` (a taskset list) with taskset, or as is.
pub fn pinned(binary: &Path, cores: Option<&str>) -> Command {
    match cores {
        Some(c) => {
            let mut cmd = Command::new("taskset");
            cmd.arg("-c").arg(c).arg(binary);
            cmd
        }
        None => Command::new(binary),
    }
}

/// The bare server as a child process (`loadtest bare-server`), reporting its count.
struct BareChild {
    child: Child,
    addr: SocketAddr,
    frames: Arc<AtomicU64>,
}

impl BareChild {
    fn start(me: &Path, cores: Option<&str>, workers: usize) -> anyhow::Result<Self> {
        let mut child = pinned(me, cores)
            .args(["bare-server", "--workers", &workers.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the bare server")?;
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let addr = loop {
            let Some(line) = lines.next() else {
                bail!("the bare server exited before listening")
            };
            if let Some(a) = line?.strip_prefix("listening ") {
                break a.trim().parse()?;
            }
        };
        let frames = Arc::new(AtomicU64::new(0));
        let seen = frames.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if let Some(n) = line
                    .strip_prefix("frames ")
                    .and_then(|n| n.trim().parse().ok())
                {
                    seen.store(n, Ordering::Relaxed);
                }
            }
        });
        Ok(Self {
            child,
            addr,
            frames,
        })
    }
}

impl Drop for BareChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the bare server in this process: counts frames, prints `frames N` every 100 ms.
pub async fn serve_bare() -> anyhow::Result<()> {
    let ceiling = crate::ingest::Ceiling::start().await?;
    println!("listening {}", ceiling.addr);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        println!("frames {}", ceiling.frames.load(Ordering::Relaxed));
    }
}

/// Every connection sends `rate` frames a second (a random walk from its own start, at a
/// random phase) until `stop`; returns how many were sent.
/// A `rate` of zero floods: every connection sends as fast as it can.
fn pace(
    clients: Vec<Client>,
    rate: f64,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<u64>> {
    let flood = rate <= 0.0;
    let period = Duration::from_secs_f64(if flood { 1.0 } else { 1.0 / rate });
    clients
        .into_iter()
        .enumerate()
        .map(|(i, client)| {
            let stop = stop.clone();
            let (mut tx, mut rx) = client.split();
            // Read whatever comes back so the server never blocks on us.
            tokio::spawn(async move { while rx.recv().await.is_ok() {} });
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(i as u64);
                let mut lat = 12.85 + rng.random_range(0.0..0.3);
                let mut lng = 77.45 + rng.random_range(0.0..0.3);
                if !flood {
                    tokio::time::sleep(period.mul_f64(rng.random_range(0.0..1.0))).await;
                }
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut sent = 0;
                while !stop.load(Ordering::Relaxed) {
                    if !flood {
                        tick.tick().await;
                    }
                    lat += rng.random_range(-0.0001..0.0001);
                    lng += rng.random_range(-0.0001..0.0001);
                    let frame = wire::Location {
                        point: Point { lat, lng },
                        accuracy_m: Some(rng.random_range(3..30)),
                    };
                    if tx.send(frame).await.is_err() {
                        break;
                    }
                    sent += 1;
                }
                sent
            })
        })
        .collect()
}

/// Reads a server's count of frames taken in.
type FrameCount = std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<u64>> + Send>>;

/// Loads a server with `clients` and measures: warm-up, then a window over which the
/// server's CPU time and its own count of frames are read.
async fn measure(
    clients: Vec<Client>,
    cfg: &PacedConfig,
    pid: u32,
    frames: impl Fn() -> FrameCount,
) -> anyhow::Result<SideReport> {
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = pace(clients, cfg.rate, stop.clone());
    tokio::time::sleep(Duration::from_secs_f64(cfg.warm_up)).await;
    // The count first (it may take a moment to read), then the CPU time at once.
    let frames0 = frames().await?;
    let (cpu0, t0) = (cpu_seconds(pid)?, Instant::now());
    tokio::time::sleep(Duration::from_secs_f64(cfg.seconds)).await;
    let frames1 = frames().await?;
    let (cpu1, window) = (cpu_seconds(pid)?, t0.elapsed());
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let frames = frames1.saturating_sub(frames0);
    let cpu_s = cpu1 - cpu0;
    Ok(SideReport {
        frames,
        frames_per_s: frames as f64 / window.as_secs_f64(),
        cpu_s,
        cpu_us_per_frame: cpu_s * 1e6 / frames.max(1) as f64,
        core_share: cpu_s / window.as_secs_f64(),
    })
}

async fn connect_all(
    url: &str,
    tokens: impl Iterator<Item = String>,
    spread: usize,
) -> anyhow::Result<Vec<Client>> {
    let options: Vec<ConnectOptions> = tokens
        .enumerate()
        .map(|(i, token)| ConnectOptions {
            url: url.to_owned(),
            token,
            encoding: Encoding::Json,
            local_ip: source_ip(i, spread),
            recv_buffer_bytes: None,
        })
        .collect();
    futures_util::stream::iter(options)
        .map(|o| async move { Client::connect_with(&o).await })
        .buffered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(|c| c.map_err(anyhow::Error::from))
        .collect()
}

/// Where [`online_associates`] puts associate `i`: a grid 100 m apart, 300 to a column.
pub fn grid_home(i: usize) -> Point {
    Point {
        lat: 12.85 + (i % 300) as f64 * 0.001,
        lng: 77.45 + (i / 300) as f64 * 0.001,
    }
}

/// Creates `n` associates on `engine` (issued tokens signed with `secret`), connects each
/// from one of `spread` source addresses, and puts it online at a point of its own.
pub async fn online_associates(
    engine: &ChildEngine,
    secret: &str,
    n: usize,
    spread: usize,
) -> anyhow::Result<Vec<Client>> {
    let target = engine.target.clone();
    let tokens = engine::auth::Tokens::new(secret);
    let ids: Vec<AssociateId> = futures_util::stream::iter(0..n)
        .map(|n| {
            let target = target.clone();
            async move {
                let id = AssociateId::new();
                let body = serde_json::json!({
                    "id": id, "name": format!("paced-{n}"), "phone": "1", "skills": ["companion"],
                });
                let r = target.admin("POST", "/v1/associates", Some(body)).await?;
                if r.status != 201 {
                    bail!("creating an associate: {} {}", r.status, r.text);
                }
                anyhow::Ok(id)
            }
        })
        .buffered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let mut clients = connect_all(
        &target.ws_url(),
        ids.iter()
            .map(|id| tokens.issue(PartyId::Associate(*id), 3_600).0),
        spread,
    )
    .await?;
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(wire::Location {
            point: grid_home(i),
            accuracy_m: None,
        })
        .await?;
        c.send(wire::GoOnline { skills: vec![] }).await?;
    }
    Ok(clients)
}

/// Location frames the engine has taken in, from its metrics.
pub async fn engine_frames(target: &Target) -> anyhow::Result<u64> {
    let text = crate::scrape::metrics(target).await?;
    Ok(
        crate::scrape::sample_sum(&text, "speedy_frames_received_total", "type=\"location\"")
            as u64,
    )
}

/// Runs the bare server, then the engine binary, each pinned to the server core.
///
/// `loadtest_binary` serves the floor with its `bare-server` command (this process's own
/// binary when run as `loadtest ingest`).
pub async fn run(
    engine_binary: &Path,
    loadtest_binary: &Path,
    cfg: PacedConfig,
) -> anyhow::Result<PacedReport> {
    // The floor: the bare server, same client, same frames.
    let bare = BareChild::start(loadtest_binary, cfg.server_cores.as_deref(), cfg.workers)?;
    let url = format!("ws://{}/", bare.addr);
    let clients = connect_all(
        &url,
        (0..cfg.connections).map(|_| "bare".to_owned()),
        cfg.source_ips,
    )
    .await?;
    let counter = bare.frames.clone();
    let bare_report = measure(clients, &cfg, bare.child.id(), || {
        let counter = counter.clone();
        Box::pin(async move {
            // The child prints every 100 ms: wait for a fresh count.
            tokio::time::sleep(Duration::from_millis(250)).await;
            Ok(counter.load(Ordering::Relaxed))
        })
    })
    .await?;
    drop(bare);

    // The engine: every connection an online associate, so each frame goes all the way
    // to an availability index.
    let secret = format!("paced-secret-{}", uuid::Uuid::now_v7());
    let mut settings = engine::Config {
        workers: cfg.workers,
        ..engine::Config::default()
    };
    if cfg.rate > 0.0 {
        settings.socket.location_per_s = (cfg.rate.ceil() as u32 * 2).max(5);
        settings.socket.location_burst = settings.socket.location_per_s * 4;
    } else {
        // A flood measures the path, not the rate limit.
        settings.socket.location_per_s = 1_000_000;
        settings.socket.location_burst = 1_000_000;
    }
    let engine = ChildEngine::start_configured(
        pinned(engine_binary, cfg.server_cores.as_deref()),
        engine_binary,
        &settings,
        &secret,
    )?;
    let clients = online_associates(&engine, &secret, cfg.connections, cfg.source_ips).await?;
    let target = engine.target.clone();
    let engine_report = measure(clients, &cfg, engine.pid(), || {
        let target = target.clone();
        Box::pin(async move { engine_frames(&target).await })
    })
    .await?;
    let cost_ratio = engine_report.cpu_us_per_frame / bare_report.cpu_us_per_frame.max(1e-9);
    Ok(PacedReport {
        connections: cfg.connections,
        rate: cfg.rate,
        seconds: cfg.seconds,
        bare: bare_report,
        engine: engine_report,
        cost_ratio,
        efficiency: 1.0 / cost_ratio.max(1e-9),
    })
}
