//! Integration tests of dispatch, in paused tokio time: offer windows of 45 s run in
//! microseconds and land exactly on time.

mod harness;
mod idle;
mod offer_loop;
mod overlaps;
mod payments;

mod simulation;
