//! What the simulation counts: frames by type, outcomes, errors, latencies, a timeline.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// A named counter set, keyed by a static name.
#[derive(Debug, Default)]
pub struct Counters(Mutex<BTreeMap<String, u64>>);

impl Counters {
    /// Adds one to `name`.
    pub fn bump(&self, name: &str) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry(name.to_owned()).or_default() += 1;
    }

    /// A copy of every count.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The count of `name`.
    pub fn get(&self, name: &str) -> u64 {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .copied()
            .unwrap_or(0)
    }
}

/// A latency histogram in microseconds.
#[derive(Debug)]
pub struct Latency(Mutex<Histogram<u64>>);

impl Default for Latency {
    fn default() -> Self {
        // expect: fixed, valid bounds.
        Self(Mutex::new(
            Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds"),
        ))
    }
}

/// Percentiles of a latency histogram, in milliseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th.
    pub p90_ms: f64,
    /// 99th.
    pub p99_ms: f64,
    /// 99.9th.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Latency {
    /// Records one sample.
    pub fn record(&self, d: Duration) {
        let micros = d.as_micros().clamp(1, 600_000_000) as u64;
        let _ = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(micros);
    }

    /// The percentiles so far.
    pub fn percentiles(&self) -> Percentiles {
        let h = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: h.max() as f64 / 1000.0,
        }
    }

    /// (upper bound in ms, count) buckets for plotting.
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        let h = self.0.lock().unwrap_or_else(|e| e.into_inner());
        h.iter_log(100, 1.5)
            .map(|v| {
                (
                    v.value_iterated_to() as f64 / 1000.0,
                    v.count_since_last_iteration(),
                )
            })
            .collect()
    }
}

/// Everything the simulation measures.
#[derive(Debug)]
pub struct Stats {
    /// When the run started.
    pub started: Instant,
    /// Frames sent, by type.
    pub sent: Counters,
    /// Frames received, by type.
    pub received: Counters,
    /// Outcomes (requests, allotments, payments, ...).
    pub outcomes: Counters,
    /// Error frames by code, and client-side failures.
    pub errors: Counters,
    /// Errors that mean the protocol was broken (the simulator sent something wrong, or
    /// the engine answered something unexpected).
    pub protocol_errors: Counters,
    /// Request sent → first offer at an associate.
    pub first_offer: Latency,
    /// Request sent → allotment at the user.
    pub allotment: Latency,
    /// Pay sent → payment result.
    pub payment: Latency,
    /// Connections open now.
    pub connections: AtomicU64,
    /// Per-second timeline: (second, requests, allotments, frames received).
    pub timeline: Mutex<Vec<(u64, u64, u64, u64)>>,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            sent: Counters::default(),
            received: Counters::default(),
            outcomes: Counters::default(),
            errors: Counters::default(),
            protocol_errors: Counters::default(),
            first_offer: Latency::default(),
            allotment: Latency::default(),
            payment: Latency::default(),
            connections: AtomicU64::new(0),
            timeline: Mutex::new(Vec::new()),
        }
    }
}

impl Stats {
    /// Total frames received so far.
    pub fn frames_received(&self) -> u64 {
        self.received.snapshot().values().sum()
    }

    /// Appends one timeline point.
    pub fn tick(&self) {
        let second = self.started.elapsed().as_secs();
        let point = (
            second,
            self.outcomes.get("requests"),
            self.outcomes.get("allotted"),
            self.frames_received(),
        );
        self.timeline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(point);
    }

    /// Connections open now.
    pub fn open_connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }
}
