//! Cluster mode at start-up: connect to NATS, join the membership, hold this node's
//! share of the market's cells, and link dispatch and orders to the other nodes.

use std::net::SocketAddr;
use std::time::Duration;

use crate::EngineError;
use crate::config::ClusterSettings;

/// A node that joined: its ownership loop and its link to the others. Dropping it
/// stops heartbeats, so its cells move once the lease runs out.
#[derive(Debug)]
pub struct Joined {
    /// Membership and cell ownership.
    pub node: cluster::Node,
    /// Messages to and from the other nodes.
    pub peers: actors::peers::Peers,
}

/// Connects to NATS and joins the cluster; the first round of claims is made before this
/// returns.
pub async fn join(
    settings: &ClusterSettings,
    listen: SocketAddr,
    resolution: u8,
) -> Result<Joined, EngineError> {
    let id = settings.node_id(listen);
    let market = settings
        .market_cells(resolution)
        .map_err(|m| EngineError::Cluster(format!("market: {m}")))?;
    let client = async_nats::ConnectOptions::new()
        .name(format!("speedy-{id}"))
        .connect(&settings.nats)
        .await
        .map_err(|e| EngineError::Cluster(format!("connecting to {}: {e}", settings.nats)))?;
    let js = async_nats::jetstream::new(client.clone());
    let node = cluster::Node::start(
        &js,
        cluster::NodeConfig {
            id: id.clone(),
            ttl: Duration::from_millis(settings.lease_ms),
            cells: market.clone(),
        },
    )
    .await
    .map_err(|e| EngineError::Cluster(e.to_string()))?;
    let peers = actors::peers::Peers::new(
        client,
        actors::peers::PeerConfig {
            node: id.clone(),
            market,
            call_timeout: Duration::from_millis(settings.call_timeout_ms),
        },
        node.watch(),
        &tokio::runtime::Handle::current(),
    );
    tracing::info!(node = %id, cells = node.owned().len(), nats = %settings.nats, "joined the cluster");
    Ok(Joined { node, peers })
}
