//! The floor of location ingest: a bare tokio-tungstenite server that only counts the
//! frames it receives (see [`crate::paced`] for the comparison with the engine).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::StreamExt;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};

/// A bare WebSocket server that counts the frames it receives.
pub struct Ceiling {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Frames received so far.
    pub frames: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Ceiling {
    /// Starts the counting server on 127.0.0.1:0.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let frames = Arc::new(AtomicU64::new(0));
        let counter = frames.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let _ = stream.set_nodelay(true);
                    let Ok(mut ws) =
                        tokio_tungstenite::accept_hdr_async(stream, echo_protocol).await
                    else {
                        return;
                    };
                    while let Some(Ok(m)) = ws.next().await {
                        if matches!(m, Message::Text(_) | Message::Binary(_)) {
                            counter.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        Ok(Self { addr, frames, task })
    }
}

impl Drop for Ceiling {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Agrees to the client's first subprotocol, as any server must.
#[expect(
    clippy::result_large_err,
    reason = "the callback signature is tungstenite's"
)]
fn echo_protocol(req: &Request, mut resp: Response) -> Result<Response, ErrorResponse> {
    let offered = req
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|p| p.to_str().ok());
    if let Some(first) = offered.and_then(|p| p.split(',').next())
        && let Ok(value) = first.trim().parse()
    {
        resp.headers_mut().insert("sec-websocket-protocol", value);
    }
    Ok(resp)
}
