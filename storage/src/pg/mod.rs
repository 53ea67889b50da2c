//! The PostgreSQL backend: the system of record many engine nodes share.
//!
//! - Writes go to a few committers, each a connection on a thread of its own that runs
//!   its operations in call order, in group commits (`worker.rs`); an order's writes (and
//!   its payments' and feedback's) always go to the same one, chosen by the order id, and
//!   the rest to the first. Writes return at once with a ticket that resolves after
//!   `COMMIT`.
//! - Reads run on connections of their own (`reader.rs`), never behind a commit: a read
//!   first waits until the writes submitted before it that it may see have committed (of
//!   its order's committer, or of all), so it sees them, as on sled. Each read has an
//!   async form ([`Backend`]'s `*_async`), so no caller need block a thread on it.
//! - The schema is versioned SQL (`schema.rs`, `storage/migrations/`), applied at start.
//! - Every order write carries its handle's epoch ([`PgConfig::epoch`], or one given by
//!   [`Backend::fenced`]: in cluster mode the claim revision of the order's cell); the
//!   database refuses one older than the order's last writer ([`StorageError::Fenced`]).

mod copy;
mod ops;
mod reader;
mod schema;
#[cfg(feature = "testing")]
pub mod testing;
mod worker;

use std::future::Future;
use std::time::Duration;

use wire::model::{DiscountCode, Invoice, OrderEvent, OrderEventKind, PricingSettings, UnixMs};
use wire::{AssociateId, InvoiceId, OrderId, PartyId, PaymentId, RequestId, UserId};

use crate::ack::{Durable, Reading, Ticket, block_on};
use crate::backend::{Backend, FeedbackOutcome, PaymentStart, Store};
use crate::error::StorageError;
use crate::lifecycle::{Committed, SideWrite};
use crate::query::{OrderQuery, Page};
use crate::records::*;
pub use copy::{CopyReport, copy_sled_to_postgres};
use reader::Reader;
pub use schema::{MIGRATIONS, PG_SCHEMA_VERSION};
use worker::{Session, Worker, WorkerConfig};

/// How to open a Postgres store.
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// A libpq-style URL (`postgres://user:pass@host:port/db`, or `?host=/socket/dir`).
    pub url: String,
    /// The fencing epoch this store writes orders with (one node: never changes).
    pub epoch: u64,
    /// How long the committer waits after a first operation for more to join its
    /// transaction (zero: commit at once; operations arriving meanwhile share the next).
    pub group_commit_wait: Duration,
    /// How many operations may wait for the committer; beyond that, callers wait.
    pub queue_capacity: usize,
    /// Run just before each `COMMIT`, before any operation of the transaction is
    /// answered: a seam for tests that check the order of commit and acknowledgement.
    pub commit_hook: Option<crate::SyncHook>,
    /// Committer connections (at least one): orders are spread over them by id.
    pub writers: usize,
    /// Read-only connections (at least one), used in turn.
    pub readers: usize,
}

impl PgConfig {
    /// Defaults for `url`: epoch 1, no group-commit wait, the usual queue.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            epoch: 1,
            group_commit_wait: Duration::ZERO,
            queue_capacity: crate::DEFAULT_QUEUE_CAPACITY,
            commit_hook: None,
            writers: DEFAULT_WRITERS,
            readers: DEFAULT_READERS,
        }
    }
}

/// Committer connections by default: enough to keep a commit in flight while the next
/// batch forms, few enough for a small server's connection limit.
pub const DEFAULT_WRITERS: usize = 2;

/// Read-only connections by default.
pub const DEFAULT_READERS: usize = 2;

/// Whether `database` names a Postgres server rather than a directory.
pub fn is_postgres_url(database: &str) -> bool {
    database.starts_with("postgres://") || database.starts_with("postgresql://")
}

/// The store on PostgreSQL.
#[derive(Debug)]
pub struct PgStore {
    pool: std::sync::Arc<Pool>,
    /// The epoch this handle's order writes carry.
    epoch: i64,
}

/// The connections one store (and every fenced handle on it) shares.
#[derive(Debug)]
struct Pool {
    writers: Vec<Worker>,
    readers: Vec<Reader>,
    next_reader: std::sync::atomic::AtomicUsize,
}

impl Pool {
    /// Which committer takes writes about `order` (the first one for writes about no
    /// order).
    fn partition(&self, order: Option<OrderId>) -> usize {
        order.map_or(0, |o| (o.0.as_u128() % self.writers.len() as u128) as usize)
    }

    /// The committer for writes about `order`.
    fn writer(&self, order: Option<OrderId>) -> &Worker {
        &self.writers[self.partition(order)]
    }

    /// The next reader in turn.
    fn reader(&self) -> &Reader {
        let i = self
            .next_reader
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        &self.readers[i % self.readers.len()]
    }
}

/// Which earlier writes a read must see.
#[derive(Debug, Clone, Copy)]
enum Sees {
    /// Those about this order (its committer's).
    Order(OrderId),
    /// Those about no order (the first committer's): presence, pricing and discount
    /// codes, which only their own `put_*` write.
    Unkeyed,
    /// All of them.
    All,
}

impl PgStore {
    /// Connects and brings the schema up to date (migrations run at open).
    pub fn open(config: &PgConfig) -> Result<Self, StorageError> {
        let worker_config = || WorkerConfig {
            url: config.url.clone(),
            max_wait: config.group_commit_wait,
            capacity: config.queue_capacity,
            commit_hook: config.commit_hook.clone(),
        };
        let (first, _) = Worker::start(worker_config(), |client| async move {
            schema::migrate(&client).await
        })?;
        let mut writers = vec![first];
        for _ in 1..config.writers.max(1) {
            writers.push(Worker::start(worker_config(), |_| async { Ok(0) })?.0);
        }
        let readers = (0..config.readers.max(1))
            .map(|_| Reader::start(config.url.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            pool: std::sync::Arc::new(Pool {
                writers,
                readers,
                next_reader: Default::default(),
            }),
            epoch: ops::big(config.epoch),
        })
    }

    /// Applies the migrations this build has and returns (version before, version now).
    pub fn migrate(url: &str) -> Result<(u32, u32), StorageError> {
        let (_worker, before) = Worker::start(
            WorkerConfig {
                url: url.to_string(),
                max_wait: Duration::ZERO,
                capacity: 1,
                commit_hook: None,
            },
            |client| async move { schema::migrate(&client).await },
        )?;
        Ok((before, PG_SCHEMA_VERSION))
    }

    /// A write about `order` with an answer, delivered once committed.
    fn answered<T, F, Fut>(&self, order: Option<OrderId>, op: F) -> Reading<T>
    where
        T: Send + 'static,
        F: Fn(Session) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StorageError>> + Send + 'static,
    {
        Reading::from_future(self.pool.writer(order).submit(true, None, op))
    }

    /// A write about `order` whose answer the caller waits for now (blocking this
    /// thread), answered once committed.
    fn call<T, F, Fut>(&self, order: Option<OrderId>, op: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: Fn(Session) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StorageError>> + Send + 'static,
    {
        block_on(self.pool.writer(order).submit(true, None, op))
    }

    /// A read that sees every write submitted before it that `sees` names; resolves with
    /// its answer.
    fn read_after<T, F, Fut>(&self, sees: Sees, op: F) -> Reading<T>
    where
        T: Send + 'static,
        F: FnOnce(Session) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StorageError>> + Send + 'static,
    {
        let pool = self.pool.clone();
        let marks: Vec<(usize, u64)> = match sees {
            Sees::Order(_) | Sees::Unkeyed => {
                let order = match sees {
                    Sees::Order(o) => Some(o),
                    _ => None,
                };
                let i = pool.partition(order);
                vec![(i, pool.writers[i].mark())]
            }
            Sees::All => pool
                .writers
                .iter()
                .enumerate()
                .map(|(i, w)| (i, w.mark()))
                .collect(),
        };
        Reading::from_future(Box::pin(async move {
            for (i, mark) in marks {
                pool.writers[i].caught_up(mark).await;
            }
            pool.reader().run(op).await
        }))
    }

    /// A read that sees every write submitted before it, blocking this thread.
    fn read<T, F, Fut>(&self, op: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(Session) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StorageError>> + Send + 'static,
    {
        self.read_after(Sees::All, op).wait()
    }

    /// A write about `order` queued now; the ticket resolves once it is committed.
    fn write<F, Fut>(&self, order: Option<OrderId>, op: F) -> Ticket
    where
        F: Fn(Session) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), StorageError>> + Send + 'static,
    {
        Ticket::from_future(self.pool.writer(order).submit(true, None, op))
    }
}

impl Store {
    /// Opens the store on Postgres.
    pub fn postgres(config: &PgConfig) -> Result<Self, StorageError> {
        Ok(Self::new(PgStore::open(config)?))
    }
}

impl Backend for PgStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn fenced(&self, epoch: u64) -> Store {
        Store::new(PgStore {
            pool: self.pool.clone(),
            epoch: ops::big(epoch),
        })
    }

    fn put_user(&self, user: &UserProfile) -> Result<Ticket, StorageError> {
        let user = user.clone();
        Ok(self.write(None, move |s| {
            let user = user.clone();
            async move {
                ops::put_profile(s, &ops::USERS, user.id.0, user.created_at_ms, &user, false).await
            }
        }))
    }

    fn create_user(&self, user: &UserProfile) -> Result<Ticket, StorageError> {
        let user = user.clone();
        self.call(None, move |s| {
            let user = user.clone();
            async move {
                ops::put_profile(s, &ops::USERS, user.id.0, user.created_at_ms, &user, true).await
            }
        })?;
        Ok(Ticket::done())
    }

    fn user(&self, id: UserId) -> Result<Option<UserProfile>, StorageError> {
        self.user_async(id).wait()
    }

    fn users(&self) -> Result<Vec<UserProfile>, StorageError> {
        self.read(|s| ops::all(s, "SELECT body FROM users ORDER BY id"))
    }

    fn users_page(
        &self,
        after: Option<UserId>,
        limit: usize,
    ) -> Result<Page<UserProfile>, StorageError> {
        self.read(move |s| {
            ops::profiles_page(
                s,
                &ops::USERS,
                after.map(|a| a.0),
                limit,
                |u: &UserProfile| u.id.0,
            )
        })
    }

    fn put_associate(&self, associate: &AssociateProfile) -> Result<Ticket, StorageError> {
        let associate = associate.clone();
        Ok(self.write(None, move |s| {
            let a = associate.clone();
            async move {
                ops::put_profile(s, &ops::ASSOCIATES, a.id.0, a.created_at_ms, &a, false).await
            }
        }))
    }

    fn create_associate(&self, associate: &AssociateProfile) -> Result<Ticket, StorageError> {
        let associate = associate.clone();
        self.call(None, move |s| {
            let a = associate.clone();
            async move {
                ops::put_profile(s, &ops::ASSOCIATES, a.id.0, a.created_at_ms, &a, true).await
            }
        })?;
        Ok(Ticket::done())
    }

    fn associate(&self, id: AssociateId) -> Result<Option<AssociateProfile>, StorageError> {
        self.associate_async(id).wait()
    }

    fn associates(&self) -> Result<Vec<AssociateProfile>, StorageError> {
        self.read(|s| ops::all(s, "SELECT body FROM associates ORDER BY id"))
    }

    fn associates_page(
        &self,
        after: Option<AssociateId>,
        limit: usize,
    ) -> Result<Page<AssociateProfile>, StorageError> {
        self.read(move |s| {
            ops::profiles_page(
                s,
                &ops::ASSOCIATES,
                after.map(|a| a.0),
                limit,
                |a: &AssociateProfile| a.id.0,
            )
        })
    }

    fn create_order(&self, record: &OrderRecord) -> Result<Committed, StorageError> {
        self.create_order_durable(record.clone()).wait()
    }

    fn create_order_durable(&self, record: OrderRecord) -> Durable<Committed> {
        let epoch = self.epoch;
        let writer = self.pool.writer(Some(record.order_id));
        Durable::from_future(writer.submit(true, Some(record.order_id.0), move |s| {
            ops::create_order(s, record.clone(), epoch)
        }))
    }

    fn transition(
        &self,
        order_id: OrderId,
        at_ms: UnixMs,
        kind: OrderEventKind,
        side: &[SideWrite],
    ) -> Result<Committed, StorageError> {
        self.transition_durable(order_id, at_ms, kind, side.to_vec())
            .wait()
    }

    fn transition_durable(
        &self,
        order_id: OrderId,
        at_ms: UnixMs,
        kind: OrderEventKind,
        side: Vec<SideWrite>,
    ) -> Durable<Committed> {
        let epoch = self.epoch;
        let writer = self.pool.writer(Some(order_id));
        Durable::from_future(writer.submit(true, Some(order_id.0), move |s| {
            ops::transition(s, order_id, at_ms, kind.clone(), side.clone(), epoch)
        }))
    }

    fn order(&self, id: OrderId) -> Result<Option<OrderRecord>, StorageError> {
        self.order_async(id).wait()
    }

    fn events(&self, id: OrderId) -> Result<Vec<OrderEvent>, StorageError> {
        self.events_async(id).wait()
    }

    fn events_since(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, OrderEvent)>, StorageError> {
        self.read(move |s| ops::events_since(s, from, limit))
    }

    fn feed_next(&self) -> Result<u64, StorageError> {
        self.read(ops::feed_next)
    }

    fn open_orders(&self) -> Result<Vec<OrderRecord>, StorageError> {
        self.read(|s| ops::all(s, "SELECT body FROM orders WHERE open ORDER BY id"))
    }

    fn open_orders_of(&self, party: PartyId) -> Result<Vec<OrderRecord>, StorageError> {
        self.read(move |s| ops::open_orders_of(s, party))
    }

    fn archive_ended_before(&self, cutoff_ms: UnixMs) -> Result<usize, StorageError> {
        self.call(None, move |s| ops::archive_ended_before(s, cutoff_ms))
    }

    fn find_orders(&self, query: &OrderQuery) -> Result<Page<OrderRecord>, StorageError> {
        let query = query.clone();
        self.read(move |s| ops::find_orders(s, query.clone()))
    }

    fn invoice(&self, id: InvoiceId) -> Result<Option<Invoice>, StorageError> {
        self.invoice_async(id).wait()
    }

    fn tax_invoice(&self, invoice: InvoiceId) -> Result<Option<TaxInvoice>, StorageError> {
        self.read(move |s| ops::tax_invoice(s, invoice))
    }

    fn begin_payment(&self, record: &PaymentRecord) -> Result<PaymentStart, StorageError> {
        self.begin_payment_async(record).wait()
    }

    fn payment_by_key(
        &self,
        user: UserId,
        key: &str,
    ) -> Result<Option<PaymentRecord>, StorageError> {
        self.payment_by_key_async(user, key).wait()
    }

    fn put_payment(&self, record: &PaymentRecord) -> Result<Ticket, StorageError> {
        let record = record.clone();
        Ok(self.write(Some(record.order_id), move |s| {
            let record = record.clone();
            async move { ops::upsert_payment(&s, &record).await }
        }))
    }

    fn payment(&self, id: PaymentId) -> Result<Option<PaymentRecord>, StorageError> {
        self.read(move |s| ops::payment(s, id))
    }

    fn payments_for(&self, order: OrderId) -> Result<Vec<PaymentRecord>, StorageError> {
        self.payments_for_async(order).wait()
    }

    fn pending_payments(&self) -> Result<Vec<PaymentRecord>, StorageError> {
        self.read(|s| {
            ops::all(
                s,
                "SELECT body FROM payments WHERE status = 'pending' ORDER BY id",
            )
        })
    }

    fn add_feedback(&self, record: &FeedbackRecord) -> Result<FeedbackOutcome, StorageError> {
        self.add_feedback_async(record).wait()
    }

    fn feedback_for(&self, order: OrderId) -> Result<Vec<FeedbackRecord>, StorageError> {
        self.read_after(Sees::Order(order), move |s| ops::feedback_for(s, order))
            .wait()
    }

    fn put_discount(&self, code: &DiscountCode) -> Result<Ticket, StorageError> {
        let code = code.clone();
        Ok(self.write(None, move |s| ops::put_discount(s, code.clone())))
    }

    fn discount(&self, code: &str) -> Result<Option<DiscountCode>, StorageError> {
        self.discount_async(code).wait()
    }

    fn discounts(&self) -> Result<Vec<DiscountCode>, StorageError> {
        self.read(|s| {
            ops::all(
                s,
                "SELECT body FROM discount_codes ORDER BY code COLLATE \"C\"",
            )
        })
    }

    fn redeemed(&self, code: &str, user: UserId) -> Result<bool, StorageError> {
        self.redeemed_async(code, user).wait()
    }

    fn redeem(&self, code: &str, user: UserId, order: OrderId) -> Result<bool, StorageError> {
        self.redeem_async(code, user, order).wait()
    }

    fn pricing(&self) -> Result<Option<PricingSettings>, StorageError> {
        self.pricing_async().wait()
    }

    fn put_pricing(&self, settings: &PricingSettings) -> Result<Ticket, StorageError> {
        let settings = settings.clone();
        Ok(self.write(None, move |s| ops::put_pricing(s, settings.clone())))
    }

    fn put_request(&self, request: &OpenRequest) -> Result<Ticket, StorageError> {
        let request = request.clone();
        Ok(self.write(None, move |s| ops::put_request(s, request.clone())))
    }

    fn fence_order(&self, order: OrderId) -> Result<Ticket, StorageError> {
        let epoch = self.epoch;
        Ok(self.write(Some(order), move |s| ops::fence_order(s, order, epoch)))
    }

    fn remove_request(&self, id: RequestId) -> Result<Ticket, StorageError> {
        Ok(self.write(None, move |s| ops::remove_request(s, id)))
    }

    fn request(&self, id: RequestId) -> Result<Option<OpenRequest>, StorageError> {
        self.request_async(id).wait()
    }

    fn open_requests(&self) -> Result<Vec<OpenRequest>, StorageError> {
        self.read(|s| ops::all(s, "SELECT body FROM open_requests ORDER BY id"))
    }

    fn put_presence(
        &self,
        associate: AssociateId,
        presence: &Presence,
    ) -> Result<Ticket, StorageError> {
        let presence = presence.clone();
        Ok(self.write(None, move |s| {
            ops::put_presence(s, associate, presence.clone())
        }))
    }

    fn presence(&self, associate: AssociateId) -> Result<Option<Presence>, StorageError> {
        self.presence_async(associate).wait()
    }

    fn commit(&self) -> Ticket {
        let every: Vec<Ticket> = self
            .pool
            .writers
            .iter()
            .map(|w| Ticket::from_future(w.submit(true, None, |_| async { Ok(()) })))
            .collect();
        Ticket::from_future(Box::pin(async move {
            for ticket in every {
                ticket.durable().await?;
            }
            Ok(())
        }))
    }

    fn commit_queue(&self) -> (usize, usize) {
        self.pool
            .writers
            .iter()
            .map(Worker::queued)
            .fold((0, 0), |(n, cap), (a, b)| (n + a, cap + b))
    }

    fn reachable(&self) -> Reading<()> {
        // No earlier write to wait for: straight to a reader.
        let pool = self.pool.clone();
        Reading::from_future(Box::pin(async move {
            pool.reader()
                .run(|s| async move { s.query("SELECT 1", &[]).await.map(|_| ()) })
                .await
        }))
    }

    fn user_async(&self, id: UserId) -> Reading<Option<UserProfile>> {
        self.read_after(Sees::All, move |s| ops::one(s, ops::USERS.one, id.0))
    }

    fn associate_async(&self, id: AssociateId) -> Reading<Option<AssociateProfile>> {
        self.read_after(Sees::All, move |s| ops::one(s, ops::ASSOCIATES.one, id.0))
    }

    fn order_async(&self, id: OrderId) -> Reading<Option<OrderRecord>> {
        self.read_after(Sees::Order(id), move |s| ops::order(s, id))
    }

    fn events_async(&self, id: OrderId) -> Reading<Vec<OrderEvent>> {
        self.read_after(Sees::Order(id), move |s| ops::events(s, id))
    }

    fn payments_for_async(&self, order: OrderId) -> Reading<Vec<PaymentRecord>> {
        self.read_after(Sees::Order(order), move |s| ops::payments_for(s, order))
    }

    fn invoice_async(&self, id: InvoiceId) -> Reading<Option<Invoice>> {
        self.read_after(Sees::All, move |s| ops::invoice(s, id))
    }

    fn request_async(&self, id: RequestId) -> Reading<Option<OpenRequest>> {
        self.read_after(Sees::All, move |s| ops::request(s, id))
    }

    fn presence_async(&self, associate: AssociateId) -> Reading<Option<Presence>> {
        self.read_after(Sees::Unkeyed, move |s| ops::presence(s, associate))
    }

    fn payment_by_key_async(&self, user: UserId, key: &str) -> Reading<Option<PaymentRecord>> {
        let key = key.to_string();
        self.read_after(Sees::All, move |s| ops::payment_by_key(s, user, key))
    }

    fn begin_payment_async(&self, record: &PaymentRecord) -> Reading<PaymentStart> {
        let record = record.clone();
        self.answered(Some(record.order_id), move |s| {
            ops::begin_payment(s, record.clone())
        })
    }

    fn pricing_async(&self) -> Reading<Option<PricingSettings>> {
        self.read_after(Sees::Unkeyed, ops::pricing)
    }

    fn discount_async(&self, code: &str) -> Reading<Option<DiscountCode>> {
        let code = code.to_string();
        self.read_after(Sees::Unkeyed, move |s| ops::discount(s, code))
    }

    fn redeemed_async(&self, code: &str, user: UserId) -> Reading<bool> {
        let code = code.to_string();
        self.read_after(Sees::All, move |s| ops::redeemed(s, code, user))
    }

    fn redeem_async(&self, code: &str, user: UserId, order: OrderId) -> Reading<bool> {
        let code = code.to_string();
        self.answered(Some(order), move |s| {
            ops::redeem(s, code.clone(), user, order)
        })
    }

    fn add_feedback_async(&self, record: &FeedbackRecord) -> Reading<FeedbackOutcome> {
        let record = record.clone();
        self.answered(Some(record.order_id), move |s| {
            ops::add_feedback(s, record.clone())
        })
    }

    fn ledger_record_async(&self, key: &str, outcome: &LedgerOutcome) -> Reading<LedgerOutcome> {
        let (key, outcome) = (key.to_string(), outcome.clone());
        self.answered(None, move |s| {
            ops::ledger_record(s, key.clone(), outcome.clone())
        })
    }

    fn ledger_outcome_async(&self, key: &str) -> Reading<Option<LedgerOutcome>> {
        let key = key.to_string();
        self.read_after(Sees::Unkeyed, move |s| ops::ledger_outcome(s, key))
    }

    fn ledger(&self) -> Result<Vec<(String, LedgerOutcome)>, StorageError> {
        self.read(ops::ledger)
    }

    fn size_on_disk(&self) -> Result<u64, StorageError> {
        self.read(ops::size_on_disk)
    }

    fn schema_version(&self) -> Result<u32, StorageError> {
        self.read(ops::schema_version)
    }

    fn force_schema_version(&self, version: u32) -> Result<(), StorageError> {
        self.call(None, move |s| ops::force_schema_version(s, version))
    }
}
