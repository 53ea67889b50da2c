//! The registry of connected apps: where actors send frames for a party.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use dashmap::DashMap;
use tokio::sync::{Notify, mpsc};
use wire::{AssociateId, PartyId, ServerMessage, UserId};

/// A frame on its way to a connection (shared, so a broadcast does not copy it).
pub type Outbound = Arc<ServerMessage>;

/// The outbound queue of one connection: bounded, so a slow reader cannot grow memory.
#[derive(Debug, Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Outbound>,
    signals: Arc<Signals>,
    /// Distinguishes connections of the same party.
    pub connection: u64,
}

/// What the connection's owner must react to.
#[derive(Debug, Default)]
pub struct Signals {
    /// The queue was full: the reader is too slow and the connection must close.
    pub overflow: Notify,
    /// A newer connection of the same party took over.
    pub replaced: Notify,
}

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undelivered {
    /// The party has no connection.
    Offline,
    /// The connection's queue is full: the reader is too slow and will be dropped.
    Full,
}

impl Outbox {
    /// A queue of `capacity` frames and its receiving end.
    pub fn channel(capacity: usize) -> (Self, mpsc::Receiver<Outbound>) {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let (tx, rx) = mpsc::channel(capacity);
        let connection = NEXT.fetch_add(1, Ordering::Relaxed);
        let signals = Arc::new(Signals::default());
        (
            Self {
                tx,
                signals,
                connection,
            },
            rx,
        )
    }

    /// Queues a frame without waiting. A full queue signals overflow: frames are never
    /// dropped silently; the connection closes and the app re-syncs on reconnect.
    pub fn push(&self, frame: Outbound) -> Result<(), Undelivered> {
        self.tx.try_send(frame).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                self.signals.overflow.notify_one();
                Undelivered::Full
            }
            mpsc::error::TrySendError::Closed(_) => Undelivered::Offline,
        })?;
        crate::telemetry::outbox_depth(self.tx.max_capacity() - self.tx.capacity());
        Ok(())
    }

    /// The signals the connection's owner waits on.
    pub fn signals(&self) -> Arc<Signals> {
        self.signals.clone()
    }

    /// Tells the connection a newer one replaced it.
    pub fn replace(&self) {
        self.signals.replaced.notify_one();
    }

    /// Whether the connection's reader is gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// In cluster mode, where frames for parties connected to other nodes go, and who
/// hears of parties connecting here.
pub trait Relay: std::fmt::Debug + Send + Sync + 'static {
    /// A frame for a party with no connection here.
    fn frame(&self, party: PartyId, frame: ServerMessage);
    /// `party` connected here (no earlier connection of theirs is here).
    fn attached(&self, party: PartyId);
    /// `party`'s last connection here ended.
    fn detached(&self, party: PartyId);
}

/// Connected parties, at most one connection each; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Sessions {
    inner: Arc<DashMap<PartyId, Outbox>>,
    relay: Arc<OnceLock<Arc<dyn Relay>>>,
}

impl Sessions {
    /// Sends frames for parties not connected here through `relay` (once, at start-up).
    pub fn set_relay(&self, relay: Arc<dyn Relay>) {
        let _ = self.relay.set(relay);
    }

    /// Registers `party`'s connection, returning the one it replaces.
    pub fn attach(&self, party: PartyId, outbox: Outbox) -> Option<Outbox> {
        let old = self.inner.insert(party, outbox);
        if old.is_none()
            && let Some(relay) = self.relay.get()
        {
            relay.attached(party);
        }
        old
    }

    /// Removes `party`'s connection if it is still `connection`; true if removed.
    pub fn detach(&self, party: PartyId, connection: u64) -> bool {
        let removed = self
            .inner
            .remove_if(&party, |_, o| o.connection == connection)
            .is_some();
        if removed && let Some(relay) = self.relay.get() {
            relay.detached(party);
        }
        removed
    }

    /// Ends `party`'s connection here, if any, because a newer one elsewhere took over.
    pub fn replace_here(&self, party: PartyId) {
        if let Some((_, old)) = self.inner.remove(&party) {
            old.replace();
        }
    }

    /// Queues a frame for `party` if they are connected here.
    pub fn send_here(&self, party: PartyId, frame: ServerMessage) -> Result<(), Undelivered> {
        // Clone the sender out so the map shard is not locked while queueing.
        let outbox = self.inner.get(&party).map(|o| o.clone());
        match outbox {
            Some(o) => o.push(Arc::new(frame)),
            None => Err(Undelivered::Offline),
        }
    }

    /// Whether `party` is connected.
    pub fn is_connected(&self, party: PartyId) -> bool {
        self.inner.get(&party).is_some_and(|o| !o.is_closed())
    }

    /// Queues a frame for `party`: here if they are connected here, else (in cluster
    /// mode) for whichever node holds their connection.
    pub fn send(&self, party: PartyId, frame: ServerMessage) -> Result<(), Undelivered> {
        if !self.inner.contains_key(&party)
            && let Some(relay) = self.relay.get()
        {
            relay.frame(party, frame);
            return Ok(());
        }
        self.send_here(party, frame)
    }

    /// Queues a frame for a user, ignoring absence (state is re-sent on reconnect).
    pub fn to_user(&self, user: UserId, frame: impl Into<ServerMessage>) {
        let _ = self.send(PartyId::User(user), frame.into());
    }

    /// Queues a frame for an associate, ignoring absence (state is re-sent on reconnect).
    pub fn to_associate(&self, associate: AssociateId, frame: impl Into<ServerMessage>) {
        let _ = self.send(PartyId::Associate(associate), frame.into());
    }

    /// How many users and how many associates are connected here.
    pub fn count_by_role(&self) -> (usize, usize) {
        let users = self
            .inner
            .iter()
            .filter(|e| matches!(e.key(), PartyId::User(_)))
            .count();
        (users, self.inner.len() - users)
    }

    /// How many parties are connected.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether nobody is connected.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// Queues `frame` for every connected party (shutdown notices).
    pub fn broadcast(&self, frame: ServerMessage) {
        let frame = Arc::new(frame);
        for entry in self.inner.iter() {
            let _ = entry.value().push(frame.clone());
        }
    }
}
