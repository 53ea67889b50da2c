//! Cluster mode: three engine processes on 127.0.0.1, .2 and .3 sharing a private
//! nats-server (JetStream) and a private PostgreSQL database. An order whose parties and
//! pickup cell sit on three different nodes runs end to end; a node killed with SIGKILL
//! loses nothing; a node paused past its lease is fenced and rejoins; a node cut off from
//! NATS (through a proxy the test cuts) drops its cells and comes back when NATS does.

use std::time::{Duration, Instant};

use wire::client::{Client, http_api};
use wire::model::{Availability, OrderSnapshot, OrderState, PaymentMethod, PaymentStatus, Point};
use wire::{OrderId, ServerMessage};

use crate::harness::{Parties, WAIT, expect};
use crate::process::{ADMIN, Engine};
use crate::steps::{accept_offer, payment_result, state_update, work};

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
    /// Released last, once every process above has stopped.
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

/// One cluster at a time: each is three engines, a NATS server and a database, and the
/// timing checks (cells owned elsewhere within the lease and a second) should measure
/// the cluster, not its neighbours.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl Cluster {
    /// Starts `n` nodes and waits until they share the market's cells.
    async fn start(n: usize) -> Self {
        Self::start_via(n, |_, url| url.to_owned()).await
    }

    /// As `start`, node `i` reaching NATS at `nats_for(i, url)`.
    async fn start_via(n: usize, nats_for: impl Fn(usize, &str) -> String) -> Self {
        let turn = ONE_AT_A_TIME.lock().await;
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
                    nats_for(i, &nats.url),
                    MARKET.0,
                    MARKET.1,
                    MARKET.2
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
            _turn: turn,
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

    /// Waits until `/readyz` on `node` answers `ready` (200) or, if not `ready`, 503 with
    /// a reason containing `because`; fails after the wait.
    async fn readiness_becomes(&self, node: usize, ready: bool, because: &str) {
        let started = Instant::now();
        loop {
            let r = http_api::request(self.node(node).addr, "GET", "/readyz", &[], None).await;
            if let Ok(r) = &r {
                let reasons = r.body["reasons"].to_string();
                let now_ready = r.status == 200 && r.body["status"] == "ready";
                let matches = match ready {
                    true => now_ready,
                    false => r.status == 503 && reasons.contains(because),
                };
                if matches {
                    return;
                }
                assert!(
                    started.elapsed() < WAIT,
                    "node {node}: /readyz still {} {} (want ready = {ready})",
                    r.status,
                    r.body
                );
            }
            assert!(
                started.elapsed() < WAIT,
                "node {node}: /readyz unanswered: {r:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
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

    /// Waits for node `i`, sent SIGTERM, to exit cleanly.
    async fn exited(&mut self, i: usize) {
        let status = self.nodes[i].take().unwrap().exited(WAIT).await;
        assert!(status.success(), "node {i} exited with {status}");
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

/// The associate sets out (retrying through `node` while the order's cell changes
/// hands), arrives, starts with the PIN and completes; the user gets the invoice.
async fn set_out_and_work(p: &mut Parties, node: &Engine, order: &OrderSnapshot) {
    act_until(&mut p.a, node, order.order_id, "en_route", || {
        wire::EnRoute {
            order_id: order.order_id,
        }
        .into()
    })
    .await;
    arrive_start_complete(p, order).await;
}

/// Sends `frame` from `c` until the order reaches `state`: while its cell changes hands
/// a call may fail (the app is told to try again) or go unanswered, and the app retries.
async fn act_until(
    c: &mut Client,
    node: &Engine,
    order: OrderId,
    state: &str,
    frame: impl Fn() -> wire::ClientMessage,
) {
    let deadline = Instant::now() + WAIT * 2;
    loop {
        c.send(frame()).await.unwrap();
        let attempt = Instant::now() + Duration::from_secs(3);
        while Instant::now() < attempt {
            let now = node.order(order).await;
            if now["order"]["state"] == state {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(
            Instant::now() < deadline,
            "order {order} never reached {state}: {:#}",
            node.order(order).await
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
    let order = accept_offer(&mut p).await;
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
    // A reconnecting app reads the events after the last one it saw from the JetStream
    // event log (appended by the order's node once each event is durable).
    let token = c.node(1).token(p.user.0, "user").await;
    let deadline = Instant::now() + WAIT;
    loop {
        let (source, seqs) =
            crate::harness::events_after(c.node(1).addr, &token, order.order_id, 2).await;
        assert_eq!(source, "event_log");
        if seqs == [3, 4, 5, 6, 7] {
            break;
        }
        assert!(Instant::now() < deadline, "the log has {seqs:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
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
    let second = accept_offer(&mut p).await;
    assert_ne!(second.order_id, order.order_id);
}

/// The rest of an order's work once it is en route: arrive, start, complete, invoice.
async fn arrive_start_complete(p: &mut Parties, order: &OrderSnapshot) {
    let id = order.order_id;
    p.a.send(wire::Arrived { order_id: id }).await.unwrap();
    state_update(&mut p.u, id, OrderState::Arrived).await;
    start_complete(p, order).await;
}

/// The rest of an order's work once the associate has arrived.
async fn start_complete(p: &mut Parties, order: &OrderSnapshot) {
    let id = order.order_id;
    p.a.send(wire::Start {
        order_id: id,
        pin: order.pin.clone().unwrap(),
    })
    .await
    .unwrap();
    state_update(&mut p.a, id, OrderState::Started).await;
    p.u.send(wire::Complete { order_id: id }).await.unwrap();
    expect(&mut p.u, "invoice", |m| {
        matches!(m, ServerMessage::Invoice(_)).then_some(())
    })
    .await;
}

/// Orders listed for `filter` (`user_id=…` or `associate_id=…`).
async fn orders_of(node: &Engine, filter: &str) -> Vec<serde_json::Value> {
    let r = node
        .admin("GET", &format!("/v1/orders?{filter}&limit=100"), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["items"].as_array().unwrap().clone()
}

/// Payments of an order that succeeded.
async fn succeeded_payments(node: &Engine, order: OrderId) -> usize {
    let o = node.order(order).await;
    o["payments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["status"] == "succeeded")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_loses_no_order_and_no_request() {
    let mut c = Cluster::start(3).await;
    let all = c.live();
    let pickup = c.point_owned_by(2, &all);
    // The user is on node 2 itself (its app must reconnect elsewhere); the associate on
    // node 1.
    let mut p = c.parties(2, 1, pickup).await;
    p.u.send(request_at(pickup, "first")).await.unwrap();
    let first = accept_offer(&mut p).await;
    // A second user's request waits on node 2 (the only associate is busy).
    let (user2, token2) = c.node(0).user("Meera").await;
    let mut u2 = c.node(0).connect(&token2).await;
    u2.send(request_at(pickup, "second")).await.unwrap();
    let received = expect(&mut u2, "request received", |m| match m {
        ServerMessage::RequestReceived(r) => Some(r),
        _ => None,
    })
    .await;

    let token = c.node(0).token(p.user.0, "user").await;
    let killed = Instant::now();
    c.kill(2);
    // The user's app reconnects to node 0 at once, while node 2's cells are still
    // between owners, and is shown its order again (from the store, since no node can
    // answer for it yet) within the call timeout and a second.
    p.u = c.node(0).connect(&token).await;
    let shown = expect(&mut p.u, "order resync", |m| match m {
        ServerMessage::Order(o) => Some(*o.order),
        _ => None,
    })
    .await;
    let resynced = killed.elapsed();
    assert_eq!(shown.order_id, first.order_id);
    assert_eq!(
        shown.pin.as_deref().map(str::len),
        Some(4),
        "the user's copy has its PIN"
    );
    assert!(
        resynced <= Duration::from_secs(3),
        "the order frame came {resynced:?} after the kill"
    );
    let metrics = http_api::request(c.node(0).addr, "GET", "/metrics", &[], None)
        .await
        .unwrap();
    assert!(
        metrics
            .text
            .lines()
            .any(|l| l.starts_with("speedy_cluster_order_views_from_store_total ")),
        "node 0 did not answer from the store"
    );
    let survivors = c.live();
    c.settled(&survivors).await;
    let recovered = killed.elapsed();
    assert!(
        recovered <= LEASE + Duration::from_secs(1),
        "node 2's cells were owned elsewhere only after {recovered:?}"
    );
    // The order goes on under its new owner.
    set_out_and_work(&mut p, c.node(0), &first).await;
    pay_and_close(&mut p, c.node(0), first.order_id).await;

    // The waiting request resumed on the new owner: once the associate is free it is
    // offered to them and allotted, once.
    let mut p2 = Parties {
        u: u2,
        a: p.a,
        user: user2,
        associate: p.associate,
    };
    let second = accept_offer(&mut p2).await;
    assert_ne!(second.order_id, first.order_id);
    let u2_orders = orders_of(c.node(1), &format!("user_id={}", user2.0)).await;
    assert_eq!(
        u2_orders.len(),
        1,
        "one order for the request: {u2_orders:#?}"
    );
    assert_eq!(
        u2_orders[0]["request_id"],
        serde_json::json!(received.request_id)
    );
    // The associate held one order at a time.
    let theirs = orders_of(c.node(1), &format!("associate_id={}", p2.associate.0)).await;
    assert_eq!(theirs.len(), 2);
    let closed_first = c.node(1).order(first.order_id).await;
    assert!(
        closed_first["order"]["ended_at_ms"].as_u64().unwrap() <= second.allotted_at_ms,
        "the second order was allotted before the first ended"
    );
    assert_eq!(succeeded_payments(c.node(1), first.order_id).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stopped_with_sigterm_hands_its_cells_over_at_once() {
    let mut c = Cluster::start(3).await;
    let all = c.live();
    let pickup = c.point_owned_by(2, &all);
    // An order whose cell node 2 owns; its user on node 0, its associate on node 1.
    let mut p = c.parties(0, 1, pickup).await;
    p.u.send(request_at(pickup, "before-term")).await.unwrap();
    let order = accept_offer(&mut p).await;

    // SIGTERM: node 2 stops its actors there, releases its claims and leaves, so the
    // others take its cells at their next ownership round (a third of the lease), not
    // after its lease has run out.
    let stopped = Instant::now();
    c.node(2).signal("TERM");
    let others: Vec<String> = all.iter().filter(|id| *id != "node-2").cloned().collect();
    let want = c.shares(&others);
    loop {
        let (a, b) = (c.held_by(0).await, c.held_by(1).await);
        if a == Some(want[0]) && b == Some(want[1]) {
            break;
        }
        assert!(
            stopped.elapsed() < WAIT,
            "after SIGTERM: node 0 holds {a:?}, node 1 {b:?} (want {want:?})"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let moved = stopped.elapsed();
    eprintln!("node 2's cells owned elsewhere {moved:?} after SIGTERM");
    let handed = c.node(2).logged(&["cells handed over"]).await;
    assert!(
        !handed.contains("cells=0"),
        "node 2 released no cell: {handed}"
    );
    c.exited(2).await;
    // Faster than any lease expiry could be: the lease is 3 s, a round 1 s.
    assert!(
        moved < LEASE * 2 / 3,
        "node 2's cells were owned elsewhere only {moved:?} after SIGTERM"
    );

    // The order goes on under its new owner, paid once.
    set_out_and_work(&mut p, c.node(0), &order).await;
    pay_and_close(&mut p, c.node(0), order.order_id).await;
    assert_eq!(succeeded_payments(c.node(1), order.order_id).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_captured_by_a_node_that_then_dies_is_paid_once() {
    let mut c = Cluster::start(3).await;
    let all = c.live();
    let pickup = c.point_owned_by(2, &all);
    // The order runs on node 2 (its cell's owner); its user on node 0, associate on 1.
    let mut p = c.parties(0, 1, pickup).await;
    p.u.send(request_at(pickup, "late-card")).await.unwrap();
    let order = accept_offer(&mut p).await;
    set_out_and_work(&mut p, c.node(0), &order).await;

    // A card the gateway captures at once but answers for only after the payment's
    // gateway timeout: node 2 is killed between the capture and its stored result.
    p.u.send(wire::Pay {
        order_id: order.order_id,
        method: PaymentMethod::Card,
        instrument: actors::orders::gateway::test_instruments::CARD_LATE_CONFIRMATION.into(),
        idempotency_key: format!("pay-late-{}", order.order_id),
        tip_minor: None,
    })
    .await
    .unwrap();
    let ledger = {
        let config = storage::pg::PgConfig::new(c.database.clone());
        tokio::task::spawn_blocking(move || storage::Store::postgres(&config).unwrap())
            .await
            .unwrap()
    };
    let captures = |ledger: storage::Store| async move {
        tokio::task::spawn_blocking(move || {
            ledger
                .ledger()
                .unwrap()
                .into_iter()
                .filter(|(_, o)| matches!(o, storage::LedgerOutcome::Captured { .. }))
                .count()
        })
        .await
        .unwrap()
    };
    let started = Instant::now();
    while captures(ledger.clone()).await == 0 {
        assert!(
            started.elapsed() < WAIT,
            "the gateway never captured the card"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pending = c.node(0).order(order.order_id).await;
    assert_eq!(
        pending["payments"][0]["status"], "pending",
        "node 2 had its result before the kill: {pending:#}"
    );
    c.kill(2);

    // The cell's new owner asks the shared ledger what became of the pending charge,
    // finds the capture, and settles the payment as paid: the order closes, with one
    // successful payment, no failed one the user would have to replace, one capture.
    let closed = c
        .node(0)
        .until(order.order_id, "closed", |o| {
            o["order"]["state"] == "closed"
        })
        .await;
    let payments = closed["payments"].as_array().unwrap();
    assert_eq!(payments.len(), 1, "the user paid once: {payments:#?}");
    assert_eq!(payments[0]["status"], "succeeded", "{payments:#?}");
    assert_eq!(captures(ledger).await, 1, "the card was captured once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_node_is_fenced_and_rejoins() {
    let c = Cluster::start(3).await;
    let all = c.live();
    let pickup = c.point_owned_by(2, &all);
    let cell = geo::ShardMap::new(6)
        .unwrap()
        .shard_of(geo::LatLng::new(pickup.lat, pickup.lng).unwrap())
        .as_u64();
    let mut p = c.parties(0, 1, pickup).await;
    p.u.send(request_at(pickup, "paused")).await.unwrap();
    let order = accept_offer(&mut p).await;
    // Node 2's claim on the cell: the epoch its writes carry.
    let js = async_nats::jetstream::new(async_nats::connect(&c._nats.url).await.unwrap());
    let cells = cluster::Cells::open(&js).await.unwrap();
    let (owner, old_epoch) = cells.owner(cell).await.unwrap().unwrap();
    assert_eq!(owner, "node-2");

    c.node(2).signal("STOP");
    let others: Vec<String> = all.iter().filter(|id| *id != "node-2").cloned().collect();
    // Only the survivors' shares are checked: the paused node cannot answer.
    let stopped = Instant::now();
    let deadline = stopped + WAIT;
    let want = c.shares(&others);
    loop {
        let a = c.held_by(0).await;
        let b = c.held_by(1).await;
        if a == Some(want[0]) && b == Some(want[1]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the others never took node 2's cells: {a:?} {b:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(stopped.elapsed() <= LEASE + Duration::from_secs(1));
    // The order goes on under the new owner, which stamped it with a newer epoch.
    act_until(&mut p.a, c.node(0), order.order_id, "en_route", || {
        wire::EnRoute {
            order_id: order.order_id,
        }
        .into()
    })
    .await;
    let (new_owner, new_epoch) = cells.owner(cell).await.unwrap().unwrap();
    assert_ne!(new_owner, "node-2");
    assert!(new_epoch > old_epoch);
    // A late write with the paused node's epoch is refused by the database.
    let late = storage::Store::postgres(&storage::pg::PgConfig {
        url: c.database.clone(),
        epoch: old_epoch,
        group_commit_wait: Duration::ZERO,
        queue_capacity: 16,
        ..storage::pg::PgConfig::new(c.database.clone())
    })
    .unwrap();
    let refused = late
        .transition_durable(
            order.order_id,
            1,
            wire::model::OrderEventKind::Arrived,
            Vec::new(),
        )
        .await;
    assert!(
        matches!(refused, Err(storage::StorageError::Fenced(_))),
        "a write from the old epoch went through: {refused:?}"
    );

    // Node 2 wakes up: whatever it still tried for the cell is refused, it rejoins, and
    // takes its share of the cells back.
    c.node(2).signal("CONT");
    c.settled(&all).await;
    for line in c.node(2).lines_with("is held by epoch") {
        assert!(line.contains(&format!("from epoch {old_epoch}")), "{line}");
    }
    // The order finishes, wherever it now runs, with its events in order and each once
    // (the first action may meet the order between its old owner and its new one).
    act_until(&mut p.a, c.node(0), order.order_id, "arrived", || {
        wire::Arrived {
            order_id: order.order_id,
        }
        .into()
    })
    .await;
    start_complete(&mut p, &order).await;
    pay_and_close(&mut p, c.node(0), order.order_id).await;
    let events = c.node(1).order(order.order_id).await["events"].clone();
    let states: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        [
            "allotted",
            "en_route",
            "arrived",
            "started",
            "completed",
            "billed",
            "paid",
            "closed"
        ]
    );
    assert_eq!(succeeded_payments(c.node(1), order.order_id).await, 1);
    // Node 2 serves its cells again: a new request there is dispatched.
    // (The first associate goes offline, so the offer can only go to the new one.)
    p.a.send(wire::GoOffline {}).await.unwrap();
    expect(&mut p.a, "offline", |m| match m {
        ServerMessage::Status(st) if st.availability == Availability::Offline => Some(()),
        _ => None,
    })
    .await;
    let mut q = c.parties(2, 2, pickup).await;
    q.u.send(request_at(pickup, "after")).await.unwrap();
    accept_offer(&mut q).await;
}

/// A TCP proxy in front of NATS for one node: cutting it drops every connection through
/// it and refuses new ones, as a network partition would; restoring lets them through.
struct Proxy {
    port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    links: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    /// A proxy on a free port of 127.0.0.1 to `upstream` (`host:port`).
    fn to(upstream: String, runtime: &tokio::runtime::Handle) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let links = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (c, l) = (cut.clone(), links.clone());
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            while let Ok((mut inbound, _)) = listener.accept().await {
                if c.load(std::sync::atomic::Ordering::SeqCst) {
                    continue;
                }
                let upstream = upstream.clone();
                let link = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                l.lock().unwrap().push(link);
            }
        });
        Self { port, cut, links }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_nats_drops_its_cells_and_rejoins() {
    // Node 2 reaches NATS through a proxy, set up once the cluster has started NATS.
    let slot = std::sync::Arc::new(std::sync::Mutex::new(None::<Proxy>));
    let (put, runtime) = (slot.clone(), tokio::runtime::Handle::current());
    let c = Cluster::start_via(3, move |i, url| {
        if i != 2 {
            return url.to_owned();
        }
        let proxy = Proxy::to(url.trim_start_matches("nats://").to_owned(), &runtime);
        let via = proxy.url();
        *put.lock().unwrap() = Some(proxy);
        via
    })
    .await;
    let proxy = slot.lock().unwrap().take().unwrap();
    let all = c.live();
    let others: Vec<String> = all.iter().filter(|id| *id != "node-2").cloned().collect();
    let pickup = c.point_owned_by(2, &all);
    for node in 0..3 {
        c.readiness_becomes(node, true, "").await;
    }

    // Cut off, node 2 keeps running but hears nothing: the others take its cells within
    // the lease and a second, and it lets go of every cell it held.
    proxy.cut();
    let cut = Instant::now();
    let want = c.shares(&others);
    loop {
        let (a, b, mine) = (c.held_by(0).await, c.held_by(1).await, c.held_by(2).await);
        if a == Some(want[0]) && b == Some(want[1]) && mine == Some(0) {
            break;
        }
        assert!(
            cut.elapsed() < WAIT,
            "after the cut: node 0 holds {a:?}, node 1 {b:?} (want {want:?}), node 2 {mine:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let moved = cut.elapsed();
    assert!(moved <= LEASE + Duration::from_secs(1), "took {moved:?}");
    assert!(
        !c.node(2).lines_with("cut off from NATS").is_empty(),
        "node 2 did not say it was cut off"
    );
    // It says it is not ready (no lease), so a load balancer stops sending it apps; the
    // others stay ready.
    c.readiness_becomes(2, false, "no lease").await;
    c.readiness_becomes(0, true, "").await;
    c.readiness_becomes(1, true, "").await;
    // A request in what was node 2's cell is served by its new owner.
    let mut p = c.parties(0, 1, pickup).await;
    p.u.send(request_at(pickup, "after-cut")).await.unwrap();
    accept_offer(&mut p).await;

    // NATS is back for node 2: it rejoins, takes its share again and is ready.
    proxy.restore();
    c.settled(&all).await;
    c.readiness_becomes(2, true, "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_connection_on_another_node_takes_the_session_over() {
    let c = Cluster::start(3).await;
    let all = c.live();
    let pickup = c.point_owned_by(2, &all);
    // The associate is online through node 0, then opens the app again through node 1.
    let mut p = c.parties(0, 0, pickup).await;
    let (_, token) = c.node(0).associate("Kiran", &["companion"]).await;
    // A little farther from the pickup than the first associate, so offered second.
    let farther = Point {
        lat: pickup.lat + 0.002,
        lng: pickup.lng,
    };
    let mut old = c.node(0).connect(&token).await;
    online_at(&mut old, farther).await;
    let mut new = c.node(1).connect(&token).await;
    // The old socket is closed as replaced, wherever the new one is.
    let reason = crate::harness::closed_with(&mut old).await;
    assert!(reason.contains("replaced"), "{reason}");
    // The new connection is the one that gets offers: the first associate declines, and
    // the request reaches Kiran through node 1.
    online_at(&mut new, farther).await;
    p.u.send(request_at(pickup, "takeover")).await.unwrap();
    let first = expect(&mut p.a, "the first offer", |m| match m {
        ServerMessage::Offer(o) => Some(o),
        _ => None,
    })
    .await;
    p.a.send(wire::Decline {
        request_id: first.request_id,
    })
    .await
    .unwrap();
    // Kiran, on the new connection, is offered the request and takes it.
    p.a = new;
    let order = accept_offer(&mut p).await;
    assert_eq!(order.request_id, first.request_id);
}
