//! The Speedy Cheers protocol: every frame between apps and the engine, two encodings of
//! them, validation at decode, and a typed client.
//!
//! - [`ClientMessage`] and [`ServerMessage`]: the frames, one payload struct each.
//! - [`model`]: domain types shared with storage and the actors (ids, order states,
//!   invoices, payments).
//! - [`decode`] / [`encode`] with an [`Encoding`]: flat JSON text (`speedy.v1.json`) or
//!   bincode-compatible binary (`speedy.v1.bin`).
//! - [`Validator`]: limits and the [`TaskCatalog`]; every failure is a [`WireError`] with a
//!   stable [`ErrorCode`].
//! - [`client::Client`] (feature `client`): connect with a token, send and receive typed
//!   frames.
//! - [`examples`]: one example of every frame.

mod client_msg;
mod codec;
mod error;
pub mod examples;
mod ids;
pub mod model;
mod protocol;
mod server_msg;
mod validate;

#[cfg(feature = "client")]
pub mod client;

pub use client_msg::*;
pub use codec::{
    Encoding, Frame, PROTOCOL_VERSION, decode, decode_value, echo_ref, encode, encode_into,
    encode_json, encode_value,
};
pub use error::{ErrorCode, WireError};
pub use ids::{AssociateId, FeedbackId, InvoiceId, OrderId, PartyId, PaymentId, RequestId, UserId};
pub use server_msg::*;
pub use validate::{Limits, TaskCatalog, Validate, Validator};
