//! The Postgres committer: one connection, on a thread of its own, runs every operation
//! in the order callers submitted them. Operations waiting at the same moment share one
//! transaction and one `COMMIT` (group commit); a write is answered only after that
//! commit returned, so an acknowledged write is durable (`synchronous_commit = on`); a
//! read is answered as soon as it has run, and sees every write submitted before it.
//!
//! An operation checks everything it may refuse (a missing order, a forbidden move)
//! before it writes, and reports a refusal as its own answer without failing the batch.
//! A database error (a constraint, a fenced epoch, a lost connection) aborts the
//! transaction: the batch is rolled back and each operation runs again on its own, so
//! one bad write never fails the others.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row, Statement};

use super::ops::big;
use crate::ack::{BoxFuture, DURABLE_WRITE_SECONDS};
use crate::error::StorageError;
use crate::queue::Queue;
use crate::records::OrderRecord;
use wire::model::OrderEvent;

type Answer = Box<dyn FnOnce(Result<(), StorageError>) + Send>;

/// One operation: run inside a batch's transaction; a write is answered after its
/// commit, a read as soon as it has run.
pub(crate) struct Job {
    /// Runs the operation; an error here is a database error that aborts the batch.
    run: Box<dyn Fn(Session) -> BoxFuture<Result<(), StorageError>> + Send>,
    /// Delivers the answer (once).
    done: Mutex<Option<Answer>>,
    submitted: Instant,
    write: bool,
    /// The order it creates or moves: read ahead, with every other in its batch.
    order: Option<uuid::Uuid>,
}

impl Job {
    fn finish(self, outcome: Result<(), StorageError>, latency: &metrics::Histogram) {
        if self.write && outcome.is_ok() {
            latency.record(self.submitted.elapsed().as_secs_f64());
        }
        self.answer(outcome);
    }

    /// Delivers the answer unless it was delivered already.
    fn answer(&self, outcome: Result<(), StorageError>) {
        let done = self.done.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(done) = done {
            done(outcome);
        }
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

/// What an operation runs against: the connection, its prepared statements, and what
/// the current transaction has read ahead.
#[derive(Clone)]
pub(crate) struct Session {
    client: Arc<Client>,
    statements: Arc<Mutex<HashMap<&'static str, Statement>>>,
    batch: Arc<Mutex<Batch>>,
}

/// The current transaction's read-ahead, and its order writes waiting to go out as a
/// few bulk statements (sent before any other statement, and before `COMMIT`).
#[derive(Default)]
struct Batch {
    /// Orders read ahead (locked `FOR UPDATE`), as this transaction has left them; `None`:
    /// known not to exist.
    orders: HashMap<uuid::Uuid, Option<(OrderRecord, i64)>>,
    /// Feed positions reserved for this transaction's events, in order.
    feed: VecDeque<i64>,
    /// Orders created, in order, with the epoch each is written with.
    created: Vec<(OrderRecord, i64)>,
    /// Requests their orders were created from.
    allotted_requests: Vec<uuid::Uuid>,
    /// Orders moved (the last state of each), with when each left the open set and the
    /// epoch of its last write.
    moved: Vec<(OrderRecord, Option<i64>, i64)>,
    moved_index: HashMap<uuid::Uuid, usize>,
    /// Events, with their feed positions, in order.
    events: Vec<(OrderEvent, i64)>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.created.is_empty() && self.moved.is_empty() && self.events.is_empty()
    }
}

impl Session {
    /// A session on `client` outside the worker (copying a store).
    pub(crate) fn new(client: Arc<Client>) -> Self {
        Self {
            client,
            statements: Arc::default(),
            batch: Arc::default(),
        }
    }

    /// Whether the connection has gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    fn batch(&self) -> std::sync::MutexGuard<'_, Batch> {
        self.batch.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The order as this transaction has it, if read ahead: `Some(None)` when it does
    /// not exist.
    pub(crate) fn cached_order(&self, id: uuid::Uuid) -> Option<Option<(OrderRecord, i64)>> {
        self.batch().orders.get(&id).cloned()
    }

    /// Queues a new order's row, and the removal of the request it came from.
    pub(crate) fn queue_created(&self, order: &OrderRecord, epoch: i64) {
        let mut batch = self.batch();
        batch.created.push((order.clone(), epoch));
        batch.allotted_requests.push(order.request_id.0);
        batch
            .orders
            .insert(order.order_id.0, Some((order.clone(), epoch)));
    }

    /// Queues an order's new state (`closed_at`: set when it leaves the open set).
    pub(crate) fn queue_moved(&self, order: &OrderRecord, closed_at: Option<i64>, epoch: i64) {
        let mut batch = self.batch();
        let id = order.order_id.0;
        batch.orders.insert(id, Some((order.clone(), epoch)));
        match batch.moved_index.get(&id).copied() {
            Some(i) => {
                let earlier = batch.moved[i].1;
                batch.moved[i] = (order.clone(), earlier.or(closed_at), epoch);
            }
            None => {
                let i = batch.moved.len();
                batch.moved.push((order.clone(), closed_at, epoch));
                batch.moved_index.insert(id, i);
            }
        }
    }

    /// Queues an event at a feed position reserved for this transaction; false when none
    /// is left (the caller inserts it itself).
    pub(crate) fn queue_event(&self, event: &OrderEvent) -> Option<i64> {
        let mut batch = self.batch();
        let feed_seq = batch.feed.pop_front()?;
        batch.events.push((event.clone(), feed_seq));
        Some(feed_seq)
    }

    /// Sends the queued order writes as bulk statements (pipelined) and waits for them.
    pub(crate) async fn settle(&self) -> Result<(), StorageError> {
        let queued = {
            let mut batch = self.batch();
            if batch.is_empty() {
                return Ok(());
            }
            Batch {
                created: std::mem::take(&mut batch.created),
                allotted_requests: std::mem::take(&mut batch.allotted_requests),
                moved: std::mem::take(&mut batch.moved),
                events: std::mem::take(&mut batch.events),
                ..Batch::default()
            }
        };
        self.batch().moved_index.clear();
        let insert = self.prepare(BULK_INSERT_ORDERS).await?;
        let remove = self.prepare(BULK_REMOVE_REQUESTS).await?;
        let update = self.prepare(BULK_UPDATE_ORDERS).await?;
        let append = self.prepare(BULK_INSERT_EVENTS).await?;
        let c = &queued.created;
        let created = (
            c.iter().map(|(o, _)| o.order_id.0).collect::<Vec<_>>(),
            c.iter().map(|(o, _)| o.request_id.0).collect::<Vec<_>>(),
            c.iter().map(|(o, _)| o.user_id.0).collect::<Vec<_>>(),
            c.iter().map(|(o, _)| o.associate_id.0).collect::<Vec<_>>(),
            c.iter().map(|(o, _)| o.state.as_str()).collect::<Vec<_>>(),
            c.iter()
                .map(|(o, _)| big(o.allotted_at_ms))
                .collect::<Vec<_>>(),
            c.iter().map(|(_, epoch)| *epoch).collect::<Vec<_>>(),
            c.iter().map(|(o, _)| o.next_seq as i32).collect::<Vec<_>>(),
            c.iter()
                .map(|(o, _)| super::ops::json(o))
                .collect::<Vec<_>>(),
        );
        let m = &queued.moved;
        let moved = (
            m.iter().map(|(o, _, _)| o.order_id.0).collect::<Vec<_>>(),
            m.iter()
                .map(|(o, _, _)| o.state.as_str())
                .collect::<Vec<_>>(),
            m.iter()
                .map(|(_, closed, _)| closed.is_none())
                .collect::<Vec<_>>(),
            m.iter().map(|(_, closed, _)| *closed).collect::<Vec<_>>(),
            m.iter()
                .map(|(o, _, _)| o.next_seq as i32)
                .collect::<Vec<_>>(),
            m.iter()
                .map(|(o, _, _)| super::ops::json(o))
                .collect::<Vec<_>>(),
            m.iter().map(|(_, _, epoch)| *epoch).collect::<Vec<_>>(),
        );
        let e = &queued.events;
        let events = (
            e.iter().map(|(ev, _)| ev.order_id.0).collect::<Vec<_>>(),
            e.iter().map(|(ev, _)| ev.seq as i32).collect::<Vec<_>>(),
            e.iter().map(|(_, seq)| *seq).collect::<Vec<_>>(),
            e.iter().map(|(ev, _)| big(ev.at_ms)).collect::<Vec<_>>(),
            e.iter()
                .map(|(ev, _)| ev.state.as_str())
                .collect::<Vec<_>>(),
            e.iter()
                .map(|(ev, _)| super::ops::json(ev))
                .collect::<Vec<_>>(),
        );
        let client = &self.client;
        // Sent in this order on one connection (pipelined): rows before their events.
        futures_util::future::try_join4(
            client.execute(
                &insert,
                &[
                    &created.0, &created.1, &created.2, &created.3, &created.4, &created.5,
                    &created.6, &created.7, &created.8,
                ],
            ),
            client.execute(&remove, &[&queued.allotted_requests]),
            client.execute(
                &update,
                &[
                    &moved.0, &moved.1, &moved.2, &moved.3, &moved.4, &moved.5, &moved.6,
                ],
            ),
            client.execute(
                &append,
                &[
                    &events.0, &events.1, &events.2, &events.3, &events.4, &events.5,
                ],
            ),
        )
        .await
        .map_err(fenced)?;
        Ok(())
    }

    /// Starts a transaction, reading ahead (and locking) the orders its jobs touch and
    /// reserving a feed position for each of their events: one round trip for all.
    async fn begin(&self, jobs: &[Job]) -> Result<(), StorageError> {
        *self.batch() = Batch::default();
        let ids: Vec<uuid::Uuid> = jobs.iter().filter_map(|j| j.order).collect();
        if ids.is_empty() {
            self.client.batch_execute("BEGIN").await?;
            return Ok(());
        }
        let lock = self
            .prepare("SELECT id, body, epoch FROM orders WHERE id = ANY($1) FOR UPDATE")
            .await?;
        let reserve = self
            .prepare("SELECT nextval('event_feed_seq') FROM generate_series(1, $1)")
            .await?;
        let count = ids.len() as i32;
        let (_, orders, feed) = futures_util::future::try_join3(
            self.client.batch_execute("BEGIN"),
            self.client.query(&lock, &[&ids]),
            self.client.query(&reserve, &[&count]),
        )
        .await?;
        let mut batch = self.batch();
        for id in ids {
            batch.orders.insert(id, None);
        }
        for row in orders {
            let id: uuid::Uuid = row.try_get(0)?;
            let epoch: i64 = row.try_get(2)?;
            batch
                .orders
                .insert(id, Some((super::ops::body(&row, 1)?, epoch)));
        }
        let mut feed: Vec<i64> = feed
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
        feed.sort_unstable();
        batch.feed = feed.into();
        Ok(())
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
        self.settle().await?;
        let statement = self.prepare(sql).await?;
        self.client.query(&statement, params).await.map_err(fenced)
    }

    /// The row `sql` returns, if any.
    pub(crate) async fn query_opt(
        &self,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<Option<Row>, StorageError> {
        self.settle().await?;
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
        self.settle().await?;
        let statement = self.prepare(sql).await?;
        self.client
            .execute(&statement, params)
            .await
            .map_err(fenced)
    }
}

const BULK_INSERT_ORDERS: &str = "INSERT INTO orders (id, request_id, user_id, associate_id, state,
        allotted_at_ms, open, closed_at_ms, archived, next_seq, epoch, body)
    SELECT t.id, t.request_id, t.user_id, t.associate_id, t.state, t.allotted_at_ms, true, NULL,
        false, t.next_seq, t.epoch, t.body
    FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::bigint[],
                $7::bigint[], $8::int[], $9::json[])
        AS t(id, request_id, user_id, associate_id, state, allotted_at_ms, epoch, next_seq, body)";
const BULK_REMOVE_REQUESTS: &str = "DELETE FROM open_requests WHERE id = ANY($1::uuid[])";
const BULK_UPDATE_ORDERS: &str = "UPDATE orders o SET state = t.state, open = t.open,
        closed_at_ms = COALESCE(o.closed_at_ms, t.closed_at_ms), next_seq = t.next_seq,
        epoch = t.epoch, body = t.body
    FROM unnest($1::uuid[], $2::text[], $3::bool[], $4::bigint[], $5::int[], $6::json[],
                $7::bigint[])
        AS t(id, state, open, closed_at_ms, next_seq, body, epoch)
    WHERE o.id = t.id";
const BULK_INSERT_EVENTS: &str = "INSERT INTO order_events (order_id, seq, feed_seq, at_ms, state, body)
    SELECT * FROM unnest($1::uuid[], $2::int[], $3::bigint[], $4::bigint[], $5::text[], $6::json[])";

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
    pub(crate) max_wait: Duration,
    pub(crate) capacity: usize,
    pub(crate) commit_hook: Option<crate::SyncHook>,
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
        let q = queue.clone();
        let (thread, version) = on_own_thread("storage-pg", move |runtime, ready| {
            let started = runtime.block_on(async {
                let client = connect(&config.url).await?;
                let version = setup(client.clone()).await?;
                Ok::<_, StorageError>((client, version))
            });
            let client = match started {
                Ok((client, version)) => {
                    let _ = ready.send(Ok(version));
                    client
                }
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            };
            run(runtime, client, &config, &q);
        })?;
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
    pub(crate) fn submit<T, F, Fut>(
        &self,
        write: bool,
        order: Option<uuid::Uuid>,
        op: F,
    ) -> BoxFuture<Result<T, StorageError>>
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
            done: Mutex::new(Some(done)),
            submitted: Instant::now(),
            write,
            order,
        });
        Box::pin(async move {
            queued.await;
            rx.await.unwrap_or(Err(StorageError::Closed))
        })
    }

    /// A mark of everything submitted so far, for [`Self::caught_up`].
    pub(crate) fn mark(&self) -> u64 {
        self.queue.mark()
    }

    /// Resolves once every operation submitted before `mark` was taken is answered (a
    /// write: committed or failed).
    pub(crate) async fn caught_up(&self, mark: u64) {
        self.queue.caught_up(mark).await;
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

/// Starts a thread named `name` that runs `body` on a current-thread runtime of its own,
/// and waits for the first thing `body` reports on its channel (or the runtime's failure).
pub(crate) fn on_own_thread<T: Send + 'static>(
    name: &str,
    body: impl FnOnce(tokio::runtime::Runtime, mpsc::SyncSender<Result<T, StorageError>>)
    + Send
    + 'static,
) -> Result<(thread::JoinHandle<()>, T), StorageError> {
    let (ready_tx, ready_rx) = mpsc::sync_channel(1);
    let thread = thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => body(runtime, ready_tx),
                Err(e) => {
                    let _ = ready_tx.send(Err(StorageError::Schema(format!(
                        "could not start the storage runtime: {e}"
                    ))));
                }
            }
        })
        .map_err(|e| StorageError::Schema(format!("could not start a thread: {e}")))?;
    let first = ready_rx.recv().unwrap_or(Err(StorageError::Closed))?;
    Ok((thread, first))
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
    // Every statement this connection runs finds rows by key, but the planner joins the
    // bulk statements' arrays to `orders` by scanning it while the table is small or its
    // statistics are stale, and its cached plans keep doing so as the table grows (600 to
    // 2 000 scans per 10 s of the commit bench, half the throughput). Never scan.
    client
        .batch_execute(
            "SET synchronous_commit = on; \
             SET enable_seqscan = off",
        )
        .await?;
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
    let mut session = Session::new(client);
    while let Some(batch) = queue.next_batch(config.max_wait) {
        queue.drained();
        let jobs = batch.len();
        runtime.block_on(async {
            let mut batch = batch;
            // Twice at most: a connection found dead only as the batch began (its runtime
            // is idle between batches, so the loss goes unseen until then) has applied
            // nothing, and the batch runs again on a new one.
            for _ in 0..2 {
                if session.client.is_closed() {
                    match connect(&config.url).await {
                        Ok(client) => {
                            tracing::info!("reconnected to postgres");
                            session = Session::new(client);
                        }
                        Err(e) => tracing::warn!(error = %e, "could not reconnect to postgres"),
                    }
                }
                match commit_batch(&session, batch, &latency, config.commit_hook.as_ref()).await {
                    None => return,
                    Some(again) => batch = again,
                }
            }
            for job in batch {
                job.finish(Err(StorageError::Closed), &latency);
            }
        });
        queue.finished(jobs);
    }
    queue.stopped();
}

/// Runs a batch in one transaction; on a database error, each operation on its own.
/// Gives the batch back, untouched, when the connection turned out to be gone before the
/// transaction began.
async fn commit_batch(
    session: &Session,
    batch: Vec<Job>,
    latency: &metrics::Histogram,
    hook: Option<&crate::SyncHook>,
) -> Option<Vec<Job>> {
    let first = match session.begin(&batch).await {
        Ok(()) => attempt_begun(session, &batch, hook).await,
        Err(_) if session.client.is_closed() => {
            tracing::info!("the postgres connection had gone: running the batch on a new one");
            return Some(batch);
        }
        Err(e) => Err(e),
    };
    match first {
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
                let outcome = attempt(session, std::slice::from_ref(&job), hook).await;
                if outcome.is_err() {
                    rollback(session).await;
                }
                job.finish(outcome, latency);
            }
        }
    }
    None
}

async fn attempt(
    session: &Session,
    jobs: &[Job],
    hook: Option<&crate::SyncHook>,
) -> Result<(), StorageError> {
    session.begin(jobs).await?;
    attempt_begun(session, jobs, hook).await
}

/// Runs `jobs` in the transaction just begun, and commits it.
async fn attempt_begun(
    session: &Session,
    jobs: &[Job],
    hook: Option<&crate::SyncHook>,
) -> Result<(), StorageError> {
    for job in jobs {
        (job.run)(session.clone()).await?;
        // A read has seen every write queued before it (its statement went out after
        // them): its caller need not wait for the commit, as on sled, where reads see
        // writes before their flush.
        if !job.write {
            job.answer(Ok(()));
        }
    }
    session.settle().await?;
    if let Some(hook) = hook {
        (hook.0)();
    }
    session.client.batch_execute("COMMIT").await?;
    Ok(())
}

async fn rollback(session: &Session) {
    // Writes still in flight fail with the transaction; wait for them first.
    let _ = session.settle().await;
    if let Err(e) = session.client.batch_execute("ROLLBACK").await {
        tracing::debug!(error = %e, "rollback failed");
    }
}
