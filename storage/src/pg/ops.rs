//! Every operation as SQL, run by the worker inside a batch's transaction. Each checks
//! what it may refuse before its first write (see `worker.rs`).

use tokio_postgres::Row;
use tokio_postgres::types::Json;
use wire::model::{
    DiscountCode, Invoice, OrderEvent, OrderEventKind, PricingSettings, Role, UnixMs,
};
use wire::{AssociateId, InvoiceId, OrderId, PartyId, PaymentId, RequestId, UserId};

use super::worker::Session;
use crate::ack::Ticket;
use crate::backend::{FeedbackOutcome, PaymentStart};
use crate::error::StorageError;
use crate::frozen::convert::Stored;
use crate::lifecycle::{Committed, SideWrite, created, leaves_open, step};
use crate::query::{MAX_PAGE, OrderQuery, Page};
use crate::records::*;

/// A time or counter as Postgres bigint.
pub(crate) fn big(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The record in column `i` (jsonb, in storage's own layout).
pub(crate) fn body<T: Stored>(row: &Row, i: usize) -> Result<T, StorageError> {
    let Json(layout) = row.try_get::<_, Json<T::Layout>>(i)?;
    T::from_layout(layout).map_err(|detail| StorageError::Corrupt {
        tree: "postgres",
        detail,
    })
}

fn bodies<T: Stored>(rows: &[Row]) -> Result<Vec<T>, StorageError> {
    rows.iter().map(|r| body(r, 0)).collect()
}

/// A record as the jsonb body of its row: its storage layout, never its wire form.
pub(crate) fn json<T: Stored>(value: &T) -> Json<T::Layout> {
    Json(value.to_layout())
}

// --- Profiles ---

/// Where a kind of profile lives.
pub(crate) struct ProfileTable {
    upsert: &'static str,
    insert_new: &'static str,
    pub(crate) one: &'static str,
    page: &'static str,
    /// Adds `$2` to a profile's rating sum and one to its count.
    rate: &'static str,
    /// What a creation conflict names.
    what: &'static str,
    /// What a missing profile to rate names.
    table: &'static str,
}

/// The users' table.
pub(crate) const USERS: ProfileTable = ProfileTable {
    upsert: "INSERT INTO users (id, created_at_ms, body) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET created_at_ms = EXCLUDED.created_at_ms, body = EXCLUDED.body",
    insert_new: "INSERT INTO users (id, created_at_ms, body) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    one: "SELECT body FROM users WHERE id = $1",
    page: "SELECT body FROM users WHERE ($1::uuid IS NULL OR id > $1) ORDER BY id LIMIT $2",
    rate: "UPDATE users SET body = jsonb_set(jsonb_set(body,
               '{rating_sum}', to_jsonb((body->>'rating_sum')::bigint + $2)),
               '{rating_count}', to_jsonb((body->>'rating_count')::bigint + 1))
           WHERE id = $1",
    what: "user",
    table: "users",
};

/// The associates' table.
pub(crate) const ASSOCIATES: ProfileTable = ProfileTable {
    upsert: "INSERT INTO associates (id, created_at_ms, body) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET created_at_ms = EXCLUDED.created_at_ms, body = EXCLUDED.body",
    insert_new: "INSERT INTO associates (id, created_at_ms, body) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    one: "SELECT body FROM associates WHERE id = $1",
    page: "SELECT body FROM associates WHERE ($1::uuid IS NULL OR id > $1) ORDER BY id LIMIT $2",
    rate: "UPDATE associates SET body = jsonb_set(jsonb_set(body,
               '{rating_sum}', to_jsonb((body->>'rating_sum')::bigint + $2)),
               '{rating_count}', to_jsonb((body->>'rating_count')::bigint + 1))
           WHERE id = $1",
    what: "associate",
    table: "associates",
};

/// Inserts or replaces a profile; with `only_new`, `AlreadyExists` if it exists.
pub(crate) async fn put_profile<P: Stored + std::fmt::Debug + Sync>(
    s: Session,
    table: &ProfileTable,
    id: uuid::Uuid,
    created_at_ms: UnixMs,
    profile: &P,
    only_new: bool,
) -> Result<(), StorageError> {
    let sql = if only_new {
        table.insert_new
    } else {
        table.upsert
    };
    let n = s
        .execute(sql, &[&id, &big(created_at_ms), &json(profile)])
        .await?;
    if only_new && n == 0 {
        return Err(StorageError::AlreadyExists { what: table.what });
    }
    Ok(())
}

/// The record `sql` (selecting `body` by one uuid) finds, if any.
pub(crate) async fn one<T: Stored>(
    s: Session,
    sql: &'static str,
    id: uuid::Uuid,
) -> Result<Option<T>, StorageError> {
    s.query_opt(sql, &[&id])
        .await?
        .map(|r| body(&r, 0))
        .transpose()
}

/// A page of profiles after `after`, in id order.
pub(crate) async fn profiles_page<T: Stored>(
    s: Session,
    table: &ProfileTable,
    after: Option<uuid::Uuid>,
    limit: usize,
    id: impl Fn(&T) -> uuid::Uuid,
) -> Result<Page<T>, StorageError> {
    let limit = limit.clamp(1, MAX_PAGE);
    let rows = s
        .query(table.page, &[&after, &((limit + 1) as i64)])
        .await?;
    page(bodies(&rows)?, limit, id)
}

pub(crate) async fn all<T: Stored>(s: Session, sql: &'static str) -> Result<Vec<T>, StorageError> {
    bodies(&s.query(sql, &[]).await?)
}

/// A page from `limit + 1` rows: the extra one says another page follows.
fn page<T>(
    mut items: Vec<T>,
    limit: usize,
    id: impl Fn(&T) -> uuid::Uuid,
) -> Result<Page<T>, StorageError> {
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(id)
    } else {
        None
    };
    Ok(Page { items, next })
}

// --- Orders ---

/// Appends an event; returns its feed position.
async fn insert_event(s: &Session, event: &OrderEvent) -> Result<u64, StorageError> {
    let row = s
        .query_opt(
            "INSERT INTO order_events (order_id, seq, feed_seq, at_ms, state, body)
             VALUES ($1, $2, nextval('event_feed_seq'), $3, $4, $5) RETURNING feed_seq",
            &[
                &event.order_id.0,
                &(event.seq as i32),
                &big(event.at_ms),
                &event.state.as_str(),
                &json(event),
            ],
        )
        .await?
        .ok_or(StorageError::Closed)?;
    let seq: i64 = row.try_get(0)?;
    Ok(seq as u64)
}

/// Stores an order as it is, with where it stands (for copying a store).
pub(crate) async fn insert_order(
    s: &Session,
    order: &OrderRecord,
    open: bool,
    closed_at_ms: Option<UnixMs>,
    archived: bool,
    epoch: i64,
) -> Result<(), StorageError> {
    s.execute(
        "INSERT INTO orders (id, request_id, user_id, associate_id, state, allotted_at_ms,
                             open, closed_at_ms, archived, next_seq, epoch, body)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        &[
            &order.order_id.0,
            &order.request_id.0,
            &order.user_id.0,
            &order.associate_id.0,
            &order.state.as_str(),
            &big(order.allotted_at_ms),
            &open,
            &closed_at_ms.map(big),
            &archived,
            &(order.next_seq as i32),
            &epoch,
            &json(order),
        ],
    )
    .await?;
    Ok(())
}

/// Stores an event at a given feed position (for copying a store).
pub(crate) async fn insert_event_at(
    s: &Session,
    event: &OrderEvent,
    feed_seq: u64,
) -> Result<(), StorageError> {
    s.execute(
        INSERT_EVENT_AT,
        &[
            &event.order_id.0,
            &(event.seq as i32),
            &big(feed_seq),
            &big(event.at_ms),
            &event.state.as_str(),
            &json(event),
        ],
    )
    .await?;
    Ok(())
}

const INSERT_EVENT_AT: &str =
    "INSERT INTO order_events (order_id, seq, feed_seq, at_ms, state, body)
     VALUES ($1, $2, $3, $4, $5, $6)";

/// Appends an event: queued at a feed position reserved for this transaction, or
/// inserted now at the next one when none is left.
async fn append_event(s: &Session, event: &OrderEvent) -> Result<u64, StorageError> {
    match s.queue_event(event) {
        Some(feed_seq) => Ok(feed_seq as u64),
        None => insert_event(s, event).await,
    }
}

/// The order as this transaction has it, with the epoch of its last write: read ahead,
/// or read and locked now.
async fn current_order(
    s: &Session,
    id: OrderId,
) -> Result<Option<(OrderRecord, i64)>, StorageError> {
    if let Some(cached) = s.cached_order(id.0) {
        return Ok(cached);
    }
    s.query_opt(
        "SELECT body, epoch FROM orders WHERE id = $1 FOR UPDATE",
        &[&id.0],
    )
    .await?
    .map(|r| Ok((body(&r, 0)?, r.try_get(1)?)))
    .transpose()
}

pub(crate) async fn create_order(
    s: Session,
    record: OrderRecord,
    epoch: i64,
) -> Result<Committed, StorageError> {
    let (order, event) = created(&record);
    if current_order(&s, order.order_id).await?.is_some() {
        return Err(StorageError::AlreadyExists { what: "order" });
    }
    s.queue_created(&order, epoch);
    let feed_seq = append_event(&s, &event).await?;
    Ok(Committed {
        order,
        event,
        feed_seq,
        ticket: Ticket::done(),
    })
}

pub(crate) async fn transition(
    s: Session,
    order_id: OrderId,
    at_ms: UnixMs,
    kind: OrderEventKind,
    side: Vec<SideWrite>,
    epoch: i64,
) -> Result<Committed, StorageError> {
    let Some((current, held)) = current_order(&s, order_id).await? else {
        return Err(StorageError::NotFound { what: "order" });
    };
    // The database would refuse it too; a write earlier in this transaction is not
    // there yet for its trigger to compare against.
    if epoch < held {
        return Err(StorageError::Fenced(format!(
            "order {order_id} is held by epoch {held}: a write from epoch {epoch} is refused"
        )));
    }
    let (order, event) = step(&current, order_id, at_ms, &kind)?;
    let closed_at = leaves_open(&order).then_some(big(at_ms));
    s.queue_moved(&order, closed_at, epoch);
    for write in &side {
        side_write(&s, write).await?;
    }
    let feed_seq = append_event(&s, &event).await?;
    Ok(Committed {
        order,
        event,
        feed_seq,
        ticket: Ticket::done(),
    })
}

async fn side_write(s: &Session, write: &SideWrite) -> Result<(), StorageError> {
    match write {
        SideWrite::Invoice(invoice) => put_invoice(s, invoice).await,
        SideWrite::Payment(payment) => upsert_payment(s, payment).await,
        SideWrite::TaxInvoice(tax) => issue_tax_invoice(s, tax).await,
    }
}

pub(crate) async fn put_invoice(s: &Session, invoice: &Invoice) -> Result<(), StorageError> {
    s.execute(
        "INSERT INTO invoices (id, order_id, currency, total_minor, commission_minor,
                               payout_minor, issued_at_ms, body)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (id) DO UPDATE SET order_id = EXCLUDED.order_id,
             currency = EXCLUDED.currency, total_minor = EXCLUDED.total_minor,
             commission_minor = EXCLUDED.commission_minor, payout_minor = EXCLUDED.payout_minor,
             issued_at_ms = EXCLUDED.issued_at_ms, body = EXCLUDED.body",
        &[
            &invoice.invoice_id.0,
            &invoice.order_id.0,
            &invoice.currency,
            &invoice.total_minor,
            &invoice.commission_minor,
            &invoice.payout_minor,
            &big(invoice.issued_at_ms),
            &json(invoice),
        ],
    )
    .await?;
    Ok(())
}

/// Issues a tax invoice with the next number of the gap-free sequence, once per invoice.
async fn issue_tax_invoice(s: &Session, tax: &TaxInvoice) -> Result<(), StorageError> {
    let exists = s
        .query_opt(
            "SELECT 1 FROM tax_invoices WHERE invoice_id = $1",
            &[&tax.invoice_id.0],
        )
        .await?;
    if exists.is_some() {
        return Ok(());
    }
    let row = s
        .query_opt(
            "UPDATE meta SET value = value + 1 WHERE key = 'tax_invoice_seq' RETURNING value",
            &[],
        )
        .await?
        .ok_or_else(|| StorageError::Schema("meta has no tax_invoice_seq".into()))?;
    let number: i64 = row.try_get(0)?;
    let mut tax = tax.clone();
    tax.number = number as u64;
    insert_tax_invoice(s, &tax).await
}

/// Stores a tax invoice with the number it carries.
pub(crate) async fn insert_tax_invoice(s: &Session, tax: &TaxInvoice) -> Result<(), StorageError> {
    s.execute(
        "INSERT INTO tax_invoices (invoice_id, number, order_id, taxable_minor, tax_minor,
                                   total_minor, issued_at_ms, body)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &tax.invoice_id.0,
            &big(tax.number),
            &tax.order_id.0,
            &tax.taxable_minor,
            &tax.tax_minor,
            &tax.total_minor,
            &big(tax.issued_at_ms),
            &json(tax),
        ],
    )
    .await?;
    Ok(())
}

pub(crate) async fn order(s: Session, id: OrderId) -> Result<Option<OrderRecord>, StorageError> {
    one(s, "SELECT body FROM orders WHERE id = $1", id.0).await
}

pub(crate) async fn events(s: Session, id: OrderId) -> Result<Vec<OrderEvent>, StorageError> {
    let rows = s
        .query(
            "SELECT body FROM order_events WHERE order_id = $1 ORDER BY seq",
            &[&id.0],
        )
        .await?;
    bodies(&rows)
}

pub(crate) async fn events_since(
    s: Session,
    from: u64,
    limit: usize,
) -> Result<Vec<(u64, OrderEvent)>, StorageError> {
    let rows = s
        .query(
            "SELECT feed_seq, body FROM order_events WHERE feed_seq >= $1 ORDER BY feed_seq LIMIT $2",
            &[&big(from), &big(limit as u64)],
        )
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get::<_, i64>(0)? as u64, body(r, 1)?)))
        .collect()
}

pub(crate) async fn feed_next(s: Session) -> Result<u64, StorageError> {
    let row = s
        .query_opt(
            "SELECT COALESCE(max(feed_seq) + 1, 0) FROM order_events",
            &[],
        )
        .await?
        .ok_or(StorageError::Closed)?;
    Ok(row.try_get::<_, i64>(0)? as u64)
}

pub(crate) async fn archive_ended_before(
    s: Session,
    cutoff: UnixMs,
) -> Result<usize, StorageError> {
    let n = s
        .execute(
            "UPDATE orders SET archived = true
             WHERE NOT open AND NOT archived AND closed_at_ms < $1",
            &[&big(cutoff)],
        )
        .await?;
    Ok(n as usize)
}

pub(crate) async fn open_orders_of(
    s: Session,
    party: PartyId,
) -> Result<Vec<OrderRecord>, StorageError> {
    let (sql, id) = match party {
        PartyId::User(u) => (
            "SELECT body FROM orders WHERE user_id = $1 AND open ORDER BY id",
            u.0,
        ),
        PartyId::Associate(a) => (
            "SELECT body FROM orders WHERE associate_id = $1 AND open ORDER BY id",
            a.0,
        ),
    };
    let rows = s.query(sql, &[&id]).await?;
    bodies(&rows)
}

pub(crate) async fn find_orders(
    s: Session,
    query: OrderQuery,
) -> Result<Page<OrderRecord>, StorageError> {
    let limit = query.limit.clamp(1, MAX_PAGE);
    let rows = s
        .query(
            "SELECT body FROM orders
             WHERE ($1::uuid IS NULL OR user_id = $1)
               AND ($2::uuid IS NULL OR associate_id = $2)
               AND ($3::text IS NULL OR state = $3)
               AND ($4::bigint IS NULL OR allotted_at_ms >= $4)
               AND ($5::bigint IS NULL OR allotted_at_ms < $5)
               AND ($6::uuid IS NULL OR id > $6)
             ORDER BY id LIMIT $7",
            &[
                &query.user.map(|u| u.0),
                &query.associate.map(|a| a.0),
                &query.state.map(|st| st.as_str()),
                &query.from_ms.map(big),
                &query.to_ms.map(big),
                &query.after.map(|a| a.0),
                &((limit + 1) as i64),
            ],
        )
        .await?;
    page(bodies(&rows)?, limit, |o: &OrderRecord| o.order_id.0)
}

pub(crate) async fn invoice(s: Session, id: InvoiceId) -> Result<Option<Invoice>, StorageError> {
    one(s, "SELECT body FROM invoices WHERE id = $1", id.0).await
}

pub(crate) async fn tax_invoice(
    s: Session,
    id: InvoiceId,
) -> Result<Option<TaxInvoice>, StorageError> {
    one(
        s,
        "SELECT body FROM tax_invoices WHERE invoice_id = $1",
        id.0,
    )
    .await
}

// --- Payments ---

/// Inserts or replaces a payment.
pub(crate) async fn upsert_payment(s: &Session, p: &PaymentRecord) -> Result<(), StorageError> {
    let body = json(p);
    s.execute(
        "INSERT INTO payments (id, order_id, user_id, idempotency_key, method, amount_minor,
                               tip_minor, status, created_at_ms, updated_at_ms, body)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (id) DO UPDATE SET order_id = EXCLUDED.order_id,
             user_id = EXCLUDED.user_id, idempotency_key = EXCLUDED.idempotency_key,
             method = EXCLUDED.method, amount_minor = EXCLUDED.amount_minor,
             tip_minor = EXCLUDED.tip_minor, status = EXCLUDED.status,
             created_at_ms = EXCLUDED.created_at_ms, updated_at_ms = EXCLUDED.updated_at_ms,
             body = EXCLUDED.body",
        &[
            &p.payment_id.0,
            &p.order_id.0,
            &p.user_id.0,
            &p.idempotency_key,
            &snake(&body.0.method),
            &p.amount_minor,
            &p.tip_minor,
            &snake(&body.0.status),
            &big(p.created_at_ms),
            &big(p.updated_at_ms),
            &body,
        ],
    )
    .await?;
    Ok(())
}

/// A unit enum's name in its storage layout ("pending", "card"), as the columns store it.
fn snake<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

pub(crate) async fn begin_payment(
    s: Session,
    record: PaymentRecord,
) -> Result<PaymentStart, StorageError> {
    if let Some(existing) =
        payment_by_key(s.clone(), record.user_id, record.idempotency_key.clone()).await?
    {
        return Ok(PaymentStart::Existing(existing));
    }
    upsert_payment(&s, &record).await?;
    Ok(PaymentStart::Created(record, Ticket::done()))
}

pub(crate) async fn payment_by_key(
    s: Session,
    user: UserId,
    key: String,
) -> Result<Option<PaymentRecord>, StorageError> {
    s.query_opt(
        "SELECT body FROM payments WHERE user_id = $1 AND idempotency_key = $2",
        &[&user.0, &key],
    )
    .await?
    .map(|r| body(&r, 0))
    .transpose()
}

pub(crate) async fn payment(
    s: Session,
    id: PaymentId,
) -> Result<Option<PaymentRecord>, StorageError> {
    one(s, "SELECT body FROM payments WHERE id = $1", id.0).await
}

pub(crate) async fn payments_for(
    s: Session,
    order: OrderId,
) -> Result<Vec<PaymentRecord>, StorageError> {
    let rows = s
        .query(
            "SELECT body FROM payments WHERE order_id = $1 ORDER BY id",
            &[&order.0],
        )
        .await?;
    bodies(&rows)
}

// --- Feedback ---

fn source_column(source: &FeedbackSource) -> String {
    match source {
        FeedbackSource::App => "app".into(),
        FeedbackSource::External { source } => format!("external:{source}"),
    }
}

pub(crate) async fn add_feedback(
    s: Session,
    record: FeedbackRecord,
) -> Result<FeedbackOutcome, StorageError> {
    let Some(row) = s
        .query_opt(
            "SELECT user_id, associate_id FROM orders WHERE id = $1",
            &[&record.order_id.0],
        )
        .await?
    else {
        return Err(StorageError::NotFound { what: "order" });
    };
    let (rated, table): (uuid::Uuid, &ProfileTable) = match record.about {
        Role::User => (row.try_get(0)?, &USERS),
        Role::Associate => (row.try_get(1)?, &ASSOCIATES),
    };
    let source = source_column(&record.source);
    if let Some(earlier) = s
        .query_opt(
            "SELECT body FROM feedback WHERE order_id = $1 AND about = $2 AND source = $3",
            &[&record.order_id.0, &record.about.as_str(), &source],
        )
        .await?
    {
        return Ok(FeedbackOutcome::AlreadyRated(Box::new(body(&earlier, 0)?)));
    }
    let rating = i64::from(record.rating);
    if s.execute(table.rate, &[&rated, &rating]).await? == 0 {
        return Err(StorageError::NotFound { what: table.table });
    }
    insert_feedback(&s, &record).await?;
    Ok(FeedbackOutcome::Recorded(Ticket::done()))
}

/// Stores a piece of feedback as it is (ratings untouched).
pub(crate) async fn insert_feedback(
    s: &Session,
    record: &FeedbackRecord,
) -> Result<(), StorageError> {
    s.execute(
        "INSERT INTO feedback (id, order_id, about, source, rating, at_ms, body)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &record.id.0,
            &record.order_id.0,
            &record.about.as_str(),
            &source_column(&record.source),
            &i16::from(record.rating),
            &big(record.at_ms),
            &json(record),
        ],
    )
    .await?;
    Ok(())
}

pub(crate) async fn feedback_for(
    s: Session,
    order: OrderId,
) -> Result<Vec<FeedbackRecord>, StorageError> {
    let rows = s
        .query(
            "SELECT body FROM feedback WHERE order_id = $1
             ORDER BY source <> 'app', about = 'associate', id",
            &[&order.0],
        )
        .await?;
    bodies(&rows)
}

// --- Discounts and pricing ---

pub(crate) async fn put_discount(s: Session, code: DiscountCode) -> Result<(), StorageError> {
    s.execute(
        "INSERT INTO discount_codes (code, body) VALUES ($1, $2)
         ON CONFLICT (code) DO UPDATE SET body = EXCLUDED.body",
        &[&code.code, &json(&code)],
    )
    .await?;
    Ok(())
}

pub(crate) async fn discount(
    s: Session,
    code: String,
) -> Result<Option<DiscountCode>, StorageError> {
    s.query_opt("SELECT body FROM discount_codes WHERE code = $1", &[&code])
        .await?
        .map(|r| body(&r, 0))
        .transpose()
}

pub(crate) async fn redeemed(s: Session, code: String, user: UserId) -> Result<bool, StorageError> {
    Ok(s.query_opt(
        "SELECT 1 FROM discount_redemptions WHERE code = $1 AND user_id = $2",
        &[&code, &user.0],
    )
    .await?
    .is_some())
}

pub(crate) async fn redeem(
    s: Session,
    code: String,
    user: UserId,
    order: OrderId,
) -> Result<bool, StorageError> {
    let row = s
        .query_opt(
            "SELECT order_id FROM discount_redemptions WHERE code = $1 AND user_id = $2",
            &[&code, &user.0],
        )
        .await?;
    if let Some(row) = row {
        let earlier: uuid::Uuid = row.try_get(0)?;
        return Ok(earlier == order.0);
    }
    s.execute(
        "INSERT INTO discount_redemptions (code, user_id, order_id) VALUES ($1, $2, $3)",
        &[&code, &user.0, &order.0],
    )
    .await?;
    Ok(true)
}

pub(crate) async fn pricing(s: Session) -> Result<Option<PricingSettings>, StorageError> {
    s.query_opt("SELECT body FROM pricing WHERE id = 1", &[])
        .await?
        .map(|r| body(&r, 0))
        .transpose()
}

pub(crate) async fn put_pricing(s: Session, settings: PricingSettings) -> Result<(), StorageError> {
    s.execute(
        "INSERT INTO pricing (id, body) VALUES (1, $1)
         ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body",
        &[&json(&settings)],
    )
    .await?;
    Ok(())
}

// --- Dispatch state ---

pub(crate) async fn put_request(s: Session, request: OpenRequest) -> Result<(), StorageError> {
    s.execute(
        "INSERT INTO open_requests (id, user_id, created_at_ms, deadline_at_ms, body)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (id) DO UPDATE SET user_id = EXCLUDED.user_id,
             created_at_ms = EXCLUDED.created_at_ms, deadline_at_ms = EXCLUDED.deadline_at_ms,
             body = EXCLUDED.body",
        &[
            &request.request_id.0,
            &request.user_id.0,
            &big(request.created_at_ms),
            &big(request.deadline_at_ms),
            &json(&request),
        ],
    )
    .await?;
    Ok(())
}

pub(crate) async fn fence_order(s: Session, id: OrderId, epoch: i64) -> Result<(), StorageError> {
    // The fencing trigger refuses it if a newer epoch holds the order.
    s.execute(
        "UPDATE orders SET epoch = $2 WHERE id = $1",
        &[&id.0, &epoch],
    )
    .await?;
    Ok(())
}

pub(crate) async fn remove_request(s: Session, id: RequestId) -> Result<(), StorageError> {
    s.execute("DELETE FROM open_requests WHERE id = $1", &[&id.0])
        .await?;
    Ok(())
}

pub(crate) async fn request(
    s: Session,
    id: RequestId,
) -> Result<Option<OpenRequest>, StorageError> {
    one(s, "SELECT body FROM open_requests WHERE id = $1", id.0).await
}

pub(crate) async fn put_presence(
    s: Session,
    associate: AssociateId,
    presence: Presence,
) -> Result<(), StorageError> {
    s.execute(
        "INSERT INTO presence (associate_id, online, at_ms, body) VALUES ($1, $2, $3, $4)
         ON CONFLICT (associate_id) DO UPDATE SET online = EXCLUDED.online,
             at_ms = EXCLUDED.at_ms, body = EXCLUDED.body",
        &[
            &associate.0,
            &presence.online,
            &big(presence.at_ms),
            &json(&presence),
        ],
    )
    .await?;
    Ok(())
}

pub(crate) async fn presence(
    s: Session,
    associate: AssociateId,
) -> Result<Option<Presence>, StorageError> {
    one(
        s,
        "SELECT body FROM presence WHERE associate_id = $1",
        associate.0,
    )
    .await
}

// --- The store itself ---

pub(crate) async fn size_on_disk(s: Session) -> Result<u64, StorageError> {
    let row = s
        .query_opt("SELECT pg_database_size(current_database())", &[])
        .await?
        .ok_or(StorageError::Closed)?;
    Ok(row.try_get::<_, i64>(0)? as u64)
}

pub(crate) async fn schema_version(s: Session) -> Result<u32, StorageError> {
    let row = s
        .query_opt(
            "SELECT COALESCE(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await?
        .ok_or(StorageError::Closed)?;
    Ok(row.try_get::<_, i32>(0)? as u32)
}

pub(crate) async fn force_schema_version(s: Session, version: u32) -> Result<(), StorageError> {
    s.execute(
        "INSERT INTO schema_migrations (version, name) VALUES ($1, 'forced')
         ON CONFLICT (version) DO NOTHING",
        &[&(version as i32)],
    )
    .await?;
    Ok(())
}

/// Records `outcome` for the gateway key `key` unless it has one, and answers the one it
/// holds now. A concurrent insert of the same key (another node) makes this one wait for
/// it and do nothing; the read that follows, a statement of its own, sees the winner.
pub(crate) async fn ledger_record(
    s: Session,
    key: String,
    outcome: LedgerOutcome,
) -> Result<LedgerOutcome, StorageError> {
    let (name, detail) = outcome.parts();
    s.execute(
        "INSERT INTO gateway_ledger (key, outcome, detail) VALUES ($1, $2, $3) \
         ON CONFLICT (key) DO NOTHING",
        &[&key, &name, &detail],
    )
    .await?;
    ledger_outcome(s, key.clone())
        .await?
        .ok_or(StorageError::NotFound {
            what: "a gateway ledger key just recorded",
        })
}

/// The outcome the gateway key `key` holds.
pub(crate) async fn ledger_outcome(
    s: Session,
    key: String,
) -> Result<Option<LedgerOutcome>, StorageError> {
    let row = s
        .query_opt(
            "SELECT outcome, detail FROM gateway_ledger WHERE key = $1",
            &[&key],
        )
        .await?;
    row.map(|r| ledger_row(&r)).transpose()
}

/// Every key of the gateway ledger with its outcome, oldest first.
pub(crate) async fn ledger(s: Session) -> Result<Vec<(String, LedgerOutcome)>, StorageError> {
    let rows = s
        .query(
            "SELECT outcome, detail, key FROM gateway_ledger ORDER BY recorded_at, key",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get::<_, String>(2)?, ledger_row(r)?)))
        .collect()
}

/// A ledger row's outcome (columns 0 and 1).
fn ledger_row(row: &Row) -> Result<LedgerOutcome, StorageError> {
    let (outcome, detail): (String, String) = (row.try_get(0)?, row.try_get(1)?);
    LedgerOutcome::from_parts(&outcome, detail).ok_or_else(|| StorageError::Corrupt {
        tree: "gateway_ledger",
        detail: format!("unknown outcome {outcome}"),
    })
}
