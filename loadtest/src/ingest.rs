//! Location ingest: many connections sending location frames as fast as they can, once
//! to the engine (frame → session → associate actor → index) and once to a bare
//! tokio-tungstenite server that only counts frames, with the same client in the same run.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use wire::client::{Client, ConnectOptions};
use wire::model::Point;
use wire::{ClientMessage, Encoding};

use crate::target::{Target, source_ip};

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

/// The ingest comparison.
#[derive(Debug, Clone, Serialize)]
pub struct IngestReport {
    /// Connections.
    pub connections: usize,
    /// Seconds each side was driven.
    pub seconds: f64,
    /// Frames/s the bare server counted.
    pub ceiling_per_s: f64,
    /// Location frames/s the engine received (decoded and validated by sessions).
    pub engine_received_per_s: f64,
    /// Position updates/s applied to the availability index (end to end).
    pub engine_per_s: f64,
    /// Engine frames received over the ceiling's.
    pub ratio: f64,
}

async fn blast(clients: Vec<Client>, frame: ClientMessage, seconds: f64) -> u64 {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for client in clients {
        let (mut tx, mut rx) = client.split();
        let stop = stop.clone();
        let frame = frame.clone();
        // Read whatever comes back so the server never blocks on us.
        tokio::spawn(async move { while rx.recv().await.is_ok() {} });
        tasks.push(tokio::spawn(async move {
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if tx.send(frame.clone()).await.is_err() {
                    break;
                }
                sent += 1;
            }
            sent
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap_or(0);
    }
    total
}

/// Connects `n` raw clients to `url` (the ceiling takes any upgrade).
async fn raw_clients(url: &str, n: usize, spread: usize) -> anyhow::Result<Vec<Client>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let options = ConnectOptions {
            url: url.to_owned(),
            token: "ceiling".into(),
            encoding: Encoding::Json,
            local_ip: source_ip(i, spread),
            recv_buffer_bytes: None,
        };
        out.push(Client::connect_with(&options).await?);
    }
    Ok(out)
}

/// The sum of the engine's counter `name` (all label sets) from its metrics endpoint.
async fn engine_counter(target: &Target, name: &str) -> anyhow::Result<u64> {
    let r = wire::client::http_api::request(target.http, "GET", "/metrics", &[], None).await?;
    Ok(r.text
        .lines()
        .filter(|l| {
            l.starts_with(name)
                && (name != "speedy_frames_received_total" || l.contains("type=\"location\""))
        })
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum::<f64>() as u64)
}

/// Runs the comparison: `connections` clients for `seconds` against each side.
pub async fn compare(
    target: &Target,
    connections: usize,
    seconds: f64,
    spread: usize,
) -> anyhow::Result<IngestReport> {
    let frame: ClientMessage = wire::Location {
        point: Point {
            lat: 12.9716,
            lng: 77.5946,
        },
        accuracy_m: Some(5),
    }
    .into();
    // The ceiling first, with the same client code and frame.
    let ceiling = Ceiling::start().await?;
    let clients = raw_clients(&format!("ws://{}/", ceiling.addr), connections, spread).await?;
    let before = ceiling.frames.load(Ordering::Relaxed);
    let t = Instant::now();
    blast(clients, frame.clone(), seconds).await;
    let ceiling_frames = ceiling.frames.load(Ordering::Relaxed) - before;
    let ceiling_secs = t.elapsed().as_secs_f64();
    drop(ceiling);

    // The engine: online associates, so every frame goes through the actor to the index.
    let associates = target
        .create_many(connections, 16, |i| {
            let target = target.clone();
            async move { target.associate(i, &["companion".to_owned()]).await }
        })
        .await?;
    let mut clients = Vec::with_capacity(connections);
    for (i, (_, token)) in associates.iter().enumerate() {
        let options = ConnectOptions {
            url: target.ws_url(),
            token: token.clone(),
            encoding: Encoding::Json,
            local_ip: source_ip(i, spread),
            recv_buffer_bytes: None,
        };
        let mut c = Client::connect_with(&options).await?;
        c.send(wire::GoOnline { skills: vec![] }).await?;
        clients.push(c);
    }
    // Received: decoded and validated by sessions. Applied: moved in an availability
    // index, the end of the path (the actors coalesce a burst to its newest position).
    let received_before = engine_counter(target, "speedy_frames_received_total").await?;
    let applied_before = engine_counter(target, "speedy_index_updates_total").await?;
    let t = Instant::now();
    blast(clients, frame, seconds).await;
    let engine_secs = t.elapsed().as_secs_f64();
    // Let queued updates be applied.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = engine_counter(target, "speedy_frames_received_total").await? - received_before;
    let applied = engine_counter(target, "speedy_index_updates_total").await? - applied_before;
    let ceiling_per_s = ceiling_frames as f64 / ceiling_secs;
    let engine_received_per_s = received as f64 / engine_secs;
    Ok(IngestReport {
        connections,
        seconds,
        ceiling_per_s,
        engine_received_per_s,
        engine_per_s: applied as f64 / engine_secs,
        ratio: engine_received_per_s / ceiling_per_s.max(1.0),
    })
}
