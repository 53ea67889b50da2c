//! The Postgres committer: one connection, on a thread of its own, runs every operation
//! in the order callers submitted them. Operations waiting at the same moment share one
//! transaction and one `COMMIT` (group commit); each is answered only after that commit
//! returned, so an acknowledged write is durable (`synchronous_commit = on`) and a read
//! sees every write submitted before it.
//!
//! An operation checks everything it may refuse (a missing order, a forbidden move)
//! before it writes, and reports a refusal as its own answer without failing the batch.
//! A database error (a constraint, a fenced epoch, a lost connection) aborts the
//! transaction: the batch is rolled back and each operation runs again on its own, so
//! one bad write never fails the others.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row, Statement};

use crate::ack::{BoxFuture, DURABLE_WRITE_SECONDS};
use crate::error::StorageError;
use crate::queue::Queue;

/// One operation: run inside a batch's transaction, answered after its commit.
pub(crate) struct Job {
    /// Runs the operation; an error here is a database error that aborts the batch.
    run: Box<dyn Fn(Session) -> BoxFuture<Result<(), StorageError>> + Send>,
    /// Delivers the answer once the transaction committed (or failed).
    done: Box<dyn FnOnce(Result<(), StorageError>) + Send>,
    submitted: Instant,
    write: bool,
}

impl Job {
    fn finish(self, outcome: Result<(), StorageError>, latency: &metrics::Histogram) {
        if self.write && outcome.is_ok() {
            latency.record(self.submitted.elapsed().as_secs_f64());
        }
        (self.done)(outcome);
    }
}

/// Whether `e` leaves the transaction unusable (as opposed to a refusal an operation
/// decided on before writing).
fn aborts_transaction(e: &StorageError) -> bool {
    matches!(
        e,
        StorageError::Postgres(_) | StorageError::Fenced(_) | StorageError::Closed
    )
}

/// What an operation runs against: the connection, its prepared statements, and the
/// epoch this store writes orders with.
#[derive(Clone)]
pub(crate) struct Session {
    client: Arc<Client>,
    statements: Arc<Mutex<HashMap<&'static str, Statement>>>,
    /// This writer's fencing epoch.
    pub(crate) epoch: i64,
}

impl Session {
    /// A session on `client` outside the worker (copying a store).
    pub(crate) fn new(client: Arc<Client>, epoch: i64) -> Self {
        Self {
            client,
            statements: Arc::default(),
            epoch,
        }
    }
}

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

impl Session {
    /// The prepared statement for `sql` (prepared once per connection).
    async fn prepare(&self, sql: &'static str) -> Result<Statement, StorageError> {
        let cached = self
            .statements
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(sql)
            .cloned();
        if let Some(statement) = cached {
            return Ok(statement);
        }
        let statement = self.client.prepare(sql).await?;
        self.statements
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(sql, statement.clone());
        Ok(statement)
    }

    /// Every row `sql` returns.
    pub(crate) async fn query(
        &self,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<Vec<Row>, StorageError> {
        let statement = self.prepare(sql).await?;
        self.client.query(&statement, params).await.map_err(fenced)
    }

    /// The row `sql` returns, if any.
    pub(crate) async fn query_opt(
        &self,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<Option<Row>, StorageError> {
        let statement = self.prepare(sql).await?;
        self.client
            .query_opt(&statement, params)
            .await
            .map_err(fenced)
    }

    /// Runs `sql`; how many rows it changed.
    pub(crate) async fn execute(
        &self,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<u64, StorageError> {
        let statement = self.prepare(sql).await?;
        self.client
            .execute(&statement, params)
            .await
            .map_err(fenced)
    }
}

/// The SQLSTATE the fencing trigger raises.
const FENCED: &str = "SPF01";

/// A refusal by the fencing trigger becomes [`StorageError::Fenced`].
fn fenced(e: tokio_postgres::Error) -> StorageError {
    match e.as_db_error() {
        Some(db) if db.code().code() == FENCED => StorageError::Fenced(db.message().to_string()),
        _ => StorageError::Postgres(e),
    }
}

/// The committer thread and its mailbox.
pub(crate) struct Worker {
    queue: Arc<Queue<Job>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("queued", &self.queue.len())
            .finish()
    }
}

/// How to start a worker.
pub(crate) struct WorkerConfig {
    pub(crate) url: String,
    pub(crate) epoch: i64,
    pub(crate) max_wait: Duration,
    pub(crate) capacity: usize,
}

impl Worker {
    /// Connects, runs `setup` on the connection (migrations), and starts the thread;
    /// returns once connected and set up, with what `setup` returned.
    pub(crate) fn start<S, F>(config: WorkerConfig, setup: S) -> Result<(Self, u32), StorageError>
    where
        S: FnOnce(Arc<Client>) -> F + Send + 'static,
        F: Future<Output = Result<u32, StorageError>>,
    {
        let queue = Arc::new(Queue::new(config.capacity));
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let q = queue.clone();
        let thread = thread::Builder::new()
            .name("storage-pg".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(StorageError::Schema(format!(
                            "could not start the storage runtime: {e}"
                        ))));
                        return;
                    }
                };
                let started = runtime.block_on(async {
                    let client = connect(&config.url).await?;
                    let version = setup(client.clone()).await?;
                    Ok::<_, StorageError>((client, version))
                });
                let client = match started {
                    Ok((client, version)) => {
                        let _ = ready_tx.send(Ok(version));
                        client
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                run(runtime, client, &config, &q);
            })
            .map_err(|e| StorageError::Schema(format!("could not start a thread: {e}")))?;
        let version = ready_rx.recv().unwrap_or(Err(StorageError::Closed))?;
        Ok((
            Self {
                queue,
                thread: Some(thread),
            },
            version,
        ))
    }

    /// Queues an operation now (in call order); the future resolves with its answer once
    /// the transaction it ran in has committed.
    pub(crate) fn submit<T, F, Fut>(&self, write: bool, op: F) -> BoxFuture<Result<T, StorageError>>
    where
        T: Send + 'static,
        F: Fn(Session) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StorageError>> + Send + 'static,
    {
        type Slot<T> = Arc<Mutex<Option<Result<T, StorageError>>>>;
        let slot: Slot<T> = Arc::new(Mutex::new(None));
        let (tx, rx) = oneshot::channel();
        let ran = slot.clone();
        let run = Box::new(
            move |session: Session| -> BoxFuture<Result<(), StorageError>> {
                let fut = op(session);
                let ran = ran.clone();
                Box::pin(async move {
                    match fut.await {
                        Err(e) if aborts_transaction(&e) => Err(e),
                        answer => {
                            *ran.lock().unwrap_or_else(|e| e.into_inner()) = Some(answer);
                            Ok(())
                        }
                    }
                })
            },
        );
        let done = Box::new(move |committed: Result<(), StorageError>| {
            let answer = match committed {
                Ok(()) => slot
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take()
                    .unwrap_or(Err(StorageError::Closed)),
                Err(e) => Err(e),
            };
            let _ = tx.send(answer);
        });
        let queued = self.queue.enqueue(Job {
            run,
            done,
            submitted: Instant::now(),
            write,
        });
        Box::pin(async move {
            queued.await;
            rx.await.unwrap_or(Err(StorageError::Closed))
        })
    }

    /// Operations waiting now, and the most that may wait.
    pub(crate) fn queued(&self) -> (usize, usize) {
        (self.queue.len(), self.queue.capacity)
    }
}

impl Drop for Worker {
    /// Lets the worker finish what is queued and close its connection.
    fn drop(&mut self) {
        self.queue.close();
        if let Some(thread) = self.thread.take()
            && thread.thread().id() != thread::current().id()
        {
            let _ = thread.join();
        }
    }
}

/// Opens a connection and drives it on the current runtime.
pub(crate) async fn connect(url: &str) -> Result<Arc<Client>, StorageError> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "the postgres connection ended");
        }
    });
    // Durable means committed to the server's disk, whatever the server's default.
    client.batch_execute("SET synchronous_commit = on").await?;
    Ok(Arc::new(client))
}

/// The worker loop: take a batch, run it in one transaction, answer.
fn run(
    runtime: tokio::runtime::Runtime,
    client: Arc<Client>,
    config: &WorkerConfig,
    queue: &Queue<Job>,
) {
    let latency = metrics::histogram!(DURABLE_WRITE_SECONDS, "backend" => "postgres");
    let mut session = Session {
        client,
        statements: Arc::default(),
        epoch: config.epoch,
    };
    while let Some(batch) = queue.next_batch(config.max_wait) {
        queue.drained();
        runtime.block_on(async {
            if session.client.is_closed() {
                match connect(&config.url).await {
                    Ok(client) => {
                        tracing::info!("reconnected to postgres");
                        session = Session {
                            client,
                            statements: Arc::default(),
                            epoch: config.epoch,
                        };
                    }
                    Err(e) => tracing::warn!(error = %e, "could not reconnect to postgres"),
                }
            }
            commit_batch(&session, batch, &latency).await;
        });
    }
}

/// Runs a batch in one transaction; on a database error, each operation on its own.
async fn commit_batch(session: &Session, batch: Vec<Job>, latency: &metrics::Histogram) {
    match attempt(session, &batch).await {
        Ok(()) => {
            for job in batch {
                job.finish(Ok(()), latency);
            }
        }
        Err(e) if batch.len() == 1 => {
            rollback(session).await;
            if let Some(job) = batch.into_iter().next() {
                job.finish(Err(e), latency);
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, jobs = batch.len(), "a batch failed: running its operations one by one");
            rollback(session).await;
            for job in batch {
                let outcome = attempt(session, std::slice::from_ref(&job)).await;
                if outcome.is_err() {
                    rollback(session).await;
                }
                job.finish(outcome, latency);
            }
        }
    }
}

async fn attempt(session: &Session, jobs: &[Job]) -> Result<(), StorageError> {
    session.client.batch_execute("BEGIN").await?;
    for job in jobs {
        (job.run)(session.clone()).await?;
    }
    session.client.batch_execute("COMMIT").await?;
    Ok(())
}

async fn rollback(session: &Session) {
    if let Err(e) = session.client.batch_execute("ROLLBACK").await {
        tracing::debug!(error = %e, "rollback failed");
    }
}
