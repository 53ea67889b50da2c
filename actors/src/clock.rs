//! Wall-clock time for what is stored and shown (event times, offer expiries), beside
//! tokio's monotonic clock for timers.
//!
//! In production every reading comes from the system clock at the moment of the event,
//! so stored times stay right across restarts and clock corrections. Tests use a clock
//! that follows tokio's (pausable) clock from a fixed origin, so offer expiry times
//! advance with the timers that enforce them.

use std::time::{SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use wire::model::UnixMs;

/// Unix milliseconds now, and of a tokio instant.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    kind: Kind,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A wall clock, read at every call: the system's, or a stand-in (tests).
    Wall(fn() -> UnixMs),
    /// `origin_ms` at `origin`, advancing with tokio's clock (tests).
    Following { origin_ms: UnixMs, origin: Instant },
}

/// The system clock now, in Unix milliseconds.
fn system_now_ms() -> UnixMs {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as UnixMs)
        .unwrap_or(0)
}

impl Clock {
    /// The system's wall clock.
    pub fn system() -> Self {
        Self::wall(system_now_ms)
    }

    /// A clock that reads `source` at every call, as the system clock reads the system's
    /// (for tests that step the wall clock).
    pub fn wall(source: fn() -> UnixMs) -> Self {
        Self {
            kind: Kind::Wall(source),
        }
    }

    /// A clock that reads `origin_ms` now and advances with tokio's clock (for tests
    /// under a paused clock).
    pub fn starting_at(origin_ms: UnixMs) -> Self {
        Self {
            kind: Kind::Following {
                origin_ms,
                origin: Instant::now(),
            },
        }
    }

    /// Now, in Unix milliseconds.
    pub fn now_ms(&self) -> UnixMs {
        match self.kind {
            Kind::Wall(read) => read(),
            Kind::Following { origin_ms, origin } => {
                origin_ms + origin.elapsed().as_millis() as UnixMs
            }
        }
    }

    /// Unix milliseconds of a tokio instant: now, moved by how far `at` is from now.
    pub fn ms_at(&self, at: Instant) -> UnixMs {
        let now = Instant::now();
        let now_ms = self.now_ms();
        match at.checked_duration_since(now) {
            Some(ahead) => now_ms + ahead.as_millis() as UnixMs,
            None => now_ms.saturating_sub(now.duration_since(at).as_millis() as UnixMs),
        }
    }

    /// The tokio instant of a Unix time: now, moved by how far `ms` is from now (a time
    /// in the past is now).
    pub fn instant_at(&self, ms: UnixMs) -> Instant {
        let now = Instant::now();
        now + std::time::Duration::from_millis(ms.saturating_sub(self.now_ms()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_reads_the_wall_clock_at_each_call() {
        let clock = Clock::system();
        let before = system_now_ms();
        let read = clock.now_ms();
        let after = system_now_ms();
        assert!((before..=after).contains(&read));
    }

    /// A wall clock that tests step by hand, as NTP or an operator may step the real one.
    static WALL_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

    fn stepped_wall() -> UnixMs {
        WALL_MS.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[tokio::test(start_paused = true)]
    async fn a_wall_clock_step_moves_stored_times_and_the_timers_set_from_them() {
        use std::sync::atomic::Ordering::SeqCst;
        use std::time::Duration;
        WALL_MS.store(1_000_000, SeqCst);
        let clock = Clock::wall(stepped_wall);
        // A window stored as a wall time a minute ahead.
        let deadline_ms = clock.now_ms() + 60_000;
        assert_eq!(
            clock.instant_at(deadline_ms),
            Instant::now() + Duration::from_secs(60)
        );
        // The wall clock is corrected 30 s forward with no monotonic time passing (an
        // anchor taken at boot would not see it): readings and timers follow it.
        WALL_MS.store(1_030_000, SeqCst);
        assert_eq!(clock.now_ms(), 1_030_000);
        assert_eq!(
            clock.instant_at(deadline_ms),
            Instant::now() + Duration::from_secs(30)
        );
        assert_eq!(
            clock.ms_at(Instant::now() + Duration::from_secs(5)),
            1_035_000
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_following_clock_moves_with_tokio_time() {
        let clock = Clock::starting_at(1_000);
        tokio::time::advance(std::time::Duration::from_secs(45)).await;
        assert_eq!(clock.now_ms(), 46_000);
        let later = Instant::now() + std::time::Duration::from_secs(5);
        assert_eq!(clock.ms_at(later), 51_000);
        assert_eq!(clock.instant_at(51_000), later);
        assert_eq!(clock.instant_at(0), Instant::now());
    }
}
