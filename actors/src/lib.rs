//! Behaviour: the actors that run dispatch, orders, billing, payments and feedback, in
//! two rooms that meet at one hand-off.
//!
//! - [`dispatch`]: associates, shard supervisors and requests; [`Dispatch`] is its handle.
//! - [`orders`]: orders, billing, payments and feedback; [`Orders`] is its handle.
//! - [`CreateOrder`]: the hand-off from an accepted offer (dispatch) to the order desk.
//! - [`Sessions`] and [`Outbox`]: where actors of either room send frames for connected apps.

pub mod allotment;
mod clock;
mod config;
mod disk;
pub mod dispatch;
mod error;
pub mod orders;
pub mod peers;
mod registry;
mod sessions;
pub mod telemetry;

pub use allotment::{Allotment, CreateOrder};
pub use clock::Clock;
pub use config::{
    DEFAULT_IDLE, DEFAULT_OFFER_WINDOW, DEFAULT_RADIUS_STEPS_M, DEFAULT_REQUEST_TIMEOUT,
    DispatchConfig,
};
pub use dispatch::associate::AssociateActor;
pub use dispatch::messages::AssociateView;
pub use dispatch::request::RequestActor;
pub use dispatch::supervisor::ShardSupervisor;
pub use dispatch::{
    AssociateProfileInfo, Dispatch, NewRequest, OfferStep, RequestTrail, ZoneFilter, profile_info,
};
pub use error::ActorError;
pub use orders::{OrderConfig, Orders, Recovered};
pub use sessions::{Outbound, Outbox, Relay, Sessions, Undelivered};
