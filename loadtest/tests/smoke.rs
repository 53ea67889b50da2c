//! CI smoke run: a small, fast full-flow simulation against an in-process engine. Fails on
//! any protocol error, lost order or unfinished flow.

mod common;

use std::sync::Arc;
use std::time::Duration;

use loadtest::flow::{self, FlowConfig};
use loadtest::stats::Stats;
use loadtest::target::InProcess;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_full_flow_run_is_clean() {
    let compression = 600.0;
    let mut config = flow::engine_config(compression);
    config.workers = 1;
    let engine = InProcess::start(config).unwrap();
    let cfg = FlowConfig {
        associates: 40,
        users: 30,
        duration: Duration::from_secs(10),
        drain: Duration::from_secs(20),
        compression,
        location_every_s: 60.0,
        seed: 20_261_124,
        ..FlowConfig::default()
    };
    let stats = Arc::new(Stats::default());
    let result = flow::run(engine.target.clone(), cfg, stats.clone(), |_, _, _| {})
        .await
        .unwrap();
    let report = common::assert_clean(&stats, result);
    let dir = tempfile::tempdir().unwrap();
    report.write(dir.path(), &stats).unwrap();
    assert!(dir.path().join("report.svg").exists());
    assert!(
        report
            .outcomes
            .get("payment_succeeded")
            .copied()
            .unwrap_or(0)
            >= 5
    );
    engine.stop().unwrap();
}
