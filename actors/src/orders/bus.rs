//! The in-process event bus: every order event, once durable, is published here with its
//! position in the store's event feed. A subscriber can start from any position: it gets
//! the stored events from there, then live ones, each once. A broker adapter (Kafka,
//! NATS) can mirror the stream the same way without touching the producers.

use std::collections::BTreeSet;

use tokio::sync::broadcast;
use wire::model::OrderEvent;

/// Live events a slow subscriber may fall behind by before it re-reads the store.
const CAPACITY: usize = 4_096;

/// One published event: its feed position and the event.
pub type Published = (u64, OrderEvent);

/// The bus; cheap to clone.
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Published>,
    store: storage::Store,
    capacity: usize,
}

impl EventBus {
    /// A bus whose history lives in `store`'s event feed.
    pub fn new(store: storage::Store) -> Self {
        Self::with_capacity(store, CAPACITY)
    }

    /// A bus keeping `capacity` live events for slow subscribers (tests use a few).
    pub fn with_capacity(store: storage::Store, capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Self {
            tx,
            store,
            capacity: capacity.max(1),
        }
    }

    /// Publishes a durable event.
    pub fn publish(&self, feed_seq: u64, event: OrderEvent) {
        // No subscribers is fine: the store keeps the history.
        let _ = self.tx.send((feed_seq, event));
    }

    /// Events from now on (those already in the store are not delivered).
    pub fn subscribe(&self) -> Result<Subscription, storage::StorageError> {
        let next = self.store.feed_next()?;
        Ok(self.subscription(next))
    }

    /// Every event from feed position `from` on, stored then live, each once.
    pub fn subscribe_from(&self, from: u64) -> Result<Subscription, storage::StorageError> {
        // Subscribe before reading the store: whatever commits after the read is live.
        let mut sub = self.subscription(from);
        sub.replay()?;
        Ok(sub)
    }

    fn subscription(&self, from: u64) -> Subscription {
        Subscription {
            rx: self.tx.subscribe(),
            store: self.store.clone(),
            capacity: self.capacity,
            backlog: Vec::new().into_iter(),
            below: from,
            delivered: BTreeSet::new(),
        }
    }
}

/// A subscriber's stream of events: each position at most once, none missed.
#[derive(Debug)]
pub struct Subscription {
    rx: broadcast::Receiver<Published>,
    store: storage::Store,
    capacity: usize,
    backlog: std::vec::IntoIter<Published>,
    /// Every position below this was delivered (or is not in the feed).
    below: u64,
    /// Positions at or above `below` delivered out of order.
    delivered: BTreeSet<u64>,
}

impl Subscription {
    /// Queues every stored event from `below` on that was not delivered, then moves
    /// `below` past the end of the store.
    fn replay(&mut self) -> Result<(), storage::StorageError> {
        let mut events = Vec::new();
        let mut next = self.below;
        loop {
            let page = self.store.events_since(next, 1_024)?;
            let Some(&(last, _)) = page.last() else { break };
            next = last + 1;
            events.extend(
                page.into_iter()
                    .filter(|(seq, _)| !self.delivered.contains(seq)),
            );
        }
        // Everything below `next` is now delivered or queued: forget the details.
        self.below = self.below.max(next);
        self.delivered = self.delivered.split_off(&self.below);
        self.backlog = events.into_iter();
        Ok(())
    }

    /// Records that `seq` was delivered; false if it already was.
    fn mark(&mut self, seq: u64) -> bool {
        if seq < self.below || !self.delivered.insert(seq) {
            return false;
        }
        while self.delivered.remove(&self.below) {
            self.below += 1;
        }
        true
    }

    /// The next event; none once the bus is gone.
    pub async fn next(&mut self) -> Option<Published> {
        loop {
            if let Some(event) = self.backlog.next() {
                return Some(event);
            }
            match self.rx.recv().await {
                Ok((seq, event)) => {
                    if !self.mark(seq) {
                        continue;
                    }
                    // An event never published live (its publisher died) would hold
                    // `below` back for good: the store fills the hole.
                    if self.delivered.len() > self.capacity && self.replay().is_err() {
                        return None;
                    }
                    return Some((seq, event));
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "event bus subscriber fell behind; re-reading the store"
                    );
                    if self.replay().is_err() {
                        return None;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::model::OrderEventKind;

    fn order(store: &storage::Store) -> storage::OrderRecord {
        let mut o = storage::OrderRecord {
            order_id: wire::OrderId::new(),
            request_id: wire::RequestId::new(),
            user_id: wire::UserId::new(),
            associate_id: wire::AssociateId::new(),
            state: wire::model::OrderState::Allotted,
            task: "helper".into(),
            pickup: storage::LatLng::new(1.0, 1.0).unwrap(),
            note: None,
            discount_code: None,
            user: wire::model::PartySummary {
                id: uuid::Uuid::nil(),
                name: "u".into(),
                phone: "1".into(),
                rating_centi: None,
                rating_count: 0,
            },
            associate: wire::model::PartySummary {
                id: uuid::Uuid::nil(),
                name: "a".into(),
                phone: "2".into(),
                rating_centi: None,
                rating_count: 0,
            },
            pin: "0000".into(),
            allotted_at_ms: 0,
            started_at_ms: None,
            completed_at_ms: None,
            ended_at_ms: None,
            invoice_id: None,
            payment_id: None,
            cancellation: None,
            next_seq: 0,
        };
        let c = store.create_order(&o).unwrap();
        o = c.order;
        o
    }

    #[tokio::test]
    async fn a_late_subscriber_gets_history_then_live_events_once() {
        let store = storage::Store::temporary().unwrap();
        let bus = EventBus::new(store.clone());
        let o = order(&store);
        let first = store.events_since(0, 10).unwrap()[0].clone();
        bus.publish(first.0, first.1.clone());
        let c = store
            .transition(o.order_id, 1, OrderEventKind::EnRoute, &[])
            .unwrap();
        let mut sub = bus.subscribe_from(0).unwrap();
        // Published after the subscription read the store: must not come twice.
        bus.publish(c.feed_seq, c.event.clone());
        let c2 = store
            .transition(o.order_id, 2, OrderEventKind::Arrived, &[])
            .unwrap();
        bus.publish(c2.feed_seq, c2.event.clone());
        // The first one again (a duplicate publish): not delivered twice.
        bus.publish(first.0, first.1.clone());
        let got: Vec<u64> = vec![
            sub.next().await.unwrap().0,
            sub.next().await.unwrap().0,
            sub.next().await.unwrap().0,
        ];
        assert_eq!(got, vec![first.0, c.feed_seq, c2.feed_seq]);
        let mut from_second = bus.subscribe_from(c.feed_seq).unwrap();
        assert_eq!(
            from_second.next().await.unwrap().1.state,
            wire::model::OrderState::EnRoute
        );
    }

    #[tokio::test]
    async fn after_a_lag_every_event_comes_exactly_once_in_order() {
        let store = storage::Store::temporary().unwrap();
        let bus = EventBus::with_capacity(store.clone(), 4);
        let mut sub = bus.subscribe_from(0).unwrap();
        let mut live = bus.subscribe().unwrap();
        let mut written = Vec::new();
        for _ in 0..12 {
            let o = order(&store);
            let (seq, event) = store
                .events_since(written.last().map_or(0, |s| s + 1), 1)
                .unwrap()[0]
                .clone();
            bus.publish(seq, event);
            written.push(seq);
            for at in 1..=3 {
                let kind = match at {
                    1 => OrderEventKind::EnRoute,
                    2 => OrderEventKind::Arrived,
                    _ => OrderEventKind::Started,
                };
                let c = store.transition(o.order_id, at, kind, &[]).unwrap();
                bus.publish(c.feed_seq, c.event);
                written.push(c.feed_seq);
            }
        }
        // Republished stragglers and duplicates do not come again.
        let (seq, event) = store.events_since(written[3], 1).unwrap()[0].clone();
        bus.publish(seq, event);
        let mut got = Vec::new();
        while got.len() < written.len() {
            got.push(sub.next().await.unwrap().0);
        }
        assert_eq!(got, written, "each once, in order, none missed");
        let mut got_live = Vec::new();
        while got_live.len() < written.len() {
            got_live.push(live.next().await.unwrap().0);
        }
        assert_eq!(got_live, written);
        // Nothing more is pending for either.
        drop(bus);
        assert!(sub.next().await.is_none());
    }
}
