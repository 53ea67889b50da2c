//! Rendezvous (highest-random-weight) hashing: a cell belongs to the live node whose
//! weight for that cell is highest. Every node computes the same owner from the same live
//! set, and a node joining or leaving moves only the cells it gains or loses.

/// A stable 64-bit hash of `bytes` (FNV-1a), the same on every node and build.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Mixes two hashes into a well-spread weight (splitmix64's finaliser).
fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.rotate_left(32);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The weight of `node` for `cell`.
pub fn weight(cell: u64, node: &str) -> u64 {
    mix(fnv1a(node.as_bytes()), cell)
}

/// The owner of `cell` among `nodes` (none when there are no nodes). Ties, which need a
/// 64-bit collision, go to the smaller node id.
pub fn owner(cell: u64, nodes: &[String]) -> Option<&str> {
    nodes
        .iter()
        .map(|n| (weight(cell, n), std::cmp::Reverse(n.as_str())))
        .max()
        .map(|(_, std::cmp::Reverse(n))| n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn nodes(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("node-{i}")).collect()
    }

    proptest! {
        /// Removing a node moves exactly the cells it owned; nobody else's change hands.
        #[test]
        fn a_leaving_node_moves_only_its_own_cells(
            count in 2usize..8,
            leaving in 0usize..8,
            cells in proptest::collection::vec(any::<u64>(), 1..200),
        ) {
            let all = nodes(count);
            let leaving = leaving % count;
            let mut rest = all.clone();
            let gone = rest.remove(leaving);
            for cell in cells {
                let before = owner(cell, &all).unwrap();
                let after = owner(cell, &rest).unwrap();
                if before == gone {
                    prop_assert_ne!(after, gone.as_str());
                } else {
                    prop_assert_eq!(before, after);
                }
            }
        }

        /// The owner does not depend on the order the live set is listed in.
        #[test]
        fn the_owner_does_not_depend_on_listing_order(cell in any::<u64>(), count in 1usize..8) {
            let all = nodes(count);
            let mut reversed = all.clone();
            reversed.reverse();
            prop_assert_eq!(owner(cell, &all), owner(cell, &reversed));
        }
    }

    #[test]
    fn cells_spread_evenly_over_three_nodes() {
        let all = nodes(3);
        let mut counts = [0usize; 3];
        for cell in 0..30_000u64 {
            let o = owner(cell.wrapping_mul(0x9e37_79b9_7f4a_7c15), &all).unwrap();
            counts[all.iter().position(|n| n == o).unwrap()] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }
}
