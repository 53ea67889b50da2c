//! Membership and cell ownership against a real `nats-server -js`.

mod events;
mod fencing;
mod nodes;

use std::time::{Duration, Instant};

use cluster::testing::NatsServer;
use cluster::{Cells, ClusterError, Membership, rendezvous};

/// The lease the tests run with.
pub const TTL: Duration = Duration::from_secs(1);

/// Polls `check` until it holds, failing after `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every node claims the cells rendezvous hashing gives it; returns (node, cell, epoch).
async fn claim_all(
    cells: &Cells,
    nodes: &[&str],
    live: &[String],
    all: &[u64],
) -> Vec<(String, u64, u64)> {
    let mut out = Vec::new();
    for &cell in all {
        let owner = rendezvous::owner(cell, live).unwrap();
        assert!(nodes.contains(&owner));
        let claim = cells.claim(cell, owner, live).await.unwrap();
        out.push((owner.to_string(), cell, claim.epoch));
    }
    out
}

#[tokio::test]
async fn three_nodes_split_the_cells_and_a_dead_one_is_replaced_with_higher_epochs() {
    let nats = NatsServer::start();
    let js = cluster::connect(&nats.url).await.unwrap();
    let a = Membership::join(&js, "node-a", TTL).await.unwrap();
    let b = Membership::join(&js, "node-b", TTL).await.unwrap();
    let c = Membership::join(&js, "node-c", TTL).await.unwrap();
    eventually(TTL, "node-a seeing all three", || async {
        a.live().await.unwrap() == ["node-a", "node-b", "node-c"]
    })
    .await;
    let live = a.live().await.unwrap();

    let cells = Cells::open(&js).await.unwrap();
    let all: Vec<u64> = (0..60u64)
        .map(|i| 0x08a2_a107_2b59_ffff ^ (i << 8))
        .collect();
    let first = claim_all(&cells, &["node-a", "node-b", "node-c"], &live, &all).await;
    // Each cell has exactly one recorded owner, the one hashing names; all three hold some.
    for (owner, cell, epoch) in &first {
        assert_eq!(
            cells.owner(*cell).await.unwrap(),
            Some((owner.clone(), *epoch))
        );
    }
    for node in ["node-a", "node-b", "node-c"] {
        assert!(
            first.iter().any(|(o, _, _)| o == node),
            "{node} owns nothing"
        );
    }
    // Another live node cannot take a cell.
    let (owner, cell, _) = &first[0];
    let other = ["node-a", "node-b"]
        .into_iter()
        .find(|n| n != owner)
        .unwrap();
    assert!(matches!(
        cells.claim(*cell, other, &live).await,
        Err(ClusterError::OwnedElsewhere { .. })
    ));

    // node-c dies (no leave): its lease runs out within the TTL and a second.
    c.stop_heartbeat();
    let started = Instant::now();
    eventually(
        TTL + Duration::from_secs(1),
        "node-c's lease running out",
        || async { a.live().await.unwrap() == ["node-a", "node-b"] },
    )
    .await;
    let expired_after = started.elapsed();
    let live = a.live().await.unwrap();
    let second = claim_all(&cells, &["node-a", "node-b"], &live, &all).await;
    for ((before, cell, old_epoch), (after, _, new_epoch)) in first.iter().zip(&second) {
        if before == "node-c" {
            assert_ne!(after, "node-c");
            assert!(
                new_epoch > old_epoch,
                "cell {cell:x}: {new_epoch} after {old_epoch}"
            );
        } else {
            // Nobody else's cells moved, and their epoch is unchanged.
            assert_eq!((before, old_epoch), (after, new_epoch));
        }
    }
    // node-c, back from the dead, is fenced out of every cell it held.
    for (owner, cell, epoch) in first.iter().filter(|(o, _, _)| o == "node-c") {
        let stale = cluster::Claim {
            cell: *cell,
            epoch: *epoch,
        };
        assert!(
            matches!(
                cells.renew(stale, owner).await,
                Err(ClusterError::Lost { .. })
            ),
            "cell {cell:x}"
        );
    }
    // A live owner renews its claim.
    let (owner, cell, epoch) = second.iter().find(|(o, _, _)| o == "node-a").unwrap();
    let renewed = cells
        .renew(
            cluster::Claim {
                cell: *cell,
                epoch: *epoch,
            },
            owner,
        )
        .await
        .unwrap();
    assert!(renewed.epoch > *epoch);
    eprintln!("node-c left the live set {expired_after:?} after its last heartbeat stopped");
    b.leave().await.unwrap();
    eventually(TTL, "node-b leaving", || async {
        a.live().await.unwrap() == ["node-a"]
    })
    .await;
}

#[tokio::test]
async fn two_nodes_racing_for_one_cell_one_wins() {
    let nats = NatsServer::start();
    let js = cluster::connect(&nats.url).await.unwrap();
    let cells = Cells::open(&js).await.unwrap();
    let live: Vec<String> = vec![];
    let (x, y) = tokio::join!(
        cells.claim(42, "node-x", &live),
        cells.claim(42, "node-y", &live)
    );
    let won = [x.is_ok(), y.is_ok()];
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{x:?} {y:?}");
    let loser = if x.is_ok() { y } else { x };
    assert!(matches!(
        loser,
        Err(ClusterError::Lost { .. }) | Err(ClusterError::OwnedElsewhere { .. })
    ));
}
