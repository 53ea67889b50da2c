//! Cluster mode: three engine processes on 127.0.0.1, .2 and .3 sharing a private
//! nats-server (JetStream) and a private PostgreSQL database. An order whose parties and
//! pickup cell sit on three different nodes runs end to end; a node killed with SIGKILL
//! loses nothing; a node paused past its lease is fenced and rejoins.

use std::time::{Duration, Instant};

use wire::client::{Client, http_api};
use wire::model::{Availability, OrderSnapshot, PaymentMethod, PaymentStatus, Point};
use wire::{ErrorCode, OrderId, ServerMessage};

use crate::harness::{Parties, WAIT, expect};
use crate::process::{ADMIN, Engine};
use crate::steps::{payment_result, work};

/// The market the test cluster shares: every res-6 cell within 8 km of Bengaluru.
const MARKET: (f64, f64, f64) = (12.9716, 77.5946, 8.0);
/// The lease, as configured by default.
const LEASE: Duration = Duration::from_secs(3);

/// A cluster of engine processes.
struct Cluster {
    _nats: cluster::testing::NatsServer,
    database: String,
    _dirs: Vec<tempfile::TempDir>,
    nodes: Vec<Option<Engine>>,
    ids: Vec<String>,
    cells: Vec<u64>,
}

impl Cluster {
    /// Starts `n` nodes and waits until they share the market's cells.
    async fn start(n: usize) -> Self {
        let nats = cluster::testing::NatsServer::start();
        let database = storage::pg::testing::fresh_database();
        let settings = engine::ClusterSettings {
            market: engine::MarketSettings {
                lat: MARKET.0,
                lng: MARKET.1,
                radius_km: MARKET.2,
            },
            ..Default::default()
        };
        let cells = settings.market_cells(6).unwrap();
        let mut dirs = Vec::new();
        let mut nodes = Vec::new();
        let mut ids = Vec::new();
        for i in 0..n {
            let dir = tempfile::tempdir().unwrap();
            let id = format!("node-{i}");
            std::fs::write(
                dir.path().join("speedy.toml"),
                format!(
                    "database = {database:?}\nfeedback_api_key = \"cluster-feedback-key-0123456789\"\n\
                     [payments]\nsandbox_latency_ms = 1\n\
                     [cluster]\nnats = {:?}\nnode_id = {id:?}\n\
                     [cluster.market]\nlat = {}\nlng = {}\nradius_km = {}\n",
                    nats.url, MARKET.0, MARKET.1, MARKET.2
                ),
            )
            .unwrap();
            let listen = format!("127.0.0.{}:0", i + 1);
            nodes.push(Some(Engine::start_on(
                dir.path(),
                &listen,
                &["--admin-key", ADMIN],
            )));
            dirs.push(dir);
            ids.push(id);
        }
        let cluster = Self {
            _nats: nats,
            database,
            _dirs: dirs,
            nodes,
            ids,
            cells,
        };
        cluster.settled(&cluster.live()).await;
        cluster
    }

    fn node(&self, i: usize) -> &Engine {
        self.nodes[i].as_ref().expect("a running node")
    }

    /// The ids of the nodes not killed.
    fn live(&self) -> Vec<String> {
        self.ids
            .iter()
            .zip(&self.nodes)
            .filter(|(_, n)| n.is_some())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The node rendezvous hashing gives `cell` among `live`.
    fn owner_of(&self, cell: u64, live: &[String]) -> usize {
        let owner = cluster::rendezvous::owner(cell, live).unwrap();
        self.ids.iter().position(|id| id == owner).unwrap()
    }

    /// Cells each node should hold among `live`.
    fn shares(&self, live: &[String]) -> Vec<usize> {
        let mut shares = vec![0; self.ids.len()];
        for &cell in &self.cells {
            shares[self.owner_of(cell, live)] += 1;
        }
        shares
    }

    /// Cells `node` says it holds.
    async fn held_by(&self, node: usize) -> Option<usize> {
        let r = http_api::request(self.node(node).addr, "GET", "/metrics", &[], None)
            .await
            .ok()?;
        r.text
            .lines()
            .find_map(|l| l.strip_prefix("speedy_cluster_cells "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as usize)
    }

    /// Waits until each node in `live` holds exactly its rendezvous share of the cells;
    /// how long that took.
    async fn settled(&self, live: &[String]) -> Duration {
        let started = Instant::now();
        let want = self.shares(live);
        let deadline = started + WAIT * 2;
        loop {
            let mut held = Vec::new();
            for id in live {
                let i = self.ids.iter().position(|x| x == id).unwrap();
                held.push((i, self.held_by(i).await));
            }
            if held.iter().all(|(i, h)| *h == Some(want[*i])) {
                return started.elapsed();
            }
            if Instant::now() >= deadline {
                for (i, n) in self.nodes.iter().enumerate() {
                    if let Some(n) = n {
                        eprintln!("node {i} logged: {:#?}", n.lines_with(""));
                    }
                }
                panic!("cells never settled: held {held:?}, want {want:?}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// A point in the middle of a cell `node` owns among `live`, away from the market's
    /// rim (so every neighbour a search reaches is in the market too).
    fn point_owned_by(&self, node: usize, live: &[String]) -> Point {
        let centre = geo::LatLng::new(MARKET.0, MARKET.1).unwrap();
        let mut cells: Vec<geo::ShardId> = self
            .cells
            .iter()
            .filter(|&&c| self.owner_of(c, live) == node)
            .map(|&c| geo::ShardId::from_u64(c).unwrap())
            .collect();
        cells.sort_by(|a, b| {
            a.centre()
                .distance_m(&centre)
                .total_cmp(&b.centre().distance_m(&centre))
        });
        let c = cells.first().expect("the node owns a cell").centre();
        Point {
            lat: c.lat(),
            lng: c.lng(),
        }
    }

    /// Creates a user and an associate (through node 0's admin API) and connects them to
    /// `user_node` and `associate_node`; the associate goes online at `at`.
    async fn parties(&self, user_node: usize, associate_node: usize, at: Point) -> Parties {
        let (user, user_token) = self.node(0).user("Asha").await;
        let (associate, associate_token) = self
            .node(0)
            .associate("Ravi", &["companion", "helper"])
            .await;
        let mut a = self.node(associate_node).connect(&associate_token).await;
        online_at(&mut a, at).await;
        let u = self.node(user_node).connect(&user_token).await;
        Parties {
            u,
            a,
            user,
            associate,
        }
    }

    /// SIGKILLs node `i`.
    fn kill(&mut self, i: usize) {
        self.nodes[i].take().unwrap().kill();
    }
}

/// Puts an associate at `at` and online, and waits until they are available.
async fn online_at(a: &mut Client, at: Point) {
    crate::harness::go_online(a, at).await;
    expect(a, "available", |m| match m {
        ServerMessage::Status(st) if st.availability == Availability::Available => Some(()),
        _ => None,
    })
    .await;
}

/// A companion request at `at`.
fn request_at(at: Point, client_ref: &str) -> wire::TaskRequest {
    wire::TaskRequest {
        client_ref: client_ref.into(),
        task: "companion".into(),
        pickup: at,
        note: None,
        discount_code: None,
    }
}

/// The associate accepts the next offer; the order as its user sees it.
async fn accept_next(p: &mut Parties) -> OrderSnapshot {
    let offer = expect(&mut p.a, "offer", |m| match m {
        ServerMessage::Offer(o) => Some(o),
        _ => None,
    })
    .await;
    p.a.send(wire::Accept {
        request_id: offer.request_id,
    })
    .await
    .unwrap();
    expect(&mut p.u, "allotted", |m| match m {
        ServerMessage::Allotted(x) => Some(*x.order),
        _ => None,
    })
    .await
}

/// Pays the order by card and waits for the order to close.
async fn pay_and_close(p: &mut Parties, node: &Engine, order: OrderId) {
    p.u.send(wire::Pay {
        order_id: order,
        method: PaymentMethod::Card,
        instrument: "4242424242424242".into(),
        idempotency_key: format!("pay-{order}"),
        tip_minor: None,
    })
    .await
    .unwrap();
    let paid = payment_result(&mut p.u).await;
    assert_eq!(paid.status, PaymentStatus::Succeeded);
    let closed = node
        .until(order, "closed", |o| o["order"]["state"] == "closed")
        .await;
    assert_eq!(closed["order"]["state"], "closed");
}

/// Sends `frame` from `c` until the order reaches `state` (a call may fail while its
/// cell changes hands: the app is told to try again).
async fn act_until(
    c: &mut Client,
    node: &Engine,
    order: OrderId,
    state: &str,
    frame: impl Fn() -> wire::ClientMessage,
) {
    let deadline = Instant::now() + WAIT;
    loop {
        c.send(frame()).await.unwrap();
        let reached = node.until(order, state, |o| o["state"] != "").await;
        if reached["state"] == state {
            return;
        }
        // Drain the error the engine answered with, if any (bounded wait).
        if let Ok(ServerMessage::Error(e)) = c.recv_timeout(Duration::from_millis(500)).await {
            assert!(
                matches!(e.code, ErrorCode::Overloaded | ErrorCode::InvalidState),
                "unexpected error {e:?}"
            );
        }
        let now = node.order(order).await;
        if now["state"] == state {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "order {order} never reached {state}: {now:#}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_runs_across_three_nodes() {
    let c = Cluster::start(3).await;
    let live = c.live();
    // The pickup's cell is node 2's; the user is on node 0, the associate on node 1.
    let pickup = c.point_owned_by(2, &live);
    let mut p = c.parties(0, 1, pickup).await;
    p.u.send(request_at(pickup, "across")).await.unwrap();
    let order = accept_next(&mut p).await;
    assert_eq!(order.associate.id, p.associate.0);
    // Live tracking crosses nodes too.
    p.a.send(wire::Location {
        point: pickup,
        accuracy_m: None,
    })
    .await
    .unwrap();
    expect(&mut p.u, "peer location", |m| {
        matches!(m, ServerMessage::PeerLocation(_)).then_some(())
    })
    .await;
    work(&mut p, &order).await;
    pay_and_close(&mut p, c.node(0), order.order_id).await;
    // The associate's node hears the order ended: available again.
    expect(&mut p.a, "available again", |m| match m {
        ServerMessage::Status(st) if st.availability == Availability::Available => Some(()),
        _ => None,
    })
    .await;
    // A second request from the same user gets a new order (nothing stuck anywhere).
    p.u.send(request_at(pickup, "again")).await.unwrap();
    expect(&mut p.u, "request received", |m| {
        matches!(m, ServerMessage::RequestReceived(_)).then_some(())
    })
    .await;
    let second = accept_next(&mut p).await;
    assert_ne!(second.order_id, order.order_id);
}
