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
//! - Durability: writes return a [`Ticket`]; [`Ticket::durable`] resolves once a group
//!   flush has put the write on disk, so many writes share one fsync. Order writes also
//!   come as [`Durable`] writes run by the committer itself, just before its flush.

mod commit;
mod error;
mod keys;
mod orders;
mod people;
mod records;
mod store;
mod table;

pub use commit::{Durable, Ticket};
pub use error::StorageError;
pub use orders::{Committed, SideWrite, apply_event};
pub use people::{FeedbackOutcome, PaymentStart};
pub use records::*;
pub use store::{SCHEMA_VERSION, Store, StoreConfig};
