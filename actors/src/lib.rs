//! Behaviour: the actors that run dispatch (and, with the order issue, orders, billing,
//! payments and feedback).
//!
//! - [`Dispatch`]: the handle socket sessions call; it owns the address book.
//! - [`AssociateActor`]: one per associate, the source of truth for availability.
//! - [`ShardSupervisor`]: one per H3 shard cell, owning that cell's availability index.
//! - [`RequestActor`]: one per open request, running the sequential offer loop.
//! - [`Sessions`] and [`Outbox`]: where actors send frames for connected apps.
//! - [`CreateOrder`]: the hand-off from an accepted offer to order creation.

pub mod allotment;
pub mod associate;
mod clock;
mod config;
mod dispatch;
mod error;
pub mod request;
mod sessions;
pub mod supervisor;
pub mod telemetry;
mod zone;

pub use allotment::{Allotment, CreateOrder};
pub use associate::{AssociateActor, AssociateView};
pub use clock::Clock;
pub use config::{
    DEFAULT_OFFER_WINDOW, DEFAULT_RADIUS_STEPS_M, DEFAULT_REQUEST_TIMEOUT, DispatchConfig,
};
pub use dispatch::{AssociateProfileInfo, Dispatch};
pub use error::ActorError;
pub use request::RequestActor;
pub use sessions::{Outbound, Outbox, Sessions, Undelivered};
pub use supervisor::ShardSupervisor;
pub use zone::ZoneFilter;
