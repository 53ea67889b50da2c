//! CI-sized run of the paced ingest comparison (`loadtest ingest`): the bare WebSocket
//! server and the engine, each its own process, fed the same paced location frames by
//! this process; both sides must have taken in what was sent, and their CPU per frame
//! must be real numbers. The figure itself lives in docs/PERFORMANCE.md, measured on
//! pinned cores; here nothing is pinned and only the measurement is checked.

use std::path::PathBuf;

use loadtest::paced::{PacedConfig, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_paced_ingest_comparison_measures_both_servers() {
    let engine = loadtest::target::sibling_engine();
    assert!(
        engine.exists(),
        "{} is missing: build it with `cargo build -p engine`",
        engine.display()
    );
    let cfg = PacedConfig {
        connections: 100,
        rate: 4.0,
        seconds: 2.0,
        warm_up: 1.0,
        server_cores: None,
        workers: 1,
        source_ips: 0,
    };
    let loadtest = PathBuf::from(env!("CARGO_BIN_EXE_loadtest"));
    let report = run(&engine, &loadtest, cfg).await.unwrap();
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    // 100 connections × 4 frames/s × 2 s = 800 frames each, give or take the window's
    // edges and a busy machine.
    for (side, r) in [("bare", &report.bare), ("engine", &report.engine)] {
        assert!(
            (500..=1_100).contains(&r.frames),
            "{side} took in {} frames",
            r.frames
        );
        assert!(
            r.cpu_s > 0.0 && r.cpu_us_per_frame.is_finite() && r.cpu_us_per_frame > 0.0,
            "{side}: {r:?}"
        );
    }
    assert!(report.cost_ratio.is_finite() && report.cost_ratio > 0.0);
    assert!((report.efficiency * report.cost_ratio - 1.0).abs() < 1e-9);
}
