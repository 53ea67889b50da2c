//! Durable state on embedded sled: callers see typed stores, never raw bytes.
//!
//! - [`Store`]: opens (or creates) the database, checks the schema version, and owns the
//!   typed trees below plus the group committer.
//! - Orders: [`OrderRecord`] (current state) with an append-only event log; every
//!   transition is checked against the lifecycle and written with its event atomically
//!   ([`Store::create_order`], [`Store::transition`]); [`Store::open_orders`] lists what
//!   recovery must rebuild; terminal orders move to an archive after an age.
//! - Money and people: profiles, invoices and tax invoices, payments with an
//!   idempotency-key index, feedback with rating updates, discount codes, pricing.
//! - Dispatch state: open requests ([`OpenRequest`]) and associates' [`Presence`], so
//!   a restart resumes what was acknowledged.
//! - Durability: writes return a [`Ticket`]; [`Ticket::durable`] resolves once a group
//!   flush and `fdatasync` have put the write on disk, so many writes share one sync.
//!   Order writes also come as [`Durable`] writes run by the committer itself, just
//!   before its flush. The committer's queue is bounded: writers wait for room.
//! - Format: records are stored in storage's own versioned layouts (`layout.rs`),
//!   converted from the public types; an older data directory is migrated on open, a
//!   newer or unknown one is refused naming both versions.

mod commit;
mod convert;
mod dispatch;
mod error;
mod keys;
mod layout;
mod lists;
mod migrate;
mod orders;
mod people;
mod records;
mod store;
mod sync;
mod table;

pub use commit::{DURABLE_WRITE_SECONDS, Durable, Ticket};
pub use error::StorageError;
pub use lists::{MAX_PAGE, OrderQuery, Page, SCAN_BUDGET};
pub use migrate::{OLDEST_READABLE, SCHEMA_VERSION};
pub use orders::{Committed, SideWrite, apply_event};
pub use people::{FeedbackOutcome, PaymentStart};
pub use records::*;
pub use store::{DEFAULT_QUEUE_CAPACITY, Store, StoreConfig};
pub use sync::SyncHook;
