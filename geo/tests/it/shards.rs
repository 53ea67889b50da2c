//! Shard fan-out: a query over the shards a circle touches, merged, equals one big index.

use std::collections::HashMap;

use geo::{AvailabilityIndex, ShardId, ShardMap, merge_nearest};
use proptest::prelude::*;

use crate::nearest::{build, query};
use crate::scenario::{config, scenario};

proptest! {
    #![proptest_config(config(250))]

    #[test]
    fn merged_shard_answers_equal_one_index(s in scenario(), res in 4u8..=8) {
        let map = ShardMap::new(res).unwrap();
        let whole = build(&s, 250.0);
        let mut shards: HashMap<ShardId, AvailabilityIndex<u64>> = HashMap::new();
        for (id, p, skills) in s.finals() {
            shards.entry(map.shard_of(p)).or_default().upsert(id, p, skills);
        }
        let at = s.query_point();
        let touched = match map.shards_touching(at, s.radius_m) {
            Ok(t) => t,
            // A circle over too many shards is refused, which is the contract.
            Err(geo::GeoError::RadiusTooLarge { .. }) => return Ok(()),
            Err(e) => panic!("{e}"),
        };
        prop_assert_eq!(touched[0], map.shard_of(at));
        let q = query(&s, at);
        let answers = touched
            .iter()
            .filter_map(|shard| shards.get(shard))
            .map(|idx| idx.nearest(&q).unwrap());
        let merged = merge_nearest(answers, s.k);
        prop_assert_eq!(merged, whole.nearest(&q).unwrap());
    }

    #[test]
    fn every_shard_with_a_point_in_range_is_touched(s in scenario(), res in 4u8..=8) {
        let map = ShardMap::new(res).unwrap();
        let at = s.query_point();
        let Ok(touched) = map.shards_touching(at, s.radius_m) else { return Ok(()) };
        for (_, p, _) in s.finals() {
            if at.distance_m(&p) <= s.radius_m {
                prop_assert!(touched.contains(&map.shard_of(p)), "{p:?} not reached");
            }
        }
    }
}
