//! Orders, the second room: everything after an offer is accepted.
//!
//! - [`Orders`]: the handle sessions and the HTTP API call; it owns the address book.
//! - `desk`: creates order actors from accepted offers.
//! - [`order::OrderActor`]: one per open order, running its persisted lifecycle.
//! - [`billing`], [`payment`] (through a [`gateway::PaymentGateway`]) and [`feedback`].
//! - [`bus`]: order events for whoever listens; [`stall`]: orders nobody finishes.
//! - [`board`]: open orders, where their parties are and their tracks, for ops.
//! - [`pricing`]: the pure pricing engine.
//! - [`messages`]: what these actors say to each other and what the handle asks them.

pub mod billing;
pub mod board;
mod book;
pub mod bus;
mod desk;
pub mod feedback;
pub mod gateway;
mod handle;
pub mod messages;
pub mod order;
pub mod payment;
pub mod pricing;
pub mod stall;
mod takeover;

pub(crate) use handle::open_order_in_store;
pub(crate) use handle::side_of;
pub use handle::{OrderConfig, Orders, Recovered};
