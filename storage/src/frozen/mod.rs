//! The frozen layouts of every stored record, shared by both backends: sled stores them
//! as bincode, PostgreSQL as the JSON bodies of its rows.
//!
//! - [`layout`]: the layouts themselves, never edited in place.
//! - [`convert`]: the conversions between them and the records callers see, and the one
//!   encoder and decoder of stored values.

pub(crate) mod convert;
pub(crate) mod layout;
