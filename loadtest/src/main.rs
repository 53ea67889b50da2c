//! `loadtest`: drive a Speedy Cheers engine with simulated apps and report.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use loadtest::flow::{self, EncodingChoice, FlowConfig};
use loadtest::report::FlowReport;
use loadtest::stats::Stats;
use loadtest::target::{ChildEngine, InProcess, Target, sibling_engine};

/// Drive a Speedy Cheers engine with simulated apps.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The full flow: associates, users, orders, payments, feedback; a report at the end.
    Flow {
        /// Engine HTTP address (host:port), or several nodes of a cluster separated by
        /// commas (apps spread over them in turn, admin calls to the first); omitted:
        /// start an engine in this process with windows divided by the compression factor.
        #[arg(long, value_delimiter = ',')]
        url: Vec<SocketAddr>,
        /// The engine's admin key (with --url).
        #[arg(long, env = "SPEEDY_ADMIN_KEY", hide_env_values = true)]
        admin_key: Option<String>,
        /// Simulated associates.
        #[arg(long, default_value_t = 200)]
        associates: usize,
        /// Simulated users.
        #[arg(long, default_value_t = 100)]
        users: usize,
        /// Seconds during which users arrive.
        #[arg(long, default_value_t = 60)]
        duration_s: u64,
        /// Seconds to let open orders finish afterwards.
        #[arg(long, default_value_t = 60)]
        drain_s: u64,
        /// Simulated seconds per real second.
        #[arg(long, default_value_t = 60.0)]
        compression: f64,
        /// Probability an associate accepts an offer.
        #[arg(long, default_value_t = 0.6)]
        accept_p: f64,
        /// Simulated seconds between location reports.
        #[arg(long, default_value_t = 10.0)]
        location_every_s: f64,
        /// Spread connections over this many source addresses (127.0.0.2 and up).
        #[arg(long, default_value_t = 16)]
        source_ips: usize,
        /// Use binary frames.
        #[arg(long)]
        binary: bool,
        /// Actor threads of the in-process engine.
        #[arg(long, default_value_t = 1)]
        engine_workers: usize,
        /// Where to write report.json and report.svg.
        #[arg(long, default_value = "loadtest-report")]
        report_dir: PathBuf,
        /// No progress bar (CI).
        #[arg(long)]
        quiet: bool,
        /// Random seed.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Apps whose connection drops reconnect (to the next `--url` node) and resync,
        /// instead of counting a protocol error: for runs that kill a node.
        #[arg(long)]
        reconnect: bool,
    },
    /// Node loss, repeated: starts a cluster of engine processes on the NATS server and
    /// PostgreSQL database `--config` names, kills one node per round with SIGKILL, and
    /// reports how long until its cells were owned elsewhere and until a request made in
    /// one of them right after the kill reached an associate (p50, p99).
    Failover {
        /// The cluster config every node reads: database, secrets, `[cluster]`.
        #[arg(long)]
        config: PathBuf,
        /// The engine binary [default: the one next to this binary].
        #[arg(long)]
        engine: Option<PathBuf>,
        /// Nodes.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Rounds, one kill each.
        #[arg(long, default_value_t = 10)]
        kills: usize,
        /// The admin key in the config.
        #[arg(long, env = "SPEEDY_ADMIN_KEY", hide_env_values = true)]
        admin_key: String,
        /// Simulated associates of a flow running across the nodes through every kill
        /// (its apps reconnect; checked afterwards); 0 for none.
        #[arg(long, default_value_t = 0)]
        flow_associates: usize,
        /// Simulated users of that flow.
        #[arg(long, default_value_t = 100)]
        flow_users: usize,
        /// Real seconds users arrive during; the engine's windows must be compressed by
        /// `--compression` (`loadtest engine-config`).
        #[arg(long, default_value_t = 120)]
        flow_seconds: u64,
        /// Simulated seconds per real second, as the engine's config.
        #[arg(long, default_value_t = 60.0)]
        compression: f64,
    },
    /// Location ingest: CPU per frame of the engine against a bare WebSocket server, each
    /// its own process pinned to `--server-cores`, fed by this process (run it pinned to
    /// another core: `taskset -c 1 loadtest ingest ...`).
    Ingest {
        /// Connections (each an online associate on the engine).
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        /// Frames per second per connection; 0 floods.
        #[arg(long, default_value_t = 4.0)]
        paced: f64,
        /// Seconds measured per side.
        #[arg(long, default_value_t = 20.0)]
        seconds: f64,
        /// Seconds of load before measuring.
        #[arg(long, default_value_t = 5.0)]
        warm_up: f64,
        /// The cores both servers are pinned to, a taskset list such as `0` or `0,1`.
        #[arg(long, default_value = "0")]
        server_cores: Option<String>,
        /// Worker threads of each server (the engine's `--workers`).
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// The engine binary (default: next to this one).
        #[arg(long)]
        engine: Option<PathBuf>,
        /// Spread connections over this many source addresses.
        #[arg(long, default_value_t = 16)]
        source_ips: usize,
    },
    /// End-to-end dispatch latency: request frame sent → offer frame received, over
    /// real sockets, with the engine binary its own process (pinned to `--engine-cores`)
    /// and associates streaming positions; each request is cancelled once offered.
    Dispatch {
        /// Online associates, each streaming positions.
        #[arg(long, default_value_t = 10_000)]
        associates: usize,
        /// Location frames per second per associate.
        #[arg(long, default_value_t = 1.0)]
        location_rate: f64,
        /// Users taking turns to ask.
        #[arg(long, default_value_t = 200)]
        users: usize,
        /// Requests per second over all users.
        #[arg(long, default_value_t = 50.0)]
        request_rate: f64,
        /// Seconds of load before measuring.
        #[arg(long, default_value_t = 5.0)]
        warm_up: f64,
        /// Seconds measured.
        #[arg(long, default_value_t = 30.0)]
        seconds: f64,
        /// Engine actor threads.
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// The cores the engine is pinned to, a taskset list such as `0` or `0,1`.
        #[arg(long, default_value = "0")]
        engine_cores: Option<String>,
        /// The engine binary (default: next to this one).
        #[arg(long)]
        engine: Option<PathBuf>,
        /// Spread connections over this many source addresses.
        #[arg(long, default_value_t = 16)]
        source_ips: usize,
    },
    /// Instructions per location frame: the engine binary under callgrind (valgrind),
    /// counted from socket read to index, a figure machine noise does not move.
    Instructions {
        /// Connections, each an online associate.
        #[arg(long, default_value_t = 100)]
        connections: usize,
        /// Location frames counted.
        #[arg(long, default_value_t = 5_000)]
        frames: usize,
        /// Frames per second over all connections.
        #[arg(long, default_value_t = 200.0)]
        rate: f64,
        /// The engine binary (default: next to this one).
        #[arg(long)]
        engine: Option<PathBuf>,
        /// Where callgrind's dumps go (read them with callgrind_annotate).
        #[arg(long, default_value = "loadtest-report/callgrind")]
        out_dir: PathBuf,
    },
    /// The bare WebSocket server `ingest` measures against (prints its address, then
    /// its frame count every 100 ms).
    BareServer {
        /// Runtime worker threads.
        #[arg(long, default_value_t = 1)]
        workers: usize,
    },
    /// Print engine settings (TOML) with every window divided by the compression factor,
    /// for running the engine as its own process: `engine --config <file>`.
    EngineConfig {
        /// Simulated seconds per real second.
        #[arg(long, default_value_t = 60.0)]
        compression: f64,
    },
    /// A long run of churn against the engine binary: distinct associates connecting,
    /// going online and away; requests from random points worldwide; orders abandoned
    /// mid-way. Memory at the end must be within 10 % of memory after the warm-up, and
    /// the actor and supervisor counts back at their baseline.
    Soak {
        /// Connect, go-online, disconnect cycles (each a new associate).
        #[arg(long, default_value_t = 1_000_000)]
        cycles: u64,
        /// Cycles at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Cycles before the warm-up reading.
        #[arg(long, default_value_t = 100_000)]
        warm_up: u64,
        /// Users asking at random points worldwide, at once.
        #[arg(long, default_value_t = 50)]
        wanderers: usize,
        /// Milliseconds between abandoned orders.
        #[arg(long, default_value_t = 500)]
        abandon_every_ms: u64,
        /// The engine binary (default: next to this one).
        #[arg(long)]
        engine: Option<PathBuf>,
        /// Spread connections over this many source addresses.
        #[arg(long, default_value_t = 16)]
        source_ips: usize,
        /// Cycle through this many associates made up front instead of a new one per
        /// cycle (0): shows what the data's growth costs apart from the engine.
        #[arg(long, default_value_t = 0)]
        pool: usize,
        /// Where to write soak.json.
        #[arg(long, default_value = "loadtest-report")]
        report_dir: PathBuf,
        /// No progress lines.
        #[arg(long)]
        quiet: bool,
    },
    /// Resident memory per idle associate, with the engine binary as a child process.
    Idle {
        /// Connections.
        #[arg(long, default_value_t = 19_000)]
        connections: usize,
        /// The engine binary (default: next to this one).
        #[arg(long)]
        engine: Option<PathBuf>,
        /// Spread connections over this many source addresses.
        #[arg(long, default_value_t = 16)]
        source_ips: usize,
        /// A config file for the engine.
        #[arg(long)]
        engine_config: Option<PathBuf>,
    },
}

fn progress_bar(quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // The bare server gets the runtime shape the engine serves sockets on with one worker:
    // one thread (it shares its pinned core with nothing else).
    if let Command::BareServer { workers } = cli.command {
        builder.worker_threads(workers.max(1));
    }
    let runtime = builder.enable_all().build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Flow {
                url,
                admin_key,
                associates,
                users,
                duration_s,
                drain_s,
                compression,
                accept_p,
                location_every_s,
                source_ips,
                binary,
                engine_workers,
                report_dir,
                quiet,
                seed,
                reconnect,
            } => {
                let mut engine = None;
                let target = match url.split_first() {
                    Some((&http, more)) => Target {
                        http,
                        admin_key: admin_key.context("--admin-key is needed with --url")?,
                        more_nodes: more.to_vec(),
                    },
                    None => {
                        let mut config = flow::engine_config(compression);
                        config.workers = engine_workers;
                        let e = InProcess::start(config)?;
                        let t = e.target.clone();
                        engine = Some(e);
                        t
                    }
                };
                let cfg = FlowConfig {
                    associates,
                    users,
                    duration: Duration::from_secs(duration_s),
                    drain: Duration::from_secs(drain_s),
                    compression,
                    accept_p,
                    location_every_s,
                    source_ips,
                    encoding: if binary { EncodingChoice::Binary } else { EncodingChoice::Json },
                    seed,
                    reconnect,
                    ..FlowConfig::default()
                };
                let stats = Arc::new(Stats::default());
                let bar = progress_bar(quiet);
                let shown = bar.clone();
                let result = flow::run(target, cfg, stats.clone(), move |s, open_requests, open_orders| {
                    let secs = s.started.elapsed().as_secs_f64().max(0.001);
                    shown.set_message(format!(
                        "conns {} | frames in {:.0}/s | requests {} ({:.1}/s) | offers {} | allotted {} | open requests {} | open orders {} | closed {} | errors {}",
                        s.open_connections(),
                        s.frames_received() as f64 / secs,
                        s.outcomes.get("requests"),
                        s.outcomes.get("requests") as f64 / secs,
                        s.received.get("offer"),
                        s.outcomes.get("allotted"),
                        open_requests,
                        open_orders,
                        s.outcomes.get("closed"),
                        s.protocol_errors.snapshot().values().sum::<u64>(),
                    ));
                    shown.tick();
                })
                .await?;
                bar.finish_and_clear();
                let report = FlowReport::new(&stats, result);
                report.write(&report_dir, &stats)?;
                println!("{}", report.summary());
                println!("report: {}/report.json, {}/report.svg", report_dir.display(), report_dir.display());
                if let Some(e) = engine {
                    e.stop()?;
                }
                if !report.result.clean() {
                    bail!(
                        "the run was not clean: unfinished {:?}, lost {:?}, protocol errors {:?}",
                        report.result.unfinished,
                        report.result.lost,
                        report.result.protocol_errors
                    );
                }
                Ok(())
            }
            Command::Failover { config, engine, nodes, kills, admin_key, flow_associates, flow_users, flow_seconds, compression } => {
                let engine = engine.unwrap_or_else(loadtest::target::sibling_engine);
                let flow = (flow_associates > 0).then(|| FlowConfig {
                    associates: flow_associates,
                    users: flow_users,
                    duration: Duration::from_secs(flow_seconds),
                    // At 60× an order takes up to ~80 s: long enough for the last ones.
                    drain: Duration::from_secs(180),
                    compression,
                    ..FlowConfig::default()
                });
                let cfg = loadtest::failover::FailoverConfig { engine, config, nodes: nodes.max(2), kills, flow };
                let (rounds, flow) = loadtest::failover::run(cfg, admin_key).await?;
                if let Some((result, audit)) = flow {
                    println!(
                        "flow through the kills: {} orders seen, unfinished {}, lost {}, protocol errors {:?}; audit {audit:?}",
                        result.orders_seen,
                        result.unfinished.len(),
                        result.lost.len(),
                        result.protocol_errors
                    );
                    anyhow::ensure!(result.clean(), "the flow through the kills was not clean: {result:#?}");
                }
                let owned: Vec<Duration> = rounds.iter().map(|r| r.cells_owned).collect();
                let offered: Vec<Duration> = rounds.iter().map(|r| r.first_offer).collect();
                use loadtest::failover::quantile;
                println!(
                    "{} kills of {} nodes: cells owned elsewhere p50 {:.2} s, p99 {:.2} s, max {:.2} s; first offer in a lost cell p50 {:.2} s, p99 {:.2} s, max {:.2} s",
                    rounds.len(),
                    nodes.max(2),
                    quantile(&owned, 0.5).as_secs_f64(),
                    quantile(&owned, 0.99).as_secs_f64(),
                    quantile(&owned, 1.0).as_secs_f64(),
                    quantile(&offered, 0.5).as_secs_f64(),
                    quantile(&offered, 0.99).as_secs_f64(),
                    quantile(&offered, 1.0).as_secs_f64(),
                );
                Ok(())
            }
            Command::Ingest { connections, paced, seconds, warm_up, server_cores, workers, engine, source_ips } => {
                let binary = engine.unwrap_or_else(sibling_engine);
                let cfg = loadtest::paced::PacedConfig {
                    connections,
                    rate: paced,
                    seconds,
                    warm_up,
                    server_cores,
                    workers,
                    source_ips,
                };
                let report = loadtest::paced::run(&binary, &std::env::current_exe()?, cfg).await?;
                println!("{}", serde_json::to_string_pretty(&report)?);
                Ok(())
            }
            Command::Dispatch { associates, location_rate, users, request_rate, warm_up, seconds, workers, engine_cores, engine, source_ips } => {
                let binary = engine.unwrap_or_else(sibling_engine);
                let cfg = loadtest::latency::LatencyConfig {
                    associates, location_rate, users, request_rate, warm_up, seconds, workers, engine_cores, source_ips,
                };
                let report = loadtest::latency::run(&binary, cfg).await?;
                println!("{}", serde_json::to_string_pretty(&report)?);
                Ok(())
            }
            Command::Instructions { connections, frames, rate, engine, out_dir } => {
                let binary = engine.unwrap_or_else(sibling_engine);
                let cfg = loadtest::instructions::InstructionsConfig { connections, frames, rate, out_dir };
                let report = loadtest::instructions::run(&binary, cfg).await?;
                println!("{}", serde_json::to_string_pretty(&report)?);
                Ok(())
            }
            Command::BareServer { .. } => loadtest::paced::serve_bare().await,
            Command::EngineConfig { compression } => {
                let mut config = flow::engine_config(compression);
                // Each run makes its own data directory and keys.
                config.data_dir = PathBuf::from("./data-loadtest");
                println!("{}", toml_text(&config)?);
                Ok(())
            }
            Command::Soak { cycles, concurrency, warm_up, wanderers, abandon_every_ms, engine, source_ips, pool, report_dir, quiet } => {
                let binary = engine.unwrap_or_else(sibling_engine);
                let cfg = loadtest::soak::SoakConfig {
                    cycles,
                    concurrency,
                    warm_up: warm_up.min(cycles),
                    wanderers,
                    abandon_pause: Duration::from_millis(abandon_every_ms),
                    source_ips,
                    pool,
                    ..loadtest::soak::SoakConfig::default()
                };
                let report = loadtest::soak::run(&binary, cfg, |line| {
                    if !quiet {
                        eprintln!("{line}");
                    }
                })
                .await?;
                std::fs::create_dir_all(&report_dir)?;
                let json = serde_json::to_string_pretty(&report)?;
                std::fs::write(report_dir.join("soak.json"), &json)?;
                println!("{json}");
                if !report.passed {
                    bail!("the soak did not pass: memory or counts did not come back (see above)");
                }
                Ok(())
            }
            Command::Idle { connections, engine, source_ips, engine_config } => {
                let binary = engine.unwrap_or_else(sibling_engine);
                let mut args = vec!["--workers".to_owned(), "1".to_owned()];
                if let Some(file) = engine_config {
                    args.push("--config".into());
                    args.push(file.display().to_string());
                }
                let child = ChildEngine::start(&binary, &args)?;
                let report = loadtest::idle::measure(&child, connections, source_ips).await?;
                println!("{}", serde_json::to_string_pretty(&report)?);
                Ok(())
            }
        }
    })
}

fn toml_text(config: &engine::Config) -> anyhow::Result<String> {
    Ok(toml::to_string_pretty(config)?)
}
