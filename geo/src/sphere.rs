//! Unit vectors on the sphere: chords, angles and great-circle arcs.
//!
//! The index orders by squared chord length between unit vectors, which is monotonic in
//! great-circle distance and has no special cases at the poles or the antimeridian.

use crate::point::EARTH_RADIUS_M;

/// A point on the unit sphere (x towards 0°E on the equator, z towards the north pole).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct UnitVec(pub(crate) [f64; 3]);

impl UnitVec {
    /// The unit vector of a point given in degrees.
    pub(crate) fn from_degrees(lat: f64, lng: f64) -> Self {
        let (sin_lat, cos_lat) = lat.to_radians().sin_cos();
        let (sin_lng, cos_lng) = lng.to_radians().sin_cos();
        Self([cos_lat * cos_lng, cos_lat * sin_lng, sin_lat])
    }

    /// Dot product.
    fn dot(&self, o: &UnitVec) -> f64 {
        self.0[0] * o.0[0] + self.0[1] * o.0[1] + self.0[2] * o.0[2]
    }

    /// Cross product (not normalised).
    fn cross(&self, o: &UnitVec) -> [f64; 3] {
        let (a, b) = (&self.0, &o.0);
        [
            a[1] * b[2] - a[2] * b[1],
            a[2] * b[0] - a[0] * b[2],
            a[0] * b[1] - a[1] * b[0],
        ]
    }

    /// Angle to `other` in radians, accurate for small and large angles alike.
    pub(crate) fn angle(&self, other: &UnitVec) -> f64 {
        norm(&self.cross(other)).atan2(self.dot(other))
    }

    /// Angular distance in radians to the great-circle arc from `a` to `b` (shorter arc).
    pub(crate) fn angle_to_arc(&self, a: &UnitVec, b: &UnitVec) -> f64 {
        let n = a.cross(b);
        let n_len = norm(&n);
        if n_len < 1e-15 {
            return self.angle(a);
        }
        let n = UnitVec([n[0] / n_len, n[1] / n_len, n[2] / n_len]);
        // The foot of the perpendicular lies on the arc iff it is on the inner side of
        // both planes through the origin and an endpoint, perpendicular to the arc.
        let side_a = dot3(&a.cross(self), &n.0);
        let side_b = dot3(&self.cross(b), &n.0);
        if side_a >= 0.0 && side_b >= 0.0 {
            self.dot(&n).abs().min(1.0).asin()
        } else {
            self.angle(a).min(self.angle(b))
        }
    }
}

/// Squared Euclidean distance between two 3-vectors.
#[inline]
pub(crate) fn chord2(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    let (dx, dy, dz) = (a[0] - b[0], a[1] - b[1], a[2] - b[2]);
    dx * dx + dy * dy + dz * dz
}

fn dot3(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn norm(a: &[f64; 3]) -> f64 {
    dot3(a, a).sqrt()
}

/// The squared chord that spans a great-circle distance of `radius_m` (4 beyond half the globe).
pub(crate) fn chord2_for_radius(radius_m: f64) -> f64 {
    let half_angle = radius_m / (2.0 * EARTH_RADIUS_M);
    if half_angle >= std::f64::consts::FRAC_PI_2 {
        return 4.0;
    }
    (2.0 * half_angle.sin()).powi(2)
}

/// The great-circle distance in metres spanned by a squared chord.
pub(crate) fn distance_for_chord2(c2: f64) -> f64 {
    2.0 * EARTH_RADIUS_M * (c2.sqrt() / 2.0).min(1.0).asin()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LatLng;

    #[test]
    fn chord_round_trips_through_distance() {
        for r in [0.0, 1.0, 950.0, 3_000.0, 1.0e6, 1.9e7] {
            let back = distance_for_chord2(chord2_for_radius(r));
            assert!((back - r).abs() < 1e-6 * r.max(1.0), "{r} -> {back}");
        }
        assert_eq!(chord2_for_radius(1.0e9), 4.0);
    }

    #[test]
    fn chord_distance_matches_haversine() {
        let a = LatLng::new(12.9, 77.5).unwrap();
        let b = LatLng::new(12.91, 77.52).unwrap();
        let via_chord = distance_for_chord2(chord2(&a.unit().0, &b.unit().0));
        assert!((via_chord - a.distance_m(&b)).abs() < 1e-6);
    }

    #[test]
    fn arc_distance() {
        let a = UnitVec::from_degrees(0.0, 0.0);
        let b = UnitVec::from_degrees(0.0, 10.0);
        // Above the middle of an equatorial arc: the perpendicular distance.
        let p = UnitVec::from_degrees(1.0, 5.0);
        assert!((p.angle_to_arc(&a, &b) - 1.0f64.to_radians()).abs() < 1e-12);
        // Beyond an end: the distance to that end.
        let q = UnitVec::from_degrees(0.0, 12.0);
        assert!((q.angle_to_arc(&a, &b) - 2.0f64.to_radians()).abs() < 1e-12);
    }
}
