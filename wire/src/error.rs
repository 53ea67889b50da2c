//! Stable error codes and the crate's error type.

use serde::{Deserialize, Serialize};
use thiserror::Error;

macro_rules! error_codes {
    ($( $(#[$meta:meta])* $variant:ident = $code:literal, )*) => {
        /// A stable, machine-readable error code, sent in `error` frames and HTTP errors.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(rename_all = "snake_case")]
        pub enum ErrorCode {
            $( $(#[$meta])* $variant, )*
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            /// The code as it appears on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( ErrorCode::$variant => $code, )*
                }
            }
        }
    };
}

error_codes! {
    /// The frame is not valid JSON, or not a valid binary frame.
    BadFrame = "bad_frame",
    /// A text frame or string is not valid UTF-8.
    InvalidUtf8 = "invalid_utf8",
    /// The frame has no `type`, or one this protocol does not know.
    UnknownType = "unknown_type",
    /// A required field is missing.
    MissingField = "missing_field",
    /// A field has the wrong type or an impossible value.
    BadField = "bad_field",
    /// Coordinates are NaN, infinite or out of range.
    BadCoordinates = "bad_coordinates",
    /// The task type is not offered.
    UnknownTaskType = "unknown_task_type",
    /// An amount is negative.
    NegativeAmount = "negative_amount",
    /// An amount is above the allowed maximum.
    AmountTooLarge = "amount_too_large",
    /// A string or list is longer than allowed.
    TooLong = "too_long",
    /// The frame is over the size limit (the connection is closed).
    FrameTooLarge = "frame_too_large",
    /// A text frame on a binary session or the reverse.
    WrongEncoding = "wrong_encoding",
    /// Missing, invalid or expired credentials.
    Unauthorized = "unauthorized",
    /// The sender's role may not send this frame.
    WrongRole = "wrong_role",
    /// The offer does not exist or is not addressed to the sender.
    NotYourOffer = "not_your_offer",
    /// The order does not exist or the sender is not a party to it.
    NotYourOrder = "not_your_order",
    /// The request does not exist or is not the sender's.
    UnknownRequest = "unknown_request",
    /// The frame is not valid in the current state (of the order, offer or associate).
    InvalidState = "invalid_state",
    /// The start PIN is wrong.
    WrongPin = "wrong_pin",
    /// Too many wrong PINs; wait before trying again.
    PinLocked = "pin_locked",
    /// Too many frames; slow down.
    RateLimited = "rate_limited",
    /// The user already has an open request or order.
    AlreadyActive = "already_active",
    /// The party already left feedback for this order.
    AlreadyRated = "already_rated",
    /// The discount code does not exist, has expired or does not apply.
    BadDiscountCode = "bad_discount_code",
    /// The cash amount does not cover the invoice.
    InsufficientAmount = "insufficient_amount",
    /// The payment gateway did not answer; the payment stays pending.
    GatewayUnavailable = "gateway_unavailable",
    /// The party is not known (no profile).
    UnknownParty = "unknown_party",
    /// The engine is overloaded; retry later.
    Overloaded = "overloaded",
    /// The engine is shutting down.
    ShuttingDown = "shutting_down",
    /// An internal error; nothing was changed.
    Internal = "internal",
    /// A payment of this order is pending at the gateway; wait for its result.
    PaymentPending = "payment_pending",
    /// An HTTP body is not valid JSON, or not sent as `application/json`.
    BadJson = "bad_json",
    /// No such resource (HTTP).
    NotFound = "not_found",
    /// A resource with that id or key already exists (HTTP).
    AlreadyExists = "already_exists",
}

/// A frame that could not be decoded or failed validation.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{code}: {detail}", code = code.as_str())]
pub struct WireError {
    /// The stable code.
    pub code: ErrorCode,
    /// What exactly was wrong, naming the field where there is one.
    pub detail: String,
}

impl WireError {
    /// An error with `code` and `detail`.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
        }
    }
}
