//! Wall-clock milliseconds that follow tokio's clock, so paused-time tests see offer
//! expiry times advance with the timers that enforce them.

use std::time::{SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use wire::model::UnixMs;

/// Maps tokio's monotonic clock to Unix milliseconds from a fixed origin.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin_ms: UnixMs,
    origin: Instant,
}

impl Clock {
    /// A clock anchored at the current system time.
    pub fn system() -> Self {
        let origin_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as UnixMs)
            .unwrap_or(0);
        Self::starting_at(origin_ms)
    }

    /// A clock that reads `origin_ms` now (for tests).
    pub fn starting_at(origin_ms: UnixMs) -> Self {
        Self {
            origin_ms,
            origin: Instant::now(),
        }
    }

    /// Now, in Unix milliseconds.
    pub fn now_ms(&self) -> UnixMs {
        self.origin_ms + self.origin.elapsed().as_millis() as UnixMs
    }

    /// Unix milliseconds of a tokio instant.
    pub fn ms_at(&self, at: Instant) -> UnixMs {
        match at.checked_duration_since(self.origin) {
            Some(d) => self.origin_ms + d.as_millis() as UnixMs,
            None => self
                .origin_ms
                .saturating_sub(self.origin.duration_since(at).as_millis() as UnixMs),
        }
    }
}
