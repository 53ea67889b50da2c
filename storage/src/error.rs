//! The crate's error type.

use thiserror::Error;
use wire::model::OrderState;

/// Everything that can go wrong in storage.
#[derive(Debug, Error)]
pub enum StorageError {
    /// sled failed (I/O, corruption).
    #[error("database: {0}")]
    Db(#[from] sled::Error),
    /// A stored record could not be decoded.
    #[error("corrupt record in {tree}: {detail}")]
    Corrupt {
        /// Which tree.
        tree: &'static str,
        /// What the decoder said.
        detail: String,
    },
    /// The store was written by a newer version of the engine.
    #[error(
        "the store has schema version {found}; this build reads up to {supported}: upgrade the engine"
    )]
    SchemaTooNew {
        /// Version on disk.
        found: u32,
        /// Newest version this build reads.
        supported: u32,
    },
    /// The store was written by a version too old for this build to migrate.
    #[error(
        "the store has schema version {found}; this build (schema {current}) migrates from {oldest} on: export it with an older engine first"
    )]
    SchemaTooOld {
        /// Version on disk.
        found: u32,
        /// Oldest version this build migrates from.
        oldest: u32,
        /// The version this build writes.
        current: u32,
    },
    /// A fee payment on an order that owes none.
    #[error("the order owes no fee")]
    NothingOwed,
    /// No such record.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for.
        what: &'static str,
    },
    /// An order may not move to that state from where it is.
    #[error("order cannot move from {from} to {to}", from = from.as_str(), to = to.as_str())]
    InvalidTransition {
        /// Current state.
        from: OrderState,
        /// Requested state.
        to: OrderState,
    },
    /// A record that must be unique already exists.
    #[error("{what} already exists")]
    AlreadyExists {
        /// What.
        what: &'static str,
    },
    /// PostgreSQL refused or failed a statement, or the connection failed.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// The order is held by a writer with a newer epoch (this node lost its cells):
    /// the database refused the write.
    #[error("fenced: {0}")]
    Fenced(String),
    /// The database's schema cannot be used by this build.
    #[error("schema: {0}")]
    Schema(String),
    /// This backend does not keep what was asked for (the embedded store keeps no
    /// gateway ledger: the sandbox keeps its own file there).
    #[error("not kept by this store: {0}")]
    Unsupported(&'static str),
    /// The group committer has stopped (the store is closing).
    #[error("the store is closed")]
    Closed,
}
