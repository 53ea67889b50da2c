//! The PostgreSQL backend: the system of record many engine nodes share.
//!
//! - One connection on a thread of its own runs every operation in call order, in group
//!   commits (`worker.rs`); reads block the caller for one round trip, writes return at
//!   once with a ticket that resolves after `COMMIT`.
//! - The schema is versioned SQL (`schema.rs`, `storage/migrations/`), applied at start.
//! - Every order write carries its handle's epoch ([`PgConfig::epoch`], or one given by
//!   [`Backend::fenced`]: in cluster mode the claim revision of the order's cell); the
//!   database refuses one older than the order's last writer ([`StorageError::Fenced`]).

mod copy;
mod ops;
mod schema;
#[cfg(feature = "testing")]
pub mod testing;
mod worker;

use std::future::Future;
use std::time::Duration;

use wire::model::{DiscountCode, Invoice, OrderEvent, OrderEventKind, PricingSettings, UnixMs};
use wire::{AssociateId, InvoiceId, OrderId, PartyId, PaymentId, RequestId, UserId};

use crate::ack::{Durable, Ticket, block_on};
use crate::backend::{Backend, FeedbackOutcome, PaymentStart, Store};
use crate::error::StorageError;
use crate::lifecycle::{Committed, SideWrite};
use crate::query::{OrderQuery, Page};
use crate::records::*;
pub use copy::{CopyReport, copy_sled_to_postgres};
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
        }
    }
}

/// Whether `database` names a Postgres server rather than a directory.
pub fn is_postgres_url(database: &str) -> bool {
    database.starts_with("postgres://") || database.starts_with("postgresql://")
}

/// The store on PostgreSQL.
#[derive(Debug)]
pub struct PgStore {
    worker: std::sync::Arc<Worker>,
    /// The epoch this handle's order writes carry.
    epoch: i64,
}

impl PgStore {
    /// Connects and brings the schema up to date (migrations run at open).
    pub fn open(config: &PgConfig) -> Result<Self, StorageError> {
        let (worker, _) = Worker::start(
            WorkerConfig {
                url: config.url.clone(),
                max_wait: config.group_commit_wait,
                capacity: config.queue_capacity,
                commit_hook: config.commit_hook.clone(),
            },
            |client| async move { schema::migrate(&client).await },
        )?;
        Ok(Self {
            worker: std::sync::Arc::new(worker),
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

    /// An operation whose answer the caller waits for now (blocking this thread).
    fn call<T, F, Fut>(&self, write: bool, op: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: Fn(Session) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StorageError>> + Send + 'static,
    {
        block_on(self.worker.submit(write, None, op))
    }

    /// A read, answered once every write submitted before it is committed.
    fn read<T, F, Fut>(&self, op: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: Fn(Session) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StorageError>> + Send + 'static,
    {
        self.call(false, op)
    }

    /// A write queued now; the ticket resolves once it is committed.
    fn write<F, Fut>(&self, op: F) -> Ticket
    where
        F: Fn(Session) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), StorageError>> + Send + 'static,
    {
        Ticket::from_future(self.worker.submit(true, None, op))
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
            worker: self.worker.clone(),
            epoch: ops::big(epoch),
        })
    }

    fn put_user(&self, user: &UserProfile) -> Result<Ticket, StorageError> {
        let user = user.clone();
        Ok(self.write(move |s| {
            let user = user.clone();
            async move {
                ops::put_profile(s, &ops::USERS, user.id.0, user.created_at_ms, &user, false).await
            }
        }))
    }

    fn create_user(&self, user: &UserProfile) -> Result<Ticket, StorageError> {
        let user = user.clone();
        self.call(true, move |s| {
            let user = user.clone();
            async move {
                ops::put_profile(s, &ops::USERS, user.id.0, user.created_at_ms, &user, true).await
            }
        })?;
        Ok(Ticket::done())
    }

    fn user(&self, id: UserId) -> Result<Option<UserProfile>, StorageError> {
        self.read(move |s| ops::one(s, ops::USERS.one, id.0))
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
        Ok(self.write(move |s| {
            let a = associate.clone();
            async move {
                ops::put_profile(s, &ops::ASSOCIATES, a.id.0, a.created_at_ms, &a, false).await
            }
        }))
    }

    fn create_associate(&self, associate: &AssociateProfile) -> Result<Ticket, StorageError> {
        let associate = associate.clone();
        self.call(true, move |s| {
            let a = associate.clone();
            async move {
                ops::put_profile(s, &ops::ASSOCIATES, a.id.0, a.created_at_ms, &a, true).await
            }
        })?;
        Ok(Ticket::done())
    }

    fn associate(&self, id: AssociateId) -> Result<Option<AssociateProfile>, StorageError> {
        self.read(move |s| ops::one(s, ops::ASSOCIATES.one, id.0))
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
        Durable::from_future(self.worker.submit(true, Some(record.order_id.0), move |s| {
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
        Durable::from_future(self.worker.submit(true, Some(order_id.0), move |s| {
            ops::transition(s, order_id, at_ms, kind.clone(), side.clone(), epoch)
        }))
    }

    fn order(&self, id: OrderId) -> Result<Option<OrderRecord>, StorageError> {
        self.read(move |s| ops::order(s, id))
    }

    fn events(&self, id: OrderId) -> Result<Vec<OrderEvent>, StorageError> {
        self.read(move |s| ops::events(s, id))
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
        self.call(true, move |s| ops::archive_ended_before(s, cutoff_ms))
    }

    fn find_orders(&self, query: &OrderQuery) -> Result<Page<OrderRecord>, StorageError> {
        let query = query.clone();
        self.read(move |s| ops::find_orders(s, query.clone()))
    }

    fn invoice(&self, id: InvoiceId) -> Result<Option<Invoice>, StorageError> {
        self.read(move |s| ops::invoice(s, id))
    }

    fn tax_invoice(&self, invoice: InvoiceId) -> Result<Option<TaxInvoice>, StorageError> {
        self.read(move |s| ops::tax_invoice(s, invoice))
    }

    fn begin_payment(&self, record: &PaymentRecord) -> Result<PaymentStart, StorageError> {
        let record = record.clone();
        self.call(true, move |s| ops::begin_payment(s, record.clone()))
    }

    fn payment_by_key(
        &self,
        user: UserId,
        key: &str,
    ) -> Result<Option<PaymentRecord>, StorageError> {
        let key = key.to_string();
        self.read(move |s| ops::payment_by_key(s, user, key.clone()))
    }

    fn put_payment(&self, record: &PaymentRecord) -> Result<Ticket, StorageError> {
        let record = record.clone();
        Ok(self.write(move |s| {
            let record = record.clone();
            async move { ops::upsert_payment(&s, &record).await }
        }))
    }

    fn payment(&self, id: PaymentId) -> Result<Option<PaymentRecord>, StorageError> {
        self.read(move |s| ops::payment(s, id))
    }

    fn payments_for(&self, order: OrderId) -> Result<Vec<PaymentRecord>, StorageError> {
        self.read(move |s| ops::payments_for(s, order))
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
        let record = record.clone();
        self.call(true, move |s| ops::add_feedback(s, record.clone()))
    }

    fn feedback_for(&self, order: OrderId) -> Result<Vec<FeedbackRecord>, StorageError> {
        self.read(move |s| ops::feedback_for(s, order))
    }

    fn put_discount(&self, code: &DiscountCode) -> Result<Ticket, StorageError> {
        let code = code.clone();
        Ok(self.write(move |s| ops::put_discount(s, code.clone())))
    }

    fn discount(&self, code: &str) -> Result<Option<DiscountCode>, StorageError> {
        let code = code.to_string();
        self.read(move |s| ops::discount(s, code.clone()))
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
        let code = code.to_string();
        self.read(move |s| ops::redeemed(s, code.clone(), user))
    }

    fn redeem(&self, code: &str, user: UserId, order: OrderId) -> Result<bool, StorageError> {
        let code = code.to_string();
        self.call(true, move |s| ops::redeem(s, code.clone(), user, order))
    }

    fn pricing(&self) -> Result<Option<PricingSettings>, StorageError> {
        self.read(ops::pricing)
    }

    fn put_pricing(&self, settings: &PricingSettings) -> Result<Ticket, StorageError> {
        let settings = settings.clone();
        Ok(self.write(move |s| ops::put_pricing(s, settings.clone())))
    }

    fn put_request(&self, request: &OpenRequest) -> Result<Ticket, StorageError> {
        let request = request.clone();
        Ok(self.write(move |s| ops::put_request(s, request.clone())))
    }

    fn fence_order(&self, order: OrderId) -> Result<Ticket, StorageError> {
        let epoch = self.epoch;
        Ok(self.write(move |s| ops::fence_order(s, order, epoch)))
    }

    fn remove_request(&self, id: RequestId) -> Result<Ticket, StorageError> {
        Ok(self.write(move |s| ops::remove_request(s, id)))
    }

    fn request(&self, id: RequestId) -> Result<Option<OpenRequest>, StorageError> {
        self.read(move |s| ops::request(s, id))
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
        Ok(self.write(move |s| ops::put_presence(s, associate, presence.clone())))
    }

    fn presence(&self, associate: AssociateId) -> Result<Option<Presence>, StorageError> {
        self.read(move |s| ops::presence(s, associate))
    }

    fn commit(&self) -> Ticket {
        self.write(|_| async { Ok(()) })
    }

    fn commit_queue(&self) -> (usize, usize) {
        self.worker.queued()
    }

    fn size_on_disk(&self) -> Result<u64, StorageError> {
        self.read(ops::size_on_disk)
    }

    fn schema_version(&self) -> Result<u32, StorageError> {
        self.read(ops::schema_version)
    }

    fn force_schema_version(&self, version: u32) -> Result<(), StorageError> {
        self.call(true, move |s| ops::force_schema_version(s, version))
    }
}
