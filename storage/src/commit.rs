//! Group commit: one flush makes every write made before it durable, so writers queue
//! for the next flush instead of each paying for an fsync.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::error::StorageError;

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
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(StorageError::Db(sled::Error::Io(std::io::Error::other(e)))),
        Err(_) => Err(StorageError::Closed),
    }
}

/// The flusher thread's mailbox.
#[derive(Debug)]
pub(crate) struct Committer {
    tx: Option<mpsc::Sender<Waiter>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Committer {
    /// Starts the flusher for `db`. With a `max_wait` above zero the flusher waits up to
    /// that long after the first writer for others to join its batch.
    pub(crate) fn start(db: sled::Db, max_wait: Duration) -> Result<Self, StorageError> {
        let (tx, rx) = mpsc::channel::<Waiter>();
        let thread = thread::Builder::new()
            .name("storage-commit".into())
            .spawn(move || run(db, rx, max_wait))
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
            let _ = sender.send(tx);
        }
        Ticket { rx: Some(rx) }
    }
}

impl Drop for Committer {
    /// Lets the flusher finish its last batch and release its handle on the database,
    /// so the store can be reopened as soon as it is dropped.
    fn drop(&mut self) {
        self.tx.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(db: sled::Db, rx: mpsc::Receiver<Waiter>, max_wait: Duration) {
    let mut batch: Vec<Waiter> = Vec::new();
    while let Ok(first) = rx.recv() {
        batch.push(first);
        if max_wait > Duration::ZERO {
            let deadline = Instant::now() + max_wait;
            while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                match rx.recv_timeout(left) {
                    Ok(w) => batch.push(w),
                    Err(_) => break,
                }
            }
        }
        // Everyone who queued before the flush starts is covered by it.
        batch.extend(rx.try_iter());
        let result = db.flush().map(drop).map_err(|e| e.to_string());
        for waiter in batch.drain(..) {
            let _ = waiter.send(result.clone());
        }
    }
}
