//! Bad input gives typed errors, never a panic.

use geo::{AvailabilityIndex, GeoError, LatLng, NearestQuery, ShardMap, TaskType};
use proptest::prelude::*;

use crate::scenario::config;

fn any_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        -200.0..200.0f64,
    ]
}

proptest! {
    #![proptest_config(config(2_000))]

    #[test]
    fn points_are_accepted_exactly_when_valid(lat in any_f64(), lng in any_f64()) {
        let valid = lat.is_finite() && lng.is_finite() && lat.abs() <= 90.0 && lng.abs() <= 180.0;
        prop_assert_eq!(LatLng::new(lat, lng).is_ok(), valid);
    }
}

proptest! {
    #![proptest_config(config(200))]

    #[test]
    fn queries_never_panic(radius in any_f64(), k in 0usize..3, task in any::<u8>()) {
        let mut idx = AvailabilityIndex::<u64>::default();
        let at = LatLng::new(12.9, 77.5).unwrap();
        idx.upsert(1, at, geo::Skills::from_bits(u32::MAX));
        let Ok(task) = TaskType::new(task) else { return Ok(()) };
        let q = NearestQuery { point: at, task, radius_m: radius, k, exclude: &[] };
        match idx.nearest(&q) {
            Ok(found) => prop_assert!(found.len() <= k),
            Err(GeoError::InvalidRadius(_)) => prop_assert!(!(radius >= 0.0 && radius.is_finite())),
            Err(GeoError::ZeroK) => prop_assert_eq!(k, 0),
            Err(e) => prop_assert!(false, "unexpected {e}"),
        }
        let map = ShardMap::new(3).unwrap();
        match map.shards_touching(at, radius) {
            Ok(s) => prop_assert!(!s.is_empty()),
            Err(GeoError::InvalidRadius(_) | GeoError::RadiusTooLarge { .. }) => {}
            Err(e) => prop_assert!(false, "unexpected {e}"),
        }
    }
}
