use super::*;

fn p(lat: f64, lng: f64) -> LatLng {
    LatLng::new(lat, lng).unwrap()
}

fn t(n: u8) -> TaskType {
    TaskType::new(n).unwrap()
}

fn skills(ns: &[u8]) -> Skills {
    ns.iter().map(|&n| t(n)).collect()
}

fn query(point: LatLng, task: u8, radius_m: f64, k: usize) -> NearestQuery<'static, u64> {
    NearestQuery {
        point,
        task: t(task),
        radius_m,
        k,
        exclude: &[],
    }
}

fn ids(v: &[Neighbor<u64>]) -> Vec<u64> {
    v.iter().map(|n| n.id).collect()
}

#[test]
fn nearest_filters_by_task_and_sorts_by_distance() {
    let mut idx = AvailabilityIndex::<u64>::default();
    idx.upsert(1, p(12.9000, 77.5000), skills(&[0]));
    idx.upsert(2, p(12.9010, 77.5000), skills(&[0, 1]));
    idx.upsert(3, p(12.9005, 77.5000), skills(&[1]));
    idx.upsert(4, p(12.9020, 77.5000), skills(&[0]));
    let got = idx.nearest(&query(p(12.9, 77.5), 0, 1_000.0, 10)).unwrap();
    assert_eq!(ids(&got), vec![1, 2, 4]);
    assert!(got[0].distance_m < 1e-6);
    assert!(
        (got[1].distance_m - 111.2).abs() < 0.5,
        "{}",
        got[1].distance_m
    );
    let got = idx.nearest(&query(p(12.9, 77.5), 1, 1_000.0, 1)).unwrap();
    assert_eq!(ids(&got), vec![3]);
}

#[test]
fn radius_is_inclusive_and_metric() {
    let mut idx = AvailabilityIndex::<u64>::default();
    let centre = p(60.0, 10.0);
    // At 60°N a degree of longitude is half a degree of latitude on the ground.
    idx.upsert(1, p(60.0, 10.02), skills(&[0]));
    idx.upsert(2, p(60.02, 10.0), skills(&[0]));
    let d1 = centre.distance_m(&p(60.0, 10.02));
    let got = idx.nearest(&query(centre, 0, d1 + 0.01, 10)).unwrap();
    assert_eq!(ids(&got), vec![1]);
}

#[test]
fn ties_break_by_id_and_exclude_is_honoured() {
    let mut idx = AvailabilityIndex::<u64>::default();
    for id in [7, 3, 5] {
        idx.upsert(id, p(1.0, 1.0), skills(&[2]));
    }
    let got = idx.nearest(&query(p(1.0, 1.0), 2, 10.0, 2)).unwrap();
    assert_eq!(ids(&got), vec![3, 5]);
    let q = NearestQuery {
        exclude: &[3],
        ..query(p(1.0, 1.0), 2, 10.0, 2)
    };
    assert_eq!(ids(&idx.nearest(&q).unwrap()), vec![5, 7]);
}

#[test]
fn moves_and_removes_keep_the_index_consistent() {
    let mut idx = AvailabilityIndex::<u64>::default();
    for id in 0..50u64 {
        idx.upsert(id, p(10.0 + id as f64 * 1e-4, 20.0), skills(&[0]));
    }
    // Move everyone across several buckets, then remove every other one.
    for id in 0..50u64 {
        assert!(idx.move_to(id, p(10.0 + id as f64 * 1e-4, 20.01)));
    }
    for id in (0..50u64).step_by(2) {
        assert_eq!(
            idx.remove(&id).unwrap().point,
            p(10.0 + id as f64 * 1e-4, 20.01)
        );
    }
    assert_eq!(idx.len(), 25);
    assert!(!idx.move_to(0, p(0.0, 0.0)));
    let got = idx
        .nearest(&query(p(10.0, 20.01), 0, 100_000.0, 100))
        .unwrap();
    assert_eq!(ids(&got), (1..50u64).step_by(2).collect::<Vec<_>>());
    for id in (1..50u64).step_by(2) {
        assert_eq!(
            idx.get(&id).unwrap().point,
            p(10.0 + id as f64 * 1e-4, 20.01)
        );
    }
    assert_eq!(idx.iter().count(), 25);
}

#[test]
fn skill_change_moves_between_task_trees() {
    let mut idx = AvailabilityIndex::<u64>::default();
    idx.upsert(1, p(0.0, 0.0), skills(&[0]));
    idx.upsert(1, p(0.0, 0.0), skills(&[1]));
    assert!(
        idx.nearest(&query(p(0.0, 0.0), 0, 10.0, 1))
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        ids(&idx.nearest(&query(p(0.0, 0.0), 1, 10.0, 1)).unwrap()),
        vec![1]
    );
    assert_eq!(idx.get(&1).unwrap().skills, skills(&[1]));
}

#[test]
fn bad_queries_are_typed_errors() {
    let idx = AvailabilityIndex::<u64>::default();
    let at = p(0.0, 0.0);
    assert_eq!(
        idx.nearest(&query(at, 0, -1.0, 1)),
        Err(GeoError::InvalidRadius(-1.0))
    );
    assert!(matches!(
        idx.nearest(&query(at, 0, f64::NAN, 1)),
        Err(GeoError::InvalidRadius(r)) if r.is_nan()
    ));
    assert_eq!(idx.nearest(&query(at, 0, 1.0, 0)), Err(GeoError::ZeroK));
    assert!(AvailabilityIndex::<u64>::new(IndexConfig { bucket_m: 0.0 }).is_err());
    assert!(AvailabilityIndex::<u64>::new(IndexConfig { bucket_m: f64::NAN }).is_err());
}

#[test]
fn poles_and_antimeridian() {
    let mut idx = AvailabilityIndex::<u64>::default();
    idx.upsert(1, p(0.0, 179.9995), skills(&[0]));
    idx.upsert(2, p(0.0, -179.9990), skills(&[0]));
    idx.upsert(3, p(89.9999, 0.0), skills(&[0]));
    idx.upsert(4, p(89.9999, 180.0), skills(&[0]));
    let got = idx.nearest(&query(p(0.0, -180.0), 0, 200.0, 10)).unwrap();
    assert_eq!(ids(&got), vec![1, 2]);
    let got = idx.nearest(&query(p(90.0, 45.0), 0, 20.0, 10)).unwrap();
    assert_eq!(ids(&got), vec![3, 4]);
}
