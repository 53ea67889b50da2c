//! Dispatch, the first room: associates, the shard supervisors that index them and the
//! requests that offer jobs to them one at a time.
//!
//! - [`Dispatch`]: the handle socket sessions call; it owns the address book.
//! - [`associate::AssociateActor`]: one per associate, the source of truth for availability.
//! - [`supervisor::ShardSupervisor`]: one per H3 shard cell, owning that cell's index.
//! - [`request::RequestActor`]: one per open request, running the sequential offer loop.
//! - [`messages`]: what these actors say to each other and what the handle asks them.

pub mod associate;
mod book;
mod handle;
mod lane;
pub mod messages;
pub mod request;
mod requests;
pub mod supervisor;
mod views;
mod zone;

pub use handle::{AssociateProfileInfo, Dispatch, NewRequest, profile_info};
pub(crate) use requests::Provenance;
pub use views::{AssociatePoint, CellCount, MarketView, OfferStep, RequestTrail};
pub use zone::ZoneFilter;
