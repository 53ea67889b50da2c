//! Instructions per location frame: the engine binary runs under valgrind's callgrind,
//! associates connect and go online, the counters are zeroed, a fixed number of location
//! frames arrives (a small random walk, paced), and once the engine has taken every frame
//! in and its index lanes are drained the counters are dumped. Total instructions over
//! frames is the cost of one frame from socket read through decode, session, lane and
//! index: a figure that does not move with machine noise, for catching regressions.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use wire::model::Point;

use crate::paced::{engine_frames, grid_home, online_associates};
use crate::target::{ChildEngine, Target};

/// What to run.
#[derive(Debug, Clone)]
pub struct InstructionsConfig {
    /// Connections, each an online associate.
    pub connections: usize,
    /// Location frames counted (spread evenly over the connections).
    pub frames: usize,
    /// Frames per second over all connections (callgrind runs the engine ~50× slower).
    pub rate: f64,
    /// Where callgrind writes its dumps (kept for `callgrind_annotate`).
    pub out_dir: PathBuf,
}

/// The figure.
#[derive(Debug, Clone, Serialize)]
pub struct InstructionsReport {
    /// Frames counted.
    pub frames: u64,
    /// Instructions the engine executed (all threads) while taking them in.
    pub instructions: u64,
    /// Instructions per frame.
    pub instructions_per_frame: f64,
    /// The callgrind dump with the per-function breakdown.
    pub dump: PathBuf,
}

fn callgrind_control(args: &[&str], pid: u32) -> anyhow::Result<()> {
    let status = Command::new("callgrind_control")
        .args(args)
        .arg(pid.to_string())
        .stdout(std::process::Stdio::null())
        .status()
        .context("running callgrind_control (apt-get install valgrind)")?;
    if !status.success() {
        bail!("callgrind_control {args:?} failed: {status}");
    }
    Ok(())
}

/// Polls `read` until it returns at least `want`, failing after `limit`.
async fn wait_for_frames(target: &Target, want: u64, limit: Duration) -> anyhow::Result<u64> {
    let started = Instant::now();
    loop {
        let now = engine_frames(target).await?;
        if now >= want {
            return Ok(now);
        }
        if started.elapsed() > limit {
            bail!("the engine took in {now} location frames of {want} within {limit:?}");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Index updates the engine has applied, from its metrics.
async fn index_updates(target: &Target) -> anyhow::Result<u64> {
    let text = crate::scrape::metrics(target).await?;
    Ok(crate::scrape::sample_sum(&text, "speedy_index_updates_total", "") as u64)
}

/// The `summary:` (total instructions) of a callgrind dump.
fn summary(dump: &Path) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(dump)?;
    text.lines()
        .find_map(|l| l.strip_prefix("summary:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no summary line in {}", dump.display()))
}

/// Runs `engine_binary` under callgrind and counts instructions per location frame.
pub async fn run(
    engine_binary: &Path,
    cfg: InstructionsConfig,
) -> anyhow::Result<InstructionsReport> {
    if cfg.connections == 0 || cfg.frames < cfg.connections {
        bail!("need at least one connection and one frame per connection");
    }
    std::fs::create_dir_all(&cfg.out_dir)?;
    let out_dir = std::fs::canonicalize(&cfg.out_dir)?;
    for entry in std::fs::read_dir(&out_dir)? {
        let path = entry?.path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("callgrind.out"))
        {
            std::fs::remove_file(path)?;
        }
    }
    let secret = format!("instructions-secret-{}", uuid::Uuid::now_v7());
    let mut settings = engine::Config {
        workers: 1,
        ..engine::Config::default()
    };
    settings.socket.location_per_s = 1_000;
    settings.socket.location_burst = 4_000;
    let mut valgrind = Command::new("valgrind");
    valgrind
        .arg("--tool=callgrind")
        .arg(format!(
            "--callgrind-out-file={}/callgrind.out",
            out_dir.display()
        ))
        .arg(engine_binary);
    let engine = ChildEngine::start_configured(valgrind, engine_binary, &settings, &secret)?;
    let target = engine.target.clone();
    let mut clients = online_associates(&engine, &secret, cfg.connections, 1).await?;
    // Every first position in, then a few moves each so lazily built state exists.
    let mut rng = StdRng::seed_from_u64(11);
    let mut points: Vec<Point> = (0..cfg.connections).map(grid_home).collect();
    let step = |p: &mut Point, rng: &mut StdRng| {
        p.lat += rng.random_range(-0.00005..0.00005);
        p.lng += rng.random_range(-0.00005..0.00005);
        wire::Location {
            point: *p,
            accuracy_m: Some(rng.random_range(3..30)),
        }
    };
    let warm = cfg.connections as u64;
    for _ in 0..3 {
        for (c, p) in clients.iter_mut().zip(points.iter_mut()) {
            c.send(step(p, &mut rng)).await?;
        }
    }
    let limit = Duration::from_secs(600);
    let before = wait_for_frames(&target, warm * 4, limit).await?;
    settle(&target).await?;
    callgrind_control(&["--zero"], engine.pid())?;

    let per_connection = cfg.frames / cfg.connections;
    let frames = (per_connection * cfg.connections) as u64;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / cfg.rate.max(1.0)));
    for _ in 0..per_connection {
        for (c, p) in clients.iter_mut().zip(points.iter_mut()) {
            tick.tick().await;
            c.send(step(p, &mut rng)).await?;
        }
    }
    wait_for_frames(&target, before + frames, limit).await?;
    settle(&target).await?;
    callgrind_control(&["--dump"], engine.pid())?;
    let dump = newest_dump(&out_dir)?;
    let instructions = summary(&dump)?;
    drop(clients);
    drop(engine);
    Ok(InstructionsReport {
        frames,
        instructions,
        instructions_per_frame: instructions as f64 / frames as f64,
        dump,
    })
}

/// Waits until the index has applied everything queued: its update count stops moving
/// across a full lane period (and then some, callgrind being slow).
async fn settle(target: &Target) -> anyhow::Result<()> {
    let mut last = index_updates(target).await?;
    loop {
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        let now = index_updates(target).await?;
        if now == last {
            return Ok(());
        }
        last = now;
    }
}

fn newest_dump(dir: &Path) -> anyhow::Result<PathBuf> {
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("callgrind.out") {
            continue;
        }
        let modified = entry.metadata()?.modified()?;
        if newest.as_ref().is_none_or(|(t, _)| modified > *t) {
            newest = Some((modified, entry.path()));
        }
    }
    newest
        .map(|(_, p)| p)
        .with_context(|| format!("no callgrind dump in {}", dir.display()))
}
