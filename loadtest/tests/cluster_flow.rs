//! CI runs of the simulator against three engine nodes (the engine binary cargo built
//! beside this test) sharing a private nats-server and a private PostgreSQL: apps spread
//! over the nodes in turn. A clean run: every order closed, none lost or duplicated, no
//! protocol errors. Then the same with a node killed in the middle of the flow: its apps
//! reconnect to the others and go on, and nothing the engine promised is broken.

use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use common::assert_clean;
use loadtest::failover::LocalCluster;
use loadtest::flow::{self, FlowConfig};
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

/// A flow whose apps reconnect, started over `market` and under way: at least eight
/// orders allotted, so orders are at every stage.
async fn flow_under_way(
    market: &Market,
) -> (
    Arc<Stats>,
    tokio::task::JoinHandle<anyhow::Result<loadtest::flow::FlowResult>>,
) {
    let stats = Arc::new(Stats::default());
    let run = tokio::spawn(flow::run(
        market.target.clone(),
        flow_config(true),
        stats.clone(),
        |_, _, _| {},
    ));
    while stats.outcomes.get("allotted") < 8 {
        assert!(!run.is_finished(), "the flow ended before any order");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (stats, run)
}

/// Waits for `run` to end, requires it clean with apps that reconnected (they were on
/// `lost`), and audits what the engine holds: one order per request, each associate's
/// orders one after another, at most one successful payment per order, no key captured
/// twice, and enough of each to mean something.
async fn clean_and_audited(
    market: &Market,
    stats: &Stats,
    run: tokio::task::JoinHandle<anyhow::Result<loadtest::flow::FlowResult>>,
    lost: &str,
) -> loadtest::failover::Audit {
    let result = run.await.unwrap().unwrap();
    let report = assert_clean(stats, result);
    assert!(
        report.outcomes.get("reconnects").copied().unwrap_or(0) > 0,
        "no app was on {lost}: {:?}",
        report.outcomes
    );
    let audit = loadtest::failover::audit(
        &market.target,
        &market.cluster.data_dirs(),
        market.cluster.database(),
    )
    .await
    .unwrap();
    assert!(audit.busiest_associate >= 2, "nothing to check: {audit:?}");
    assert!(audit.captures > 0, "no card was charged: {audit:?}");
    audit
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_in_the_middle_of_the_flow_breaks_nothing() {
    let mut market = three_nodes().await;
    // In the middle of the arrivals, with orders at every stage, node 2 dies.
    let (stats, run) = flow_under_way(&market).await;
    let killed = Instant::now();
    market.cluster.kill(2);
    // Its cells are owned by the other two within the lease and a second.
    market.cluster.settled().await.unwrap();
    let moved = killed.elapsed();
    assert!(
        moved <= market.lease + Duration::from_secs(1),
        "cells moved after {moved:?}"
    );
    let audit = clean_and_audited(&market, &stats, run, "the killed node").await;
    println!("{audit:?}; cells moved {moved:?} after the kill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_in_the_middle_of_the_flow_loses_nothing() {
    let mut market = three_nodes().await;
    let (stats, run) = flow_under_way(&market).await;
    // Each node in turn: SIGTERM (it hands its cells over and exits), the others own
    // every cell sooner than a lease would have let them, then it comes back.
    let mut handed = Vec::new();
    for node in 0..3 {
        let stopped = Instant::now();
        market.cluster.terminate(node).await.unwrap();
        market.cluster.settled().await.unwrap();
        let moved = stopped.elapsed();
        assert!(
            moved < market.lease,
            "node {node}'s cells were owned elsewhere only {moved:?} after SIGTERM"
        );
        handed.push(moved);
        market.cluster.restart(node).unwrap();
        market.cluster.settled().await.unwrap();
    }
    let audit = clean_and_audited(&market, &stats, run, "a restarted node").await;
    println!("{audit:?}; cells owned elsewhere {handed:?} after each SIGTERM");
}
