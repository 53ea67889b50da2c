//! Nodes keeping their cells: convergence, a crash, and a partition (a frozen node).

use std::collections::BTreeMap;
use std::time::Duration;

use cluster::testing::NatsServer;
use cluster::{Node, NodeConfig, Owned, rendezvous};

use crate::{TTL, eventually};

fn universe() -> Vec<u64> {
    (0..48u64)
        .map(|i| 0x08a2_a107_2b59_ffff ^ (i << 12))
        .collect()
}

async fn node(js: &async_nats::jetstream::Context, id: &str) -> Node {
    Node::start(
        js,
        NodeConfig {
            id: id.into(),
            ttl: TTL,
            cells: universe(),
        },
    )
    .await
    .unwrap()
}

/// Whether `nodes` hold every cell exactly once, each where hashing over `ids` says.
fn settled(nodes: &[(&str, &Node)]) -> Option<BTreeMap<u64, (String, u64)>> {
    let ids: Vec<String> = nodes.iter().map(|(id, _)| id.to_string()).collect();
    let mut holder = BTreeMap::new();
    for (id, node) in nodes {
        for (cell, epoch) in node.owned() {
            if holder.insert(cell, (id.to_string(), epoch)).is_some() {
                return None;
            }
        }
    }
    let all = universe();
    let right = holder.len() == all.len()
        && all
            .iter()
            .all(|c| holder.get(c).map(|(h, _)| h.as_str()) == rendezvous::owner(*c, &ids));
    right.then_some(holder)
}

/// Waits until `nodes` have settled ([`settled`]), failing after `within`.
async fn settle(
    nodes: &[(&str, &Node)],
    within: Duration,
    what: &str,
) -> BTreeMap<u64, (String, u64)> {
    let mut found = None;
    eventually(within, what, || {
        found = settled(nodes);
        let done = found.is_some();
        async move { done }
    })
    .await;
    found.unwrap()
}

#[tokio::test]
async fn nodes_split_the_cells_and_a_crashed_one_is_covered_within_the_lease() {
    let nats = NatsServer::start();
    let js = cluster::connect(&nats.url).await.unwrap();
    let (a, b, c) = (
        node(&js, "node-a").await,
        node(&js, "node-b").await,
        node(&js, "node-c").await,
    );
    let before = settle(
        &[("node-a", &a), ("node-b", &b), ("node-c", &c)],
        TTL * 2,
        "three nodes settling",
    )
    .await;

    c.halt();
    let after = settle(
        &[("node-a", &a), ("node-b", &b)],
        TTL + Duration::from_secs(1),
        "node-c's cells covered",
    )
    .await;
    for (cell, (holder, epoch)) in after {
        let (was, old) = &before[&cell];
        if was == "node-c" {
            assert!(
                epoch > *old,
                "cell {cell:x} moved at epoch {epoch} after {old}"
            );
        } else {
            assert_eq!(
                (&holder, epoch),
                (was, *old),
                "cell {cell:x} moved needlessly"
            );
        }
    }
}

#[tokio::test]
async fn a_frozen_node_loses_its_cells_and_rejoins_cleanly() {
    let nats = NatsServer::start();
    let js = cluster::connect(&nats.url).await.unwrap();
    let (a, b, c) = (
        node(&js, "node-a").await,
        node(&js, "node-b").await,
        node(&js, "node-c").await,
    );
    settle(
        &[("node-a", &a), ("node-b", &b), ("node-c", &c)],
        TTL * 2,
        "three nodes settling",
    )
    .await;
    let held_by_c: Owned = c.owned();
    assert!(!held_by_c.is_empty());

    // SIGSTOP: node-c neither heartbeats nor acts; the others take its cells.
    c.set_paused(true);
    let during = settle(
        &[("node-a", &a), ("node-b", &b)],
        TTL + Duration::from_secs(1),
        "node-c's cells covered",
    )
    .await;

    // SIGCONT: node-c first drops what it no longer holds, then the three settle again,
    // node-c's cells coming back to it at epochs above the ones taken while it was away.
    c.set_paused(false);
    let again = settle(
        &[("node-a", &a), ("node-b", &b), ("node-c", &c)],
        TTL * 3,
        "three nodes settling again",
    )
    .await;
    for (cell, (holder, epoch)) in again {
        if held_by_c.contains_key(&cell) {
            assert_eq!(holder, "node-c");
            assert!(epoch > during[&cell].1, "cell {cell:x}");
        }
    }
}
