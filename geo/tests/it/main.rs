//! Integration tests of the geo core: property tests against brute force.

mod bad_input;
mod nearest;
mod scenario;
mod shards;
