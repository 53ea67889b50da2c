//! Availability index: GPS position updates and filtered nearest-10 queries on 1 M
//! associates in a metro, each measured next to a naive rstar baseline in the same run.
//!
//! Run: `cargo bench -p speedy-benches --bench geo_index`.
//! Set `GEO_BENCH_N` to change the number of associates (default 1 000 000) and
//! `GEO_BENCH_BUCKET_M` to try another index bucket size.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use geo::{AvailabilityIndex, IndexConfig, LatLng, NearestQuery, Neighbor};
use rstar::RTree;
use rstar::primitives::GeomWithData;
use speedy_benches::{Associate, METRO, gps_moves, metro_associates, queries};

/// Metres per degree of latitude, the naive baseline's only notion of scale.
const M_PER_DEG: f64 = 111_320.0;

type NaivePoint = GeomWithData<[f64; 2], (u64, u32)>;

/// The naive baseline: one rstar tree of (lng, lat) points carrying id and skill bits.
fn naive_tree(associates: &[Associate]) -> RTree<NaivePoint> {
    let points = associates
        .iter()
        .map(|a| GeomWithData::new([a.point.lng(), a.point.lat()], (a.id, a.skills.bits())))
        .collect();
    RTree::bulk_load(points)
}

fn our_index(associates: &[Associate]) -> AvailabilityIndex<u64> {
    let mut config = IndexConfig::default();
    if let Some(bucket_m) = std::env::var("GEO_BENCH_BUCKET_M")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.bucket_m = bucket_m;
    }
    let mut idx = AvailabilityIndex::new(config).expect("valid bucket size");
    for a in associates {
        idx.upsert(a.id, a.point, a.skills);
    }
    idx
}

fn bench_updates(c: &mut Criterion, associates: &[Associate]) {
    let n = associates.len();
    let moves = gps_moves(n, 1 << 20, 7);
    let mut group = c.benchmark_group("geo_update");
    group.throughput(Throughput::Elements(1));

    let mut idx = our_index(associates);
    let mut pos: Vec<LatLng> = associates.iter().map(|a| a.point).collect();
    let mut cursor = 0usize;
    group.bench_function("index", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let m = moves[cursor];
                cursor = (cursor + 1) % moves.len();
                let p = METRO.nudge(pos[m.id as usize], m.dlat, m.dlng);
                pos[m.id as usize] = p;
                idx.move_to(black_box(m.id), p);
            }
            start.elapsed()
        })
    });
    drop(idx);

    let mut tree = naive_tree(associates);
    let mut pos: Vec<LatLng> = associates.iter().map(|a| a.point).collect();
    let mut cursor = 0usize;
    group.bench_function("naive_rstar", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let m = moves[cursor];
                cursor = (cursor + 1) % moves.len();
                let a = &associates[m.id as usize];
                let old = pos[m.id as usize];
                let p = METRO.nudge(old, m.dlat, m.dlng);
                pos[m.id as usize] = p;
                let data = (a.id, a.skills.bits());
                tree.remove(&GeomWithData::new([old.lng(), old.lat()], data));
                tree.insert(GeomWithData::new([p.lng(), p.lat()], data));
            }
            start.elapsed()
        })
    });
    group.finish();
}

fn bench_queries(c: &mut Criterion, associates: &[Associate]) {
    let qs = queries(1 << 16, 11);
    let idx = our_index(associates);
    let tree = naive_tree(associates);
    for radius_m in [1_000.0, 3_000.0] {
        let mut group = c.benchmark_group(format!("geo_nearest10_{}km", radius_m / 1000.0));
        group.throughput(Throughput::Elements(1));
        let mut out: Vec<Neighbor<u64>> = Vec::with_capacity(10);
        let mut cursor = 0usize;
        group.bench_function("index", |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    let (point, task) = qs[cursor];
                    cursor = (cursor + 1) % qs.len();
                    let q = NearestQuery {
                        point,
                        task,
                        radius_m,
                        k: 10,
                        exclude: &[],
                    };
                    idx.nearest_into(black_box(&q), &mut out)
                        .expect("valid query");
                    black_box(&out);
                }
                start.elapsed()
            })
        });
        let mut cursor = 0usize;
        let radius_deg2 = (radius_m / M_PER_DEG).powi(2);
        group.bench_function("naive_rstar", |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    let (point, task) = qs[cursor];
                    cursor = (cursor + 1) % qs.len();
                    let bit = 1u32 << task.get();
                    let found = tree
                        .nearest_neighbor_iter_with_distance_2(&[point.lng(), point.lat()])
                        .take_while(|(_, d2)| *d2 <= radius_deg2)
                        .filter(|(p, _)| p.data.1 & bit != 0)
                        .take(10)
                        .count();
                    black_box(found);
                }
                start.elapsed()
            })
        });
        group.finish();
    }
}

/// Prints each figure as operations per second next to the naive baseline.
fn print_ratios() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(|t| t.join("criterion"))
        .expect("target dir");
    let mean_ns = |group: &str, bench: &str| -> Option<f64> {
        let path = dir.join(group).join(bench).join("new/estimates.json");
        let text = std::fs::read_to_string(path).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        v["mean"]["point_estimate"].as_f64()
    };
    println!(
        "\n{:<24} {:>14} {:>14} {:>8}",
        "figure", "index/s", "naive/s", "ratio"
    );
    for group in ["geo_update", "geo_nearest10_1km", "geo_nearest10_3km"] {
        if let (Some(ours), Some(naive)) = (mean_ns(group, "index"), mean_ns(group, "naive_rstar"))
        {
            println!(
                "{group:<24} {:>14.0} {:>14.0} {:>7.2}x",
                1e9 / ours,
                1e9 / naive,
                naive / ours
            );
        }
    }
}

fn main() {
    let n = std::env::var("GEO_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let associates = metro_associates(n, 42);
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    bench_updates(&mut c, &associates);
    bench_queries(&mut c, &associates);
    c.final_summary();
    print_ratios();
}
