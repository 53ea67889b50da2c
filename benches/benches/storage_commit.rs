//! Durable order transitions per second through the group committer, with commit latency
//! percentiles: writer threads each create an order and walk it through its lifecycle,
//! waiting for every write to be on disk before the next.
//!
//! Run: `cargo bench -p speedy-benches --bench storage_commit` (set `COMMIT_WRITERS`,
//! `COMMIT_SECONDS`, `COMMIT_WAIT_US`, `COMMIT_DIR` to change writers, duration, the
//! committer's batching wait and the database directory).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use storage::{OrderRecord, Store, StoreConfig};
use wire::model::{OrderEventKind, OrderState, PartySummary, Point};
use wire::{AssociateId, OrderId, RequestId, UserId};

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn order(n: u64) -> OrderRecord {
    let party = |name: &str| PartySummary {
        id: uuid::Uuid::nil(),
        name: name.into(),
        phone: "0".into(),
        rating_centi: None,
        rating_count: 0,
    };
    OrderRecord {
        order_id: OrderId::new(),
        request_id: RequestId::new(),
        user_id: UserId::new(),
        associate_id: AssociateId::new(),
        state: OrderState::Allotted,
        task: "companion".into(),
        pickup: Point {
            lat: 12.97,
            lng: 77.59,
        },
        note: None,
        discount_code: None,
        user: party("u"),
        associate: party("a"),
        pin: "1234".into(),
        allotted_at_ms: n,
        started_at_ms: None,
        completed_at_ms: None,
        ended_at_ms: None,
        invoice_id: None,
        payment_id: None,
        cancellation: None,
        next_seq: 0,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; this harness takes no arguments of its own.
    let writers: usize = env("COMMIT_WRITERS", 256);
    let seconds: u64 = env("COMMIT_SECONDS", 10);
    let dir = std::env::var("COMMIT_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::env::temp_dir().join(format!("speedy-commit-bench-{}", std::process::id()))
        });
    let _ = std::fs::remove_dir_all(&dir);
    let wait_us: u64 = env("COMMIT_WAIT_US", 0);
    let store = Store::open(&StoreConfig {
        path: Some(dir.clone()),
        group_commit_wait: Duration::from_micros(wait_us),
        ..StoreConfig::default()
    })
    .expect("open store");
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let histograms: Vec<(u64, Histogram<u64>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let store = store.clone();
                let stop = stop.clone();
                scope.spawn(move || {
                    let mut hist =
                        Histogram::<u64>::new_with_bounds(1, 10_000_000, 3).expect("histogram");
                    let mut done = 0u64;
                    let steps = [
                        OrderEventKind::EnRoute,
                        OrderEventKind::Arrived,
                        OrderEventKind::Started,
                        OrderEventKind::Completed { minutes: 30 },
                    ];
                    let mut n = w as u64;
                    while !stop.load(Ordering::Relaxed) {
                        let o = order(n);
                        n += writers as u64;
                        let t = Instant::now();
                        store
                            .create_order(&o)
                            .expect("create")
                            .ticket
                            .wait()
                            .expect("durable");
                        hist.record(t.elapsed().as_micros() as u64).ok();
                        done += 1;
                        for kind in steps.iter().cloned() {
                            let t = Instant::now();
                            store
                                .transition(o.order_id, n, kind, &[])
                                .expect("transition")
                                .ticket
                                .wait()
                                .expect("durable");
                            hist.record(t.elapsed().as_micros() as u64).ok();
                            done += 1;
                        }
                    }
                    (done, hist)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(seconds));
        stop.store(true, Ordering::Relaxed);
        handles
            .into_iter()
            .map(|h| h.join().expect("writer"))
            .collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let mut all = Histogram::<u64>::new_with_bounds(1, 10_000_000, 3).expect("histogram");
    let mut total = 0;
    for (done, h) in &histograms {
        total += done;
        all.add(h).expect("same bounds");
    }
    println!(
        "storage group commit: {writers} writers, {seconds} s, commit wait {wait_us} us, database in {}",
        dir.display()
    );
    println!("durable transitions/s: {:.0}", total as f64 / elapsed);
    for q in [0.5, 0.9, 0.99, 0.999] {
        println!(
            "commit latency p{:<5} {:>8.3} ms",
            q * 100.0,
            all.value_at_quantile(q) as f64 / 1000.0
        );
    }
    println!(
        "commit latency max    {:>8.3} ms",
        all.max() as f64 / 1000.0
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
