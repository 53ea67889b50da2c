//! Opening a key-value bucket that several nodes may be creating at the same moment.

use std::time::Duration;

use async_nats::jetstream::{self, kv};

use crate::error::{ClusterError, nats};

/// Attempts before giving up on a bucket that neither opens nor creates.
const ATTEMPTS: u32 = 10;

/// Opens the bucket `config` makes, creating it if it does not exist. Two nodes starting
/// together race to create it, and JetStream refuses the loser: the loser opens the
/// winner's.
pub(crate) async fn open(
    js: &jetstream::Context,
    config: impl Fn() -> kv::Config,
    what: &str,
) -> Result<kv::Store, ClusterError> {
    let mut last = None;
    for attempt in 0..ATTEMPTS {
        match js.create_key_value(config()).await {
            Ok(store) => return Ok(store),
            Err(e) => last = Some(nats(what, e)),
        }
        if let Ok(store) = js.get_key_value(config().bucket).await {
            return Ok(store);
        }
        tokio::time::sleep(Duration::from_millis(20 << attempt.min(4))).await;
    }
    Err(last.unwrap_or_else(|| ClusterError::Nats(format!("{what}: could not open"))))
}
