//! Shared fixtures for the benchmarks: a synthetic metro of associates, GPS moves and
//! query points, all from fixed seeds so every run measures the same work.

use geo::{LatLng, Skills, TaskType};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The metro box the benchmarks fill: about 44 km by 43 km around Bengaluru.
pub const METRO: MetroBox = MetroBox {
    lat: (12.8, 13.2),
    lng: (77.4, 77.8),
};

/// Number of task types in the synthetic metro.
pub const TASK_TYPES: u8 = 10;

/// A latitude/longitude box.
#[derive(Debug, Clone, Copy)]
pub struct MetroBox {
    /// Southern and northern edge.
    pub lat: (f64, f64),
    /// Western and eastern edge.
    pub lng: (f64, f64),
}

impl MetroBox {
    /// A uniformly random point inside the box.
    pub fn random_point(&self, rng: &mut impl Rng) -> LatLng {
        let lat = rng.random_range(self.lat.0..self.lat.1);
        let lng = rng.random_range(self.lng.0..self.lng.1);
        LatLng::new(lat, lng).expect("box is in range")
    }

    /// `p` moved by (`dlat`, `dlng`) degrees, reflected back inside the box.
    pub fn nudge(&self, p: LatLng, dlat: f64, dlng: f64) -> LatLng {
        let reflect = |v: f64, (lo, hi): (f64, f64)| {
            if v < lo {
                lo + (lo - v)
            } else if v > hi {
                hi - (v - hi)
            } else {
                v
            }
        };
        let lat = reflect(p.lat() + dlat, self.lat);
        let lng = reflect(p.lng() + dlng, self.lng);
        LatLng::new(lat, lng).expect("box is in range")
    }
}

/// One synthetic associate.
#[derive(Debug, Clone, Copy)]
pub struct Associate {
    /// Dense id, 0..n.
    pub id: u64,
    /// Starting position.
    pub point: LatLng,
    /// One to three of the [`TASK_TYPES`] task types.
    pub skills: Skills,
}

/// `n` associates spread uniformly over [`METRO`], each with 1–3 random skills.
pub fn metro_associates(n: usize, seed: u64) -> Vec<Associate> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n as u64)
        .map(|id| {
            let point = METRO.random_point(&mut rng);
            let count = rng.random_range(1..=3);
            let skills = (0..count)
                .map(|_| task(rng.random_range(0..TASK_TYPES)))
                .collect();
            Associate { id, point, skills }
        })
        .collect()
}

/// A GPS update: associate `id` moved by (`dlat`, `dlng`) degrees.
#[derive(Debug, Clone, Copy)]
pub struct Move {
    /// Which associate moved.
    pub id: u64,
    /// Latitude change in degrees.
    pub dlat: f64,
    /// Longitude change in degrees.
    pub dlng: f64,
}

/// `count` GPS updates for `n` associates: random associate, a move of up to about 15 m
/// (walking or slow traffic between two reports a few seconds apart).
pub fn gps_moves(n: usize, count: usize, seed: u64) -> Vec<Move> {
    let mut rng = StdRng::seed_from_u64(seed);
    let step = 15.0 / 111_320.0;
    (0..count)
        .map(|_| Move {
            id: rng.random_range(0..n as u64),
            dlat: rng.random_range(-step..step),
            dlng: rng.random_range(-step..step),
        })
        .collect()
}

/// `count` query points in [`METRO`] with random task types.
pub fn queries(count: usize, seed: u64) -> Vec<(LatLng, TaskType)> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            (
                METRO.random_point(&mut rng),
                task(rng.random_range(0..TASK_TYPES)),
            )
        })
        .collect()
}

/// Task type `n`, which must be below [`TASK_TYPES`].
pub fn task(n: u8) -> TaskType {
    TaskType::new(n).expect("below TASK_TYPES")
}
