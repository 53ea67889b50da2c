//! The macro that turns a list of `Variant(Payload) = "type"` into a protocol enum:
//! the enum itself (serde-derived, externally tagged, which the binary codec uses), its
//! type names, and the flat `{"type": ..., ...}` JSON mapping.

/// Defines a protocol enum whose variants each carry one payload struct.
macro_rules! protocol_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident($payload:ty) = $tag:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $( $(#[$vmeta])* $variant($payload), )*
        }

        impl $name {
            /// Every frame type name, in binary variant order (append only).
            pub const TYPES: &'static [&'static str] = &[$($tag),*];

            /// This frame's type name.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $( Self::$variant(_) => $tag, )*
                }
            }
        }

        impl crate::codec::Frame for $name {
            fn type_name(&self) -> &'static str {
                $name::type_name(self)
            }

            fn types() -> &'static [&'static str] {
                Self::TYPES
            }

            fn from_json_payload(tag: &str, bytes: &[u8]) -> Option<serde_json::Result<Self>> {
                match tag {
                    $( $tag => Some(serde_json::from_slice::<$payload>(bytes).map(Self::$variant)), )*
                    _ => None,
                }
            }

            fn write_json_payload(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
                match self {
                    $( Self::$variant(p) => serde_json::to_writer(out, p), )*
                }
            }

            fn validate(&self, v: &crate::validate::Validator) -> Result<(), crate::error::WireError> {
                match self {
                    $( Self::$variant(p) => crate::validate::Validate::validate(p, v), )*
                }
            }
        }

        $(
            impl From<$payload> for $name {
                fn from(p: $payload) -> Self {
                    Self::$variant(p)
                }
            }
        )*
    };
}

pub(crate) use protocol_enum;
