//! The crate's error types.

use thiserror::Error;

/// A latitude or longitude that is not a finite number in range.
#[derive(Debug, Clone, Copy, PartialEq, Error)]
#[error(
    "invalid coordinates ({lat}, {lng}): latitude must be finite in [-90, 90], longitude finite in [-180, 180]"
)]
pub struct InvalidLatLng {
    /// The latitude given.
    pub lat: f64,
    /// The longitude given.
    pub lng: f64,
}

/// Everything that can go wrong in this crate.
#[derive(Debug, Clone, Copy, PartialEq, Error)]
pub enum GeoError {
    /// Coordinates out of range or not finite.
    #[error(transparent)]
    InvalidLatLng(#[from] InvalidLatLng),
    /// A search radius that is negative or not finite.
    #[error("invalid radius {0} m: must be finite and >= 0")]
    InvalidRadius(f64),
    /// A nearest-k query asked for zero results.
    #[error("k must be at least 1")]
    ZeroK,
    /// A task type outside the supported range.
    #[error("invalid task type {0}: must be below {max}", max = crate::MAX_TASK_TYPES)]
    InvalidTaskType(u8),
    /// A viewport whose south edge is north of its north edge.
    #[error("invalid viewport: its south-west corner must not be north of its north-east corner")]
    InvalidViewport,
    /// An H3 resolution outside 0..=15.
    #[error("invalid H3 resolution {0}: must be in 0..=15")]
    InvalidResolution(u8),
    /// An index bucket size outside the supported range.
    #[error("invalid bucket size {0} m: must be finite and in [10, 100000]")]
    InvalidBucketSize(f64),
    /// A search circle touching more shards than a query may fan out to.
    #[error("radius {radius_m} m touches more than {max} shards at this resolution")]
    RadiusTooLarge {
        /// The radius asked for.
        radius_m: f64,
        /// The most shards one query may touch.
        max: usize,
    },
}
