//! Waiting for the disk from actor code.

use crate::error::ActorError;

/// Resolves once `ticket`'s write is durable. The wait runs on tokio's blocking pool:
/// a paused test clock does not auto-advance while a blocking task runs, so timers
/// (offer windows, deadlines) never jump ahead while the disk works.
pub(crate) async fn durable(ticket: storage::Ticket) -> Result<(), ActorError> {
    match tokio::task::spawn_blocking(move || ticket.wait()).await {
        Ok(written) => written.map_err(ActorError::from),
        Err(e) => Err(ActorError::Internal(format!("waiting for the disk: {e}"))),
    }
}

/// Writes with `write` and waits until durable.
pub(crate) async fn write(
    write: Result<storage::Ticket, storage::StorageError>,
) -> Result<(), ActorError> {
    durable(write?).await
}
