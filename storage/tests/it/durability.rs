//! Acknowledged means durable: nothing resolves before the committer's `fdatasync` (sled)
//! or `COMMIT` (Postgres) has returned, and the committer's queue stays bounded when it
//! falls behind. Each test runs on both backends, the hook holding the sync or the commit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use storage::{Store, StoreConfig, SyncHook};
use wire::{AssociateId, UserId};

use crate::{new_order, new_user};

/// A sync hook that, once armed, reports each sync and then blocks it until released.
struct Gate {
    armed: Arc<AtomicBool>,
    entered: mpsc::Receiver<()>,
    release: mpsc::Sender<()>,
}

fn gated_store(kind: crate::Kind, dir: &std::path::Path, queue_capacity: usize) -> (Store, Gate) {
    let armed = Arc::new(AtomicBool::new(false));
    let (entered_tx, entered) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let hook_armed = armed.clone();
    let hook = SyncHook(Arc::new(move || {
        if hook_armed.load(Ordering::SeqCst) {
            let _ = entered_tx.send(());
            let _ = release_rx.lock().unwrap().recv();
        }
    }));
    let store = match kind {
        crate::Kind::Sled => Store::open(&StoreConfig {
            path: Some(dir.to_path_buf()),
            cache_bytes: 8 * 1024 * 1024,
            queue_capacity,
            sync_hook: Some(hook),
            ..StoreConfig::default()
        }),
        crate::Kind::Postgres => Store::postgres(&storage::pg::PgConfig {
            queue_capacity,
            commit_hook: Some(hook),
            // One committer, whose single gate these tests hold and release.
            writers: 1,
            ..storage::pg::PgConfig::new(storage::pg::testing::fresh_database())
        }),
    }
    .unwrap();
    (
        store,
        Gate {
            armed,
            entered,
            release,
        },
    )
}

const WAIT: Duration = Duration::from_secs(10);

fn nothing_is_acknowledged_before_the_sync_returns(kind: crate::Kind) {
    let dir = tempfile::tempdir().unwrap();
    let (store, gate) = gated_store(kind, dir.path(), 1_024);
    gate.armed.store(true, Ordering::SeqCst);
    let order = new_order(UserId::new(), AssociateId::new(), 1);
    let write = store.create_order_durable(order.clone());
    let ticket = store.put_user(&new_user(0)).unwrap();
    // The committer has flushed and is inside the sync step, held there.
    gate.entered
        .recv_timeout(WAIT)
        .expect("the committer syncs");
    let (acked_tx, acked) = mpsc::channel();
    let acked_tx2 = acked_tx.clone();
    std::thread::spawn(move || acked_tx.send(("order", write.wait().is_ok())));
    std::thread::spawn(move || acked_tx2.send(("user", ticket.wait().is_ok())));
    // Held in the sync, so neither write may be acknowledged.
    assert_eq!(
        acked.recv_timeout(Duration::from_millis(200)),
        Err(RecvTimeoutError::Timeout),
        "acknowledged before the sync returned"
    );
    gate.armed.store(false, Ordering::SeqCst);
    gate.release.send(()).unwrap();
    let mut got = vec![
        acked.recv_timeout(WAIT).unwrap(),
        acked.recv_timeout(WAIT).unwrap(),
    ];
    got.sort();
    assert_eq!(got, [("order", true), ("user", true)]);
    assert!(store.order(order.order_id).unwrap().is_some());
}
crate::both!(nothing_is_acknowledged_before_the_sync_returns);

fn a_committer_that_falls_behind_makes_writers_wait_instead_of_queueing_without_bound(
    kind: crate::Kind,
) {
    let dir = tempfile::tempdir().unwrap();
    const CAPACITY: usize = 4;
    let (store, gate) = gated_store(kind, dir.path(), CAPACITY);
    gate.armed.store(true, Ordering::SeqCst);
    // The first write's batch holds the committer in its sync.
    let first = store.create_order_durable(new_order(UserId::new(), AssociateId::new(), 1));
    gate.entered
        .recv_timeout(WAIT)
        .expect("the committer syncs");
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // More writers than the pipeline (a batch in the sync, more waiting for it, one in
    // the committer's hands) can absorb, so the queue must fill.
    let writers: Vec<_> = (0..40)
        .map(|n| {
            let store = store.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                let o = new_order(UserId::new(), AssociateId::new(), 10 + n);
                let id = o.order_id;
                store.create_order_durable(o).wait().unwrap();
                done.fetch_add(1, Ordering::SeqCst);
                id
            })
        })
        .collect();
    // The queue fills to its capacity and stops there; the other writers wait.
    let deadline = Instant::now() + WAIT;
    loop {
        let (queued, capacity) = store.commit_queue();
        assert_eq!(capacity, CAPACITY);
        assert!(
            queued <= CAPACITY,
            "{queued} queued over a capacity of {CAPACITY}"
        );
        if queued == CAPACITY {
            break;
        }
        assert!(Instant::now() < deadline, "the queue never filled");
        std::thread::yield_now();
    }
    assert_eq!(done.load(Ordering::SeqCst), 0, "nothing acknowledged yet");
    gate.armed.store(false, Ordering::SeqCst);
    gate.release.send(()).unwrap();
    first.wait().unwrap();
    for w in writers {
        let id = w.join().unwrap();
        assert!(store.order(id).unwrap().is_some());
    }
    assert_eq!(store.commit_queue().0, 0);
}
crate::both!(a_committer_that_falls_behind_makes_writers_wait_instead_of_queueing_without_bound);
