//! Durable state for Speedy Cheers behind one seam ([`Backend`], held as a [`Store`]),
//! with two backends: embedded sled (the default, no server) and PostgreSQL (shared by
//! many engine nodes).
//!
//! - Orders: [`OrderRecord`] (current state) with an append-only event log; every
//!   transition is checked against the one lifecycle ([`apply_event`]) and written with
//!   its event atomically; open orders, pending payments and open requests are what
//!   recovery rebuilds.
//! - Money and people: profiles, invoices and tax invoices, payments with an
//!   idempotency-key index, feedback with rating updates, discount codes, pricing.
//! - Durability: writes return a [`Ticket`] or a [`Durable`] that resolves only once the
//!   write is durable (sled: flush and `fdatasync`; Postgres: `COMMIT` with
//!   `synchronous_commit = on`); writes waiting at the same moment share one commit.
//! - Format: sled records are stored in storage's own versioned layouts, migrated on
//!   open; Postgres has versioned SQL migrations. A newer or unknown version is refused.

mod ack;
mod backend;
mod embedded;
mod error;
mod frozen;
mod lifecycle;
pub mod pg;
mod query;
mod queue;
mod records;
#[cfg(feature = "testing")]
pub mod skips;

pub use ack::{DURABLE_WRITE_SECONDS, Durable, Reading, Ticket};
pub use backend::{Backend, FeedbackOutcome, PaymentStart, Store};
pub use embedded::migrate::{OLDEST_READABLE, SCHEMA_VERSION};
pub use embedded::sync::SyncHook;
pub use embedded::{DEFAULT_QUEUE_CAPACITY, SledStore, StoreConfig};
pub use error::StorageError;
/// The validated point stored records hold.
pub use geo::LatLng;
pub use lifecycle::{Committed, SideWrite, apply_event};
pub use query::{MAX_PAGE, OrderQuery, Page, SCAN_BUDGET};
pub use records::*;

impl Store {
    /// Opens or creates the embedded store, migrating a directory an earlier build wrote.
    pub fn open(config: &StoreConfig) -> Result<Self, StorageError> {
        Ok(Self::new(SledStore::open(config)?))
    }

    /// An embedded store in a temporary directory, removed when the last clone drops.
    pub fn temporary() -> Result<Self, StorageError> {
        Ok(Self::new(SledStore::temporary()?))
    }
}
