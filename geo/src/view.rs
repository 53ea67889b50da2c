//! A map viewport (what a screen shows) and the H3 resolution at which to count points
//! per cell when it shows too much to draw them one by one.

use h3o::Resolution;

use crate::{GeoError, LatLng};

/// A latitude/longitude box; `west > east` means it crosses the antimeridian.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Viewport {
    south: f64,
    west: f64,
    north: f64,
    east: f64,
}

impl Viewport {
    /// The box from its south-west to its north-east corner.
    pub fn new(south_west: LatLng, north_east: LatLng) -> Result<Self, GeoError> {
        if south_west.lat() > north_east.lat() {
            return Err(GeoError::InvalidViewport);
        }
        Ok(Self {
            south: south_west.lat(),
            west: south_west.lng(),
            north: north_east.lat(),
            east: north_east.lng(),
        })
    }

    /// The whole Earth.
    pub fn world() -> Self {
        Self {
            south: -90.0,
            west: -180.0,
            north: 90.0,
            east: 180.0,
        }
    }

    /// The smallest box holding every point (the world for none).
    pub fn around(points: impl IntoIterator<Item = LatLng>) -> Self {
        let mut b: Option<Self> = None;
        for p in points {
            let (lat, lng) = (p.lat(), p.lng());
            b = Some(match b {
                None => Self {
                    south: lat,
                    west: lng,
                    north: lat,
                    east: lng,
                },
                Some(b) => Self {
                    south: b.south.min(lat),
                    west: b.west.min(lng),
                    north: b.north.max(lat),
                    east: b.east.max(lng),
                },
            });
        }
        b.unwrap_or_else(Self::world)
    }

    /// Whether `point` is inside (edges included).
    pub fn contains(&self, point: LatLng) -> bool {
        let (lat, lng) = (point.lat(), point.lng());
        let in_lng = if self.west <= self.east {
            (self.west..=self.east).contains(&lng)
        } else {
            lng >= self.west || lng <= self.east
        };
        in_lng && (self.south..=self.north).contains(&lat)
    }

    /// The larger of the box's height and its width at its middle latitude, in metres.
    pub fn span_m(&self) -> f64 {
        let lng_span = if self.west <= self.east {
            self.east - self.west
        } else {
            360.0 - (self.west - self.east)
        };
        let mid = ((self.south + self.north) / 2.0).to_radians();
        let metres_per_degree = crate::EARTH_RADIUS_M * std::f64::consts::PI / 180.0;
        let height = (self.north - self.south) * metres_per_degree;
        let width = lng_span * metres_per_degree * mid.cos().abs();
        height.max(width)
    }

    /// The finest H3 resolution whose cells are at least `span_m / cells_across` across,
    /// so a box this size holds about `cells_across` cells side to side (at most `finest`).
    pub fn resolution_for(&self, cells_across: f64, finest: u8) -> u8 {
        let want_m = self.span_m() / cells_across.max(1.0);
        let mut chosen = 0;
        for r in 0..=finest.min(15) {
            let Ok(res) = Resolution::try_from(r) else {
                break;
            };
            // A hexagon is about twice its edge across.
            if 2.0 * res.edge_length_m() < want_m {
                break;
            }
            chosen = r;
        }
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(lat: f64, lng: f64) -> LatLng {
        LatLng::new(lat, lng).unwrap()
    }

    #[test]
    fn a_box_across_the_antimeridian_holds_both_sides() {
        let v = Viewport::new(p(-10.0, 170.0), p(10.0, -170.0)).unwrap();
        assert!(v.contains(p(0.0, 179.0)));
        assert!(v.contains(p(0.0, -179.0)));
        assert!(!v.contains(p(0.0, 0.0)));
        assert!((v.span_m() - 20.0 * 111_195.0).abs() < 2_000.0);
    }

    #[test]
    fn an_upside_down_box_is_refused() {
        assert_eq!(
            Viewport::new(p(10.0, 0.0), p(-10.0, 1.0)),
            Err(GeoError::InvalidViewport)
        );
    }

    #[test]
    fn wider_views_count_in_coarser_cells() {
        let city = Viewport::new(p(12.9, 77.5), p(13.0, 77.7)).unwrap();
        let country = Viewport::new(p(8.0, 68.0), p(35.0, 97.0)).unwrap();
        let world = Viewport::world();
        let (c, n, w) = (
            city.resolution_for(40.0, 9),
            country.resolution_for(40.0, 9),
            world.resolution_for(40.0, 9),
        );
        assert!(c > n && n > w, "{c} {n} {w}");
        assert_eq!(w, 0);
        assert!(
            Viewport::new(p(0.0, 0.0), p(0.0001, 0.0001))
                .unwrap()
                .resolution_for(40.0, 9)
                == 9
        );
    }

    proptest! {
        /// The box around some points holds each of them.
        #[test]
        fn the_box_around_points_holds_them(
            points in proptest::collection::vec((-90.0f64..=90.0, -180.0f64..=180.0), 1..50)
        ) {
            let points: Vec<LatLng> = points.into_iter().map(|(a, b)| p(a, b)).collect();
            let v = Viewport::around(points.iter().copied());
            for q in &points {
                prop_assert!(v.contains(*q));
            }
        }
    }
}
