//! Resident memory per idle connected associate: the engine binary runs as a child; its
//! RSS is read before and after `n` associates connect, go online and report once.

use std::time::Duration;

use serde::Serialize;
use wire::client::{Client, ConnectOptions};
use wire::model::Point;
use wire::{Encoding, ServerMessage};

use crate::target::{ChildEngine, source_ip};

/// The measurement.
#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    /// Connected associates.
    pub connections: usize,
    /// Engine RSS with profiles created, before anyone connected.
    pub rss_before_bytes: u64,
    /// Engine RSS with everyone connected and idle.
    pub rss_after_bytes: u64,
    /// The difference per connection.
    pub bytes_per_connection: f64,
}

/// Connects `n` associates to `engine` and measures.
pub async fn measure(engine: &ChildEngine, n: usize, spread: usize) -> anyhow::Result<IdleReport> {
    let target = &engine.target;
    let associates = target
        .create_many(n, 32, |i| {
            let target = target.clone();
            async move { target.associate(i, &["companion".to_owned()]).await }
        })
        .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = engine.rss_bytes()?;
    let mut clients = Vec::with_capacity(n);
    for (i, (_, token)) in associates.iter().enumerate() {
        let options = ConnectOptions {
            url: target.ws_url(),
            token: token.clone(),
            encoding: Encoding::Json,
            local_ip: source_ip(i, spread),
            recv_buffer_bytes: Some(4096),
        };
        let mut c = Client::connect_with(&options).await?;
        let lat = 12.85 + (i % 500) as f64 * 0.0005;
        let lng = 77.45 + (i / 500) as f64 * 0.0005;
        c.send(wire::Location {
            point: Point { lat, lng },
            accuracy_m: None,
        })
        .await?;
        c.send(wire::GoOnline { skills: vec![] }).await?;
        clients.push(c);
    }
    // Every associate has been answered (welcome, status): the engine holds them all.
    for c in &mut clients {
        c.recv_until(Duration::from_secs(30), |m| matches!(m, ServerMessage::Status(s) if s.availability == wire::model::Availability::Available).then_some(())).await?;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = engine.rss_bytes()?;
    let report = IdleReport {
        connections: n,
        rss_before_bytes: rss_before,
        rss_after_bytes: rss_after,
        bytes_per_connection: rss_after.saturating_sub(rss_before) as f64 / n.max(1) as f64,
    };
    drop(clients);
    Ok(report)
}
