//! The validated point type and haversine distance.

use crate::error::InvalidLatLng;
use crate::sphere::UnitVec;

/// Mean Earth radius in metres (IUGG), the sphere all distances here are measured on.
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// A WGS84 point: latitude in [-90, 90], longitude in [-180, 180], both finite degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "RawLatLng"))]
pub struct LatLng {
    lat: f64,
    lng: f64,
}

impl LatLng {
    /// Validates and builds a point from degrees.
    pub fn new(lat: f64, lng: f64) -> Result<Self, InvalidLatLng> {
        let ok = lat.is_finite()
            && lng.is_finite()
            && (-90.0..=90.0).contains(&lat)
            && (-180.0..=180.0).contains(&lng);
        if ok {
            Ok(Self { lat, lng })
        } else {
            Err(InvalidLatLng { lat, lng })
        }
    }

    /// Latitude in degrees.
    pub fn lat(&self) -> f64 {
        self.lat
    }

    /// Longitude in degrees.
    pub fn lng(&self) -> f64 {
        self.lng
    }

    /// Great-circle distance to `other` in metres (haversine formula).
    pub fn distance_m(&self, other: &LatLng) -> f64 {
        let (p1, p2) = (self.lat.to_radians(), other.lat.to_radians());
        let half_dp = (p2 - p1) / 2.0;
        let half_dl = (other.lng - self.lng).to_radians() / 2.0;
        let a = half_dp.sin().powi(2) + p1.cos() * p2.cos() * half_dl.sin().powi(2);
        2.0 * EARTH_RADIUS_M * a.sqrt().min(1.0).asin()
    }

    /// The point as a unit vector on the sphere.
    pub(crate) fn unit(&self) -> UnitVec {
        UnitVec::from_degrees(self.lat, self.lng)
    }

    /// The point in h3o's type.
    pub(crate) fn to_h3(self) -> h3o::LatLng {
        // expect: a validated point is finite, which is all h3o asks of a point.
        h3o::LatLng::new(self.lat, self.lng).expect("validated point is a valid h3o point")
    }

    /// A point from h3o's type, which is always finite and in range.
    pub(crate) fn from_h3(p: h3o::LatLng) -> Self {
        // h3o normalises to [-90, 90] x [-180, 180]; clamp guards the last ulp.
        Self {
            lat: p.lat().clamp(-90.0, 90.0),
            lng: p.lng().clamp(-180.0, 180.0),
        }
    }
}

impl TryFrom<(f64, f64)> for LatLng {
    type Error = InvalidLatLng;

    fn try_from((lat, lng): (f64, f64)) -> Result<Self, Self::Error> {
        Self::new(lat, lng)
    }
}

/// The unvalidated shape a point is decoded from.
#[cfg(feature = "serde")]
#[derive(serde::Deserialize)]
struct RawLatLng {
    lat: f64,
    lng: f64,
}

#[cfg(feature = "serde")]
impl TryFrom<RawLatLng> for LatLng {
    type Error = InvalidLatLng;

    fn try_from(raw: RawLatLng) -> Result<Self, Self::Error> {
        Self::new(raw.lat, raw.lng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_out_of_range_and_non_finite() {
        for (lat, lng) in [
            (f64::NAN, 0.0),
            (0.0, f64::NAN),
            (90.000_001, 0.0),
            (-90.000_001, 0.0),
            (0.0, 180.000_001),
            (0.0, -180.000_001),
            (f64::INFINITY, 0.0),
            (0.0, f64::NEG_INFINITY),
        ] {
            assert!(LatLng::new(lat, lng).is_err(), "({lat}, {lng}) accepted");
        }
        for (lat, lng) in [(90.0, 180.0), (-90.0, -180.0), (0.0, 0.0)] {
            assert!(LatLng::new(lat, lng).is_ok());
        }
    }

    #[test]
    fn known_distances() {
        let blr = LatLng::new(12.9716, 77.5946).unwrap();
        let maa = LatLng::new(13.0827, 80.2707).unwrap();
        // Bengaluru to Chennai is about 290 km as the crow flies.
        let d = blr.distance_m(&maa);
        assert!((d - 290_200.0).abs() < 1_000.0, "{d}");
        // Across the antimeridian the short way round.
        let a = LatLng::new(0.0, 179.999).unwrap();
        let b = LatLng::new(0.0, -179.999).unwrap();
        assert!((a.distance_m(&b) - 222.4).abs() < 0.5);
        // Pole to pole is half a circumference.
        let n = LatLng::new(90.0, 0.0).unwrap();
        let s = LatLng::new(-90.0, 45.0).unwrap();
        assert!((n.distance_m(&s) - std::f64::consts::PI * EARTH_RADIUS_M).abs() < 1e-6);
    }
}
