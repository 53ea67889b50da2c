//! Moving up: copies an embedded (sled) data directory into an empty Postgres database,
//! every record as it is, in one transaction: profiles, orders with their events at
//! their feed positions, invoices and tax invoices with their numbers, payments,
//! feedback, discounts and redemptions, pricing, open requests and presence.

use std::path::Path;

use wire::{AssociateId, OrderId, UserId};

use super::ops;
use super::worker::{Session, connect};
use crate::embedded::{SledStore, StoreConfig};
use crate::error::StorageError;
use crate::records::OrderRecord;

/// The epoch copied orders carry: a single node's, which every later writer's equals or
/// exceeds.
const COPY_EPOCH: i64 = 1;

/// What was copied.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CopyReport {
    /// User profiles.
    pub users: usize,
    /// Associate profiles.
    pub associates: usize,
    /// Orders (open, ended and archived).
    pub orders: usize,
    /// Order events.
    pub events: usize,
    /// Invoices.
    pub invoices: usize,
    /// Tax invoices.
    pub tax_invoices: usize,
    /// Payments.
    pub payments: usize,
    /// Pieces of feedback.
    pub feedback: usize,
    /// Discount codes.
    pub discounts: usize,
    /// Discount redemptions.
    pub redemptions: usize,
    /// Open requests.
    pub open_requests: usize,
    /// Associates' presence.
    pub presence: usize,
}

/// Copies the sled store in `from` (a data directory's `db`) into the database at `to`,
/// which must hold no records yet. Migrations run first. Blocks the thread; not for use
/// inside an async runtime.
pub fn copy_sled_to_postgres(from: &Path, to: &str) -> Result<CopyReport, StorageError> {
    if !from.exists() {
        return Err(StorageError::NotFound {
            what: "sled data directory",
        });
    }
    let sled = SledStore::open(&StoreConfig {
        path: Some(from.to_path_buf()),
        ..StoreConfig::default()
    })?;
    super::PgStore::migrate(to)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| StorageError::Schema(format!("could not start a runtime: {e}")))?;
    runtime.block_on(async move {
        let client = connect(to).await?;
        let s = Session::new(client.clone());
        client.batch_execute("BEGIN").await?;
        let copied = copy_all(&sled, &s).await;
        match copied {
            Ok(report) => {
                client.batch_execute("COMMIT").await?;
                Ok(report)
            }
            Err(e) => {
                let _ = client.batch_execute("ROLLBACK").await;
                Err(e)
            }
        }
    })
}

async fn copy_all(sled: &SledStore, s: &Session) -> Result<CopyReport, StorageError> {
    let i = &sled.inner;
    let target_has = s
        .query(
            "SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM associates)
                  + (SELECT count(*) FROM orders)",
            &[],
        )
        .await?;
    let existing: i64 = target_has
        .first()
        .map(|r| r.try_get(0))
        .transpose()?
        .unwrap_or(0);
    if existing > 0 {
        return Err(StorageError::AlreadyExists {
            what: "data in the target database (copy-data needs an empty one)",
        });
    }
    let mut report = CopyReport::default();
    for user in i.users.values() {
        let user = user?;
        ops::put_profile(
            s.clone(),
            &ops::USERS,
            user.id.0,
            user.created_at_ms,
            &user,
            false,
        )
        .await?;
        report.users += 1;
    }
    for associate in i.associates.values() {
        let a = associate?;
        ops::put_profile(
            s.clone(),
            &ops::ASSOCIATES,
            a.id.0,
            a.created_at_ms,
            &a,
            false,
        )
        .await?;
        report.associates += 1;
    }
    for order in i.orders.values() {
        let order = order?;
        let open = i.open.contains_key(order.order_id.to_bytes())?;
        ops::insert_order(s, &order, open, closed_at(&order, open), false, COPY_EPOCH).await?;
        report.orders += 1;
    }
    for order in i.archive.values() {
        let order = order?;
        ops::insert_order(s, &order, false, closed_at(&order, false), true, COPY_EPOCH).await?;
        report.orders += 1;
    }
    let mut last_feed = None;
    for entry in i.feed.tree.iter() {
        let (key, value) = entry?;
        let seq =
            u64::from_be_bytes(key.as_ref().try_into().map_err(|_| StorageError::Corrupt {
                tree: "event_feed",
                detail: "key is not 8 bytes".into(),
            })?);
        let event = i.feed.decode(&value)?;
        ops::insert_event_at(s, &event, seq).await?;
        last_feed = Some(seq);
        report.events += 1;
    }
    if let Some(last) = last_feed {
        s.query("SELECT setval('event_feed_seq', $1)", &[&ops::big(last)])
            .await?;
    }
    for invoice in i.invoices.values() {
        ops::put_invoice(s, &invoice?).await?;
        report.invoices += 1;
    }
    let mut last_tax = 0;
    for tax in i.tax_invoices.values() {
        let tax = tax?;
        last_tax = last_tax.max(tax.number);
        ops::insert_tax_invoice(s, &tax).await?;
        report.tax_invoices += 1;
    }
    s.execute(
        "UPDATE meta SET value = $1 WHERE key = 'tax_invoice_seq'",
        &[&ops::big(last_tax)],
    )
    .await?;
    for payment in i.payments.values() {
        ops::upsert_payment(s, &payment?).await?;
        report.payments += 1;
    }
    for feedback in i.feedback.values() {
        ops::insert_feedback(s, &feedback?).await?;
        report.feedback += 1;
    }
    for code in i.discounts.values() {
        ops::put_discount(s.clone(), code?).await?;
        report.discounts += 1;
    }
    for entry in i.redemptions.iter() {
        let (key, value) = entry?;
        let (code, user) = redemption(&key)?;
        let order: [u8; 16] = value.as_ref().try_into().map_err(|_| corrupt("value"))?;
        s.execute(
            "INSERT INTO discount_redemptions (code, user_id, order_id) VALUES ($1, $2, $3)",
            &[&code, &user.0, &OrderId::from_bytes(order).0],
        )
        .await?;
        report.redemptions += 1;
    }
    for settings in i.pricing.values() {
        ops::put_pricing(s.clone(), settings?).await?;
    }
    for request in i.requests.values() {
        ops::put_request(s.clone(), request?).await?;
        report.open_requests += 1;
    }
    for entry in i.presence.tree.iter() {
        let (key, value) = entry?;
        let id: [u8; 16] = key.as_ref().try_into().map_err(|_| StorageError::Corrupt {
            tree: "presence",
            detail: "key is not 16 bytes".into(),
        })?;
        let presence = i.presence.decode(&value)?;
        ops::put_presence(s.clone(), AssociateId(uuid::Uuid::from_bytes(id)), presence).await?;
        report.presence += 1;
    }
    Ok(report)
}

/// When an order left the open set, as far as its record tells.
fn closed_at(order: &OrderRecord, open: bool) -> Option<u64> {
    (!open).then(|| order.ended_at_ms.unwrap_or(order.allotted_at_ms))
}

fn corrupt(what: &str) -> StorageError {
    StorageError::Corrupt {
        tree: "discount_redemptions",
        detail: format!("a redemption {what} is malformed"),
    }
}

/// A redemption key: the code, a zero byte, the user id.
fn redemption(key: &[u8]) -> Result<(String, UserId), StorageError> {
    let split = key.len().checked_sub(17).ok_or_else(|| corrupt("key"))?;
    if key[split] != 0 {
        return Err(corrupt("key"));
    }
    let code = String::from_utf8(key[..split].to_vec()).map_err(|_| corrupt("code"))?;
    let user: [u8; 16] = key[split + 1..].try_into().map_err(|_| corrupt("key"))?;
    Ok((code, UserId(uuid::Uuid::from_bytes(user))))
}
