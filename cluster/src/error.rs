//! The crate's error type.

use thiserror::Error;

/// Everything that can go wrong keeping membership and ownership.
#[derive(Debug, Error)]
pub enum ClusterError {
    /// NATS or JetStream failed (connection, timeout, a bucket operation).
    #[error("nats: {0}")]
    Nats(String),
    /// The cell is owned by another live node.
    #[error("cell {cell} is owned by live node {owner}")]
    OwnedElsewhere {
        /// The cell.
        cell: String,
        /// Its owner.
        owner: String,
    },
    /// Someone else claimed the cell between our read and our write.
    #[error("cell {cell} was claimed by someone else first")]
    Lost {
        /// The cell.
        cell: String,
    },
}

/// A NATS error as this crate's.
pub(crate) fn nats(what: &str, e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Nats(format!("{what}: {e}"))
}
