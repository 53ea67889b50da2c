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
