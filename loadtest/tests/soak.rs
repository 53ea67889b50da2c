//! CI-sized soak: a few thousand cycles of churn against the engine binary; every
//! actor, supervisor, order and request it created must be gone again afterwards.

use std::time::Duration;

use loadtest::soak::{self, SoakConfig};

/// The engine binary cargo built beside this test (target/<profile>/engine).
fn engine_binary() -> std::path::PathBuf {
    let engine = loadtest::target::sibling_engine();
    assert!(
        engine.exists(),
        "{} is missing: build it with `cargo build -p engine`",
        engine.display()
    );
    engine
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_leaves_nothing_behind() {
    let cfg = SoakConfig {
        cycles: 2_000,
        concurrency: 32,
        warm_up: 500,
        wanderers: 8,
        abandon_pause: Duration::from_millis(50),
        source_ips: 4,
        settle: Duration::from_secs(60),
        seed: 11,
        pool: 0,
    };
    let report = soak::run(&engine_binary(), cfg, |line| eprintln!("{line}"))
        .await
        .unwrap();
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    assert_eq!(report.failures, 0);
    assert!(report.request_cells >= 8, "{}", report.request_cells);
    assert!(report.abandoned_orders >= 1);
    assert_eq!(report.abandoned_cancelled, report.abandoned_orders);
    // Things did pile up during the run, and all of it went away.
    assert!(report.peak.shard_supervisors > 1.0 && report.peak.associate_actors > 1.0);
    assert_eq!(
        report.end.associate_actors,
        report.baseline.associate_actors
    );
    assert_eq!(
        report.end.shard_supervisors,
        report.baseline.shard_supervisors
    );
    assert_eq!(report.end.order_actors, report.baseline.order_actors);
    assert_eq!(report.end.open_requests, report.baseline.open_requests);
    // Requests from many cells left no series per cell behind: /metrics stays bounded.
    assert_eq!(report.peak.per_cell_series, 0);
    assert_eq!(report.end.per_cell_series, 0);
    assert!(
        report.end.series < report.warm.series + report.request_cells,
        "{} series at the end, {} after warm-up, {} cells visited",
        report.end.series,
        report.warm.series,
        report.request_cells
    );
}
