//! Schema versions and the migrations between them. A data directory records the
//! schema it was written in; opening it either migrates it forward, one version at a
//! time, or refuses with an error naming both versions.
//!
//! - 1: the first format.
//! - 2: adds the payment indexes (by order, pending), the order indexes (by user, by
//!   associate), the external-feedback index, open requests and associate presence; appends event kinds (fee paid, ops
//!   cancelled, ops completed) and `CancelledBy::Ops`.

use crate::embedded::keys::{external_feedback_key, order_payment_key, party_order_key};
use crate::error::StorageError;
use crate::frozen::convert::decode;
use crate::records::{FeedbackRecord, FeedbackSource, OrderRecord, PaymentRecord};

/// The schema this build writes.
pub const SCHEMA_VERSION: u32 = 2;
/// The oldest schema this build can migrate from.
pub const OLDEST_READABLE: u32 = 1;

pub(crate) const SCHEMA_KEY: &[u8] = b"schema_version";

/// The schema version a data directory was written in; none for a new one.
pub(crate) fn stored_version(meta: &sled::Tree) -> Result<Option<u32>, StorageError> {
    match meta.get(SCHEMA_KEY)? {
        None => Ok(None),
        Some(v) => {
            let bytes: [u8; 4] = v.as_ref().try_into().map_err(|_| StorageError::Corrupt {
                tree: "meta",
                detail: "schema version is not 4 bytes".into(),
            })?;
            Ok(Some(u32::from_be_bytes(bytes)))
        }
    }
}

/// Checks `found` against what this build reads.
pub(crate) fn check(found: u32) -> Result<(), StorageError> {
    if found > SCHEMA_VERSION {
        return Err(StorageError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found < OLDEST_READABLE {
        return Err(StorageError::SchemaTooOld {
            found,
            oldest: OLDEST_READABLE,
            current: SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// Migrates `db` from schema `from` to [`SCHEMA_VERSION`], step by step. Each step is
/// idempotent and the version is written after it, so a crash mid-way re-runs the step.
pub(crate) fn migrate(db: &sled::Db, meta: &sled::Tree, from: u32) -> Result<(), StorageError> {
    let mut version = from;
    while version < SCHEMA_VERSION {
        match version {
            1 => v1_to_v2(db)?,
            other => {
                return Err(StorageError::SchemaTooOld {
                    found: other,
                    oldest: OLDEST_READABLE,
                    current: SCHEMA_VERSION,
                });
            }
        }
        version += 1;
        db.flush()?;
        meta.insert(SCHEMA_KEY, &version.to_be_bytes())?;
        db.flush()?;
    }
    Ok(())
}

/// Builds the indexes schema 2 adds from the records schema 1 kept.
fn v1_to_v2(db: &sled::Db) -> Result<(), StorageError> {
    let payments = db.open_tree("payments")?;
    let by_order = db.open_tree("payments_by_order")?;
    let pending = db.open_tree("payments_pending")?;
    for entry in payments.iter() {
        let (key, bytes) = entry?;
        let p: PaymentRecord = decode("payments", &bytes)?;
        by_order.insert(order_payment_key(p.order_id, p.payment_id), &[])?;
        if p.status == wire::model::PaymentStatus::Pending {
            pending.insert(key, &[])?;
        }
    }
    let by_user = db.open_tree("orders_by_user")?;
    let by_associate = db.open_tree("orders_by_associate")?;
    for tree in ["orders", "orders_archive"] {
        for entry in db.open_tree(tree)?.iter() {
            let (_, bytes) = entry?;
            let o: OrderRecord = decode("orders", &bytes)?;
            by_user.insert(party_order_key(o.user_id.0, o.order_id), &[])?;
            by_associate.insert(party_order_key(o.associate_id.0, o.order_id), &[])?;
        }
    }
    let feedback = db.open_tree("feedback")?;
    let external = db.open_tree("feedback_external")?;
    for entry in feedback.iter() {
        let (key, bytes) = entry?;
        let f: FeedbackRecord = decode("feedback", &bytes)?;
        if let FeedbackSource::External { source } = &f.source {
            // The first of any repeats schema 1 stored is the one a repeat now finds.
            let _ = external.compare_and_swap(
                external_feedback_key(f.order_id, f.about, source),
                None::<&[u8]>,
                Some(key),
            )?;
        }
    }
    Ok(())
}
