//! Pure geometry for dispatch: points, distance, shards and the index of available associates.
//!
//! - [`LatLng`]: a validated WGS84 point; [`LatLng::distance_m`] is the haversine distance.
//! - [`TaskType`] and [`Skills`]: what an associate can do, as a small bitset.
//! - [`ShardMap`]: point → shard cell ([`ShardId`], an H3 cell), and the shards a search
//!   circle touches so a search near a border reaches the neighbours.
//! - [`AvailabilityIndex`]: associates by position and skills; [`AvailabilityIndex::nearest`]
//!   answers "the k nearest eligible associates within r metres", sorted by true distance.
//! - [`merge_nearest`]: merges several shards' answers into the answer one index would give.
//! - [`Viewport`]: what a map shows, and the cell size to count points in when it is wide.
//!
//! Everything here is synchronous and allocation-light; nothing reads the environment.

mod error;
mod index;
mod merge;
mod point;
mod shard;
mod skills;
mod sphere;
mod view;

pub use error::{GeoError, InvalidLatLng};
pub use index::{AvailabilityIndex, Entry, IndexConfig, NearestQuery, Neighbor};
pub use merge::merge_nearest;
pub use point::{EARTH_RADIUS_M, LatLng};
pub use shard::{MAX_SHARDS_PER_QUERY, ShardDisc, ShardId, ShardMap};
pub use skills::{MAX_TASK_TYPES, Skills, TaskType};
pub use view::Viewport;
