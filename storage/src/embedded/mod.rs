//! The embedded backend: sled in the data directory, group-committed with `fdatasync`.

pub(crate) mod commit;
mod dispatch;
pub(crate) mod keys;
mod lists;
pub(crate) mod migrate;
pub(crate) mod orders;
mod people;
pub(crate) mod store;
pub(crate) mod sync;
pub(crate) mod table;

use wire::model::{DiscountCode, Invoice, OrderEvent, OrderEventKind, PricingSettings, UnixMs};
use wire::{AssociateId, InvoiceId, OrderId, PartyId, PaymentId, RequestId, UserId};

use crate::ack::{Durable, Ticket};
use crate::backend::{Backend, FeedbackOutcome, PaymentStart};
use crate::error::StorageError;
use crate::lifecycle::{Committed, SideWrite};
use crate::query::{OrderQuery, Page};
use crate::records::*;
pub use store::{DEFAULT_QUEUE_CAPACITY, SledStore, StoreConfig};

impl Backend for SledStore {
    fn kind(&self) -> &'static str {
        "sled"
    }

    fn fenced(&self, _epoch: u64) -> crate::backend::Store {
        crate::backend::Store::new(self.clone())
    }

    fn put_user(&self, user: &UserProfile) -> Result<Ticket, StorageError> {
        SledStore::put_user(self, user)
    }

    fn create_user(&self, user: &UserProfile) -> Result<Ticket, StorageError> {
        SledStore::create_user(self, user)
    }

    fn user(&self, id: UserId) -> Result<Option<UserProfile>, StorageError> {
        SledStore::user(self, id)
    }

    fn users(&self) -> Result<Vec<UserProfile>, StorageError> {
        SledStore::users(self)
    }

    fn users_page(
        &self,
        after: Option<UserId>,
        limit: usize,
    ) -> Result<Page<UserProfile>, StorageError> {
        SledStore::users_page(self, after, limit)
    }

    fn put_associate(&self, associate: &AssociateProfile) -> Result<Ticket, StorageError> {
        SledStore::put_associate(self, associate)
    }

    fn create_associate(&self, associate: &AssociateProfile) -> Result<Ticket, StorageError> {
        SledStore::create_associate(self, associate)
    }

    fn associate(&self, id: AssociateId) -> Result<Option<AssociateProfile>, StorageError> {
        SledStore::associate(self, id)
    }

    fn associates(&self) -> Result<Vec<AssociateProfile>, StorageError> {
        SledStore::associates(self)
    }

    fn associates_page(
        &self,
        after: Option<AssociateId>,
        limit: usize,
    ) -> Result<Page<AssociateProfile>, StorageError> {
        SledStore::associates_page(self, after, limit)
    }

    fn create_order(&self, record: &OrderRecord) -> Result<Committed, StorageError> {
        SledStore::create_order(self, record)
    }

    fn create_order_durable(&self, record: OrderRecord) -> Durable<Committed> {
        SledStore::create_order_durable(self, record)
    }

    fn transition(
        &self,
        order_id: OrderId,
        at_ms: UnixMs,
        kind: OrderEventKind,
        side: &[SideWrite],
    ) -> Result<Committed, StorageError> {
        SledStore::transition(self, order_id, at_ms, kind, side)
    }

    fn transition_durable(
        &self,
        order_id: OrderId,
        at_ms: UnixMs,
        kind: OrderEventKind,
        side: Vec<SideWrite>,
    ) -> Durable<Committed> {
        SledStore::transition_durable(self, order_id, at_ms, kind, side)
    }

    fn order(&self, id: OrderId) -> Result<Option<OrderRecord>, StorageError> {
        SledStore::order(self, id)
    }

    fn events(&self, id: OrderId) -> Result<Vec<OrderEvent>, StorageError> {
        SledStore::events(self, id)
    }

    fn events_since(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, OrderEvent)>, StorageError> {
        SledStore::events_since(self, from, limit)
    }

    fn feed_next(&self) -> Result<u64, StorageError> {
        SledStore::feed_next(self)
    }

    fn open_orders(&self) -> Result<Vec<OrderRecord>, StorageError> {
        SledStore::open_orders(self)
    }

    fn open_orders_of(&self, party: PartyId) -> Result<Vec<OrderRecord>, StorageError> {
        // The open set is small beside the history; one node has no need for an index.
        Ok(SledStore::open_orders(self)?
            .into_iter()
            .filter(|o| match party {
                PartyId::User(u) => o.user_id == u,
                PartyId::Associate(a) => o.associate_id == a,
            })
            .collect())
    }

    fn archive_ended_before(&self, cutoff_ms: UnixMs) -> Result<usize, StorageError> {
        SledStore::archive_ended_before(self, cutoff_ms)
    }

    fn find_orders(&self, query: &OrderQuery) -> Result<Page<OrderRecord>, StorageError> {
        SledStore::find_orders(self, query)
    }

    fn invoice(&self, id: InvoiceId) -> Result<Option<Invoice>, StorageError> {
        SledStore::invoice(self, id)
    }

    fn tax_invoice(&self, invoice: InvoiceId) -> Result<Option<TaxInvoice>, StorageError> {
        SledStore::tax_invoice(self, invoice)
    }

    fn begin_payment(&self, record: &PaymentRecord) -> Result<PaymentStart, StorageError> {
        SledStore::begin_payment(self, record)
    }

    fn payment_by_key(
        &self,
        user: UserId,
        key: &str,
    ) -> Result<Option<PaymentRecord>, StorageError> {
        SledStore::payment_by_key(self, user, key)
    }

    fn put_payment(&self, record: &PaymentRecord) -> Result<Ticket, StorageError> {
        SledStore::put_payment(self, record)
    }

    fn payment(&self, id: PaymentId) -> Result<Option<PaymentRecord>, StorageError> {
        SledStore::payment(self, id)
    }

    fn payments_for(&self, order: OrderId) -> Result<Vec<PaymentRecord>, StorageError> {
        SledStore::payments_for(self, order)
    }

    fn pending_payments(&self) -> Result<Vec<PaymentRecord>, StorageError> {
        SledStore::pending_payments(self)
    }

    fn add_feedback(&self, record: &FeedbackRecord) -> Result<FeedbackOutcome, StorageError> {
        SledStore::add_feedback(self, record)
    }

    fn feedback_for(&self, order: OrderId) -> Result<Vec<FeedbackRecord>, StorageError> {
        SledStore::feedback_for(self, order)
    }

    fn put_discount(&self, code: &DiscountCode) -> Result<Ticket, StorageError> {
        SledStore::put_discount(self, code)
    }

    fn discount(&self, code: &str) -> Result<Option<DiscountCode>, StorageError> {
        SledStore::discount(self, code)
    }

    fn discounts(&self) -> Result<Vec<DiscountCode>, StorageError> {
        SledStore::discounts(self)
    }

    fn redeemed(&self, code: &str, user: UserId) -> Result<bool, StorageError> {
        SledStore::redeemed(self, code, user)
    }

    fn redeem(&self, code: &str, user: UserId, order: OrderId) -> Result<bool, StorageError> {
        SledStore::redeem(self, code, user, order)
    }

    fn pricing(&self) -> Result<Option<PricingSettings>, StorageError> {
        SledStore::pricing(self)
    }

    fn put_pricing(&self, settings: &PricingSettings) -> Result<Ticket, StorageError> {
        SledStore::put_pricing(self, settings)
    }

    fn put_request(&self, request: &OpenRequest) -> Result<Ticket, StorageError> {
        SledStore::put_request(self, request)
    }

    fn fence_order(&self, _order: OrderId) -> Result<Ticket, StorageError> {
        // One node, one writer: nothing to fence.
        Ok(SledStore::commit(self))
    }

    fn remove_request(&self, id: RequestId) -> Result<Ticket, StorageError> {
        SledStore::remove_request(self, id)
    }

    fn request(&self, id: RequestId) -> Result<Option<OpenRequest>, StorageError> {
        SledStore::request(self, id)
    }

    fn open_requests(&self) -> Result<Vec<OpenRequest>, StorageError> {
        SledStore::open_requests(self)
    }

    fn put_presence(
        &self,
        associate: AssociateId,
        presence: &Presence,
    ) -> Result<Ticket, StorageError> {
        SledStore::put_presence(self, associate, presence)
    }

    fn presence(&self, associate: AssociateId) -> Result<Option<Presence>, StorageError> {
        SledStore::presence(self, associate)
    }

    fn commit(&self) -> Ticket {
        SledStore::commit(self)
    }

    fn commit_queue(&self) -> (usize, usize) {
        SledStore::commit_queue(self)
    }

    fn size_on_disk(&self) -> Result<u64, StorageError> {
        SledStore::size_on_disk(self)
    }

    fn schema_version(&self) -> Result<u32, StorageError> {
        SledStore::schema_version(self)
    }

    fn force_schema_version(&self, version: u32) -> Result<(), StorageError> {
        SledStore::force_schema_version(self, version)
    }
}
