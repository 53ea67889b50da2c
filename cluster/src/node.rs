//! A node's ownership loop: every third of the lease it reads the live set, claims the
//! cells rendezvous hashing gives it, hands over the ones it no longer should hold, and
//! drops any whose record says someone else took them. A node that cannot reach NATS
//! for a whole lease drops every cell: it may no longer own them, so it must stop serving
//! them (taking offers, writing their orders).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::ClusterError;
use crate::membership::Membership;
use crate::ownership::{CellView, Cells, Claim};
use crate::rendezvous;

/// Cells a node holds, with the epoch of each claim.
pub type Owned = BTreeMap<u64, u64>;

/// How a node takes part.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's id (unique in the cluster).
    pub id: String,
    /// The lease: a node silent this long is out, and its cells move.
    pub ttl: Duration,
    /// The cells the market is divided into.
    pub cells: Vec<u64>,
}

/// A running node: membership plus the ownership loop.
#[derive(Debug)]
pub struct Node {
    membership: Arc<Membership>,
    cells: Cells,
    publish: Arc<watch::Sender<Owned>>,
    owned: watch::Receiver<Owned>,
    in_lease: watch::Receiver<bool>,
    task: JoinHandle<()>,
    paused: Arc<AtomicBool>,
}

impl Node {
    /// Joins and starts the loop; the first round of claims is made before this returns.
    pub async fn start(js: &jetstream::Context, config: NodeConfig) -> Result<Self, ClusterError> {
        let membership = Arc::new(Membership::join(js, &config.id, config.ttl).await?);
        let cells = Cells::open(js).await?;
        let round_cells = cells.clone();
        let view = cells.view().await?;
        let (publish, owned) = watch::channel(Owned::new());
        let publish = Arc::new(publish);
        let (lease, in_lease) = watch::channel(false);
        let paused = Arc::new(AtomicBool::new(false));
        let mut round = Round {
            config,
            membership: membership.clone(),
            cells,
            view,
            held: Owned::new(),
            last_contact: Instant::now(),
            publish: publish.clone(),
            lease,
        };
        round.run().await;
        let frozen = paused.clone();
        let task = tokio::spawn(async move {
            let mut every = tokio::time::interval(round.config.ttl / 3);
            every.tick().await;
            loop {
                every.tick().await;
                if !frozen.load(Ordering::Relaxed) {
                    round.run().await;
                }
            }
        });
        Ok(Self {
            membership,
            cells: round_cells,
            publish,
            owned,
            in_lease,
            task,
            paused,
        })
    }

    /// The cells held now, with their epochs.
    pub fn owned(&self) -> Owned {
        self.owned.borrow().clone()
    }

    /// Changes to the cells held.
    pub fn watch(&self) -> watch::Receiver<Owned> {
        self.owned.clone()
    }

    /// Whether the node holds its lease: its last round reached NATS and found the node
    /// in the live set, so the cells it holds are its own (true once caught up).
    pub fn lease(&self) -> watch::Receiver<bool> {
        self.in_lease.clone()
    }

    /// The live nodes as this node reads them.
    pub async fn live(&self) -> Result<Vec<String>, ClusterError> {
        self.membership.live().await
    }

    /// Freezes the node, heartbeat and loop (tests: SIGSTOP), or thaws it (SIGCONT).
    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Relaxed);
        self.membership.set_paused(paused);
    }

    /// Leaves cleanly: stops the loop and says the node holds no cell any more (so its
    /// actors there stop), waits for `dropped` (the caller no longer serving them), then
    /// releases every claim and leaves the live set, so the others take the cells at
    /// their next round instead of after the lease. Answers how many cells it released.
    pub async fn hand_over(
        &self,
        dropped: impl Future<Output = ()>,
    ) -> Result<usize, ClusterError> {
        self.task.abort();
        let held = self.publish.send_replace(Owned::new());
        dropped.await;
        let mut released = 0;
        for (cell, epoch) in held {
            match self.cells.release(Claim { cell, epoch }).await {
                Ok(()) => released += 1,
                // Someone took it meanwhile: nothing to hand over.
                Err(ClusterError::Lost { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        self.membership.leave().await?;
        Ok(released)
    }

    /// Stops the node as a crash would: no hand-over, the lease runs out.
    pub fn halt(&self) {
        self.task.abort();
        self.membership.stop_heartbeat();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The loop's state.
struct Round {
    config: NodeConfig,
    membership: Arc<Membership>,
    cells: Cells,
    view: CellView,
    held: Owned,
    /// When NATS last answered.
    last_contact: Instant,
    publish: Arc<watch::Sender<Owned>>,
    /// Whether the last round found this node holding its lease.
    lease: watch::Sender<bool>,
}

impl Round {
    /// How long one NATS call of a round may take: a third of the lease, the rounds'
    /// own period.
    fn call_limit(&self) -> std::time::Duration {
        self.config.ttl / 3
    }

    async fn run(&mut self) {
        let me = self.config.id.clone();
        let live = match self.membership.live().await {
            Ok(live) => {
                self.last_contact = Instant::now();
                live
            }
            Err(e) => {
                if self.last_contact.elapsed() >= self.config.ttl {
                    self.lease.send_replace(false);
                }
                if self.last_contact.elapsed() >= self.config.ttl && !self.held.is_empty() {
                    tracing::warn!(node = %me, error = %e, cells = self.held.len(), "cut off from NATS for a lease: dropping every cell");
                    self.held.clear();
                    self.publish.send_replace(self.held.clone());
                }
                return;
            }
        };
        // Cells taken by someone else while this node was away: drop before anything.
        let held: Vec<(u64, u64)> = self.held.iter().map(|(c, e)| (*c, *e)).collect();
        for (cell, epoch) in held {
            match self.view.get(cell) {
                // The view may lag our own last claim: newer is someone else's.
                Some((owner, revision)) if owner != me && revision > epoch => {
                    self.held.remove(&cell);
                }
                Some((owner, revision)) if owner == me && revision >= epoch => {}
                Some((_, revision)) if revision <= epoch => {}
                _ => {
                    self.held.remove(&cell);
                }
            }
        }
        if !live.contains(&me) {
            // Our own heartbeat has not been seen for a lease: cut off from NATS (the
            // nodes bucket's watch is stalled, not failed, while the client reconnects),
            // or frozen. The others may hold our cells by now: stop serving every one of
            // them, and claim nothing until we are back in the live set.
            if !self.held.is_empty() {
                tracing::warn!(node = %me, cells = self.held.len(), "cut off from NATS for a lease: dropping every cell");
                self.held.clear();
            }
            self.publish.send_replace(self.held.clone());
            self.lease.send_replace(false);
            return;
        }
        self.lease.send_replace(true);
        for &cell in &self.config.cells {
            let mine = rendezvous::owner(cell, &live) == Some(me.as_str());
            match (mine, self.held.get(&cell).copied()) {
                (true, None) => {
                    // Bounded, so a round never outlives the check above: a call caught
                    // by a cut connection must not keep the node serving past a lease.
                    let claim = self.cells.claim_seen(cell, &me, &live, self.view.get(cell));
                    match tokio::time::timeout(self.call_limit(), claim).await {
                        Ok(Ok(claim)) => {
                            self.held.insert(cell, claim.epoch);
                        }
                        Ok(Err(
                            ClusterError::OwnedElsewhere { .. } | ClusterError::Lost { .. },
                        )) => {}
                        Ok(Err(e)) => tracing::debug!(node = %me, error = %e, "claim failed"),
                        Err(_) => {
                            tracing::debug!(node = %me, cell, "claim timed out");
                            return;
                        }
                    }
                }
                (false, Some(epoch)) => {
                    // Stop serving first, then hand the cell over (the lease frees it
                    // should the release not get through).
                    self.held.remove(&cell);
                    let release = self.cells.release(Claim { cell, epoch });
                    if tokio::time::timeout(self.call_limit(), release)
                        .await
                        .is_err()
                    {
                        tracing::debug!(node = %me, cell, "release timed out");
                        self.publish.send_replace(self.held.clone());
                        return;
                    }
                }
                _ => {}
            }
        }
        self.publish.send_replace(self.held.clone());
    }
}
