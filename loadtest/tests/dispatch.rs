//! CI-sized end-to-end dispatch run against the engine binary: every request asked in
//! the window is matched with its first offer over the sockets, and the engine's own
//! histograms saw the same window.

use loadtest::latency::{self, LatencyConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_in_the_window_gets_a_first_offer_over_sockets() {
    let engine = loadtest::target::sibling_engine();
    assert!(
        engine.exists(),
        "{} is missing: build it with `cargo build -p engine`",
        engine.display()
    );
    let cfg = LatencyConfig {
        associates: 200,
        location_rate: 2.0,
        users: 20,
        request_rate: 20.0,
        warm_up: 1.0,
        seconds: 3.0,
        workers: 1,
        engine_cores: None,
        source_ips: 2,
    };
    let report = latency::run(&engine, cfg).await.unwrap();
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    assert!(report.requests >= 20, "{}", report.requests);
    assert_eq!(report.no_offer, 0);
    assert_eq!(report.first_offer.count, report.requests);
    assert!(report.engine_side.first_offer_p99_ms.is_some());
    assert!(report.engine_side.location_frame_p99_ms.is_some());
    assert!(
        report.location_frames_per_s > 100.0,
        "{}",
        report.location_frames_per_s
    );
}
