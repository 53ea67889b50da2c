//! The index's nearest-k against a brute-force scan.

use geo::{AvailabilityIndex, IndexConfig, LatLng, NearestQuery, Neighbor};
use proptest::prelude::*;

use crate::scenario::{Scenario, config, scenario};

/// Distances closer than this count as a tie: chord and haversine arithmetic differ in
/// the last bits, so a near-tie may come out in either order.
const TIE_M: f64 = 1e-6;

/// Every eligible associate within the radius by brute force, sorted by haversine distance
/// then id.
pub fn brute_force(s: &Scenario) -> Vec<(u64, f64)> {
    let q = s.query_point();
    let mut all: Vec<(u64, f64)> = s
        .finals()
        .into_iter()
        .filter(|(id, _, skills)| skills.contains(s.task()) && !s.exclude.contains(id))
        .map(|(id, p, _)| (id, q.distance_m(&p)))
        .filter(|&(_, d)| d <= s.radius_m)
        .collect();
    all.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    all
}

/// Whether some associate sits so close to the radius that rounding decides it.
pub fn on_the_edge(s: &Scenario) -> bool {
    let q = s.query_point();
    s.finals()
        .iter()
        .any(|(_, p, _)| (q.distance_m(p) - s.radius_m).abs() < TIE_M)
}

/// Asserts `got` is the k-prefix of `want`, up to the order of near-ties.
pub fn assert_matches(got: &[Neighbor<u64>], want: &[(u64, f64)], k: usize) {
    assert_eq!(got.len(), want.len().min(k), "result count");
    for (i, n) in got.iter().enumerate() {
        let (want_id, want_d) = want[i];
        assert!(
            (n.distance_m - want_d).abs() < TIE_M,
            "distance at {i}: {n:?} vs {want_d}"
        );
        if n.id != want_id {
            let tied = want
                .iter()
                .any(|&(id, d)| id == n.id && (d - want_d).abs() < TIE_M);
            assert!(tied, "at {i} got {} but brute force has {want_id}", n.id);
        }
    }
}

/// The scenario's index: everyone inserted at the start, then moved to the end.
pub fn build(s: &Scenario, bucket_m: f64) -> AvailabilityIndex<u64> {
    let mut idx = AvailabilityIndex::new(IndexConfig { bucket_m }).unwrap();
    for (id, p, skills) in s.starts() {
        idx.upsert(id, p, skills);
    }
    for (id, p, _) in s.finals() {
        assert!(idx.move_to(id, p));
    }
    idx
}

pub fn query<'a>(s: &'a Scenario, point: LatLng) -> NearestQuery<'a, u64> {
    NearestQuery {
        point,
        task: s.task(),
        radius_m: s.radius_m,
        k: s.k,
        exclude: &s.exclude,
    }
}

proptest! {
    #![proptest_config(config(400))]

    #[test]
    fn nearest_equals_brute_force(
        s in scenario(),
        bucket_m in prop_oneof![Just(10.0), Just(250.0), Just(5_000.0)],
    ) {
        prop_assume!(!on_the_edge(&s));
        let idx = build(&s, bucket_m);
        prop_assert_eq!(idx.len(), s.placed.len());
        let got = idx.nearest(&query(&s, s.query_point())).unwrap();
        assert_matches(&got, &brute_force(&s), s.k);
        for (id, p, skills) in s.finals() {
            let e = idx.get(&id).unwrap();
            prop_assert_eq!(e.point, p);
            prop_assert_eq!(e.skills, skills);
        }
    }

    #[test]
    fn removing_everyone_empties_every_answer(s in scenario()) {
        let mut idx = build(&s, 250.0);
        for (id, _, _) in s.finals() {
            prop_assert!(idx.remove(&id).is_some());
        }
        prop_assert!(idx.is_empty());
        prop_assert!(idx.nearest(&query(&s, s.query_point())).unwrap().is_empty());
    }
}
