//! Engine integration tests over real sockets on 127.0.0.1, port 0.

mod cluster;
mod contract;
mod crash;
mod deploy;
mod documented;
mod flow;
mod harness;
mod http_api;
mod moving_up;
mod ops;
mod process;
mod restart;
mod sockets;
mod stalls;
mod steps;
