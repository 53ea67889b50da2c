//! Group commit: one flush and one `fdatasync` make every write made before them
//! durable, so writers queue for the next one instead of each paying for a sync.
//!
//! Order writes are also *run* by the committer thread: it applies every order write
//! queued since its last flush in one transaction, then flushes once for all of them.
//! sled 0.34 writes its log buffer out around every transaction, so one transaction per
//! batch instead of one per write is most of the saving (measured in
//! docs/PERFORMANCE.md).
//!
//! The sync runs on a second thread, so the committer applies and flushes the next batch
//! while the previous one is synced: a batch is acknowledged only after an `fdatasync`
//! that began after its flush returned (one sync may cover several batches). At most
//! [`SYNCS_IN_FLIGHT`] flushed batches wait for their sync.
//!
//! The queue is bounded: when the committer falls behind, writers wait for room instead
//! of memory growing.

use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::ack::{DURABLE_WRITE_SECONDS, Durable, Ticket};
use crate::embedded::orders::{OrderWrite, write_batch};
use crate::embedded::sync::Syncer;
use crate::error::StorageError;
use crate::lifecycle::Committed;
use crate::queue::Queue;

/// Flushed batches that may wait for the sync thread before the committer waits too.
pub(crate) const SYNCS_IN_FLIGHT: usize = 2;

fn flush_error(e: String) -> StorageError {
    StorageError::Db(sled::Error::Io(std::io::Error::other(e)))
}

/// What the committer thread is asked for, and when.
enum Item {
    /// Resolve this waiter after the next flush.
    Wait(Instant, oneshot::Sender<Result<(), String>>),
    /// Run this order write before the next flush; report it after.
    Order(
        Instant,
        OrderWrite,
        oneshot::Sender<Result<Committed, StorageError>>,
    ),
}

/// The committer and sync threads and their mailbox.
pub(crate) struct Committer {
    queue: Arc<Queue<Item>>,
    thread: Option<thread::JoinHandle<()>>,
    syncer: Option<thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committer")
            .field("queued", &self.queued())
            .field("capacity", &self.queue.capacity)
            .finish()
    }
}

impl Committer {
    /// Starts the committer for `db`. With a `max_wait` above zero it waits up to that
    /// long after the first writer for others to join its batch. At most `capacity`
    /// items wait in its queue.
    pub(crate) fn start(
        db: sled::Db,
        order_trees: Vec<sled::Tree>,
        syncer: Syncer,
        max_wait: Duration,
        capacity: usize,
    ) -> Result<Self, StorageError> {
        let queue = Arc::new(Queue::new(capacity));
        let (to_sync, flushed) = mpsc::sync_channel::<Flushed>(SYNCS_IN_FLIGHT);
        let spawn_error = |e| StorageError::Db(sled::Error::Io(e));
        let sync_thread = thread::Builder::new()
            .name("storage-sync".into())
            .spawn(move || sync_loop(syncer, flushed))
            .map_err(spawn_error)?;
        let q = queue.clone();
        let thread = thread::Builder::new()
            .name("storage-commit".into())
            .spawn(move || run(db, order_trees, to_sync, &q, max_wait))
            .map_err(spawn_error)?;
        Ok(Self {
            queue,
            thread: Some(thread),
            syncer: Some(sync_thread),
        })
    }

    /// A ticket that resolves after a flush and sync that covers every write made so far.
    pub(crate) fn ticket(&self) -> Ticket {
        let (tx, rx) = oneshot::channel();
        // Queued now (in call order) when there is room; otherwise the ticket waits.
        let queued = self.queue.enqueue(Item::Wait(Instant::now(), tx));
        Ticket::from_future(Box::pin(async move {
            queued.await;
            match rx.await {
                Ok(synced) => synced.map_err(flush_error),
                Err(_) => Err(StorageError::Closed),
            }
        }))
    }

    /// Runs an order write on the committer thread, batched with the others queued
    /// before its next flush; the result arrives once that flush and sync are done.
    pub(crate) fn submit(&self, write: OrderWrite) -> Durable<Committed> {
        let (tx, rx) = oneshot::channel();
        // Queued now (in call order) when there is room; otherwise the write waits.
        let queued = self.queue.enqueue(Item::Order(Instant::now(), write, tx));
        Durable::from_future(Box::pin(async move {
            queued.await;
            rx.await.unwrap_or(Err(StorageError::Closed))
        }))
    }

    /// Items waiting for the committer now.
    pub(crate) fn queued(&self) -> usize {
        self.queue.len()
    }

    /// The most items that may wait.
    pub(crate) fn capacity(&self) -> usize {
        self.queue.capacity
    }
}

impl Drop for Committer {
    /// Lets the committer finish its last batch and release its handle on the database,
    /// so the store can be reopened as soon as it is dropped.
    fn drop(&mut self) {
        self.queue.close();
        // A write run by the committer may hold the last handle on the store, which
        // one of these threads then drops itself: it must not wait for its own end.
        for thread in [self.thread.take(), self.syncer.take()]
            .into_iter()
            .flatten()
        {
            if thread.thread().id() != thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

/// A flushed batch on its way to the sync thread: what to tell whom once synced.
struct Flushed {
    /// The flush's outcome.
    flush: Result<(), String>,
    /// Each order write's outcome and where to report it.
    writes: Vec<(
        Result<crate::embedded::orders::Written, StorageError>,
        OrderReply,
    )>,
    waiters: Vec<oneshot::Sender<Result<(), String>>>,
    /// When each of its writes and waiters was submitted.
    submitted: Vec<Instant>,
}

type OrderReply = oneshot::Sender<Result<Committed, StorageError>>;

/// The committer: batches, applies and flushes; hands each flushed batch to the sync
/// thread (waiting when [`SYNCS_IN_FLIGHT`] batches already wait there).
fn run(
    db: sled::Db,
    trees: Vec<sled::Tree>,
    to_sync: mpsc::SyncSender<Flushed>,
    queue: &Queue<Item>,
    max_wait: Duration,
) {
    let mut writes = Vec::new();
    let mut replies = Vec::new();
    while let Some(batch) = queue.next_batch(max_wait) {
        queue.drained();
        let mut waiters = Vec::new();
        let mut submitted = Vec::with_capacity(batch.len());
        for item in batch {
            match item {
                Item::Wait(at, w) => {
                    submitted.push(at);
                    waiters.push(w);
                }
                Item::Order(at, write, reply) => {
                    submitted.push(at);
                    writes.push(write);
                    replies.push(reply);
                }
            }
        }
        // An empty transaction would still reserve log space and roll sled's log buffer.
        let written = if writes.is_empty() {
            Vec::new()
        } else {
            write_batch(&trees, &writes)
        };
        writes.clear();
        let flush = db.flush().map(drop).map_err(|e| e.to_string());
        let flushed = Flushed {
            flush,
            writes: written.into_iter().zip(replies.drain(..)).collect(),
            waiters,
            submitted,
        };
        if to_sync.send(flushed).is_err() {
            break;
        }
    }
}

/// The sync thread: one `fdatasync` for every batch flushed before it began, then the
/// answers. Nothing is acknowledged before the sync has returned.
fn sync_loop(mut syncer: Syncer, flushed: mpsc::Receiver<Flushed>) {
    let latency = metrics::histogram!(DURABLE_WRITE_SECONDS);
    while let Ok(first) = flushed.recv() {
        let mut batches = vec![first];
        batches.extend(flushed.try_iter());
        let synced: Result<(), String> = syncer.sync().map_err(|e| format!("fdatasync: {e}"));
        for batch in batches {
            let result = batch.flush.and_then(|()| synced.clone());
            for (written, reply) in batch.writes {
                let outcome = match (written, &result) {
                    (Ok(w), Ok(())) => Ok(w.committed(Ticket::done())),
                    (Ok(_), Err(e)) => Err(flush_error(e.clone())),
                    (Err(e), _) => Err(e),
                };
                let _ = reply.send(outcome);
            }
            for waiter in batch.waiters {
                let _ = waiter.send(result.clone());
            }
            for at in batch.submitted {
                latency.record(at.elapsed().as_secs_f64());
            }
        }
    }
}
