//! Durable order transitions per second through the group committer, with commit latency
//! percentiles: writer threads each create an order and walk it through its lifecycle,
//! waiting for every write to be on disk before the next.
//!
//! Run: `cargo bench -p speedy-benches --bench storage_commit` (set `COMMIT_WRITERS`,
//! `COMMIT_SECONDS`, `COMMIT_WAIT_US`, `COMMIT_DIR` to change writers, duration, the
//! committer's batching wait and the database directory). Writers are OS threads that
//! block on each ticket, or with `COMMIT_MODE=async` tasks on one tokio thread that await
//! it, as order actors do on their arbiter.
//!
//! `COMMIT_BACKEND=postgres` runs the same load on the Postgres backend: against
//! `COMMIT_DATABASE_URL` if set, else a private server this process starts (Debian's
//! postgresql, fsync and synchronous_commit on) with a fresh database, through
//! `COMMIT_PG_WRITERS` committer connections (default: the engine's).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use storage::{Committed, Durable, OrderRecord, Store, StoreConfig};
use wire::model::{OrderEventKind, OrderState, PartySummary};
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
        pickup: storage::LatLng::new(12.97, 77.59).unwrap(),
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

/// The lifecycle each writer walks after creating an order.
const STEPS: [OrderEventKind; 4] = [
    OrderEventKind::EnRoute,
    OrderEventKind::Arrived,
    OrderEventKind::Started,
    OrderEventKind::Completed { minutes: 30 },
];

fn histogram() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 10_000_000, 3).expect("histogram")
}

/// Whether writes run on the caller's thread with a ticket for the flush
/// (`COMMIT_PATH=caller`) instead of on the committer, as the order actors write.
fn on_caller() -> bool {
    std::env::var("COMMIT_PATH").is_ok_and(|p| p == "caller")
}

/// One write of an order's walk on the caller's thread: the creation (step 0) or a
/// transition; the ticket resolves after the flush.
fn write_here(store: &Store, o: &OrderRecord, step: usize, n: u64) -> storage::Ticket {
    let committed = if step == 0 {
        store.create_order(o)
    } else {
        store.transition(o.order_id, n, STEPS[step - 1].clone(), &[])
    };
    committed.expect("write").ticket
}

/// The same write run by the committer, resolving once durable.
fn write_durable(store: &Store, o: &OrderRecord, step: usize, n: u64) -> Durable<Committed> {
    if step == 0 {
        store.create_order_durable(o.clone())
    } else {
        store.transition_durable(o.order_id, n, STEPS[step - 1].clone(), Vec::new())
    }
}

/// Writer threads blocking on each ticket.
fn run_threads(store: &Store, writers: usize, stop: &AtomicBool) -> Vec<(u64, Histogram<u64>)> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                scope.spawn(move || {
                    let caller = on_caller();
                    let (mut hist, mut done, mut n) = (histogram(), 0u64, w as u64);
                    while !stop.load(Ordering::Relaxed) {
                        let o = order(n);
                        n += writers as u64;
                        for step in 0..=STEPS.len() {
                            let t = Instant::now();
                            if caller {
                                write_here(store, &o, step, n).wait().expect("durable");
                            } else {
                                write_durable(store, &o, step, n).wait().expect("durable");
                            }
                            hist.record(t.elapsed().as_micros() as u64).ok();
                            done += 1;
                        }
                    }
                    (done, hist)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("writer"))
            .collect()
    })
}

/// Writer tasks on one tokio thread, awaiting each ticket.
fn run_tasks(store: &Store, writers: usize, stop: &Arc<AtomicBool>) -> Vec<(u64, Histogram<u64>)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let tasks: Vec<_> = (0..writers)
            .map(|w| {
                let (store, stop) = (store.clone(), stop.clone());
                tokio::spawn(async move {
                    let caller = on_caller();
                    let (mut hist, mut done, mut n) = (histogram(), 0u64, w as u64);
                    while !stop.load(Ordering::Relaxed) {
                        let o = order(n);
                        n += writers as u64;
                        for step in 0..=STEPS.len() {
                            let t = Instant::now();
                            if caller {
                                let ticket = write_here(&store, &o, step, n);
                                ticket.durable().await.expect("durable");
                            } else {
                                write_durable(&store, &o, step, n).await.expect("durable");
                            }
                            hist.record(t.elapsed().as_micros() as u64).ok();
                            done += 1;
                        }
                    }
                    (done, hist)
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("writer task"));
        }
        out
    })
}

fn main() {
    // `cargo bench` passes `--bench`; this harness takes no arguments of its own.
    let writers: usize = env("COMMIT_WRITERS", 256);
    let seconds: u64 = env("COMMIT_SECONDS", 10);
    let tasks = std::env::var("COMMIT_MODE").is_ok_and(|m| m == "async");
    let dir = std::env::var("COMMIT_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::env::temp_dir().join(format!("speedy-commit-bench-{}", std::process::id()))
        });
    let _ = std::fs::remove_dir_all(&dir);
    let wait_us: u64 = env("COMMIT_WAIT_US", 0);
    let postgres = std::env::var("COMMIT_BACKEND").is_ok_and(|b| b == "postgres");
    let store = if postgres {
        let url = std::env::var("COMMIT_DATABASE_URL")
            .unwrap_or_else(|_| storage::pg::testing::fresh_database());
        Store::postgres(&storage::pg::PgConfig {
            group_commit_wait: Duration::from_micros(wait_us),
            writers: env("COMMIT_PG_WRITERS", storage::pg::DEFAULT_WRITERS),
            ..storage::pg::PgConfig::new(url)
        })
        .expect("open postgres store")
    } else {
        Store::open(&StoreConfig {
            path: Some(dir.clone()),
            group_commit_wait: Duration::from_micros(wait_us),
            ..StoreConfig::default()
        })
        .expect("open store")
    };
    let stop = Arc::new(AtomicBool::new(false));
    let timer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(seconds));
            stop.store(true, Ordering::Relaxed);
        })
    };
    let start = Instant::now();
    let histograms = if tasks {
        run_tasks(&store, writers, &stop)
    } else {
        run_threads(&store, writers, &stop)
    };
    let elapsed = start.elapsed().as_secs_f64();
    timer.join().expect("timer");
    let mut all = histogram();
    let mut total = 0;
    for (done, h) in &histograms {
        total += done;
        all.add(h).expect("same bounds");
    }
    let kind = match (tasks, on_caller()) {
        (true, true) => "tasks on one thread, writing themselves",
        (true, false) => "tasks on one thread, writes run by the committer",
        (false, true) => "threads, writing themselves",
        (false, false) => "threads, writes run by the committer",
    };
    let place = if postgres {
        "postgres".to_string()
    } else {
        format!("sled in {}", dir.display())
    };
    println!(
        "storage group commit: {writers} writers ({kind}), {seconds} s, commit wait {wait_us} us, {place}"
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
