//! Merging several shards' nearest-k answers into one.

use crate::index::Neighbor;

/// The `k` nearest of several answers, sorted by distance then id, each id once.
///
/// Given the nearest-k answers of indexes that together hold every associate (each
/// queried with the same point, task, radius and exclusions), the result equals the
/// answer of one index holding them all. An associate present in two answers (for
/// instance mid hand-over between shards) keeps its nearer entry.
pub fn merge_nearest<Id: Ord + Copy>(
    answers: impl IntoIterator<Item = Vec<Neighbor<Id>>>,
    k: usize,
) -> Vec<Neighbor<Id>> {
    let mut all: Vec<Neighbor<Id>> = answers.into_iter().flatten().collect();
    all.sort_unstable_by(|a, b| {
        if a.precedes(b) {
            std::cmp::Ordering::Less
        } else if b.precedes(a) {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    });
    let mut seen = Vec::with_capacity(k.min(all.len()));
    all.retain(|n| {
        if seen.len() == k || seen.contains(&n.id) {
            return false;
        }
        seen.push(n.id);
        true
    });
    all
}
