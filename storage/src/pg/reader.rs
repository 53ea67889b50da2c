//! Reads on a connection of their own, so a read never queues behind a group commit:
//! one thread drives the connection and runs every read handed to it at once, pipelined
//! (tokio-postgres sends a statement while earlier ones are still out). A read is handed
//! over only once the writes it must see have committed (`PgStore::read_after`), so it
//! runs outside any transaction and needs no locks.

use std::future::Future;
use std::thread;

use tokio::sync::{mpsc, oneshot};

use super::worker::{Session, connect, on_own_thread};
use crate::ack::BoxFuture;
use crate::error::StorageError;

type ReadJob = Box<dyn FnOnce(Session) -> BoxFuture<()> + Send>;

/// A read-only connection on a thread of its own.
pub(crate) struct Reader {
    jobs: Option<mpsc::UnboundedSender<ReadJob>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reader(..)")
    }
}

impl Reader {
    /// Connects to `url` and starts the reader's thread; returns once connected.
    pub(crate) fn start(url: String) -> Result<Self, StorageError> {
        let (jobs, mut queued) = mpsc::unbounded_channel::<ReadJob>();
        let (thread, ()) = on_own_thread("storage-pg-read", move |runtime, ready| {
            runtime.block_on(async move {
                let mut session = match connect(&url).await {
                    Ok(client) => {
                        let _ = ready.send(Ok(()));
                        Session::new(client)
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                while let Some(job) = queued.recv().await {
                    if session.is_closed() {
                        match connect(&url).await {
                            Ok(client) => {
                                tracing::info!("the postgres reader reconnected");
                                session = Session::new(client);
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "the postgres reader could not reconnect");
                            }
                        }
                    }
                    tokio::spawn(job(session.clone()));
                }
            });
        })?;
        Ok(Self {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Runs the read `op` now; resolves with its answer.
    pub(crate) fn run<T, F, Fut>(&self, op: F) -> BoxFuture<Result<T, StorageError>>
    where
        T: Send + 'static,
        F: FnOnce(Session) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StorageError>> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: ReadJob = Box::new(move |session| {
            Box::pin(async move {
                let _ = tx.send(op(session).await);
            })
        });
        let sent = self
            .jobs
            .as_ref()
            .is_some_and(|jobs| jobs.send(job).is_ok());
        Box::pin(async move {
            if !sent {
                return Err(StorageError::Closed);
            }
            rx.await.unwrap_or(Err(StorageError::Closed))
        })
    }
}

impl Drop for Reader {
    /// Stops taking reads and closes the connection once the thread has seen that.
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(thread) = self.thread.take()
            && thread.thread().id() != thread::current().id()
        {
            let _ = thread.join();
        }
    }
}
