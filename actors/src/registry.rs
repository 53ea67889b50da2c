//! Actors by key, started on first use and retired when idle, without losing a message.
//!
//! Every message to a registered actor goes through its registry, which counts it while
//! holding the map's read lock; the actor counts what it handles. An actor may retire
//! only by removing itself under the map's write lock, and only when it has handled
//! every message ever sent to it: then nothing is in its mailbox, and no sender can
//! reach it any more (the next one starts a new actor). Registered actors raise their
//! mailbox capacity so a send always enqueues at once.

use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use actix::dev::ToEnvelope;
use actix::{Actor, Addr, Handler, Message};
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use dashmap::mapref::one::Ref;
use rustc_hash::FxBuildHasher;

/// A mailbox large enough that senders are never parked (a parked send would enqueue
/// later, outside the registry's lock).
pub(crate) const MAILBOX_CAPACITY: usize = 1 << 24;

/// What a registered actor keeps to know when it may retire.
#[derive(Debug)]
pub(crate) struct Mailbox {
    handled: u64,
    /// Messages sent to it through the registry.
    sent: Arc<AtomicU64>,
    /// Where the depth seen at each message goes.
    depth: metrics::Histogram,
}

impl Default for Mailbox {
    fn default() -> Self {
        Self {
            handled: 0,
            sent: Arc::default(),
            depth: metrics::Histogram::noop(),
        }
    }
}

impl Mailbox {
    /// Counts one message handled, recording how many still wait behind it; call at the
    /// top of every handler of a message that came through the registry.
    pub(crate) fn handled(&mut self) {
        self.handled += 1;
        let waiting = self
            .sent
            .load(Ordering::Relaxed)
            .saturating_sub(self.handled);
        self.depth.record(waiting as f64);
    }
}

/// One registered actor.
pub(crate) struct Slot<A: Actor, E> {
    addr: Addr<A>,
    sent: Arc<AtomicU64>,
    /// Whatever else the registry keeps beside the actor.
    pub(crate) extra: E,
}

impl<A: Actor, E> Slot<A, E> {
    /// Sends `msg` without waiting for an answer.
    pub(crate) fn send<M>(&self, msg: M)
    where
        A: Handler<M>,
        A::Context: ToEnvelope<A, M>,
        M: Message + Send + 'static,
        M::Result: Send,
    {
        self.sent.fetch_add(1, Ordering::SeqCst);
        self.addr.do_send(msg);
    }

    /// Sends `msg`; the future resolves to its answer.
    pub(crate) fn ask<M>(&self, msg: M) -> actix::dev::Request<A, M>
    where
        A: Handler<M>,
        A::Context: ToEnvelope<A, M>,
        M: Message + Send + 'static,
        M::Result: Send,
    {
        self.sent.fetch_add(1, Ordering::SeqCst);
        self.addr.send(msg)
    }
}

/// Registered actors of one kind, by key.
pub(crate) struct Registry<K: Hash + Eq, A: Actor, E> {
    /// Keys are server-issued ids and H3 cells, not chosen by clients: a fast hash.
    map: DashMap<K, Slot<A, E>, FxBuildHasher>,
    /// The gauge counting them.
    gauge: &'static str,
    /// Their mailboxes' depths.
    depth: metrics::Histogram,
}

impl<K: Hash + Eq + Clone, A: Actor, E> Registry<K, A, E> {
    /// An empty registry whose size is published as `gauge`, and its actors' mailbox
    /// depths as the `actor` series of [`crate::telemetry::MAILBOX_DEPTH`].
    pub(crate) fn new(gauge: &'static str, actor: &'static str) -> Self {
        metrics::gauge!(gauge).set(0.0);
        Self {
            map: DashMap::with_hasher(FxBuildHasher),
            gauge,
            depth: metrics::histogram!(crate::telemetry::MAILBOX_DEPTH, "actor" => actor),
        }
    }

    /// How many actors are registered.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Runs `f` on every registered actor's slot.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&Slot<A, E>)) {
        for entry in self.map.iter() {
            f(entry.value());
        }
    }

    /// The actor of `key`, if it runs; send through the slot while holding it.
    pub(crate) fn get(&self, key: &K) -> Option<Ref<'_, K, Slot<A, E>>> {
        self.map.get(key)
    }

    /// The actor of `key`, started with `start` if it does not run; send through the
    /// slot while holding it.
    pub(crate) fn get_or_start(
        &self,
        key: K,
        start: impl FnOnce(Mailbox) -> (Addr<A>, E),
    ) -> Ref<'_, K, Slot<A, E>> {
        if let Some(slot) = self.map.get(&key) {
            return slot;
        }
        match self.map.entry(key) {
            Entry::Occupied(e) => e.into_ref().downgrade(),
            Entry::Vacant(e) => {
                let sent = Arc::new(AtomicU64::new(0));
                let (addr, extra) = start(Mailbox {
                    handled: 0,
                    sent: sent.clone(),
                    depth: self.depth.clone(),
                });
                let slot = e.insert(Slot { addr, sent, extra }).downgrade();
                metrics::gauge!(self.gauge).increment(1.0);
                slot
            }
        }
    }

    /// Removes `addr`'s slot if it has handled every message sent to it and `idle` holds
    /// for what the slot keeps beside it (checked under the map's write lock, so no
    /// sender can change it meanwhile). True means it is out of reach and must stop now;
    /// false, that it must keep running.
    pub(crate) fn retire(
        &self,
        key: &K,
        addr: &Addr<A>,
        mailbox: &Mailbox,
        idle: impl FnOnce(&E) -> bool,
    ) -> bool {
        let removed = self
            .map
            .remove_if(key, |_, slot| {
                slot.addr == *addr
                    && slot.sent.load(Ordering::SeqCst) == mailbox.handled
                    && idle(&slot.extra)
            })
            .is_some();
        if removed {
            metrics::gauge!(self.gauge).decrement(1.0);
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use actix::{ActorContext, AsyncContext, Context};

    use super::*;

    type Probes = Registry<u32, Probe, ()>;

    /// An actor that tries to retire after every message it handles.
    struct Probe {
        registry: Arc<Probes>,
        mailbox: Mailbox,
        retired: Arc<Mutex<Vec<bool>>>,
    }

    impl Actor for Probe {
        type Context = Context<Self>;

        fn started(&mut self, ctx: &mut Context<Self>) {
            ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        }
    }

    #[derive(actix::Message)]
    #[rtype(result = "()")]
    struct Ping {}

    impl Handler<Ping> for Probe {
        type Result = ();

        fn handle(&mut self, _: Ping, ctx: &mut Context<Self>) {
            self.mailbox.handled();
            let retired = self
                .registry
                .retire(&1, &ctx.address(), &self.mailbox, |_| true);
            self.retired.lock().unwrap().push(retired);
            if retired {
                ctx.stop();
            }
        }
    }

    #[actix_rt::test]
    async fn an_actor_with_messages_still_queued_cannot_retire() {
        let registry = Arc::new(Probes::new("speedy_test_probes", "probe"));
        let retired = Arc::new(Mutex::new(Vec::new()));
        let start = |mailbox| {
            let probe = Probe {
                registry: registry.clone(),
                mailbox,
                retired: retired.clone(),
            };
            (probe.start(), ())
        };
        {
            let slot = registry.get_or_start(1, start);
            // Both queued before the first is handled.
            slot.send(Ping {});
            slot.send(Ping {});
        }
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        assert_eq!(*retired.lock().unwrap(), [false, true]);
        assert_eq!(registry.len(), 0);
        // The next message starts a fresh one, which handles it.
        registry.get_or_start(1, start).send(Ping {});
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        assert_eq!(*retired.lock().unwrap(), [false, true, true]);
    }
}
