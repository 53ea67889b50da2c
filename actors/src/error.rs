//! The crate's error type, with the protocol code each error is reported as.

use thiserror::Error;
use wire::ErrorCode;

/// Why a dispatch or order operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error, serde::Serialize, serde::Deserialize)]
pub enum ActorError {
    /// The offer is not (or no longer) addressed to this associate.
    #[error("no open offer of that request for you")]
    NotYourOffer,
    /// The request does not exist or is not this user's.
    #[error("no such open request of yours")]
    UnknownRequest,
    /// The user already has an open request or order.
    #[error("{0}")]
    AlreadyActive(String),
    /// The order does not exist or the party is not on it.
    #[error("no such order of yours")]
    NotYourOrder,
    /// Not valid in the current state.
    #[error("{0}")]
    InvalidState(String),
    /// Wrong start PIN.
    #[error("wrong PIN")]
    WrongPin,
    /// Too many wrong PINs.
    #[error("too many wrong PINs; try again in {0} s")]
    PinLocked(u64),
    /// The party has no profile.
    #[error("unknown party: create the profile first")]
    UnknownParty,
    /// Feedback already given.
    #[error("you already rated this order")]
    AlreadyRated,
    /// The discount code does not apply.
    #[error("discount code: {0}")]
    BadDiscountCode(String),
    /// Cash does not cover the invoice.
    #[error("{0}")]
    InsufficientAmount(String),
    /// The gateway did not answer; the payment stays pending.
    #[error("payment gateway did not answer; the payment is pending")]
    GatewayUnavailable,
    /// Another payment of the order is pending at the gateway.
    #[error(
        "payment {0} of this order is pending at the gateway; its result comes as payment_result (retry with its idempotency key to ask again)"
    )]
    PaymentPending(wire::PaymentId),
    /// The task type is unknown.
    #[error("unknown task type")]
    UnknownTaskType,
    /// The engine is shutting down.
    #[error("shutting down")]
    ShuttingDown,
    /// A setting is invalid.
    #[error("invalid setting: {0}")]
    InvalidConfig(String),
    /// Something failed inside; nothing was changed.
    #[error("internal error: {0}")]
    Internal(String),
    /// In cluster mode, the node serving this did not answer in time; try again.
    #[error("another node did not answer in time ({0}); try again")]
    PeerUnavailable(String),
}

impl ActorError {
    /// The protocol error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            ActorError::NotYourOffer => ErrorCode::NotYourOffer,
            ActorError::UnknownRequest => ErrorCode::UnknownRequest,
            ActorError::AlreadyActive(_) => ErrorCode::AlreadyActive,
            ActorError::NotYourOrder => ErrorCode::NotYourOrder,
            ActorError::InvalidState(_) => ErrorCode::InvalidState,
            ActorError::WrongPin => ErrorCode::WrongPin,
            ActorError::PinLocked(_) => ErrorCode::PinLocked,
            ActorError::UnknownParty => ErrorCode::UnknownParty,
            ActorError::AlreadyRated => ErrorCode::AlreadyRated,
            ActorError::BadDiscountCode(_) => ErrorCode::BadDiscountCode,
            ActorError::InsufficientAmount(_) => ErrorCode::InsufficientAmount,
            ActorError::GatewayUnavailable => ErrorCode::GatewayUnavailable,
            ActorError::PaymentPending(_) => ErrorCode::PaymentPending,
            ActorError::UnknownTaskType => ErrorCode::UnknownTaskType,
            ActorError::ShuttingDown => ErrorCode::ShuttingDown,
            ActorError::PeerUnavailable(_) => ErrorCode::Overloaded,
            ActorError::InvalidConfig(_) | ActorError::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl From<actix::MailboxError> for ActorError {
    fn from(e: actix::MailboxError) -> Self {
        ActorError::Internal(format!("actor unavailable: {e}"))
    }
}

impl From<storage::StorageError> for ActorError {
    fn from(e: storage::StorageError) -> Self {
        match e {
            storage::StorageError::InvalidTransition { from, to } => {
                ActorError::InvalidState(format!(
                    "the order is {} and cannot become {}",
                    from.as_str(),
                    to.as_str()
                ))
            }
            other => ActorError::Internal(other.to_string()),
        }
    }
}
