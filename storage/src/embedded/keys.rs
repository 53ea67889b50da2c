//! Byte keys: big-endian so that sled's byte order is the natural order.

use wire::{OrderId, PaymentId, UserId};

/// The key of an order's event `seq`: order id then sequence.
pub(crate) fn event_key(order: OrderId, seq: u32) -> [u8; 20] {
    let mut key = [0u8; 20];
    key[..16].copy_from_slice(&order.to_bytes());
    key[16..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// The key of an order in the ended index: end time then order id.
pub(crate) fn ended_key(ended_at_ms: u64, order: OrderId) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..8].copy_from_slice(&ended_at_ms.to_be_bytes());
    key[8..].copy_from_slice(&order.to_bytes());
    key
}

/// The key of a user's idempotency key: user id then the key's bytes.
pub(crate) fn idempotency_key(user: UserId, key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + key.len());
    out.extend_from_slice(&user.to_bytes());
    out.extend_from_slice(key.as_bytes());
    out
}

/// The key of one party's app feedback on an order: order id then role byte.
pub(crate) fn app_feedback_key(order: OrderId, about: wire::model::Role) -> [u8; 17] {
    let mut key = [0u8; 17];
    key[..16].copy_from_slice(&order.to_bytes());
    key[16] = match about {
        wire::model::Role::User => 0,
        wire::model::Role::Associate => 1,
    };
    key
}

/// The key of a discount redemption: code, a zero byte, then the user id.
pub(crate) fn redemption_key(code: &str, user: UserId) -> Vec<u8> {
    let mut out = Vec::with_capacity(code.len() + 17);
    out.extend_from_slice(code.as_bytes());
    out.push(0);
    out.extend_from_slice(&user.to_bytes());
    out
}

/// The key of a payment in the by-order index: order id then payment id.
pub(crate) fn order_payment_key(order: OrderId, payment: PaymentId) -> [u8; 32] {
    let mut key = [0u8; 32];
    key[..16].copy_from_slice(&order.to_bytes());
    key[16..].copy_from_slice(&payment.to_bytes());
    key
}

/// The key of external feedback in its idempotency index: order id, the rated role,
/// then the source's name.
pub(crate) fn external_feedback_key(
    order: OrderId,
    about: wire::model::Role,
    source: &str,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(17 + source.len());
    out.extend_from_slice(&app_feedback_key(order, about));
    out.extend_from_slice(source.as_bytes());
    out
}

/// The key of an order in a party's index: the party's id then the order id.
pub(crate) fn party_order_key(party: uuid::Uuid, order: OrderId) -> [u8; 32] {
    let mut key = [0u8; 32];
    key[..16].copy_from_slice(party.as_bytes());
    key[16..].copy_from_slice(&order.to_bytes());
    key
}
