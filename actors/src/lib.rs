//! Behaviour: the actors that run dispatch, orders, billing, payments and feedback.
//!
//! - [`Dispatch`]: the handle socket sessions call; it owns the address book.
//! - [`AssociateActor`]: one per associate, the source of truth for availability.
//! - [`ShardSupervisor`]: one per H3 shard cell, owning that cell's availability index.
//! - [`RequestActor`]: one per open request, running the sequential offer loop.
//! - [`Sessions`] and [`Outbox`]: where actors send frames for connected apps.
//! - [`CreateOrder`]: the hand-off from an accepted offer to order creation.
//! - [`Orders`]: the handle for order actions; behind it the order desk, one
//!   [`order::OrderActor`] per open order, [`billing`], [`payment`] (through a
//!   [`gateway::PaymentGateway`]) and [`feedback`] actors, and the [`bus`].
//! - [`pricing`]: the pure pricing engine.

pub mod allotment;
pub mod associate;
pub mod billing;
pub mod bus;
mod clock;
mod config;
mod desk;
mod disk;
mod dispatch;
mod error;
pub mod feedback;
pub mod gateway;
mod lane;
pub mod order;
mod orders;
pub mod payment;
pub mod pricing;
mod registry;
pub mod request;
mod sessions;
pub mod stall;
pub mod supervisor;
pub mod telemetry;
mod zone;

pub use allotment::{Allotment, CreateOrder};
pub use associate::{AssociateActor, AssociateView};
pub use clock::Clock;
pub use config::{
    DEFAULT_IDLE, DEFAULT_OFFER_WINDOW, DEFAULT_RADIUS_STEPS_M, DEFAULT_REQUEST_TIMEOUT,
    DispatchConfig,
};
pub use dispatch::{AssociateProfileInfo, Dispatch, profile_info};
pub use error::ActorError;
pub use orders::{OrderConfig, Orders, Recovered};
pub use request::RequestActor;
pub use sessions::{Outbound, Outbox, Sessions, Undelivered};
pub use supervisor::ShardSupervisor;
pub use zone::ZoneFilter;
