//! Group commit: one flush makes every write made before it durable, so writers queue
//! for the next flush instead of each paying for an fsync.
//!
//! Order writes are also *run* by the flusher thread: it applies every order write queued
//! since its last flush in one transaction, then flushes once for all of them. sled 0.34
//! writes its log buffer out around every transaction, so one transaction per batch
//! instead of one per write is most of the saving (measured in docs/PERFORMANCE.md).

use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc;
use std::task::{Context, Poll};
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::error::StorageError;
use crate::orders::{Committed, OrderWrite, write_batch};

type Waiter = oneshot::Sender<Result<(), String>>;

/// A write that will be durable once the flush it waits for completes.
#[derive(Debug)]
#[must_use = "a write is only durable once its ticket resolves"]
pub struct Ticket {
    rx: Option<oneshot::Receiver<Result<(), String>>>,
}

impl Ticket {
    /// A ticket for a write that needs no flush (nothing was written).
    pub fn done() -> Self {
        Self { rx: None }
    }

    /// Waits until the write is on disk.
    pub async fn durable(self) -> Result<(), StorageError> {
        match self.rx {
            None => Ok(()),
            Some(rx) => settle(rx.await),
        }
    }

    /// Blocks the thread until the write is on disk (not for use inside async code).
    pub fn wait(self) -> Result<(), StorageError> {
        match self.rx {
            None => Ok(()),
            Some(rx) => settle(rx.blocking_recv()),
        }
    }
}

fn settle(r: Result<Result<(), String>, oneshot::error::RecvError>) -> Result<(), StorageError> {
    match r {
        Ok(flushed) => flushed.map_err(flush_error),
        Err(_) => Err(StorageError::Closed),
    }
}

fn flush_error(e: String) -> StorageError {
    StorageError::Db(sled::Error::Io(std::io::Error::other(e)))
}

/// The outcome of a write run by the flusher: resolves once the write is on disk (or
/// failed), with what the write returned.
#[derive(Debug)]
#[must_use = "a durable write reports its outcome only to whoever awaits it"]
pub struct Durable<T> {
    rx: oneshot::Receiver<Result<T, StorageError>>,
}

impl<T> Durable<T> {
    /// Blocks the thread until the write is on disk (not for use inside async code).
    pub fn wait(self) -> Result<T, StorageError> {
        self.rx.blocking_recv().unwrap_or(Err(StorageError::Closed))
    }
}

impl<T> Future for Durable<T> {
    type Output = Result<T, StorageError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(StorageError::Closed)))
    }
}

/// What the flusher thread is asked for.
enum Item {
    /// Resolve this ticket after the next flush.
    Wait(Waiter),
    /// Run this order write before the next flush; report it after.
    Order(OrderWrite, oneshot::Sender<Result<Committed, StorageError>>),
}

/// The flusher thread's mailbox.
#[derive(Debug)]
pub(crate) struct Committer {
    tx: Option<mpsc::Sender<Item>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Committer {
    /// Starts the flusher for `db`. With a `max_wait` above zero the flusher waits up to
    /// that long after the first writer for others to join its batch.
    pub(crate) fn start(
        db: sled::Db,
        order_trees: Vec<sled::Tree>,
        max_wait: Duration,
    ) -> Result<Self, StorageError> {
        let (tx, rx) = mpsc::channel::<Item>();
        let thread = thread::Builder::new()
            .name("storage-commit".into())
            .spawn(move || run(db, order_trees, rx, max_wait))
            .map_err(|e| StorageError::Db(sled::Error::Io(e)))?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// A ticket that resolves after the next flush, which covers every write made so far.
    pub(crate) fn ticket(&self) -> Ticket {
        let (tx, rx) = oneshot::channel();
        // If the flusher is gone the waiter drops here and the ticket resolves to Closed.
        if let Some(sender) = &self.tx {
            let _ = sender.send(Item::Wait(tx));
        }
        Ticket { rx: Some(rx) }
    }

    /// Runs an order write on the flusher thread, batched with the others queued
    /// before its next flush; the result arrives once that flush is done.
    pub(crate) fn submit(&self, write: OrderWrite) -> Durable<Committed> {
        let (tx, rx) = oneshot::channel();
        // If the flusher is gone the item drops here and the write resolves to Closed.
        if let Some(sender) = &self.tx {
            let _ = sender.send(Item::Order(write, tx));
        }
        Durable { rx }
    }
}

impl Drop for Committer {
    /// Lets the flusher finish its last batch and release its handle on the database,
    /// so the store can be reopened as soon as it is dropped.
    fn drop(&mut self) {
        self.tx.take();
        if let Some(thread) = self.thread.take() {
            // A write run by the flusher may hold the last handle on the store; the
            // flusher then drops it itself and must not wait for its own end.
            if thread.thread().id() != thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

fn run(db: sled::Db, trees: Vec<sled::Tree>, rx: mpsc::Receiver<Item>, max_wait: Duration) {
    let mut batch = Batch::default();
    while let Ok(first) = rx.recv() {
        batch.take(first);
        if max_wait > Duration::ZERO {
            let deadline = Instant::now() + max_wait;
            while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                match rx.recv_timeout(left) {
                    Ok(item) => batch.take(item),
                    Err(_) => break,
                }
            }
        }
        // Every write run and every ticket taken before the flush starts is covered by it.
        rx.try_iter().for_each(|item| batch.take(item));
        // An empty transaction would still reserve log space and roll sled's log buffer.
        let written = if batch.writes.is_empty() {
            Vec::new()
        } else {
            write_batch(&trees, &batch.writes)
        };
        batch.writes.clear();
        let result = db.flush().map(drop).map_err(|e| e.to_string());
        for (written, reply) in written.into_iter().zip(batch.replies.drain(..)) {
            let outcome = match (written, &result) {
                (Ok(w), Ok(())) => Ok(w.committed(Ticket::done())),
                (Ok(_), Err(e)) => Err(flush_error(e.clone())),
                (Err(e), _) => Err(e),
            };
            let _ = reply.send(outcome);
        }
        for waiter in batch.waiters.drain(..) {
            let _ = waiter.send(result.clone());
        }
    }
}

/// What one flush will cover.
#[derive(Default)]
struct Batch {
    waiters: Vec<Waiter>,
    writes: Vec<OrderWrite>,
    replies: Vec<oneshot::Sender<Result<Committed, StorageError>>>,
}

impl Batch {
    /// Queues a ticket or an order write.
    fn take(&mut self, item: Item) {
        match item {
            Item::Wait(w) => self.waiters.push(w),
            Item::Order(write, reply) => {
                self.writes.push(write);
                self.replies.push(reply);
            }
        }
    }
}
