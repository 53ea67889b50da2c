//! The watch that serves the cells a node holds, and the relay for parties connected
//! here: on gaining a cell it subscribes to the cell's subjects, asks every node to
//! re-send the associates it indexes there, and resumes the cell's open requests; on
//! losing one it unsubscribes and stops the offer loops it ran there. Messages for the
//! actors themselves are served by the generic server in [`super::remote`].

use std::collections::BTreeMap;
use std::sync::Arc;

use geo::ShardId;
use wire::PartyId;

use crate::dispatch::Dispatch;
use crate::orders::Orders;
use crate::peers::messages::ToParty;
use crate::peers::{Peers, Served, decode, subjects};

/// Connects dispatch and orders to the cluster: frames for parties on other nodes go
/// out through `peers`, and the cells this node holds are served as they change (their
/// open orders and requests taken over). Call [`Dispatch::join_cluster`] before
/// starting orders, so they recover only the cells this node gains.
pub fn wire_up(peers: Peers, dispatch: &Dispatch, orders: &Orders) {
    dispatch.join_cluster(peers.clone());
    let relay = Arc::new(PartyRelay {
        peers: peers.clone(),
        dispatch: dispatch.clone(),
        orders: orders.clone(),
    });
    dispatch.sessions().set_relay(relay);
    let on_reindex = {
        let dispatch = dispatch.clone();
        Arc::new(move |m: async_nats::Message| {
            if let Some(cells) = decode::<Vec<u64>>(&m) {
                let shards: Vec<ShardId> =
                    cells.into_iter().filter_map(ShardId::from_u64).collect();
                dispatch.reindex(&shards);
            }
        })
    };
    peers.serve(Served::Reindex, vec![subjects::REINDEX.into()], on_reindex);
    let mut owned = peers.watch_owned();
    let dispatch = dispatch.clone();
    let orders = orders.clone();
    let runtime = tokio::runtime::Handle::current();
    runtime.spawn(async move {
        // Each cell served, with the epoch of the claim it is served under.
        let mut serving: BTreeMap<u64, u64> = BTreeMap::new();
        loop {
            let now: BTreeMap<u64, u64> = owned.borrow_and_update().clone();
            // A cell claimed again under a new epoch was lost meanwhile (the node was cut
            // off or paused): others may have run it, so it is dropped and taken over
            // afresh from the store.
            let lost: Vec<u64> = serving
                .iter()
                .filter(|(cell, epoch)| now.get(cell) != Some(epoch))
                .map(|(cell, _)| *cell)
                .collect();
            if !lost.is_empty() {
                tracing::info!(lost = lost.len(), "cells lost");
            }
            for cell in lost {
                if let Some(shard) = ShardId::from_u64(cell) {
                    peers.unserve(Served::Cell(shard));
                    dispatch.cell_lost(shard).await;
                    orders.cell_lost(shard).await;
                    metrics::counter!(crate::telemetry::CLUSTER_CELL_CHANGES, "change" => "lost")
                        .increment(1);
                }
                serving.remove(&cell);
            }
            let gained: Vec<ShardId> = now
                .keys()
                .filter(|c| !serving.contains_key(c))
                .filter_map(|c| ShardId::from_u64(*c))
                .collect();
            for &shard in &gained {
                dispatch.serve_cell(&peers, shard);
            }
            if !gained.is_empty() {
                let cells: Vec<u64> = gained.iter().map(|s| s.as_u64()).collect();
                peers.publish(subjects::REINDEX.into(), &cells);
            }
            serving = now;
            metrics::gauge!(crate::telemetry::CLUSTER_CELLS).set(serving.len() as f64);
            if gained.is_empty() {
                peers.set_served(serving.len());
            }
            if !gained.is_empty() {
                tracing::info!(held = serving.len(), gained = gained.len(), "cells gained");
            }
            metrics::counter!(crate::telemetry::CLUSTER_CELL_CHANGES, "change" => "gained")
                .increment(gained.len() as u64);
            if !gained.is_empty() {
                orders.cells_gained(&gained).await;
                dispatch.cells_gained(&gained).await;
                peers.set_served(serving.len());
            }
            if owned.changed().await.is_err() {
                return;
            }
        }
    });
}

/// Frames and order membership for parties connected here; the hooks that serve a
/// party's subject while they are.
#[derive(Debug)]
struct PartyRelay {
    peers: Peers,
    dispatch: Dispatch,
    orders: Orders,
}

impl crate::sessions::Relay for PartyRelay {
    fn frame(&self, party: PartyId, frame: wire::ServerMessage) {
        self.peers
            .publish(subjects::party(party), &ToParty::Frame(frame));
    }

    fn attached(&self, party: PartyId) {
        let (dispatch, orders, peers) = (
            self.dispatch.clone(),
            self.orders.clone(),
            self.peers.clone(),
        );
        let me = self.peers.node().to_owned();
        let on = Arc::new(move |m: async_nats::Message| {
            let Some(msg) = decode::<ToParty>(&m) else {
                return;
            };
            match msg {
                ToParty::Frame(frame) => {
                    let _ = dispatch.sessions().send_here(party, frame);
                }
                ToParty::TakeOver { node } if node != me => {
                    // A newer connection elsewhere: end ours and stop serving them here
                    // (their associate actor too).
                    dispatch.sessions().replace_here(party);
                    peers.unserve(Served::Party(party));
                    if let PartyId::Associate(a) = party {
                        dispatch.associate_disconnected(a);
                        peers.unserve(Served::Associate(a));
                    }
                }
                ToParty::TakeOver { .. } => {}
                ToParty::RequestEnded { request } => {
                    if let PartyId::User(u) = party {
                        dispatch.forget_user_request(u, request);
                    }
                }
                ToParty::Joined { order, peer } => orders.mirror_joined(party, order, peer),
                ToParty::Untracked { order } => orders.mirror_untracked(party, order),
                ToParty::Left { order } => orders.mirror_left(party, order),
            }
        });
        self.peers
            .serve(Served::Party(party), vec![subjects::party(party)], on);
    }

    fn detached(&self, party: PartyId) {
        self.peers.unserve(Served::Party(party));
    }
}

/// Tells whichever node holds `party`'s connection to let it go. It is not waited for:
/// the takeover goes out on the ordered queue before this node subscribes for the
/// party, and an offer that meets the old actor during the switch is refused there (it
/// is disconnected) or, if shown by the new one, ends by itself after its window.
pub(crate) fn take_over(peers: &Peers, party: PartyId) {
    peers.publish(
        subjects::party(party),
        &ToParty::TakeOver {
            node: peers.node().to_owned(),
        },
    );
}
