//! The order event log on JetStream: one stream, one subject per order
//! (`speedy.orders.<order id>`), so a reconnecting app asks for an order's events after
//! the last stream sequence it saw and gets exactly the ones it missed, in order.
//! Appends carry a message id (`<order>:<event seq>`), so a retried append within the
//! stream's duplicate window is stored once.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::error::{ClusterError, nats};

/// The stream of order events.
pub const EVENTS_STREAM: &str = "speedy_order_events";

/// How long a retried append is recognised as a duplicate.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// One event as the log holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    /// Its position in the stream (the cursor an app resumes after).
    pub sequence: u64,
    /// The event as appended.
    pub payload: bytes::Bytes,
}

/// The event log.
#[derive(Debug, Clone)]
pub struct EventLog {
    js: jetstream::Context,
    stream: stream::Stream,
}

fn subject(order: &str) -> String {
    format!("speedy.orders.{order}")
}

impl EventLog {
    /// Opens (or creates) the stream.
    pub async fn open(js: &jetstream::Context) -> Result<Self, ClusterError> {
        let stream = js
            .get_or_create_stream(stream::Config {
                name: EVENTS_STREAM.into(),
                subjects: vec!["speedy.orders.*".into()],
                storage: stream::StorageType::File,
                allow_direct: true,
                duplicate_window: DUPLICATE_WINDOW,
                ..Default::default()
            })
            .await
            .map_err(|e| nats("the events stream", e))?;
        Ok(Self {
            js: js.clone(),
            stream,
        })
    }

    /// Appends event `seq` of `order`; returns its stream sequence once JetStream has
    /// stored it (the same sequence again for a retried append).
    pub async fn append(
        &self,
        order: &str,
        seq: u32,
        payload: bytes::Bytes,
    ) -> Result<u64, ClusterError> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            format!("{order}:{seq}").as_str(),
        );
        let ack = self
            .js
            .publish_with_headers(subject(order), headers, payload)
            .await
            .map_err(|e| nats("appending an event", e))?
            .await
            .map_err(|e| nats("appending an event", e))?;
        Ok(ack.sequence)
    }

    /// The order's events after stream sequence `after` (0: all), in order.
    pub async fn after(&self, order: &str, after: u64) -> Result<Vec<Logged>, ClusterError> {
        let subject = subject(order);
        let mut out = Vec::new();
        let mut next = after + 1;
        loop {
            let message = match self
                .stream
                .direct_get_next_for_subject(&subject, Some(next))
                .await
            {
                Ok(m) => m,
                Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => break,
                Err(e) => return Err(nats("reading events", e)),
            };
            let sequence = message
                .headers
                .as_ref()
                .and_then(|h| h.get(async_nats::header::NATS_SEQUENCE))
                .and_then(|v| v.as_str().parse::<u64>().ok())
                .ok_or_else(|| ClusterError::Nats("a direct get without Nats-Sequence".into()))?;
            out.push(Logged {
                sequence,
                payload: message.payload.clone(),
            });
            next = sequence + 1;
        }
        Ok(out)
    }
}
