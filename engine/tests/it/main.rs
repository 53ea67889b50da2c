//! Engine integration tests over real sockets on 127.0.0.1, port 0.

mod harness;
mod flow;
mod http_api;
mod sockets;
