//! Shutdown as a type: one signal says stop; everyone holding a [`Shutdown`] hears it.

use tokio::sync::watch;

/// The sending side: call [`Trigger::fire`] once to stop everything.
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

/// A listener for the stop signal; cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// A new trigger and its listener.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    /// Tells every listener to stop.
    pub fn fire(&self) {
        let _ = self.0.send(true);
    }
}

impl Shutdown {
    /// Whether the stop signal has been given.
    pub fn is_stopping(&self) -> bool {
        *self.0.borrow()
    }

    /// Waits for the stop signal (returns at once if already given, or if the trigger is gone).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// Counts live sessions so shutdown can wait for them: upgraded WebSockets outlive the
/// HTTP server's own connection tracking.
#[derive(Debug, Clone, Default)]
pub struct Sessions {
    inner: std::sync::Arc<(std::sync::atomic::AtomicUsize, tokio::sync::Notify)>,
}

/// One live session; dropping it counts the session out.
#[derive(Debug)]
pub struct SessionGuard(Sessions);

impl Sessions {
    /// Counts a session in until the guard drops.
    pub fn enter(&self) -> SessionGuard {
        self.inner
            .0
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        SessionGuard(self.clone())
    }

    /// Live sessions now.
    pub fn live(&self) -> usize {
        self.inner.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until no session is live.
    pub async fn drained(&self) {
        loop {
            let notified = self.inner.1.notified();
            if self.live() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        if self
            .0
            .inner
            .0
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst)
            == 1
        {
            self.0.inner.1.notify_waiters();
        }
    }
}
