//! Node loss, repeated: a cluster of engine processes (this build's `engine` binary) on a
//! NATS server and a PostgreSQL database the caller runs. Each round kills one node with
//! SIGKILL while an associate waits, online, in one of its cells; a user on another node
//! asks for a task there at once. Two times are measured from the kill: until the
//! survivors hold every cell between them (the lease plus an ownership round), and until
//! the associate is offered the new request (the request durable at once, resumed by the
//! cell's new owner). The node then restarts (on the same address) and the cluster
//! settles before the next round. With a flow, the simulator runs across the nodes the
//! whole time, its apps reconnecting to the survivors, and [`audit`] checks afterwards
//! that nothing the engine promises was broken.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use wire::client::{Client, http_api};
use wire::model::{Availability, Point};
use wire::{ClientMessage, ServerMessage};

use crate::target::Target;

/// How long any one wait may take before the round fails.
const PATIENCE: Duration = Duration::from_secs(30);

/// What to run.
#[derive(Debug, Clone)]
pub struct FailoverConfig {
    /// The engine binary.
    pub engine: PathBuf,
    /// The cluster config every node reads (database, secrets, `[cluster]`).
    pub config: PathBuf,
    /// Nodes.
    pub nodes: usize,
    /// Rounds (one kill each).
    pub kills: usize,
    /// A simulator flow to run across the nodes during the rounds (its apps reconnect).
    pub flow: Option<crate::flow::FlowConfig>,
}

/// What [`audit`] found across a cluster's records: all of it held, or it says what not.
#[derive(Debug, Clone, Copy, Default)]
pub struct Audit {
    /// Orders in the engine.
    pub orders: usize,
    /// The most orders one associate had (one after another).
    pub busiest_associate: usize,
    /// Card captures across every node's sandbox ledger.
    pub captures: usize,
}

/// One round's times from the kill.
#[derive(Debug, Clone, Copy)]
pub struct Round {
    /// Until the survivors held every cell.
    pub cells_owned: Duration,
    /// Until the waiting associate was offered the request made right after the kill.
    pub first_offer: Duration,
}

/// One engine process.
struct Node {
    id: String,
    listen: String,
    dir: PathBuf,
    child: Option<Child>,
    addr: Option<SocketAddr>,
    last_addr: Option<SocketAddr>,
}

impl Node {
    fn start(&mut self, engine: &Path, config: &Path) -> anyhow::Result<()> {
        // A restarted node comes back on the address it had, for apps that reconnect.
        if let Some(addr) = self.addr.or(self.last_addr) {
            self.listen = addr.to_string();
        }
        let mut child = Command::new(engine)
            .arg("--config")
            .arg(config)
            .args([
                "--listen",
                &self.listen,
                "--node-id",
                &self.id,
                "--workers",
                "1",
            ])
            .arg("--data-dir")
            .arg(&self.dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", engine.display()))?;
        let mut lines = BufReader::new(child.stderr.take().context("stderr")?).lines();
        let addr = loop {
            let line = lines
                .next()
                .context("the engine exited before listening")??;
            if let Some(rest) = line.strip_prefix("speedy engine on http://") {
                break rest.split_whitespace().next().context("address")?.parse()?;
            }
        };
        std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
        self.child = Some(child);
        self.addr = Some(addr);
        self.last_addr = Some(addr);
        Ok(())
    }

    /// SIGTERM, then waits for a clean exit (the node hands its cells over first).
    async fn terminate(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        self.addr = None;
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .context("running kill")?;
        if !sent.success() {
            bail!("kill -TERM {} failed", child.id());
        }
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    bail!("{} exited with {status} after SIGTERM", self.id);
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("{} did not exit within {PATIENCE:?} of SIGTERM", self.id);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.addr = None;
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Cells `addr` says it holds.
async fn held(addr: SocketAddr) -> Option<usize> {
    let r = http_api::request(addr, "GET", "/metrics", &[], None)
        .await
        .ok()?;
    r.text
        .lines()
        .find_map(|l| l.strip_prefix("speedy_cluster_cells "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as usize)
}

/// A cluster of engine processes on this machine, on 127.0.0.1, .2, … (port 0), sharing
/// the NATS server and database their config names.
pub struct LocalCluster {
    engine: PathBuf,
    config: PathBuf,
    /// The database every node shares (its gateway ledger included).
    database: Option<String>,
    nodes: Vec<Node>,
    cells: Vec<u64>,
    centre: geo::LatLng,
    _dirs: tempfile::TempDir,
}

impl LocalCluster {
    /// The database the nodes share, if the config names one.
    pub fn database(&self) -> Option<&str> {
        self.database.as_deref()
    }

    /// Starts `nodes` nodes of `engine` reading `config` and waits until they share the
    /// market's cells.
    pub async fn start(engine: &Path, config: &Path, nodes: usize) -> anyhow::Result<Self> {
        let settings = engine::Config::from_file(config)?;
        let cluster_settings = settings
            .cluster
            .clone()
            .context("the config has no [cluster] section")?;
        let cells = cluster_settings
            .market_cells(settings.dispatch.shard_resolution)
            .map_err(|m| anyhow::anyhow!(m))?;
        let dirs = tempfile::tempdir()?;
        let mut cluster = Self {
            engine: engine.to_owned(),
            config: config.to_owned(),
            database: settings.database.clone(),
            nodes: (0..nodes)
                .map(|i| Node {
                    id: format!("node-{i}"),
                    listen: format!("127.0.0.{}:0", i + 1),
                    dir: dirs.path().join(format!("node-{i}")),
                    child: None,
                    addr: None,
                    last_addr: None,
                })
                .collect(),
            cells,
            centre: geo::LatLng::new(cluster_settings.market.lat, cluster_settings.market.lng)?,
            _dirs: dirs,
        };
        for i in 0..nodes {
            cluster.restart(i)?;
        }
        cluster.settled().await?;
        Ok(cluster)
    }

    /// Each node's data directory (its sandbox gateway ledger is there).
    pub fn data_dirs(&self) -> Vec<PathBuf> {
        self.nodes.iter().map(|n| n.dir.clone()).collect()
    }

    /// The HTTP addresses of the running nodes.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().filter_map(|n| n.addr).collect()
    }

    /// SIGKILLs node `i`.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// Stops node `i` with SIGTERM and waits for its clean exit.
    pub async fn terminate(&mut self, i: usize) -> anyhow::Result<()> {
        self.nodes[i].terminate().await
    }

    /// Starts node `i` (again, on the same data directory and id).
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        let (engine, config) = (self.engine.clone(), self.config.clone());
        self.nodes[i].start(&engine, &config)
    }

    fn live_ids(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.addr.is_some())
            .map(|n| n.id.clone())
            .collect()
    }

    /// Waits until every live node holds its rendezvous share.
    pub async fn settled(&self) -> anyhow::Result<()> {
        let live = self.live_ids();
        let deadline = Instant::now() + PATIENCE;
        loop {
            let mut all = true;
            for node in self.nodes.iter().filter(|n| n.addr.is_some()) {
                let want = self
                    .cells
                    .iter()
                    .filter(|&&c| cluster::rendezvous::owner(c, &live) == Some(node.id.as_str()))
                    .count();
                all &= held(node.addr.unwrap_or(([0, 0, 0, 0], 0).into())).await == Some(want);
            }
            if all {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the cluster did not settle within {PATIENCE:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The centre of `node`'s cell nearest the market's centre.
    fn point_of(&self, node: usize) -> anyhow::Result<Point> {
        let live = self.live_ids();
        let id = self.nodes[node].id.as_str();
        let cell = self
            .cells
            .iter()
            .filter(|&&c| cluster::rendezvous::owner(c, &live) == Some(id))
            .filter_map(|&c| geo::ShardId::from_u64(c))
            // The farthest from the centre: away from a flow's apps (which live within
            // ~18 km of it), so the round's request reaches the round's associate.
            .max_by(|a, b| {
                a.centre()
                    .distance_m(&self.centre)
                    .total_cmp(&b.centre().distance_m(&self.centre))
            })
            .context("the node owns no cell")?;
        let c = cell.centre();
        Ok(Point {
            lat: c.lat(),
            lng: c.lng(),
        })
    }
}

/// Receives frames until `pick` accepts one.
async fn wait_for<T>(
    c: &mut Client,
    what: &str,
    pick: impl FnMut(ServerMessage) -> Option<T>,
) -> anyhow::Result<T> {
    c.recv_until(PATIENCE, pick)
        .await
        .map_err(|e| anyhow::anyhow!("waiting for {what}: {e}"))
}

/// Checks what the engine holds after node losses, through `target` (admin), and the
/// sandbox ledgers (the one the nodes share in `database`, and any in `data_dirs`): one
/// order per request; each associate's orders one after another (the next allotted only
/// once the last was over); at most one successful payment per order; no payment key
/// captured twice at any node's gateway.
pub async fn audit(
    target: &Target,
    data_dirs: &[PathBuf],
    database: Option<&str>,
) -> anyhow::Result<Audit> {
    use std::collections::{BTreeMap, HashMap};
    let mut orders = Vec::new();
    let mut after = String::new();
    loop {
        let r = target
            .admin("GET", &format!("/v1/orders?limit=500{after}"), None)
            .await?;
        if r.status != 200 {
            bail!("listing orders: {} {}", r.status, r.text);
        }
        for o in r.body["items"].as_array().context("items")? {
            let id = o["order_id"].as_str().context("order id")?;
            orders.push(
                target
                    .admin("GET", &format!("/v1/orders/{id}"), None)
                    .await?
                    .body,
            );
        }
        match r.body["next"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => break,
        }
    }
    let mut by_request: HashMap<String, usize> = HashMap::new();
    let mut by_associate: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for o in &orders {
        let order = &o["order"];
        *by_request
            .entry(order["request_id"].as_str().unwrap_or_default().to_owned())
            .or_default() += 1;
        let over = o["events"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["state"] == "closed" || e["state"] == "cancelled")
            .and_then(|e| e["at_ms"].as_u64())
            .unwrap_or(u64::MAX);
        by_associate
            .entry(
                order["associate_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
            .or_default()
            .push((order["allotted_at_ms"].as_u64().unwrap_or_default(), over));
        let paid = o["payments"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["status"] == "succeeded")
            .count();
        if paid > 1 {
            bail!("order {} has {paid} successful payments", order["order_id"]);
        }
    }
    if let Some((request, n)) = by_request.iter().find(|(_, n)| **n > 1) {
        bail!("request {request} became {n} orders");
    }
    for (associate, spans) in &mut by_associate {
        spans.sort();
        if let Some(pair) = spans.windows(2).find(|p| p[1].0 < p[0].1) {
            bail!("associate {associate} held two orders at once: {pair:?}");
        }
    }
    let mut captured: HashMap<String, usize> = HashMap::new();
    for key in shared_captures(database).await? {
        *captured.entry(key).or_default() += 1;
    }
    for dir in data_dirs {
        let ledger = actors::orders::gateway::SandboxGateway::ledger_path(dir);
        for line in actors::orders::gateway::read_ledger(&ledger)? {
            if let actors::orders::gateway::LedgerLine::Captured { key, .. } = line {
                *captured.entry(key).or_default() += 1;
            }
        }
    }
    if let Some((key, n)) = captured.iter().find(|(_, n)| **n > 1) {
        bail!("payment key {key} was captured {n} times");
    }
    Ok(Audit {
        orders: orders.len(),
        busiest_associate: by_associate.values().map(Vec::len).max().unwrap_or(0),
        captures: captured.len(),
    })
}

/// The keys captured in the gateway ledger the nodes share in `database`, one per
/// capture (none without a database).
async fn shared_captures(database: Option<&str>) -> anyhow::Result<Vec<String>> {
    let Some(url) = database else {
        return Ok(Vec::new());
    };
    let config = storage::pg::PgConfig::new(url);
    let lines = tokio::task::spawn_blocking(move || {
        let store = storage::Store::postgres(&config)?;
        store.ledger()
    })
    .await?
    .context("reading the shared gateway ledger")?;
    Ok(lines
        .into_iter()
        .filter(|(_, o)| matches!(o, storage::LedgerOutcome::Captured { .. }))
        .map(|(key, _)| key)
        .collect())
}

/// Runs the rounds; the times of each, and with a flow, its result and the audit.
pub async fn run(
    cfg: FailoverConfig,
    admin_key: String,
) -> anyhow::Result<(Vec<Round>, Option<(crate::flow::FlowResult, Audit)>)> {
    let mut cluster = LocalCluster::start(&cfg.engine, &cfg.config, cfg.nodes).await?;
    let addrs = cluster.addrs();
    let flow = cfg.flow.clone().map(|mut flow| {
        flow.reconnect = true;
        let target = Target {
            http: addrs[0],
            admin_key: admin_key.clone(),
            more_nodes: addrs[1..].to_vec(),
        };
        let stats = std::sync::Arc::new(crate::stats::Stats::default());
        let (associates, spread) = (flow.associates, flow.duration);
        let run = tokio::spawn(crate::flow::run(target, flow, stats.clone(), |_, _, _| {}));
        (run, stats, associates, spread)
    });
    // With a flow: its parties made and its associates connected first, then the kills
    // spread over its arrivals.
    let started = Instant::now();
    if let Some((run, stats, associates, _)) = &flow {
        while stats.connections.load(std::sync::atomic::Ordering::Relaxed) < *associates as u64 {
            if run.is_finished() || started.elapsed() > PATIENCE * 4 {
                bail!("the flow did not get its associates connected");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let started = Instant::now();
    let mut rounds = Vec::new();
    for round in 0..cfg.kills {
        if let Some((_, _, _, spread)) = &flow {
            let due = started + spread.mul_f64(round as f64 / cfg.kills as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let victim = round % cfg.nodes;
        let at = cluster.point_of(victim)?;
        let survivors: Vec<SocketAddr> = cluster
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != victim)
            .filter_map(|(_, n)| n.addr)
            .collect();
        let (a_node, u_node) = (survivors[0], survivors[survivors.len() - 1]);
        let admin = Target::one(a_node, admin_key.clone());
        let (_, a_token) = admin.associate(round, &["companion".to_owned()]).await?;
        let (_, u_token) = admin.user(round).await?;
        let mut a = Client::connect(&format!("ws://{a_node}/v1/ws"), &a_token).await?;
        a.send(wire::Location {
            point: at,
            accuracy_m: None,
        })
        .await?;
        a.send(wire::GoOnline { skills: vec![] }).await?;
        wait_for(&mut a, "available", |m| match m {
            ServerMessage::Status(s) if s.availability == Availability::Available => Some(()),
            _ => None,
        })
        .await?;
        let mut u = Client::connect(&format!("ws://{u_node}/v1/ws"), &u_token).await?;

        let killed = Instant::now();
        cluster.kill(victim);
        let request = ClientMessage::from(wire::TaskRequest {
            client_ref: format!("failover-{round}"),
            task: "companion".into(),
            pickup: at,
            note: None,
            discount_code: None,
        });
        u.send(request).await?;
        let request_id = wait_for(&mut u, "request received", |m| match m {
            ServerMessage::RequestReceived(r) => Some(Ok(r.request_id)),
            ServerMessage::Error(e) => Some(Err(e)),
            _ => None,
        })
        .await?
        .map_err(|e| anyhow::anyhow!("the request was refused: {e:?}"))?;
        let (offered, owned) = tokio::join!(
            async {
                let got = wait_for(&mut a, "offer", |m| match m {
                    ServerMessage::Offer(o) if o.request_id == request_id => Some(()),
                    _ => None,
                })
                .await;
                got.map(|()| killed.elapsed())
            },
            async {
                cluster.settled().await?;
                anyhow::Ok(killed.elapsed())
            }
        );
        let r = Round {
            cells_owned: owned?,
            first_offer: offered?,
        };
        eprintln!(
            "kill {}: node {} — cells owned elsewhere after {:.2} s, first offer after {:.2} s",
            round + 1,
            cluster.nodes[victim].id,
            r.cells_owned.as_secs_f64(),
            r.first_offer.as_secs_f64()
        );
        rounds.push(r);
        a.send(wire::Decline { request_id }).await?;
        u.send(wire::CancelRequest { request_id }).await?;
        a.send(wire::GoOffline {}).await?;
        cluster.restart(victim)?;
        cluster.settled().await?;
    }
    let Some((flow, ..)) = flow else {
        return Ok((rounds, None));
    };
    let result = flow.await??;
    let target = Target {
        http: addrs[0],
        admin_key,
        more_nodes: addrs[1..].to_vec(),
    };
    let audit = audit(&target, &cluster.data_dirs(), cluster.database()).await?;
    Ok((rounds, Some((result, audit))))
}

/// The `q` quantile of `times` (nearest rank).
pub fn quantile(times: &[Duration], q: f64) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied().unwrap_or_default()
}
