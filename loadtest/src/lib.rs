//! The Speedy Cheers simulator: many simulated apps driving an engine over real
//! WebSockets, and the measurements the performance report is built from.
//!
//! - [`target`]: where the engine is (a URL with an admin key, an engine started in this
//!   process, or the engine binary started as a child), and creating parties on it.
//! - [`flow`]: the full-flow simulation: associates moving and answering offers, users
//!   arriving as a Poisson process, orders run through to payment and feedback.
//! - [`scrape`]: the engine's own Prometheus histograms, read over HTTP.
//! - [`stats`]: counters and latency histograms; [`report`]: JSON and SVG reports.
//! - [`paced`]: location ingest, paced, with the engine and a bare WebSocket server
//!   ([`ingest`]) each its own process on a pinned core: CPU per frame, and the ratio.
//! - [`instructions`]: instructions per location frame, the engine under callgrind.
//! - [`latency`]: request → first offer over real sockets while associates move.
//! - [`idle`]: resident memory per idle connected associate.
//! - [`soak`]: a long run of churn (associates, worldwide requests, abandoned orders)
//!   after which memory and actor counts must be back where they were.

pub mod failover;
pub mod flow;
pub mod idle;
pub mod ingest;
pub mod instructions;
pub mod latency;
pub mod paced;
pub mod report;
pub mod scrape;
pub mod soak;
pub mod stats;
pub mod target;
