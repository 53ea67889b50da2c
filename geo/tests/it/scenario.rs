//! Random scenarios: associates scattered around a centre that may sit in a metro, on a
//! shard border, next to a pole or across the antimeridian.

use geo::{EARTH_RADIUS_M, LatLng, Skills, TaskType};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

/// Proptest settings: a fixed seed so CI runs the same cases every time.
pub fn config(cases: u32) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(0x5eed_c4ee),
        failure_persistence: None,
        ..Config::default()
    }
}

/// The point `dist_m` from `from` along initial bearing `bearing` (radians), on the sphere.
pub fn destination(from: LatLng, bearing: f64, dist_m: f64) -> LatLng {
    let d = dist_m / EARTH_RADIUS_M;
    let (p1, l1) = (from.lat().to_radians(), from.lng().to_radians());
    let p2 = (p1.sin() * d.cos() + p1.cos() * d.sin() * bearing.cos())
        .clamp(-1.0, 1.0)
        .asin();
    let l2 = l1 + (bearing.sin() * d.sin() * p1.cos()).atan2(d.cos() - p1.sin() * p2.sin());
    let mut lng = l2.to_degrees();
    while lng > 180.0 {
        lng -= 360.0;
    }
    while lng < -180.0 {
        lng += 360.0;
    }
    LatLng::new(p2.to_degrees().clamp(-90.0, 90.0), lng).unwrap()
}

/// Where a scenario is centred.
pub fn centre() -> impl Strategy<Value = LatLng> {
    prop_oneof![
        // A metro.
        (12.8..13.2f64, 77.4..77.8f64).prop_map(|(a, b)| LatLng::new(a, b).unwrap()),
        // A vertex of an H3 cell at resolution 4..=8: three shards meet there.
        (-60.0..60.0f64, -180.0..180.0f64, 4u8..=8, 0usize..6).prop_map(|(a, b, res, v)| {
            let res = h3o::Resolution::try_from(res).unwrap();
            let cell = h3o::LatLng::new(a, b).unwrap().to_cell(res);
            let boundary = cell.boundary();
            let vertex = boundary[v % boundary.len()];
            LatLng::new(vertex.lat(), vertex.lng()).unwrap()
        }),
        // Near either pole.
        (89.95..=90.0f64, -180.0..180.0f64).prop_map(|(a, b)| LatLng::new(a, b).unwrap()),
        (-90.0..=-89.95f64, -180.0..180.0f64).prop_map(|(a, b)| LatLng::new(a, b).unwrap()),
        // On the antimeridian.
        (
            -70.0..70.0f64,
            prop_oneof![Just(180.0f64), Just(-180.0), 179.99..180.0, -180.0..-179.99]
        )
            .prop_map(|(a, b)| LatLng::new(a, b).unwrap()),
    ]
}

/// One associate of a scenario: offsets from the centre for an initial and a final
/// position (a move), and skills.
#[derive(Debug, Clone)]
pub struct Placed {
    pub start: (f64, f64),
    pub end: Option<(f64, f64)>,
    pub skills: u32,
}

/// A scenario: a centre, its spread, associates and one query.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub centre: LatLng,
    pub spread_m: f64,
    pub placed: Vec<Placed>,
    pub query_at: (f64, f64),
    pub task: u8,
    pub radius_m: f64,
    pub k: usize,
    pub exclude: Vec<u64>,
}

impl Scenario {
    fn at(&self, (bearing, frac): (f64, f64)) -> LatLng {
        destination(self.centre, bearing, frac * self.spread_m)
    }

    /// Final position of every associate, by id (the index in `placed`).
    pub fn finals(&self) -> Vec<(u64, LatLng, Skills)> {
        self.placed
            .iter()
            .enumerate()
            .map(|(i, a)| {
                (
                    i as u64,
                    self.at(a.end.unwrap_or(a.start)),
                    Skills::from_bits(a.skills),
                )
            })
            .collect()
    }

    /// Initial position of every associate.
    pub fn starts(&self) -> Vec<(u64, LatLng, Skills)> {
        self.placed
            .iter()
            .enumerate()
            .map(|(i, a)| (i as u64, self.at(a.start), Skills::from_bits(a.skills)))
            .collect()
    }

    /// Where the query is centred.
    pub fn query_point(&self) -> LatLng {
        self.at(self.query_at)
    }

    pub fn task(&self) -> TaskType {
        TaskType::new(self.task).unwrap()
    }
}

fn offset() -> impl Strategy<Value = (f64, f64)> {
    (0.0..std::f64::consts::TAU, 0.0..1.0f64)
}

fn placed() -> impl Strategy<Value = Placed> {
    // Four task types so filters bite; some associates share a spot exactly (ties).
    let spot = prop_oneof![4 => offset(), 1 => Just((0.0, 0.5))];
    (spot, proptest::option::of(offset()), 1u32..16).prop_map(|(start, end, skills)| Placed {
        start,
        end,
        skills,
    })
}

/// A random scenario.
pub fn scenario() -> impl Strategy<Value = Scenario> {
    (
        centre(),
        prop_oneof![Just(300.0), Just(3_000.0), Just(20_000.0)],
        proptest::collection::vec(placed(), 0..250),
        offset(),
        0u8..4,
        prop_oneof![0.0..500.0f64, 500.0..5_000.0, 5_000.0..25_000.0],
        1usize..20,
        proptest::collection::vec(0u64..250, 0..5),
    )
        .prop_map(
            |(centre, spread_m, placed, query_at, task, radius_m, k, exclude)| Scenario {
                centre,
                spread_m,
                placed,
                query_at,
                task,
                radius_m,
                k,
                exclude,
            },
        )
}
