//! Integration tests of the protocol: malformed input, properties, docs coverage.

mod docs;
mod malformed;
mod props;

use wire::{TaskCatalog, Validator};

/// The validator the tests decode with: the sample task catalog.
pub fn validator() -> Validator {
    Validator::new(TaskCatalog::new(["companion", "helper", "errand"]).unwrap())
}
