//! Cluster mode: the messages between nodes, over core NATS subjects.
//!
//! Every node keeps one NATS connection. Everything a node sends (publishes, requests,
//! subscribes, unsubscribes) passes through one ordered queue, so the peers see it in
//! the order the actors made it: a subscription made before an offer is out is in place
//! before the answer comes, and a withdrawal never overtakes its reservation. Every
//! request has a timeout and a defined outcome when it runs out.
//!
//! - [`subjects`]: which subject each kind of message goes on.
//! - [`messages`]: what goes on them.
//! - [`serve`]: what a node does with what it receives.

pub(crate) mod messages;
pub(crate) mod remote;
pub(crate) mod serve;
pub(crate) mod subjects;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use geo::ShardId;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use wire::{AssociateId, OrderId, PartyId, RequestId};

pub use serve::wire_up;

/// Cells a node holds, with the fencing epoch of each claim.
pub type Owned = BTreeMap<u64, u64>;

/// How this node talks to the others.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// This node's id.
    pub node: String,
    /// Every cell of the market the cluster shares (H3 indexes at the shard resolution).
    pub market: Vec<u64>,
    /// How long a call to another node may take before it counts as failed.
    pub call_timeout: Duration,
}

/// Why a call to another node failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// Nobody serves the subject (the thing is nowhere, or its node is gone).
    #[error("no node serves {0}")]
    NoResponders(String),
    /// No answer within the call timeout.
    #[error("no answer on {0} within the call timeout")]
    TimedOut(String),
    /// The answer could not be read, or NATS refused the call.
    #[error("{0}")]
    Failed(String),
}

impl From<PeerError> for crate::ActorError {
    fn from(e: PeerError) -> Self {
        crate::ActorError::PeerUnavailable(e.to_string())
    }
}

/// Where a cell is served from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// By this node (or there is no cluster).
    Here,
    /// By another node.
    Elsewhere,
    /// Outside the market the cluster shares: nobody serves it.
    Outside,
}

/// A thing a node serves, one subscription each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Served {
    Cell(ShardId),
    Associate(AssociateId),
    Request(RequestId),
    Order(OrderId),
    Party(PartyId),
    Reindex,
}

/// What a subscription does with each message (in order; it must not block).
pub(crate) type OnMessage = Arc<dyn Fn(async_nats::Message) + Send + Sync>;

/// What the ordered queue carries to NATS.
enum Out {
    Publish(String, Bytes),
    Request(
        String,
        Bytes,
        std::time::Duration,
        oneshot::Sender<Result<Bytes, PeerError>>,
    ),
    Serve(Served, Vec<String>, OnMessage),
    Unserve(Served),
}

/// This node's link to the others; cheap to clone.
#[derive(Clone)]
pub struct Peers {
    inner: Arc<Inner>,
}

struct Inner {
    node: String,
    market: HashSet<u64>,
    owned: watch::Receiver<Owned>,
    /// How many cells this node serves now (set once each change of `owned` is handled).
    served: watch::Sender<usize>,
    call_timeout: Duration,
    out: mpsc::UnboundedSender<Out>,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers")
            .field("node", &self.inner.node)
            .field("market_cells", &self.inner.market.len())
            .finish()
    }
}

impl Peers {
    /// Links this node to the others over `client`, serving the cells in `owned` as
    /// they change; the queue to NATS runs on `runtime`.
    pub fn new(
        client: async_nats::Client,
        config: PeerConfig,
        owned: watch::Receiver<Owned>,
        runtime: &tokio::runtime::Handle,
    ) -> Self {
        let (out, rx) = mpsc::unbounded_channel();
        runtime.spawn(pump(client, rx));
        Self {
            inner: Arc::new(Inner {
                node: config.node,
                market: config.market.into_iter().collect(),
                owned,
                served: watch::Sender::new(0),
                call_timeout: config.call_timeout,
                out,
            }),
        }
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// The cells this node holds now, with their epochs.
    pub fn owned(&self) -> Owned {
        self.inner.owned.borrow().clone()
    }

    /// Changes to the cells this node holds.
    pub fn watch_owned(&self) -> watch::Receiver<Owned> {
        self.inner.owned.clone()
    }

    /// How many cells this node serves now: it follows [`Peers::watch_owned`] once the
    /// actors of every lost cell have stopped and every gained cell is served.
    pub fn watch_served(&self) -> watch::Receiver<usize> {
        self.inner.served.subscribe()
    }

    /// Says how many cells this node serves now.
    pub(crate) fn set_served(&self, cells: usize) {
        self.inner.served.send_replace(cells);
    }

    /// The epoch of this node's claim on `shard`, if it holds it.
    pub fn epoch_of(&self, shard: ShardId) -> Option<u64> {
        self.inner.owned.borrow().get(&shard.as_u64()).copied()
    }

    /// Where `shard` is served from.
    pub(crate) fn place(&self, shard: ShardId) -> Place {
        let cell = shard.as_u64();
        if !self.inner.market.contains(&cell) {
            Place::Outside
        } else if self.inner.owned.borrow().contains_key(&cell) {
            Place::Here
        } else {
            Place::Elsewhere
        }
    }

    /// Whether `shard` is inside the market.
    pub fn in_market(&self, shard: ShardId) -> bool {
        self.inner.market.contains(&shard.as_u64())
    }

    fn push(&self, out: Out) {
        metrics::gauge!(crate::telemetry::CLUSTER_QUEUE).increment(1.0);
        // The pump runs as long as the runtime does; a send after shutdown is moot.
        let _ = self.inner.out.send(out);
    }

    /// Publishes `msg` on `subject` as JSON, in order with everything else this node
    /// sends.
    pub(crate) fn publish(&self, subject: String, msg: &impl Serialize) {
        let body = serde_json::to_vec(msg).map(Bytes::from);
        self.push_encoded(subject, body.map_err(|e| e.to_string()));
    }

    /// Publishes an encoded message on `subject`, in order with everything else.
    pub(crate) fn push_encoded(&self, subject: String, body: Result<Bytes, String>) {
        match body {
            Ok(body) => self.push(Out::Publish(subject, body)),
            Err(e) => tracing::error!(%subject, error = %e, "could not encode a peer message"),
        }
    }

    /// Sends an encoded message on `subject` and waits for one answer, or `timeout`.
    pub(crate) fn call_encoded(
        &self,
        subject: String,
        body: Result<Bytes, String>,
        timeout: std::time::Duration,
    ) -> impl Future<Output = Result<Bytes, PeerError>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        match body {
            Ok(body) => self.push(Out::Request(subject, body, timeout, tx)),
            Err(e) => {
                let _ = tx.send(Err(PeerError::Failed(e)));
            }
        }
        // NATS times the request out; this bounds the wait for the queue as well.
        let patience = timeout + self.inner.call_timeout;
        let named = subject_for_error(&self.inner.node);
        async move {
            match tokio::time::timeout(patience, rx).await {
                Ok(answer) => {
                    answer.map_err(|_| PeerError::Failed("the NATS queue stopped".into()))?
                }
                Err(_) => Err(PeerError::TimedOut(named)),
            }
        }
    }

    /// Starts serving `subjects` as `what` (replacing an earlier subscription of it).
    pub(crate) fn serve(&self, what: Served, subjects: Vec<String>, on: OnMessage) {
        self.push(Out::Serve(what, subjects, on));
    }

    /// Stops serving `what`.
    pub(crate) fn unserve(&self, what: Served) {
        self.push(Out::Unserve(what));
    }

    /// The call timeout.
    pub fn call_timeout(&self) -> Duration {
        self.inner.call_timeout
    }
}

/// How a call that waited too long for the queue is named in its error.
fn subject_for_error(node: &str) -> String {
    format!("a call from {node} (the queue to NATS is backed up)")
}

/// This node no longer serves `shard`: an actor whose work is there (an offer loop, an
/// order) stops here without ending it; the cell's new owner takes it over from the store.
#[derive(Debug, actix::Message)]
#[rtype(result = "()")]
pub(crate) struct Relinquish {
    /// The cell handed over.
    pub shard: ShardId,
}

/// Asks every actor in `actors` to let go of `shard`; resolves once each has handled it
/// (and is out of `actors` if its work was there).
pub(crate) async fn relinquish_all<K, A>(
    actors: &dashmap::DashMap<K, actix::Addr<A>>,
    shard: ShardId,
) where
    K: Eq + std::hash::Hash,
    A: actix::Actor<Context = actix::Context<A>> + actix::Handler<Relinquish>,
{
    let addrs: Vec<actix::Addr<A>> = actors.iter().map(|e| e.value().clone()).collect();
    let asked = addrs.iter().map(|a| a.send(Relinquish { shard }));
    futures_util::future::join_all(asked).await;
}

/// Decodes a received message, logging what cannot be read.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(message: &async_nats::Message) -> Option<T> {
    match serde_json::from_slice(&message.payload) {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::warn!(subject = %message.subject, error = %e, "unreadable peer message");
            None
        }
    }
}

/// One subscription's task, and how to end it.
struct Subscription {
    stop: oneshot::Sender<oneshot::Sender<()>>,
}

/// Sends everything in the queue to NATS, in order.
async fn pump(client: async_nats::Client, mut rx: mpsc::UnboundedReceiver<Out>) {
    let mut served: HashMap<Served, Vec<Subscription>> = HashMap::new();
    let queued = metrics::gauge!(crate::telemetry::CLUSTER_QUEUE);
    while let Some(out) = rx.recv().await {
        queued.decrement(1.0);
        let started = std::time::Instant::now();
        let kind = out.kind();
        match out {
            Out::Publish(subject, body) => {
                if let Err(e) = client.publish(subject.clone(), body).await {
                    tracing::warn!(%subject, error = %e, "publish failed");
                }
            }
            Out::Request(subject, body, timeout, answer) => {
                let request = async_nats::Request::new()
                    .payload(body)
                    .timeout(Some(timeout));
                let client = client.clone();
                let named = subject.clone();
                let mut call = Box::pin(async move {
                    let result = client.send_request(subject, request).await;
                    result.map(|m| m.payload).map_err(|e| {
                        use async_nats::RequestErrorKind as K;
                        match e.kind() {
                            K::NoResponders => PeerError::NoResponders(named),
                            K::TimedOut => PeerError::TimedOut(named),
                            K::Other => PeerError::Failed(e.to_string()),
                        }
                    })
                });
                // The first poll queues the request on the connection, in order.
                let mut first = std::task::Context::from_waker(std::task::Waker::noop());
                match call.as_mut().poll(&mut first) {
                    Poll::Ready(result) => {
                        let _ = answer.send(result);
                    }
                    Poll::Pending => {
                        tokio::spawn(async move {
                            let _ = answer.send(call.await);
                        });
                    }
                }
            }
            Out::Serve(what, subjects, on) => {
                if let Some(old) = served.remove(&what) {
                    stop_all(old).await;
                }
                let mut subs = Vec::new();
                for subject in subjects {
                    match client.subscribe(subject.clone()).await {
                        Ok(sub) => subs.push(consume(sub, on.clone())),
                        Err(e) => tracing::error!(%subject, error = %e, "subscribe failed"),
                    }
                }
                served.insert(what, subs);
            }
            Out::Unserve(what) => {
                if let Some(old) = served.remove(&what) {
                    stop_all(old).await;
                }
            }
        }
        let took = started.elapsed();
        if took > std::time::Duration::from_millis(100) {
            tracing::warn!(
                kind,
                took_ms = took.as_millis() as u64,
                "a slow step in the queue to NATS"
            );
        }
    }
}

impl Out {
    fn kind(&self) -> &'static str {
        match self {
            Out::Publish(..) => "publish",
            Out::Request(..) => "request",
            Out::Serve(..) => "serve",
            Out::Unserve(..) => "unserve",
        }
    }
}

/// Ends subscriptions, waiting until each has told NATS.
async fn stop_all(subs: Vec<Subscription>) {
    for sub in subs {
        let (tx, rx) = oneshot::channel();
        if sub.stop.send(tx).is_ok() {
            let _ = rx.await;
        }
    }
}

/// Hands each message of `sub` to `on`, in order, until stopped.
fn consume(mut sub: async_nats::Subscriber, on: OnMessage) -> Subscription {
    let (stop, mut stopped) = oneshot::channel::<oneshot::Sender<()>>();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                biased;
                done = &mut stopped => {
                    let _ = sub.unsubscribe().await;
                    if let Ok(done) = done {
                        let _ = done.send(());
                    }
                    return;
                }
                message = sub.next() => match message {
                    Some(m) => on(m),
                    None => return,
                },
            }
        }
    });
    Subscription { stop }
}
