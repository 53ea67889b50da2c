//! CI runs of the simulator against three engine nodes (the engine binary cargo built
//! beside this test) sharing a private nats-server and a private PostgreSQL: apps spread
//! over the nodes in turn. A clean run: every order closed, none lost or duplicated, no
//! protocol errors. Then the same with a node killed in the middle of the flow: its apps
//! reconnect to the others and go on, and nothing the engine promised is broken.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::orders::gateway::{LedgerLine, SandboxGateway, read_ledger};
use loadtest::failover::LocalCluster;
use loadtest::flow::{self, FlowConfig, FlowResult};
use loadtest::report::FlowReport;
use loadtest::stats::Stats;
use loadtest::target::Target;

const ADMIN: &str = "cluster-flow-admin-key-0123456789";
const COMPRESSION: f64 = 600.0;

/// Three nodes on a fresh NATS server and database, and a target spreading apps over them.
struct Market {
    cluster: LocalCluster,
    target: Target,
    lease: Duration,
    _nats: cluster::testing::NatsServer,
    _dir: tempfile::TempDir,
}

async fn three_nodes() -> Market {
    let engine = loadtest::target::sibling_engine();
    assert!(
        engine.exists(),
        "{} is missing: build it with `cargo build -p engine`",
        engine.display()
    );
    let nats = cluster::testing::NatsServer::start();
    let mut config = flow::engine_config(COMPRESSION);
    config.workers = 1;
    config.database = Some(storage::pg::testing::fresh_database());
    config.admin_key = Some(ADMIN.into());
    config.token_secret = Some("cluster-flow-token-secret-0123456789".into());
    config.feedback_api_key = Some("cluster-flow-feedback-key-0123456789".into());
    let settings = engine::ClusterSettings {
        nats: nats.url.clone(),
        ..Default::default()
    };
    let lease = Duration::from_millis(settings.lease_ms);
    config.cluster = Some(settings);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.toml");
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    let cluster = LocalCluster::start(&engine, &path, 3).await.unwrap();
    let addrs = cluster.addrs();
    let target = Target {
        http: addrs[0],
        admin_key: ADMIN.into(),
        more_nodes: addrs[1..].to_vec(),
    };
    Market {
        cluster,
        target,
        lease,
        _nats: nats,
        _dir: dir,
    }
}

fn flow_config(reconnect: bool) -> FlowConfig {
    FlowConfig {
        associates: 45,
        users: 30,
        duration: Duration::from_secs(10),
        drain: Duration::from_secs(20),
        compression: COMPRESSION,
        location_every_s: 60.0,
        seed: 20_261_130,
        reconnect,
        ..FlowConfig::default()
    }
}

/// A clean run with enough orders to mean anything.
fn assert_clean(stats: &Stats, result: FlowResult) -> FlowReport {
    let report = FlowReport::new(stats, result);
    println!("{}", report.summary());
    assert!(report.result.clean(), "{:#?}", report.result);
    assert!(
        report.result.orders_seen >= 10,
        "too few orders to mean anything: {}",
        report.result.orders_seen
    );
    assert!(report.outcomes.get("closed").copied().unwrap_or(0) >= 10);
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_flow_over_three_nodes_is_clean() {
    let market = three_nodes().await;
    let stats = Arc::new(Stats::default());
    let result = flow::run(
        market.target.clone(),
        flow_config(false),
        stats.clone(),
        |_, _, _| {},
    )
    .await
    .unwrap();
    assert_clean(&stats, result);
}

/// Every order the engine holds, with its events, read through node 0.
async fn every_order(target: &Target) -> Vec<serde_json::Value> {
    let mut orders = Vec::new();
    let mut after = String::new();
    loop {
        let r = target
            .admin("GET", &format!("/v1/orders?limit=500{after}"), None)
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text);
        for o in r.body["items"].as_array().unwrap() {
            let id = o["order_id"].as_str().unwrap();
            let full = target
                .admin("GET", &format!("/v1/orders/{id}"), None)
                .await
                .unwrap();
            orders.push(full.body);
        }
        match r.body["next"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => return orders,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_in_the_middle_of_the_flow_breaks_nothing() {
    let mut market = three_nodes().await;
    let stats = Arc::new(Stats::default());
    let run = tokio::spawn(flow::run(
        market.target.clone(),
        flow_config(true),
        stats.clone(),
        |_, _, _| {},
    ));
    // In the middle of the arrivals, with orders at every stage, node 2 dies.
    while stats.outcomes.get("allotted") < 8 {
        assert!(!run.is_finished(), "the flow ended before any order");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let killed = Instant::now();
    market.cluster.kill(2);
    // Its cells are owned by the other two within the lease and a second.
    market.cluster.settled().await.unwrap();
    let moved = killed.elapsed();
    assert!(
        moved <= market.lease + Duration::from_secs(1),
        "cells moved after {moved:?}"
    );
    let result = run.await.unwrap().unwrap();
    let report = assert_clean(&stats, result);
    assert!(
        report.outcomes.get("reconnects").copied().unwrap_or(0) > 0,
        "no app was on the killed node: {:?}",
        report.outcomes
    );

    // What the engine holds: one order per request; an associate's orders one after the
    // other (the next allotted only once the last was over); at most one successful
    // payment per order, and no key captured twice at any node's gateway.
    let orders = every_order(&market.target).await;
    let mut by_request: HashMap<String, usize> = HashMap::new();
    let mut by_associate: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for o in &orders {
        *by_request
            .entry(o["order"]["request_id"].as_str().unwrap().to_owned())
            .or_default() += 1;
        let events = o["events"].as_array().unwrap();
        let over = events
            .iter()
            .find(|e| e["state"] == "closed" || e["state"] == "cancelled")
            .and_then(|e| e["at_ms"].as_u64())
            .unwrap_or(u64::MAX);
        by_associate
            .entry(o["order"]["associate_id"].as_str().unwrap().to_owned())
            .or_default()
            .push((o["order"]["allotted_at_ms"].as_u64().unwrap(), over));
        let paid = o["payments"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["status"] == "succeeded")
            .count();
        assert!(paid <= 1, "{o:#}");
    }
    assert!(by_request.values().all(|n| *n == 1), "{by_request:?}");
    let busiest = by_associate.values().map(Vec::len).max().unwrap_or(0);
    assert!(
        busiest >= 2,
        "no associate had two orders: nothing to check"
    );
    for (associate, mut spans) in by_associate {
        spans.sort();
        for pair in spans.windows(2) {
            assert!(
                pair[1].0 >= pair[0].1,
                "associate {associate} held two orders at once: {spans:?}"
            );
        }
    }
    let mut captured: HashMap<String, usize> = HashMap::new();
    for dir in market.cluster.data_dirs() {
        for line in read_ledger(&SandboxGateway::ledger_path(&dir)).unwrap() {
            if let LedgerLine::Captured { key, .. } = line {
                *captured.entry(key).or_default() += 1;
            }
        }
    }
    assert!(!captured.is_empty(), "no card was charged");
    assert!(captured.values().all(|n| *n == 1), "{captured:?}");
    println!(
        "{} orders from {} requests; {} card captures; cells moved {moved:?} after the kill",
        orders.len(),
        by_request.len(),
        captured.len()
    );
}
