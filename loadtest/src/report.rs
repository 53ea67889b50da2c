//! The report: JSON with every figure, and an SVG with latency histograms and a timeline.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;
use serde::Serialize;

use crate::flow::FlowResult;
use crate::stats::{Percentiles, Stats};

/// Everything a flow run measured.
#[derive(Debug, Clone, Serialize)]
pub struct FlowReport {
    /// The run's outcome checks and settings.
    pub result: FlowResult,
    /// Frames sent per second, by type.
    pub sent_per_s: BTreeMap<String, f64>,
    /// Frames received per second, by type.
    pub received_per_s: BTreeMap<String, f64>,
    /// Outcome counts.
    pub outcomes: BTreeMap<String, u64>,
    /// Error frames by code.
    pub errors: BTreeMap<String, u64>,
    /// Request → first offer.
    pub request_to_first_offer: Percentiles,
    /// Request → allotment (time to accept, seen by the user).
    pub request_to_allotment: Percentiles,
    /// Pay → payment result.
    pub pay_to_result: Percentiles,
    /// Allotted requests over requests made.
    pub fulfilment_rate: f64,
    /// Timeline: (second, requests so far, allotments so far, frames received so far).
    pub timeline: Vec<(u64, u64, u64, u64)>,
}

impl FlowReport {
    /// Builds the report from a run's stats and result.
    pub fn new(stats: &Stats, result: FlowResult) -> Self {
        let secs = result.elapsed_s.max(0.001);
        let rate =
            |m: BTreeMap<String, u64>| m.into_iter().map(|(k, v)| (k, v as f64 / secs)).collect();
        let outcomes = stats.outcomes.snapshot();
        let requests = outcomes.get("requests").copied().unwrap_or(0);
        let allotted = outcomes.get("allotted").copied().unwrap_or(0);
        Self {
            sent_per_s: rate(stats.sent.snapshot()),
            received_per_s: rate(stats.received.snapshot()),
            errors: stats.errors.snapshot(),
            request_to_first_offer: stats.first_offer.percentiles(),
            request_to_allotment: stats.allotment.percentiles(),
            pay_to_result: stats.payment.percentiles(),
            fulfilment_rate: if requests == 0 {
                0.0
            } else {
                allotted as f64 / requests as f64
            },
            timeline: stats.timeline.lock().map(|t| t.clone()).unwrap_or_default(),
            outcomes,
            result,
        }
    }

    /// A few lines for the terminal.
    pub fn summary(&self) -> String {
        let p = |x: &Percentiles| {
            format!(
                "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (n={})",
                x.p50_ms, x.p99_ms, x.max_ms, x.count
            )
        };
        let total_in: f64 = self.received_per_s.values().sum();
        let total_out: f64 = self.sent_per_s.values().sum();
        format!(
            "{} orders seen; outcomes {:?}\n\
             frames/s: {:.0} to the engine, {:.0} from it\n\
             request -> first offer: {}\nrequest -> allotment: {}\npay -> result: {}\n\
             fulfilment {:.1}%; unfinished {}, lost {}, protocol errors {}, \
             offers held at once (engine's records) {} (as the apps saw them {}; \
             trails missing {})",
            self.result.orders_seen,
            self.outcomes,
            total_out,
            total_in,
            p(&self.request_to_first_offer),
            p(&self.request_to_allotment),
            p(&self.pay_to_result),
            self.fulfilment_rate * 100.0,
            self.result.unfinished.len(),
            self.result.lost.len(),
            self.result.protocol_errors.values().sum::<u64>(),
            self.result.offered_twice.len(),
            self.result.offered_twice_by_apps.len(),
            self.result.trails_missing,
        )
    }

    /// Writes `report.json` and `report.svg` into `dir`.
    pub fn write(&self, dir: &Path, stats: &Stats) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(self)?)?;
        self.plot(&dir.join("report.svg"), stats)?;
        Ok(())
    }

    fn plot(&self, path: &Path, stats: &Stats) -> anyhow::Result<()> {
        let root = SVGBackend::new(path, (1200, 900)).into_drawing_area();
        root.fill(&WHITE)?;
        let (top, bottom) = root.split_vertically(450);
        let panels = top.split_evenly((1, 3));
        let histograms = [
            ("request -> first offer (ms)", stats.first_offer.buckets()),
            ("request -> allotment (ms)", stats.allotment.buckets()),
            ("pay -> payment result (ms)", stats.payment.buckets()),
        ];
        for (area, (title, buckets)) in panels.iter().zip(histograms) {
            let max_x = buckets.iter().map(|b| b.0).fold(1.0, f64::max);
            let max_y = buckets.iter().map(|b| b.1).max().unwrap_or(1).max(1);
            let mut chart = ChartBuilder::on(area)
                .caption(title, ("sans-serif", 16))
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(40)
                .build_cartesian_2d(
                    (0.01f64..max_x * 1.1).log_scale(),
                    0u64..max_y + max_y / 10 + 1,
                )?;
            chart
                .configure_mesh()
                .x_desc("ms (log)")
                .y_desc("samples")
                .draw()?;
            chart.draw_series(
                buckets
                    .iter()
                    .filter(|b| b.1 > 0)
                    .map(|&(x, y)| Rectangle::new([(x / 1.5, 0), (x, y)], BLUE.mix(0.6).filled())),
            )?;
        }
        let timeline = &self.timeline;
        let rate = |i: usize, f: fn(&(u64, u64, u64, u64)) -> u64| -> Vec<(f64, f64)> {
            timeline
                .windows(2)
                .map(|w| {
                    let dt = (w[1].0.saturating_sub(w[0].0)).max(1) as f64;
                    (
                        w[1].0 as f64,
                        (f(&w[1]).saturating_sub(f(&w[0]))) as f64 / dt,
                    )
                })
                .skip(i)
                .collect()
        };
        let requests = rate(0, |p| p.1);
        let allotments = rate(0, |p| p.2);
        let frames = rate(0, |p| p.3);
        let max_t = timeline.last().map_or(1.0, |p| p.0 as f64).max(1.0);
        let max_y = requests
            .iter()
            .chain(&allotments)
            .map(|p| p.1)
            .fold(1.0, f64::max);
        let max_frames = frames.iter().map(|p| p.1).fold(1.0, f64::max);
        let mut chart = ChartBuilder::on(&bottom)
            .caption(
                "timeline: requests/s, allotments/s (left); frames from the engine/s (right)",
                ("sans-serif", 16),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .right_y_label_area_size(60)
            .build_cartesian_2d(0f64..max_t, 0f64..max_y * 1.1)?
            .set_secondary_coord(0f64..max_t, 0f64..max_frames * 1.1);
        chart.configure_mesh().x_desc("seconds").draw()?;
        chart.configure_secondary_axes().draw()?;
        chart
            .draw_series(LineSeries::new(requests, &RED))?
            .label("requests/s")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RED));
        chart
            .draw_series(LineSeries::new(allotments, &GREEN))?
            .label("allotments/s")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], GREEN));
        chart
            .draw_secondary_series(LineSeries::new(frames, &BLUE))?
            .label("frames/s")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE));
        chart.configure_series_labels().border_style(BLACK).draw()?;
        root.present()?;
        Ok(())
    }
}
