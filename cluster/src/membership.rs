//! Who is alive: each node puts its key in the `speedy_nodes` bucket every third of the
//! lease TTL (the bucket drops entries older than the TTL). Every node follows the bucket
//! with a watch and counts a node live while its last heartbeat is younger than the TTL,
//! so a node that stops (killed, cut off) leaves everyone's live set one TTL after its
//! last heartbeat. (Listing the bucket's keys is not used: on a bucket being written it
//! can repeat some keys and miss others.)

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use futures_util::StreamExt;
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
    paused: Arc<AtomicBool>,
    ttl: Duration,
    /// When each node's last heartbeat was seen.
    seen: Arc<RwLock<HashMap<String, Instant>>>,
    follow: JoinHandle<()>,
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
        let (seen, follow) = follow(&bucket, ttl).await?;
        bucket
            .put(node, bytes::Bytes::from(node.to_owned()))
            .await
            .map_err(|e| nats("first heartbeat", e))?;
        let beating = bucket.clone();
        let name = node.to_owned();
        let paused = Arc::new(AtomicBool::new(false));
        let frozen = paused.clone();
        let heartbeat = tokio::spawn(async move {
            let mut every = tokio::time::interval(ttl / 3);
            every.tick().await;
            loop {
                every.tick().await;
                if frozen.load(Ordering::Relaxed) {
                    continue;
                }
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
            paused,
            ttl,
            seen,
            follow,
        })
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The live nodes (a heartbeat seen within the TTL), sorted. Fails when the watch on
    /// the bucket has ended (NATS unreachable).
    pub async fn live(&self) -> Result<Vec<String>, ClusterError> {
        if self.follow.is_finished() {
            return Err(ClusterError::Nats(
                "the watch on the nodes bucket ended".into(),
            ));
        }
        let seen = self.seen.read().unwrap_or_else(|e| e.into_inner());
        let mut live: Vec<String> = seen
            .iter()
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(node, _)| node.clone())
            .collect();
        live.sort();
        Ok(live)
    }

    /// Stops heartbeating and removes this node at once (a clean shutdown).
    pub async fn leave(&self) -> Result<(), ClusterError> {
        self.heartbeat.abort();
        self.bucket
            .delete(&self.node)
            .await
            .map_err(|e| nats("leaving", e))
    }

    /// Holds or resumes the heartbeat (tests: a process stopped with SIGSTOP).
    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Relaxed);
    }

    /// Stops heartbeating without leaving: the lease runs out as if the node had died.
    pub fn stop_heartbeat(&self) {
        self.heartbeat.abort();
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.heartbeat.abort();
        self.follow.abort();
    }
}

type Seen = Arc<RwLock<HashMap<String, Instant>>>;

/// Follows the nodes bucket: heartbeats from now on (watched first, so none is missed),
/// and the entries already there, each seen as long ago as the server wrote it.
async fn follow(bucket: &kv::Store, ttl: Duration) -> Result<(Seen, JoinHandle<()>), ClusterError> {
    let mut watch = bucket
        .watch_all()
        .await
        .map_err(|e| nats("watching nodes", e))?;
    let seen: Seen = Arc::default();
    let noted = seen.clone();
    let follow = tokio::spawn(async move {
        while let Some(entry) = watch.next().await {
            let Ok(entry) = entry else { continue };
            let mut seen = noted.write().unwrap_or_else(|e| e.into_inner());
            match entry.operation {
                kv::Operation::Put => {
                    seen.insert(entry.key, Instant::now());
                }
                kv::Operation::Delete | kv::Operation::Purge => {
                    seen.remove(&entry.key);
                }
            }
        }
    });
    let keys: Vec<String> = bucket
        .keys()
        .await
        .map_err(|e| nats("listing nodes", e))?
        .filter_map(|k| async move { k.ok() })
        .collect()
        .await;
    for key in keys {
        let Some(entry) = bucket
            .entry(key.clone())
            .await
            .map_err(|e| nats("reading a node", e))?
        else {
            continue;
        };
        if entry.operation != kv::Operation::Put {
            continue;
        }
        let written = std::time::SystemTime::from(entry.created);
        let age = written.elapsed().unwrap_or_default().min(ttl);
        let at = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
        seen.write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_insert(at);
    }
    Ok((seen, follow))
}

/// Opens (or creates) the bucket of live nodes with entries kept for `ttl`.
async fn nodes_bucket(js: &jetstream::Context, ttl: Duration) -> Result<kv::Store, ClusterError> {
    let config = || kv::Config {
        bucket: NODES_BUCKET.into(),
        history: 1,
        max_age: ttl,
        ..Default::default()
    };
    crate::bucket::open(js, config, "the nodes bucket").await
}
