//! Cluster mode at start-up: connect to NATS, join the membership, hold this node's
//! share of the market's cells, and link dispatch and orders to the other nodes.

use std::net::SocketAddr;
use std::time::Duration;

use crate::EngineError;
use crate::config::ClusterSettings;

/// A node that joined: its lease keeper, its link to the others and the event log.
/// Dropping it stops heartbeats, so its cells move once the lease runs out.
#[derive(Debug)]
pub struct Joined {
    /// Stops the lease keeper's thread when dropped (as a crash would; see
    /// [`Joined::hand_over`] for a clean stop).
    keeper: LeaseKeeper,
    /// Messages to and from the other nodes.
    pub peers: actors::peers::Peers,
    /// The JetStream log of order events.
    pub events: cluster::EventLog,
    /// Whether the node holds its lease now.
    pub lease: tokio::sync::watch::Receiver<bool>,
}

/// The membership heartbeat and ownership loop, on a thread, runtime and NATS connection
/// of their own: however busy the sockets and actors are, the lease is renewed on time
/// (a starved heartbeat would hand the node's cells away while it is healthy).
#[derive(Debug)]
struct LeaseKeeper {
    stop: Option<tokio::sync::oneshot::Sender<Stop>>,
}

/// How the lease keeper ends.
#[derive(Debug)]
enum Stop {
    /// As a crash would: the heartbeat stops and the lease runs out.
    Halt,
    /// Cleanly: the node says it holds no cell, waits for `dropped`, then releases its
    /// claims and leaves; `done` gets how many cells it released.
    HandOver {
        dropped: tokio::sync::oneshot::Receiver<()>,
        done: tokio::sync::oneshot::Sender<Result<usize, String>>,
    },
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(Stop::Halt);
        }
    }
}

impl Joined {
    /// Hands this node's cells to the others (the SIGTERM path): its actors there stop
    /// (their work is in the store), then its claims are released and it leaves the live
    /// set, so the other nodes take the cells at their next round rather than after the
    /// lease. Each step waits at most `within`. Answers how many cells were released.
    pub async fn hand_over(mut self, within: Duration) -> Result<usize, EngineError> {
        let failed = |what: &str| EngineError::Cluster(format!("handing cells over: {what}"));
        let stop = self
            .keeper
            .stop
            .take()
            .ok_or_else(|| failed("the lease keeper already stopped"))?;
        let (ack, dropped) = tokio::sync::oneshot::channel();
        let (done, released) = tokio::sync::oneshot::channel();
        stop.send(Stop::HandOver { dropped, done })
            .map_err(|_| failed("the lease keeper is gone"))?;
        let mut served = self.peers.watch_served();
        if tokio::time::timeout(within, served.wait_for(|n| *n == 0))
            .await
            .is_err()
        {
            tracing::warn!("cells still served after {within:?}: releasing them anyway");
        }
        let _ = ack.send(());
        match tokio::time::timeout(within, released).await {
            Ok(Ok(result)) => result.map_err(|e| failed(&e)),
            Ok(Err(_)) => Err(failed("the lease keeper stopped")),
            Err(_) => Err(failed("no answer from NATS in time")),
        }
    }
}

/// Starts the lease keeper for node `id`; the cells it holds, once its first round of
/// claims is made.
async fn keep_lease(
    nats: String,
    config: cluster::NodeConfig,
) -> Result<
    (
        LeaseKeeper,
        tokio::sync::watch::Receiver<cluster::Owned>,
        tokio::sync::watch::Receiver<bool>,
    ),
    EngineError,
> {
    let (started_tx, started) = tokio::sync::oneshot::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<Stop>();
    std::thread::Builder::new()
        .name("speedy-lease".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    let _ = started_tx.send(Err(format!("the lease keeper's runtime: {e}")));
                    return;
                }
            };
            runtime.block_on(async move {
                let joined = async {
                    let client = async_nats::ConnectOptions::new()
                        .name(format!("speedy-{}-lease", config.id))
                        .connect(&nats)
                        .await
                        .map_err(|e| format!("connecting to {nats}: {e}"))?;
                    let js = async_nats::jetstream::new(client);
                    cluster::Node::start(&js, config)
                        .await
                        .map_err(|e| e.to_string())
                }
                .await;
                match joined {
                    Ok(node) => {
                        let _ = started_tx.send(Ok((node.watch(), node.lease())));
                        match stopped.await {
                            Ok(Stop::HandOver { dropped, done }) => {
                                let dropped = async {
                                    let _ = dropped.await;
                                };
                                let handed = node.hand_over(dropped).await;
                                let _ = done.send(handed.map_err(|e| e.to_string()));
                            }
                            Ok(Stop::Halt) | Err(_) => node.halt(),
                        }
                    }
                    Err(e) => {
                        let _ = started_tx.send(Err(e));
                    }
                }
            });
        })
        .map_err(|e| EngineError::Cluster(format!("the lease keeper's thread: {e}")))?;
    let (owned, lease) = started
        .await
        .map_err(|_| EngineError::Cluster("the lease keeper stopped at start".into()))?
        .map_err(EngineError::Cluster)?;
    Ok((LeaseKeeper { stop: Some(stop) }, owned, lease))
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
    let (keeper, owned, lease) = keep_lease(
        settings.nats.clone(),
        cluster::NodeConfig {
            id: id.clone(),
            ttl: Duration::from_millis(settings.lease_ms),
            cells: market.clone(),
        },
    )
    .await?;
    let client = async_nats::ConnectOptions::new()
        .name(format!("speedy-{id}"))
        .connect(&settings.nats)
        .await
        .map_err(|e| EngineError::Cluster(format!("connecting to {}: {e}", settings.nats)))?;
    let js = async_nats::jetstream::new(client.clone());
    let events = cluster::EventLog::open(&js)
        .await
        .map_err(|e| EngineError::Cluster(e.to_string()))?;
    let cells = owned.borrow().len();
    let peers = actors::peers::Peers::new(
        client,
        actors::peers::PeerConfig {
            node: id.clone(),
            market,
            call_timeout: Duration::from_millis(settings.call_timeout_ms),
        },
        owned,
        &tokio::runtime::Handle::current(),
    );
    tracing::info!(node = %id, cells, nats = %settings.nats, "joined the cluster");
    Ok(Joined {
        keeper,
        peers,
        events,
        lease,
    })
}

/// Appends every order event this node makes, once durable, to the JetStream log (one
/// subject per order; a retried append is stored once).
pub fn mirror_events(
    events: cluster::EventLog,
    orders: &actors::Orders,
) -> Result<tokio::task::JoinHandle<()>, EngineError> {
    let mut made_here = orders.bus().subscribe()?;
    Ok(tokio::spawn(async move {
        while let Some((_, event)) = made_here.next().await {
            let payload = match serde_json::to_vec(&event) {
                Ok(p) => bytes::Bytes::from(p),
                Err(e) => {
                    tracing::error!(error = %e, "could not encode an order event");
                    continue;
                }
            };
            let order = event.order_id.to_string();
            for attempt in 0..5u32 {
                match events.append(&order, event.seq, payload.clone()).await {
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(%order, seq = event.seq, error = %e, "appending to the event log failed");
                        tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                    }
                }
            }
        }
    }))
}

/// An order's events as the JetStream log holds them.
pub async fn logged_events(
    events: &cluster::EventLog,
    order: wire::OrderId,
) -> Result<Vec<wire::model::OrderEvent>, crate::http::ApiError> {
    let logged = events.after(&order.to_string(), 0).await.map_err(|e| {
        crate::http::ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            wire::ErrorCode::Overloaded,
            format!("the event log could not be read: {e}"),
        )
    })?;
    logged
        .iter()
        .map(|l| {
            serde_json::from_slice(&l.payload).map_err(|e| {
                crate::http::ApiError::new(
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    wire::ErrorCode::Internal,
                    format!("an unreadable logged event: {e}"),
                )
            })
        })
        .collect()
}
