//! Orders: creation, checked transitions written with their events, recovery, archive.

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use wire::OrderId;
use wire::model::{Invoice, OrderEvent, OrderEventKind, UnixMs};

use crate::ack::{Durable, Ticket};
use crate::embedded::keys::{ended_key, event_key, order_payment_key, party_order_key};
use crate::embedded::store::SledStore;
use crate::error::StorageError;
use crate::frozen::convert::{decode, encode};
use crate::lifecycle::{Committed, SideWrite, created, leaves_open, step};
use crate::records::{OrderRecord, PaymentRecord, TaxInvoice};

const TAX_SEQ_KEY: &[u8] = b"tax_invoice_seq";

/// Writes a payment with its indexes (by order; pending) in a transaction.
pub(crate) fn write_payment(
    payments: &TransactionalTree,
    by_order: &TransactionalTree,
    pending: &TransactionalTree,
    p: &PaymentRecord,
) -> Abortable<()> {
    let id = p.payment_id.to_bytes();
    payments.insert(&id, encode(p))?;
    by_order.insert(&order_payment_key(p.order_id, p.payment_id), &[])?;
    if p.status == wire::model::PaymentStatus::Pending {
        pending.insert(&id, &[])?;
    } else {
        pending.remove(&id)?;
    }
    Ok(())
}

// Positions of the trees in an order transaction (`Inner::order_trees`): the first three
// are always there; the rest only when the write needs them (fewer trees, cheaper
// transactions).
pub(crate) const ORDERS: usize = 0;
pub(crate) const EVENTS: usize = 1;
pub(crate) const FEED: usize = 2;
pub(crate) const OPEN: usize = 3;
pub(crate) const ENDED: usize = 4;
pub(crate) const REQUESTS: usize = 5;
pub(crate) const BY_USER: usize = 6;
pub(crate) const BY_ASSOCIATE: usize = 7;
pub(crate) const INVOICES: usize = 8;
pub(crate) const TAX: usize = 9;
pub(crate) const PAYMENTS: usize = 10;
pub(crate) const PAYMENTS_BY_ORDER: usize = 11;
pub(crate) const PAYMENTS_PENDING: usize = 12;
pub(crate) const META: usize = 13;
/// How many trees an order transaction may touch.
pub(crate) const ORDER_TREES: usize = META + 1;

type Abortable<T> = Result<T, ConflictableTransactionError<StorageError>>;

fn abort<T>(e: StorageError) -> Abortable<T> {
    Err(ConflictableTransactionError::Abort(e))
}

fn flatten<T>(r: Result<T, TransactionError<StorageError>>) -> Result<T, StorageError> {
    r.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => StorageError::Db(e),
    })
}

/// An order write, as the committer runs it inside its batch transaction.
#[derive(Debug, Clone)]
pub(crate) enum OrderWrite {
    /// Create an order in state allotted.
    Create(Box<OrderRecord>),
    /// Move an order on, with records written in the same atomic step.
    Transition {
        order_id: OrderId,
        at_ms: UnixMs,
        kind: OrderEventKind,
        side: Vec<SideWrite>,
    },
}

/// What an order write produced inside its transaction.
#[derive(Debug)]
pub(crate) struct Written {
    order: OrderRecord,
    event: OrderEvent,
    feed_seq: u64,
}

impl Written {
    pub(crate) fn committed(self, ticket: Ticket) -> Committed {
        Committed {
            order: self.order,
            event: self.event,
            feed_seq: self.feed_seq,
            ticket,
        }
    }
}

impl OrderWrite {
    /// Applies the write inside a transaction whose trees sit at the positions above.
    /// Every check (existence, lifecycle) happens before the first write.
    fn apply(&self, t: &[TransactionalTree]) -> Abortable<Written> {
        match self {
            OrderWrite::Create(record) => create_in(t, record),
            OrderWrite::Transition {
                order_id,
                at_ms,
                kind,
                side,
            } => transition_in(t, *order_id, *at_ms, kind, side),
        }
    }
}

/// Runs a batch of order writes in one transaction (one log reservation for all of
/// them). If any write is refused, the batch is undone and each write runs on its own,
/// so one bad write never fails the others.
pub(crate) fn write_batch(
    trees: &[sled::Tree],
    writes: &[OrderWrite],
) -> Vec<Result<Written, StorageError>> {
    let all = trees.transaction(|t| {
        writes
            .iter()
            .map(|w| w.apply(t))
            .collect::<Abortable<Vec<_>>>()
    });
    match all {
        Ok(written) => written.into_iter().map(Ok).collect(),
        Err(TransactionError::Abort(_)) => writes
            .iter()
            .map(|w| flatten(trees.transaction(|t| w.apply(t))))
            .collect(),
        Err(TransactionError::Storage(e)) => writes
            .iter()
            .map(|_| Err(StorageError::Db(e.clone())))
            .collect(),
    }
}

fn create_in(t: &[TransactionalTree], record: &OrderRecord) -> Abortable<Written> {
    let (order, event) = created(record);
    let key = order.order_id.to_bytes();
    if t[ORDERS].get(key)?.is_some() {
        return abort(StorageError::AlreadyExists { what: "order" });
    }
    t[ORDERS].insert(&key, encode(&order))?;
    t[OPEN].insert(&key, &[])?;
    t[BY_USER].insert(&party_order_key(order.user_id.0, order.order_id), &[])?;
    t[BY_ASSOCIATE].insert(&party_order_key(order.associate_id.0, order.order_id), &[])?;
    // The request it came from is allotted: it must never resume after a restart.
    t[REQUESTS].remove(&order.request_id.to_bytes())?;
    let feed_seq = write_event(t, &event)?;
    Ok(Written {
        order,
        event,
        feed_seq,
    })
}

fn transition_in(
    t: &[TransactionalTree],
    order_id: OrderId,
    at_ms: UnixMs,
    kind: &OrderEventKind,
    side: &[SideWrite],
) -> Abortable<Written> {
    let key = order_id.to_bytes();
    let Some(bytes) = t[ORDERS].get(key)? else {
        return abort(StorageError::NotFound { what: "order" });
    };
    let current: OrderRecord = match decode("orders", &bytes) {
        Ok(o) => o,
        Err(e) => return abort(e),
    };
    let (order, event) = match step(&current, order_id, at_ms, kind) {
        Ok(stepped) => stepped,
        Err(e) => return abort(e),
    };
    t[ORDERS].insert(&key, encode(&order))?;
    // An order stays open (and is recovered) until it is over and owes nothing.
    if leaves_open(&order) {
        t[OPEN].remove(&key)?;
        t[ENDED].insert(&ended_key(at_ms, order_id), &[])?;
    }
    for write in side {
        side_write(t, write)?;
    }
    let feed_seq = write_event(t, &event)?;
    Ok(Written {
        order,
        event,
        feed_seq,
    })
}

impl SledStore {
    /// The trees an order write touches: orders, events and feed, then the open and
    /// ended indexes if `index`, then the money trees if `money`.
    fn order_trees(&self, index: bool, money: bool) -> &[sled::Tree] {
        let n = match (index, money) {
            (_, true) => ORDER_TREES,
            (true, false) => BY_ASSOCIATE + 1,
            (false, false) => FEED + 1,
        };
        &self.inner.order_trees[..n]
    }

    /// Creates an order in state allotted with its first event; fails if it exists.
    pub fn create_order(&self, record: &OrderRecord) -> Result<Committed, StorageError> {
        self.write_here(&OrderWrite::Create(Box::new(record.clone())))
    }

    /// Like [`Self::create_order`], run by the group committer: resolves once durable.
    pub fn create_order_durable(&self, record: OrderRecord) -> Durable<Committed> {
        self.inner
            .committer
            .submit(OrderWrite::Create(Box::new(record)))
    }

    /// Moves an order to the state `kind` leads to, if the lifecycle allows, writing the
    /// order, its event and `side` writes in one atomic step.
    pub fn transition(
        &self,
        order_id: OrderId,
        at_ms: UnixMs,
        kind: OrderEventKind,
        side: &[SideWrite],
    ) -> Result<Committed, StorageError> {
        self.write_here(&OrderWrite::Transition {
            order_id,
            at_ms,
            kind,
            side: side.to_vec(),
        })
    }

    /// Like [`Self::transition`], run by the group committer: resolves once durable.
    pub fn transition_durable(
        &self,
        order_id: OrderId,
        at_ms: UnixMs,
        kind: OrderEventKind,
        side: Vec<SideWrite>,
    ) -> Durable<Committed> {
        self.inner.committer.submit(OrderWrite::Transition {
            order_id,
            at_ms,
            kind,
            side,
        })
    }

    /// Runs one order write in its own transaction on this thread, over only the trees
    /// it needs; the ticket resolves after the next flush.
    fn write_here(&self, write: &OrderWrite) -> Result<Committed, StorageError> {
        let (index, money) = match write {
            OrderWrite::Create(_) => (true, false),
            OrderWrite::Transition { kind, side, .. } => {
                (kind.state().is_terminal(), !side.is_empty())
            }
        };
        let trees = self.order_trees(index, money);
        let written = flatten(trees.transaction(|t| write.apply(t)))?;
        Ok(written.committed(self.commit()))
    }

    /// The order, open, ended or archived.
    pub fn order(&self, id: OrderId) -> Result<Option<OrderRecord>, StorageError> {
        let key = id.to_bytes();
        match self.inner.orders.get(key)? {
            Some(o) => Ok(Some(o)),
            None => self.inner.archive.get(key),
        }
    }

    /// The order's event log, in sequence.
    pub fn events(&self, id: OrderId) -> Result<Vec<OrderEvent>, StorageError> {
        self.inner.events.scan_prefix(id.to_bytes()).collect()
    }

    /// Up to `limit` events of every order from global feed position `from` on, with
    /// their positions: what a subscriber resumes from.
    pub fn events_since(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, OrderEvent)>, StorageError> {
        self.inner
            .feed
            .tree
            .range(from.to_be_bytes()..)
            .take(limit)
            .map(|r| {
                let (k, v) = r?;
                let seq = u64::from_be_bytes(k.as_ref().try_into().map_err(|_| {
                    StorageError::Corrupt {
                        tree: "event_feed",
                        detail: "key is not 8 bytes".into(),
                    }
                })?);
                Ok((seq, self.inner.feed.decode(&v)?))
            })
            .collect()
    }

    /// The feed position after the last event written: where a subscriber that wants
    /// only new events starts.
    pub fn feed_next(&self) -> Result<u64, StorageError> {
        match self.inner.feed.tree.last()? {
            Some((k, _)) => {
                let last = u64::from_be_bytes(k.as_ref().try_into().map_err(|_| {
                    StorageError::Corrupt {
                        tree: "event_feed",
                        detail: "key is not 8 bytes".into(),
                    }
                })?);
                Ok(last + 1)
            }
            None => Ok(0),
        }
    }

    /// Every order that is neither closed nor cancelled: what recovery rebuilds.
    pub fn open_orders(&self) -> Result<Vec<OrderRecord>, StorageError> {
        let mut out = Vec::new();
        for key in self.inner.open.iter().keys() {
            let key = key?;
            let order = self.inner.orders.get(&key)?.ok_or(StorageError::Corrupt {
                tree: "orders_open",
                detail: "open index names a missing order".into(),
            })?;
            out.push(order);
        }
        Ok(out)
    }

    /// Moves orders that ended before `cutoff_ms` to the archive; returns how many moved.
    pub fn archive_ended_before(&self, cutoff_ms: UnixMs) -> Result<usize, StorageError> {
        let i = &self.inner;
        let mut moved = 0;
        let end = ended_key(cutoff_ms, OrderId(uuid::Uuid::nil()));
        for key in i.ended.range(..end).keys() {
            let key = key?;
            let order_key: [u8; 16] = key[8..].try_into().map_err(|_| StorageError::Corrupt {
                tree: "orders_ended",
                detail: "key is not 24 bytes".into(),
            })?;
            flatten((&i.orders.tree, &i.archive.tree, &i.ended).transaction(
                |(orders, archive, ended)| {
                    if let Some(v) = orders.remove(&order_key)? {
                        archive.insert(&order_key, v)?;
                    }
                    ended.remove(&key)?;
                    Ok(())
                },
            ))?;
            moved += 1;
        }
        if moved > 0 {
            self.commit().wait()?;
        }
        Ok(moved)
    }

    /// The invoice.
    pub fn invoice(&self, id: wire::InvoiceId) -> Result<Option<Invoice>, StorageError> {
        self.inner.invoices.get(id.to_bytes())
    }

    /// The tax invoice issued with an invoice.
    pub fn tax_invoice(
        &self,
        invoice: wire::InvoiceId,
    ) -> Result<Option<TaxInvoice>, StorageError> {
        self.inner.tax_invoices.get(invoice.to_bytes())
    }
}

/// Appends `event` to its order's log and to the feed; returns its feed position.
fn write_event(t: &[TransactionalTree], event: &OrderEvent) -> Abortable<u64> {
    let bytes = encode(event);
    t[EVENTS].insert(&event_key(event.order_id, event.seq), bytes.as_slice())?;
    let feed_seq = t[FEED].generate_id()?;
    t[FEED].insert(&feed_seq.to_be_bytes(), bytes)?;
    Ok(feed_seq)
}

fn side_write(t: &[TransactionalTree], write: &SideWrite) -> Abortable<()> {
    match write {
        SideWrite::Invoice(inv) => {
            t[INVOICES].insert(&inv.invoice_id.to_bytes(), encode(inv))?;
        }
        SideWrite::Payment(p) => {
            write_payment(&t[PAYMENTS], &t[PAYMENTS_BY_ORDER], &t[PAYMENTS_PENDING], p)?
        }
        SideWrite::TaxInvoice(tax) => {
            let key = tax.invoice_id.to_bytes();
            if t[TAX].get(key)?.is_some() {
                return Ok(());
            }
            let last = match t[META].get(TAX_SEQ_KEY)? {
                Some(v) => match <[u8; 8]>::try_from(v.as_ref()) {
                    Ok(bytes) => u64::from_be_bytes(bytes),
                    Err(_) => {
                        return abort(StorageError::Corrupt {
                            tree: "meta",
                            detail: "tax invoice sequence is not 8 bytes".into(),
                        });
                    }
                },
                None => 0,
            };
            let number = last + 1;
            t[META].insert(TAX_SEQ_KEY, &number.to_be_bytes())?;
            let mut tax = tax.clone();
            tax.number = number;
            t[TAX].insert(&key, encode(&tax))?;
        }
    }
    Ok(())
}
