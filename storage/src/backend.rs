//! The storage seam: everything the actors and the HTTP API keep, as one interface with
//! two implementations (embedded sled, PostgreSQL). [`Store`] is the handle callers hold.

use std::sync::Arc;

use wire::model::{DiscountCode, Invoice, OrderEvent, OrderEventKind, PricingSettings, UnixMs};
use wire::{AssociateId, InvoiceId, OrderId, PartyId, PaymentId, RequestId, UserId};

use crate::ack::{Durable, Reading, Ticket};
use crate::error::StorageError;
use crate::lifecycle::{Committed, SideWrite};
use crate::query::{OrderQuery, Page};
use crate::records::*;

/// What [`Backend::add_feedback`] did.
#[derive(Debug)]
pub enum FeedbackOutcome {
    /// Stored, and the rated party's profile updated.
    Recorded(Ticket),
    /// The same rating (this party from the app, or this source about this party) is
    /// already recorded: here it is; nothing changed.
    AlreadyRated(Box<FeedbackRecord>),
}

/// What [`Backend::begin_payment`] found.
#[derive(Debug)]
pub enum PaymentStart {
    /// A new payment, stored as pending.
    Created(PaymentRecord, Ticket),
    /// The user already used this idempotency key: the payment it named.
    Existing(PaymentRecord),
}

/// One storage backend. Every write is visible to reads made after it returns, and is
/// acknowledged (its [`Ticket`] or [`Durable`] resolves) only once it is durable.
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// Which backend this is ("sled", "postgres").
    fn kind(&self) -> &'static str;

    /// A handle on the same store whose order writes carry `epoch` (cluster mode: the
    /// claim revision of the order's shard cell), so the database refuses them once a
    /// newer owner has written the order. The embedded store has no other writer and
    /// gives back a plain handle.
    fn fenced(&self, epoch: u64) -> Store;

    // --- Profiles ---

    /// Inserts or replaces a user profile.
    fn put_user(&self, user: &UserProfile) -> Result<Ticket, StorageError>;
    /// Stores a new user profile; `AlreadyExists` if one has that id.
    fn create_user(&self, user: &UserProfile) -> Result<Ticket, StorageError>;
    /// The user's profile.
    fn user(&self, id: UserId) -> Result<Option<UserProfile>, StorageError>;
    /// Every user, oldest first.
    fn users(&self) -> Result<Vec<UserProfile>, StorageError>;
    /// A page of users, oldest first.
    fn users_page(
        &self,
        after: Option<UserId>,
        limit: usize,
    ) -> Result<Page<UserProfile>, StorageError>;
    /// Inserts or replaces an associate profile.
    fn put_associate(&self, associate: &AssociateProfile) -> Result<Ticket, StorageError>;
    /// Stores a new associate profile; `AlreadyExists` if one has that id.
    fn create_associate(&self, associate: &AssociateProfile) -> Result<Ticket, StorageError>;
    /// The associate's profile.
    fn associate(&self, id: AssociateId) -> Result<Option<AssociateProfile>, StorageError>;
    /// Every associate, oldest first.
    fn associates(&self) -> Result<Vec<AssociateProfile>, StorageError>;
    /// A page of associates, oldest first.
    fn associates_page(
        &self,
        after: Option<AssociateId>,
        limit: usize,
    ) -> Result<Page<AssociateProfile>, StorageError>;

    // --- Orders ---

    /// Creates an order in state allotted with its first event, and forgets the request
    /// it came from; `AlreadyExists` if it exists.
    fn create_order(&self, record: &OrderRecord) -> Result<Committed, StorageError>;
    /// Like [`Self::create_order`], group-committed: resolves once durable.
    fn create_order_durable(&self, record: OrderRecord) -> Durable<Committed>;
    /// Moves an order to the state `kind` leads to, if the lifecycle allows, writing the
    /// order, its event and `side` writes in one atomic step.
    fn transition(
        &self,
        order_id: OrderId,
        at_ms: UnixMs,
        kind: OrderEventKind,
        side: &[SideWrite],
    ) -> Result<Committed, StorageError>;
    /// Like [`Self::transition`], group-committed: resolves once durable.
    fn transition_durable(
        &self,
        order_id: OrderId,
        at_ms: UnixMs,
        kind: OrderEventKind,
        side: Vec<SideWrite>,
    ) -> Durable<Committed>;
    /// The order, open, ended or archived.
    fn order(&self, id: OrderId) -> Result<Option<OrderRecord>, StorageError>;
    /// The order's event log, in sequence.
    fn events(&self, id: OrderId) -> Result<Vec<OrderEvent>, StorageError>;
    /// Up to `limit` events of every order from global feed position `from` on, with
    /// their positions: what a subscriber resumes from.
    fn events_since(&self, from: u64, limit: usize)
    -> Result<Vec<(u64, OrderEvent)>, StorageError>;
    /// The feed position after the last event written.
    fn feed_next(&self) -> Result<u64, StorageError>;
    /// Every order that is neither over nor owing a fee: what recovery rebuilds.
    fn open_orders(&self) -> Result<Vec<OrderRecord>, StorageError>;
    /// The open orders `party` is on (a user's include one that only owes a fee).
    fn open_orders_of(&self, party: PartyId) -> Result<Vec<OrderRecord>, StorageError>;
    /// Archives orders that ended before `cutoff_ms`; returns how many.
    fn archive_ended_before(&self, cutoff_ms: UnixMs) -> Result<usize, StorageError>;
    /// A page of the orders `query` asks for, oldest first.
    fn find_orders(&self, query: &OrderQuery) -> Result<Page<OrderRecord>, StorageError>;
    /// The invoice.
    fn invoice(&self, id: InvoiceId) -> Result<Option<Invoice>, StorageError>;
    /// The tax invoice issued with an invoice.
    fn tax_invoice(&self, invoice: InvoiceId) -> Result<Option<TaxInvoice>, StorageError>;

    // --- Payments ---

    /// Stores a new pending payment under the user's idempotency key, or returns the
    /// payment that key already names. Concurrent calls with one key create one payment.
    fn begin_payment(&self, record: &PaymentRecord) -> Result<PaymentStart, StorageError>;
    /// The payment a user's idempotency key names, if any.
    fn payment_by_key(
        &self,
        user: UserId,
        key: &str,
    ) -> Result<Option<PaymentRecord>, StorageError>;
    /// Replaces a payment record (status changes outside an order transition).
    fn put_payment(&self, record: &PaymentRecord) -> Result<Ticket, StorageError>;
    /// The payment.
    fn payment(&self, id: PaymentId) -> Result<Option<PaymentRecord>, StorageError>;
    /// Every payment for an order, any status, oldest first.
    fn payments_for(&self, order: OrderId) -> Result<Vec<PaymentRecord>, StorageError>;
    /// Payments still pending, for recovery to resolve with the gateway.
    fn pending_payments(&self) -> Result<Vec<PaymentRecord>, StorageError>;

    // --- Feedback, discounts, pricing ---

    /// Stores feedback and updates the rated party's rating in one step: app feedback
    /// once per party per order, external once per order, rated party and source.
    fn add_feedback(&self, record: &FeedbackRecord) -> Result<FeedbackOutcome, StorageError>;
    /// Every piece of feedback on an order.
    fn feedback_for(&self, order: OrderId) -> Result<Vec<FeedbackRecord>, StorageError>;
    /// Inserts or replaces a discount code.
    fn put_discount(&self, code: &DiscountCode) -> Result<Ticket, StorageError>;
    /// The discount code.
    fn discount(&self, code: &str) -> Result<Option<DiscountCode>, StorageError>;
    /// Every discount code.
    fn discounts(&self) -> Result<Vec<DiscountCode>, StorageError>;
    /// Whether the user has already redeemed `code`.
    fn redeemed(&self, code: &str, user: UserId) -> Result<bool, StorageError>;
    /// Records that `user` redeemed `code` on `order`; false if they already had on
    /// another order (the same order again is allowed, so billing may retry).
    fn redeem(&self, code: &str, user: UserId, order: OrderId) -> Result<bool, StorageError>;
    /// The pricing settings, if ever stored.
    fn pricing(&self) -> Result<Option<PricingSettings>, StorageError>;
    /// Replaces the pricing settings.
    fn put_pricing(&self, settings: &PricingSettings) -> Result<Ticket, StorageError>;

    // --- Dispatch state ---

    /// Inserts or replaces an open request.
    fn put_request(&self, request: &OpenRequest) -> Result<Ticket, StorageError>;
    /// Stamps `order` with this handle's epoch, so a writer with an older one is refused
    /// from now on (a new owner taking an order over); refused itself if a newer epoch
    /// holds it. A no-op where there is no fencing (the embedded store).
    fn fence_order(&self, order: OrderId) -> Result<Ticket, StorageError>;
    /// Forgets a request that ended without an order.
    fn remove_request(&self, id: RequestId) -> Result<Ticket, StorageError>;
    /// The open request.
    fn request(&self, id: RequestId) -> Result<Option<OpenRequest>, StorageError>;
    /// Every open request, oldest first: what recovery resumes.
    fn open_requests(&self) -> Result<Vec<OpenRequest>, StorageError>;
    /// Records whether an associate takes offers.
    fn put_presence(
        &self,
        associate: AssociateId,
        presence: &Presence,
    ) -> Result<Ticket, StorageError>;
    /// Whether the associate last asked to take offers.
    fn presence(&self, associate: AssociateId) -> Result<Option<Presence>, StorageError>;

    // --- Reads that need not block: what actors read on their hot paths ---

    /// [`Self::user`], awaited rather than blocking.
    fn user_async(&self, id: UserId) -> Reading<Option<UserProfile>> {
        Reading::ready(self.user(id))
    }
    /// [`Self::associate`], awaited rather than blocking.
    fn associate_async(&self, id: AssociateId) -> Reading<Option<AssociateProfile>> {
        Reading::ready(self.associate(id))
    }
    /// [`Self::order`], awaited rather than blocking.
    fn order_async(&self, id: OrderId) -> Reading<Option<OrderRecord>> {
        Reading::ready(self.order(id))
    }
    /// [`Self::events`], awaited rather than blocking.
    fn events_async(&self, id: OrderId) -> Reading<Vec<OrderEvent>> {
        Reading::ready(self.events(id))
    }
    /// [`Self::payments_for`], awaited rather than blocking.
    fn payments_for_async(&self, order: OrderId) -> Reading<Vec<PaymentRecord>> {
        Reading::ready(self.payments_for(order))
    }
    /// [`Self::invoice`], awaited rather than blocking.
    fn invoice_async(&self, id: InvoiceId) -> Reading<Option<Invoice>> {
        Reading::ready(self.invoice(id))
    }
    /// [`Self::request`], awaited rather than blocking.
    fn request_async(&self, id: RequestId) -> Reading<Option<OpenRequest>> {
        Reading::ready(self.request(id))
    }
    /// [`Self::presence`], awaited rather than blocking.
    fn presence_async(&self, associate: AssociateId) -> Reading<Option<Presence>> {
        Reading::ready(self.presence(associate))
    }

    /// [`Self::payment_by_key`], awaited rather than blocking.
    fn payment_by_key_async(&self, user: UserId, key: &str) -> Reading<Option<PaymentRecord>> {
        Reading::ready(self.payment_by_key(user, key))
    }
    /// [`Self::begin_payment`], awaited rather than blocking.
    fn begin_payment_async(&self, record: &PaymentRecord) -> Reading<PaymentStart> {
        Reading::ready(self.begin_payment(record))
    }
    /// [`Self::pricing`], awaited rather than blocking.
    fn pricing_async(&self) -> Reading<Option<PricingSettings>> {
        Reading::ready(self.pricing())
    }
    /// [`Self::discount`], awaited rather than blocking.
    fn discount_async(&self, code: &str) -> Reading<Option<DiscountCode>> {
        Reading::ready(self.discount(code))
    }
    /// [`Self::redeemed`], awaited rather than blocking.
    fn redeemed_async(&self, code: &str, user: UserId) -> Reading<bool> {
        Reading::ready(self.redeemed(code, user))
    }
    /// [`Self::redeem`], awaited rather than blocking.
    fn redeem_async(&self, code: &str, user: UserId, order: OrderId) -> Reading<bool> {
        Reading::ready(self.redeem(code, user, order))
    }
    /// [`Self::add_feedback`], awaited rather than blocking.
    fn add_feedback_async(&self, record: &FeedbackRecord) -> Reading<FeedbackOutcome> {
        Reading::ready(self.add_feedback(record))
    }

    // --- A payment gateway ledger every node shares (cluster mode) ---

    /// Records `outcome` for the gateway key `key` unless the key has one already
    /// (durable before it answers), and answers the outcome the key holds now: the
    /// first ever recorded, whichever node recorded it.
    fn ledger_record_async(&self, key: &str, outcome: &LedgerOutcome) -> Reading<LedgerOutcome> {
        let _ = (key, outcome);
        Reading::ready(Err(StorageError::Unsupported("a shared gateway ledger")))
    }
    /// The outcome the gateway key `key` holds, if any.
    fn ledger_outcome_async(&self, key: &str) -> Reading<Option<LedgerOutcome>> {
        let _ = key;
        Reading::ready(Err(StorageError::Unsupported("a shared gateway ledger")))
    }
    /// Every key of the shared gateway ledger with its outcome, oldest first (audits).
    fn ledger(&self) -> Result<Vec<(String, LedgerOutcome)>, StorageError> {
        Err(StorageError::Unsupported("a shared gateway ledger"))
    }

    // --- The store itself ---

    /// Answers once the store has answered a trivial read: it is reachable.
    fn reachable(&self) -> Reading<()> {
        Reading::ready(self.schema_version().map(|_| ()))
    }

    /// A ticket that resolves once everything written so far is durable.
    fn commit(&self) -> Ticket;
    /// Writes waiting for the group committer now, and the most that may wait.
    fn commit_queue(&self) -> (usize, usize);
    /// Bytes the data occupies on disk.
    fn size_on_disk(&self) -> Result<u64, StorageError>;
    /// The schema version the data is in now.
    fn schema_version(&self) -> Result<u32, StorageError>;
    /// Overwrites the schema version (for tests of the refusal path).
    #[doc(hidden)]
    fn force_schema_version(&self, version: u32) -> Result<(), StorageError>;
}

/// The durable store, whichever backend holds it; cheap to clone (clones share it).
#[derive(Debug, Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
}

impl Store {
    /// A store over `backend`.
    pub fn new(backend: impl Backend + 'static) -> Self {
        Self {
            backend: Arc::new(backend),
        }
    }

    /// Makes everything written so far durable, blocking the thread.
    pub fn flush_blocking(&self) -> Result<(), StorageError> {
        self.backend.commit().wait()
    }
}

impl std::ops::Deref for Store {
    type Target = dyn Backend;

    fn deref(&self) -> &Self::Target {
        &*self.backend
    }
}
