//! CI run of the simulator against three engine nodes (the engine binary cargo built
//! beside this test) sharing a private nats-server and a private PostgreSQL: apps spread
//! over the nodes in turn, and the run must be clean (every order closed, none lost or
//! duplicated, no protocol errors).

use std::sync::Arc;
use std::time::Duration;

use loadtest::failover::LocalCluster;
use loadtest::flow::{self, FlowConfig};
use loadtest::report::FlowReport;
use loadtest::stats::Stats;
use loadtest::target::Target;

const ADMIN: &str = "cluster-flow-admin-key-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_flow_over_three_nodes_is_clean() {
    let engine = loadtest::target::sibling_engine();
    assert!(
        engine.exists(),
        "{} is missing: build it with `cargo build -p engine`",
        engine.display()
    );
    let nats = cluster::testing::NatsServer::start();
    let compression = 600.0;
    let mut config = flow::engine_config(compression);
    config.workers = 1;
    config.database = Some(storage::pg::testing::fresh_database());
    config.admin_key = Some(ADMIN.into());
    config.token_secret = Some("cluster-flow-token-secret-0123456789".into());
    config.feedback_api_key = Some("cluster-flow-feedback-key-0123456789".into());
    config.cluster = Some(engine::ClusterSettings {
        nats: nats.url.clone(),
        ..Default::default()
    });
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
    let cfg = FlowConfig {
        associates: 45,
        users: 30,
        duration: Duration::from_secs(10),
        drain: Duration::from_secs(20),
        compression,
        location_every_s: 60.0,
        seed: 20_261_130,
        ..FlowConfig::default()
    };
    let stats = Arc::new(Stats::default());
    let result = flow::run(target, cfg, stats.clone(), |_, _, _| {})
        .await
        .unwrap();
    let report = FlowReport::new(&stats, result);
    println!("{}", report.summary());
    assert!(report.result.clean(), "{:#?}", report.result);
    assert!(
        report.result.orders_seen >= 10,
        "too few orders to mean anything: {}",
        report.result.orders_seen
    );
    assert!(report.outcomes.get("closed").copied().unwrap_or(0) >= 10);
}
