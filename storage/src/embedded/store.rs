//! Opening the database: trees, schema version, group committer.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use wire::model::{DiscountCode, Invoice, OrderEvent, PricingSettings};

use crate::ack::Ticket;
use crate::embedded::commit::Committer;
use crate::embedded::migrate::{SCHEMA_KEY, SCHEMA_VERSION};
use crate::embedded::orders::ORDER_TREES;
use crate::embedded::sync::{SyncHook, Syncer};
use crate::embedded::table::Table;
use crate::error::StorageError;
use crate::records::*;

/// How many writes may wait for the committer before writers wait for room.
pub const DEFAULT_QUEUE_CAPACITY: usize = 16_384;

/// How to open a store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Directory of the database; none for a temporary store removed on drop.
    pub path: Option<PathBuf>,
    /// sled page cache size in bytes.
    pub cache_bytes: u64,
    /// How long the group committer waits after a first writer for more to join a
    /// flush (zero: flush at once; writers arriving during a flush share the next one).
    pub group_commit_wait: Duration,
    /// How many writes may wait for the committer; beyond that, writers wait for room.
    pub queue_capacity: usize,
    /// Called after every sync, before the writes it covers are acknowledged (tests).
    pub sync_hook: Option<SyncHook>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            path: Some(PathBuf::from("./data")),
            cache_bytes: 256 * 1024 * 1024,
            group_commit_wait: Duration::ZERO,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            sync_hook: None,
        }
    }
}

/// The embedded store on sled; cheap to clone (all clones share one database).
#[derive(Debug, Clone)]
pub struct SledStore {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) db: sled::Db,
    pub(crate) users: Table<UserProfile>,
    pub(crate) associates: Table<AssociateProfile>,
    pub(crate) orders: Table<OrderRecord>,
    pub(crate) archive: Table<OrderRecord>,
    /// Open order ids (key only): what recovery scans.
    pub(crate) open: sled::Tree,
    /// Ended orders by end time, waiting to be archived.
    pub(crate) ended: sled::Tree,
    /// (user id, order id), key only: a user's orders.
    pub(crate) orders_by_user: sled::Tree,
    /// (associate id, order id), key only: an associate's orders.
    pub(crate) orders_by_associate: sled::Tree,
    /// Open requests by id: what recovery resumes.
    pub(crate) requests: Table<OpenRequest>,
    /// Associates' presence (online, skills) by id.
    pub(crate) presence: Table<Presence>,
    /// Every order's events, by order id and sequence.
    pub(crate) events: Table<OrderEvent>,
    /// Every event in commit order, by a global sequence, for subscribers to resume from.
    pub(crate) feed: Table<OrderEvent>,
    pub(crate) invoices: Table<Invoice>,
    pub(crate) tax_invoices: Table<TaxInvoice>,
    pub(crate) payments: Table<PaymentRecord>,
    /// (user id, idempotency key) → payment id.
    pub(crate) payment_keys: sled::Tree,
    /// (order id, payment id), key only: an order's payments.
    pub(crate) payments_by_order: sled::Tree,
    /// Payment ids of pending payments, key only: what recovery reconciles.
    pub(crate) payments_pending: sled::Tree,
    pub(crate) feedback: Table<FeedbackRecord>,
    /// (order id, rated role, source) → key of that external feedback: once each.
    pub(crate) feedback_external: sled::Tree,
    pub(crate) discounts: Table<DiscountCode>,
    /// (code, user id) → order id.
    pub(crate) redemptions: sled::Tree,
    pub(crate) pricing: Table<PricingSettings>,
    pub(crate) meta: sled::Tree,
    /// The trees an order write may touch, at the positions `orders.rs` names.
    pub(crate) order_trees: Vec<sled::Tree>,
    pub(crate) committer: Committer,
    /// The database directory; none for a temporary store.
    pub(crate) path: Option<PathBuf>,
}

impl SledStore {
    /// Opens or creates the store, migrating a directory an earlier build wrote.
    pub fn open(config: &StoreConfig) -> Result<Self, StorageError> {
        let sled_config = sled::Config::new()
            .cache_capacity(config.cache_bytes)
            .mode(sled::Mode::HighThroughput);
        let sled_config = match &config.path {
            Some(path) => sled_config.path(path),
            None => sled_config.temporary(true),
        };
        let db = sled_config.open()?;
        let meta = db.open_tree("meta")?;
        match crate::embedded::migrate::stored_version(&meta)? {
            Some(found) => {
                crate::embedded::migrate::check(found)?;
                crate::embedded::migrate::migrate(&db, &meta, found)?;
            }
            None => {
                meta.insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())?;
                db.flush()?;
            }
        }
        let orders = Table::open(&db, "orders")?;
        let open = db.open_tree("orders_open")?;
        let ended = db.open_tree("orders_ended")?;
        let requests = Table::open(&db, "open_requests")?;
        let orders_by_user = db.open_tree("orders_by_user")?;
        let orders_by_associate = db.open_tree("orders_by_associate")?;
        let events = Table::open(&db, "order_events")?;
        let feed = Table::open(&db, "event_feed")?;
        let invoices = Table::open(&db, "invoices")?;
        let tax_invoices = Table::open(&db, "tax_invoices")?;
        let payments = Table::open(&db, "payments")?;
        let payments_by_order = db.open_tree("payments_by_order")?;
        let payments_pending = db.open_tree("payments_pending")?;
        // At the positions `orders.rs` names (ORDERS, EVENTS, FEED, OPEN, ...).
        let order_trees = vec![
            orders.tree.clone(),
            events.tree.clone(),
            feed.tree.clone(),
            open.clone(),
            ended.clone(),
            requests.tree.clone(),
            orders_by_user.clone(),
            orders_by_associate.clone(),
            invoices.tree.clone(),
            tax_invoices.tree.clone(),
            payments.tree.clone(),
            payments_by_order.clone(),
            payments_pending.clone(),
            meta.clone(),
        ];
        debug_assert_eq!(order_trees.len(), ORDER_TREES);
        let syncer = Syncer::open(config.path.as_deref(), config.sync_hook.clone())
            .map_err(|e| StorageError::Db(sled::Error::Io(e)))?;
        let committer = Committer::start(
            db.clone(),
            order_trees.clone(),
            syncer,
            config.group_commit_wait,
            config.queue_capacity,
        )?;
        let inner = Inner {
            users: Table::open(&db, "users")?,
            associates: Table::open(&db, "associates")?,
            orders,
            archive: Table::open(&db, "orders_archive")?,
            open,
            ended,
            orders_by_user,
            orders_by_associate,
            requests,
            presence: Table::open(&db, "presence")?,
            events,
            feed,
            invoices,
            tax_invoices,
            payments,
            payment_keys: db.open_tree("payment_keys")?,
            payments_by_order,
            payments_pending,
            feedback: Table::open(&db, "feedback")?,
            feedback_external: db.open_tree("feedback_external")?,
            discounts: Table::open(&db, "discount_codes")?,
            redemptions: db.open_tree("discount_redemptions")?,
            pricing: Table::open(&db, "pricing")?,
            meta,
            committer,
            order_trees,
            db,
            path: config.path.clone(),
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The files in the store's directory that survive power loss once a flush has
    /// been acknowledged: the ones it syncs itself and the blob files each sync covers
    /// (sled syncs its snapshots on its own). Empty for a temporary store.
    pub fn synced_files(&self) -> Vec<PathBuf> {
        let Some(dir) = &self.inner.path else {
            return Vec::new();
        };
        let mut files = crate::embedded::sync::synced_files(dir);
        if let Ok(blobs) = std::fs::read_dir(dir.join("blobs")) {
            files.extend(blobs.flatten().map(|entry| entry.path()));
        }
        files
    }

    /// A store in a temporary directory, removed when the last clone drops.
    pub fn temporary() -> Result<Self, StorageError> {
        Self::open(&StoreConfig {
            path: None,
            cache_bytes: 64 * 1024 * 1024,
            ..StoreConfig::default()
        })
    }

    /// A ticket that resolves once everything written so far is on disk.
    pub fn commit(&self) -> Ticket {
        self.inner.committer.ticket()
    }

    /// Makes everything written so far durable (flush and sync), blocking the thread.
    pub fn flush_blocking(&self) -> Result<(), StorageError> {
        self.commit().wait()
    }

    /// Writes waiting for the group committer now, and the most that may wait.
    pub fn commit_queue(&self) -> (usize, usize) {
        let c = &self.inner.committer;
        (c.queued(), c.capacity())
    }

    /// Bytes the database occupies on disk.
    pub fn size_on_disk(&self) -> Result<u64, StorageError> {
        Ok(self.inner.db.size_on_disk()?)
    }

    /// The schema version the data directory is in now.
    pub fn schema_version(&self) -> Result<u32, StorageError> {
        Ok(crate::embedded::migrate::stored_version(&self.inner.meta)?.unwrap_or(SCHEMA_VERSION))
    }

    /// Overwrites the schema version (for tests of the refusal path).
    #[doc(hidden)]
    pub fn force_schema_version(&self, version: u32) -> Result<(), StorageError> {
        self.inner.meta.insert(SCHEMA_KEY, &version.to_be_bytes())?;
        self.inner.db.flush()?;
        Ok(())
    }
}
