//! Cluster mode's foundation: which nodes are alive and which node owns each shard cell,
//! kept in NATS JetStream key-value buckets.
//!
//! - [`Membership`]: a node heartbeats its key in the `speedy_nodes` bucket, whose entries
//!   expire after the lease TTL; the live set is the keys present.
//! - [`rendezvous::owner`]: each cell's owner among the live nodes by rendezvous
//!   (highest-random-weight) hashing, so a node leaving moves only its own cells.
//! - [`Cells`]: a node claims a cell in the `speedy_cells` bucket with compare-and-set;
//!   the claim's revision is the owner's fencing epoch, which only grows, and goes on
//!   every order write so the database refuses a former owner's late writes.
//! - [`Node`]: the loop that keeps a node's cells: claims what hashing gives it, hands
//!   over what it no longer should hold, drops what others took, and drops everything
//!   when cut off from NATS for a lease.
//! - [`EventLog`]: order events on a JetStream stream, one subject per order, read back
//!   after the last sequence an app saw.

mod bucket;
mod error;
mod events;
mod membership;
mod node;
mod ownership;
pub mod rendezvous;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::ClusterError;
pub use events::{EVENTS_STREAM, EventLog, Logged};
pub use membership::{Membership, NODES_BUCKET};
pub use node::{Node, NodeConfig, Owned};
pub use ownership::{CELLS_BUCKET, CellView, Cells, Claim};

/// Connects to NATS and returns its JetStream context.
pub async fn connect(url: &str) -> Result<async_nats::jetstream::Context, ClusterError> {
    let client = async_nats::connect(url)
        .await
        .map_err(|e| ClusterError::Nats(format!("connecting to {url}: {e}")))?;
    Ok(async_nats::jetstream::new(client))
}
