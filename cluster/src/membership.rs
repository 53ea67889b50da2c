//! Who is alive: each node puts its key in the `speedy_nodes` bucket every third of the
//! lease TTL; the bucket keeps an entry for the TTL, so a node that stops (killed, cut
//! off) disappears from the live set one TTL after its last heartbeat.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures_util::TryStreamExt;
use tokio::task::JoinHandle;

use crate::error::{ClusterError, nats};

/// The bucket of live nodes.
pub const NODES_BUCKET: &str = "speedy_nodes";

/// This node's membership: heartbeats until left or dropped.
#[derive(Debug)]
pub struct Membership {
    node: String,
    bucket: kv::Store,
    heartbeat: JoinHandle<()>,
}

impl Membership {
    /// Joins the cluster as `node` with a lease of `ttl`: the first heartbeat is written
    /// before this returns.
    pub async fn join(
        js: &jetstream::Context,
        node: &str,
        ttl: Duration,
    ) -> Result<Self, ClusterError> {
        let bucket = nodes_bucket(js, ttl).await?;
        bucket
            .put(node, bytes::Bytes::from(node.to_owned()))
            .await
            .map_err(|e| nats("first heartbeat", e))?;
        let beating = bucket.clone();
        let name = node.to_owned();
        let heartbeat = tokio::spawn(async move {
            let mut every = tokio::time::interval(ttl / 3);
            every.tick().await;
            loop {
                every.tick().await;
                if let Err(e) = beating.put(&name, bytes::Bytes::from(name.clone())).await {
                    // The lease runs out if this keeps failing: the node is then out.
                    tracing::warn!(node = %name, error = %e, "heartbeat failed");
                }
            }
        });
        Ok(Self {
            node: node.to_owned(),
            bucket,
            heartbeat,
        })
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The live nodes, sorted.
    pub async fn live(&self) -> Result<Vec<String>, ClusterError> {
        live_nodes(&self.bucket).await
    }

    /// Stops heartbeating and removes this node at once (a clean shutdown).
    pub async fn leave(self) -> Result<(), ClusterError> {
        self.heartbeat.abort();
        self.bucket
            .delete(&self.node)
            .await
            .map_err(|e| nats("leaving", e))
    }

    /// Stops heartbeating without leaving: the lease runs out as if the node had died.
    pub fn stop_heartbeat(&self) {
        self.heartbeat.abort();
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

/// Opens (or creates) the bucket of live nodes with entries kept for `ttl`.
async fn nodes_bucket(js: &jetstream::Context, ttl: Duration) -> Result<kv::Store, ClusterError> {
    js.create_key_value(kv::Config {
        bucket: NODES_BUCKET.into(),
        history: 1,
        max_age: ttl,
        ..Default::default()
    })
    .await
    .map_err(|e| nats("the nodes bucket", e))
}

/// The keys present in the nodes bucket, sorted.
pub(crate) async fn live_nodes(bucket: &kv::Store) -> Result<Vec<String>, ClusterError> {
    let mut nodes: Vec<String> = bucket
        .keys()
        .await
        .map_err(|e| nats("listing nodes", e))?
        .try_collect()
        .await
        .map_err(|e| nats("listing nodes", e))?;
    nodes.sort();
    Ok(nodes)
}
