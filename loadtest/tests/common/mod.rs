//! What the simulator tests share.

use loadtest::flow::FlowResult;
use loadtest::report::FlowReport;
use loadtest::stats::Stats;

/// The run's report, once it is clean (no protocol error, nothing lost or unfinished, no
/// request offered to two at once) with at least ten orders seen and closed.
pub fn assert_clean(stats: &Stats, result: FlowResult) -> FlowReport {
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
