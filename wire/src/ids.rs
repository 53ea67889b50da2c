//! Typed, time-ordered ids (UUIDv7): keys sort by creation time.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh id, ordered after every id made before it by this process.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// The id's 16 bytes, big-endian: byte order equals creation order.
            pub fn to_bytes(self) -> [u8; 16] {
                *self.0.as_bytes()
            }

            /// An id from its 16 bytes.
            pub fn from_bytes(bytes: [u8; 16]) -> Self {
                Self(Uuid::from_bytes(bytes))
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

id_type!(
    /// A user (the party who asks for a task).
    UserId
);
id_type!(
    /// An associate (the party who performs tasks).
    AssociateId
);
id_type!(
    /// An open task request, from creation until allotted, cancelled or expired.
    RequestId
);
id_type!(
    /// An order: an allotted request, from allotment to close.
    OrderId
);
id_type!(
    /// An invoice.
    InvoiceId
);
id_type!(
    /// A payment attempt.
    PaymentId
);
id_type!(
    /// A feedback entry.
    FeedbackId
);

/// Either party's id, as carried in a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(tag = "role", content = "id", rename_all = "snake_case")]
pub enum PartyId {
    /// A user.
    User(UserId),
    /// An associate.
    Associate(AssociateId),
}

impl PartyId {
    /// The party's role.
    pub fn role(self) -> crate::model::Role {
        match self {
            PartyId::User(_) => crate::model::Role::User,
            PartyId::Associate(_) => crate::model::Role::Associate,
        }
    }

    /// The raw UUID.
    pub fn uuid(self) -> Uuid {
        match self {
            PartyId::User(id) => id.0,
            PartyId::Associate(id) => id.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_creation() {
        let ids: Vec<OrderId> = (0..1000).map(|_| OrderId::new()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        let bytes: Vec<[u8; 16]> = ids.iter().map(|i| i.to_bytes()).collect();
        assert!(bytes.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn display_round_trips() {
        let id = UserId::new();
        assert_eq!(id.to_string().parse::<UserId>().unwrap(), id);
        assert!("nope".parse::<UserId>().is_err());
    }
}
