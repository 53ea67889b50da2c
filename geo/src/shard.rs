//! The shard map: which H3 cell (shard) holds a point, and which shards a circle touches.

use std::collections::VecDeque;
use std::fmt;

use h3o::{CellIndex, Resolution};
use rustc_hash::FxHashSet;

use crate::error::GeoError;
use crate::point::{EARTH_RADIUS_M, LatLng};
use crate::sphere::{UnitVec, chord2, chord2_for_radius};

/// The most shards one search circle may fan out to before it is refused.
pub const MAX_SHARDS_PER_QUERY: usize = 4096;

/// Margin in metres added to a search radius when deciding whether it reaches a cell, so
/// rounding in the cell boundary never drops a shard that holds an eligible associate.
const REACH_MARGIN_M: f64 = 1.0;

/// A shard: one H3 cell at the shard resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId(CellIndex);

impl ShardId {
    /// The shard's H3 cell.
    pub fn cell(self) -> CellIndex {
        self.0
    }

    /// The shard's H3 index as a number.
    pub fn as_u64(self) -> u64 {
        u64::from(self.0)
    }

    /// The shard whose H3 index is `n`, if `n` is a valid cell.
    pub fn from_u64(n: u64) -> Option<Self> {
        CellIndex::try_from(n).ok().map(Self)
    }

    /// The shard's centre point.
    pub fn centre(self) -> LatLng {
        LatLng::from_h3(h3o::LatLng::from(self.0))
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A disc around a located point that lies wholly inside that point's shard (less a
/// margin), so a later position inside the disc is known to be in the shard without
/// asking H3 again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShardDisc {
    shard: ShardId,
    centre: [f64; 3],
    /// Squared chord of the disc's radius (negative: the disc holds nothing).
    max_chord2: f64,
}

impl ShardDisc {
    /// The shard the disc lies in.
    pub fn shard(&self) -> ShardId {
        self.shard
    }

    /// The disc's radius in metres (0 for a point on or near the shard's edge).
    pub fn radius_m(&self) -> f64 {
        if self.max_chord2 <= 0.0 {
            0.0
        } else {
            crate::sphere::distance_for_chord2(self.max_chord2)
        }
    }

    /// Whether `point` lies inside the disc, and so inside [`ShardDisc::shard`].
    pub fn contains(&self, point: LatLng) -> bool {
        chord2(&point.unit().0, &self.centre) <= self.max_chord2
    }
}

/// Maps points to shards at one H3 resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardMap {
    resolution: Resolution,
}

impl ShardMap {
    /// A shard map at H3 `resolution` (0 is coarsest, 15 finest).
    pub fn new(resolution: u8) -> Result<Self, GeoError> {
        let resolution = Resolution::try_from(resolution)
            .map_err(|_| GeoError::InvalidResolution(resolution))?;
        Ok(Self { resolution })
    }

    /// The shard resolution.
    pub fn resolution(&self) -> u8 {
        u8::from(self.resolution)
    }

    /// The shard that holds `point`.
    pub fn shard_of(&self, point: LatLng) -> ShardId {
        ShardId(point.to_h3().to_cell(self.resolution))
    }

    /// The shard that holds `point`, with the largest disc around `point` inside it
    /// (the distance to the cell's nearest edge, less a metre and a thousandth).
    pub fn locate(&self, point: LatLng) -> ShardDisc {
        let cell = point.to_h3().to_cell(self.resolution);
        let p = point.unit();
        let edge_m = angle_to_cell(&p, cell) * EARTH_RADIUS_M;
        let safe_m = edge_m * 0.999 - REACH_MARGIN_M;
        ShardDisc {
            shard: ShardId(cell),
            centre: p.0,
            max_chord2: if safe_m > 0.0 {
                chord2_for_radius(safe_m)
            } else {
                -1.0
            },
        }
    }

    /// Every shard whose cell comes within `radius_m` of `point`, the point's own first.
    ///
    /// Cells that touch a disc form a connected patch, so a breadth-first walk from the
    /// point's cell that only expands cells reaching the disc finds exactly them.
    pub fn shards_touching(&self, point: LatLng, radius_m: f64) -> Result<Vec<ShardId>, GeoError> {
        if !(radius_m.is_finite() && radius_m >= 0.0) {
            return Err(GeoError::InvalidRadius(radius_m));
        }
        let reach = (radius_m + REACH_MARGIN_M) / EARTH_RADIUS_M;
        let p = point.unit();
        let home = point.to_h3().to_cell(self.resolution);
        let mut found = vec![ShardId(home)];
        let mut seen: FxHashSet<CellIndex> = FxHashSet::default();
        seen.insert(home);
        let mut queue = VecDeque::from([home]);
        while let Some(cell) = queue.pop_front() {
            for next in cell.grid_disk::<Vec<_>>(1) {
                if !seen.insert(next) || angle_to_cell(&p, next) > reach {
                    continue;
                }
                if found.len() == MAX_SHARDS_PER_QUERY {
                    return Err(GeoError::RadiusTooLarge {
                        radius_m,
                        max: MAX_SHARDS_PER_QUERY,
                    });
                }
                found.push(ShardId(next));
                queue.push_back(next);
            }
        }
        Ok(found)
    }
}

/// Angular distance in radians from `p` (outside `cell`) to the cell's boundary.
fn angle_to_cell(p: &UnitVec, cell: CellIndex) -> f64 {
    let vertices: Vec<UnitVec> = cell
        .boundary()
        .iter()
        .map(|v| UnitVec::from_degrees(v.lat(), v.lng()))
        .collect();
    let n = vertices.len();
    (0..n)
        .map(|i| p.angle_to_arc(&vertices[i], &vertices[(i + 1) % n]))
        .fold(f64::INFINITY, f64::min)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The point `d` radians from (`lat`, `lng`) along `bearing` (great circle).
    fn destination(lat: f64, lng: f64, bearing: f64, d: f64) -> Option<LatLng> {
        let (phi, lambda) = (lat.to_radians(), lng.to_radians());
        let phi2 = (phi.sin() * d.cos() + phi.cos() * d.sin() * bearing.cos()).asin();
        let lambda2 =
            lambda + (bearing.sin() * d.sin() * phi.cos()).atan2(d.cos() - phi.sin() * phi2.sin());
        let lng2 = (lambda2.to_degrees() + 540.0).rem_euclid(360.0) - 180.0;
        LatLng::new(phi2.to_degrees(), lng2).ok()
    }

    proptest! {
        /// Anywhere on Earth, at coarse and fine resolutions: every point on the rim of
        /// a located point's disc (64 bearings) is in the same shard.
        #[test]
        fn the_rim_of_the_disc_is_in_its_shard(
            lat in -89.0f64..89.0,
            lng in -180.0f64..180.0,
            res in prop::sample::select(vec![3u8, 5, 6, 7, 9]),
        ) {
            let map = ShardMap::new(res).unwrap();
            let p = LatLng::new(lat, lng).unwrap();
            let disc = map.locate(p);
            prop_assert_eq!(disc.shard(), map.shard_of(p));
            prop_assert!(disc.contains(p) || disc.radius_m() == 0.0);
            let d = disc.radius_m() / EARTH_RADIUS_M;
            for k in (0..64).filter(|_| d > 0.0) {
                let bearing = f64::from(k) * std::f64::consts::TAU / 64.0;
                if let Some(q) = destination(lat, lng, bearing, d * 0.9999) {
                    prop_assert!(disc.contains(q));
                    prop_assert_eq!(map.shard_of(q), disc.shard(), "bearing {}", bearing);
                }
            }
        }
    }

    #[test]
    fn the_disc_reaches_the_nearest_edge_and_no_further() {
        let map = ShardMap::new(6).unwrap();
        let centre = map.shard_of(LatLng::new(12.97, 77.59).unwrap()).centre();
        let disc = map.locate(centre);
        // Res 6 hexagons: about 3.2 km from centre to the nearest edge.
        assert!(
            (2_500.0..3_700.0).contains(&disc.radius_m()),
            "{}",
            disc.radius_m()
        );
        // Walk north from the centre in 5 m steps: the first point outside the shard is
        // outside the disc, and the disc ends no further out than it (the nearest edge
        // may lie on another bearing, so it may end sooner).
        let mut step = 0.0;
        let outside = loop {
            step += 5.0;
            let lat = centre.lat() + (step / EARTH_RADIUS_M).to_degrees();
            let q = LatLng::new(lat, centre.lng()).unwrap();
            if map.shard_of(q) != disc.shard() {
                break q;
            }
        };
        assert!(!disc.contains(outside));
        assert!(disc.radius_m() <= step);
    }

    #[test]
    fn resolution_is_validated() {
        assert!(ShardMap::new(15).is_ok());
        assert_eq!(ShardMap::new(16), Err(GeoError::InvalidResolution(16)));
    }

    #[test]
    fn small_radius_stays_home_and_large_one_reaches_neighbours() {
        let map = ShardMap::new(6).unwrap();
        let centre = map.shard_of(LatLng::new(12.97, 77.59).unwrap()).centre();
        let home = map.shard_of(centre);
        assert_eq!(map.shards_touching(centre, 10.0).unwrap(), vec![home]);
        // Res 6 cells are about 3.7 km along an edge: 10 km from a centre reaches the
        // whole first ring and part of the second, never the third.
        let wide = map.shards_touching(centre, 10_000.0).unwrap();
        assert_eq!(wide[0], home);
        assert!((8..=19).contains(&wide.len()), "{}", wide.len());
        let disk2: Vec<_> = home.cell().grid_disk::<Vec<_>>(2);
        assert!(wide.iter().all(|s| disk2.contains(&s.cell())));
        let ring1: Vec<_> = home.cell().grid_disk::<Vec<_>>(1);
        assert!(ring1.iter().all(|c| wide.contains(&ShardId(*c))));
    }

    #[test]
    fn huge_radius_is_refused() {
        let map = ShardMap::new(9).unwrap();
        let at = LatLng::new(0.0, 0.0).unwrap();
        assert!(matches!(
            map.shards_touching(at, 500_000.0),
            Err(GeoError::RadiusTooLarge { .. })
        ));
        assert!(matches!(
            map.shards_touching(at, -1.0),
            Err(GeoError::InvalidRadius(_))
        ));
    }
}
