//! Service zones: where an associate is willing to work.

use std::collections::HashSet;

use geo::LatLng;
use h3o::{CellIndex, Resolution};
use wire::model::Zone;

/// A validated service zone, ready for point tests.
#[derive(Debug, Clone, PartialEq)]
pub enum ZoneFilter {
    /// Within `radius_m` of `centre`.
    Circle {
        /// Centre.
        centre: LatLng,
        /// Radius in metres.
        radius_m: f64,
    },
    /// Inside any of these cells (any mix of resolutions).
    Cells {
        /// The cells.
        cells: HashSet<CellIndex>,
        /// The distinct resolutions among them.
        resolutions: Vec<Resolution>,
    },
}

impl ZoneFilter {
    /// The filter for a wire zone; none if it does not validate.
    pub fn from_wire(zone: &Zone) -> Option<Self> {
        match zone {
            Zone::Circle { centre, radius_m } => Some(ZoneFilter::Circle {
                centre: centre.to_latlng().ok()?,
                radius_m: f64::from(*radius_m),
            }),
            Zone::Cells { cells } => {
                let cells: HashSet<CellIndex> = cells
                    .iter()
                    .map(|c| c.parse().ok())
                    .collect::<Option<_>>()?;
                let mut resolutions: Vec<Resolution> =
                    cells.iter().map(|c| c.resolution()).collect();
                resolutions.sort();
                resolutions.dedup();
                Some(ZoneFilter::Cells { cells, resolutions })
            }
        }
    }

    /// Whether `point` lies in the zone.
    pub fn contains(&self, point: LatLng) -> bool {
        match self {
            ZoneFilter::Circle { centre, radius_m } => centre.distance_m(&point) <= *radius_m,
            ZoneFilter::Cells { cells, resolutions } => {
                // expect: a validated LatLng is always a valid h3o point.
                let p = h3o::LatLng::new(point.lat(), point.lng()).expect("valid point");
                resolutions.iter().any(|r| cells.contains(&p.to_cell(*r)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::model::Point;

    #[test]
    fn circle_and_cells() {
        let centre = Point {
            lat: 12.97,
            lng: 77.59,
        };
        let circle = ZoneFilter::from_wire(&Zone::Circle {
            centre,
            radius_m: 1_000,
        })
        .unwrap();
        assert!(circle.contains(LatLng::new(12.975, 77.59).unwrap()));
        assert!(!circle.contains(LatLng::new(12.99, 77.59).unwrap()));
        let cell = h3o::LatLng::new(12.97, 77.59)
            .unwrap()
            .to_cell(Resolution::Seven);
        let cells = ZoneFilter::from_wire(&Zone::Cells {
            cells: vec![cell.to_string()],
        })
        .unwrap();
        assert!(cells.contains(LatLng::new(12.97, 77.59).unwrap()));
        assert!(!cells.contains(LatLng::new(13.1, 77.59).unwrap()));
        assert!(
            ZoneFilter::from_wire(&Zone::Cells {
                cells: vec!["zz".into()]
            })
            .is_none()
        );
    }
}
