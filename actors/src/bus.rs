//! The in-process event bus: every order event, once durable, is published here with its
//! position in the store's event feed. A subscriber can start from any position: it gets
//! the stored events from there, then live ones, each once. A broker adapter (Kafka,
//! NATS) can mirror the stream the same way without touching the producers.

use std::collections::HashSet;

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
}

impl EventBus {
    /// A bus whose history lives in `store`'s event feed.
    pub fn new(store: storage::Store) -> Self {
        let (tx, _) = broadcast::channel(CAPACITY);
        Self { tx, store }
    }

    /// Publishes a durable event.
    pub fn publish(&self, feed_seq: u64, event: OrderEvent) {
        // No subscribers is fine: the store keeps the history.
        let _ = self.tx.send((feed_seq, event));
    }

    /// Live events only.
    pub fn subscribe(&self) -> Subscription {
        Subscription {
            rx: self.tx.subscribe(),
            store: self.store.clone(),
            backlog: Vec::new().into_iter(),
            seen: HashSet::new(),
            high: None,
        }
    }

    /// Every event from feed position `from` on, stored then live.
    pub fn subscribe_from(&self, from: u64) -> Result<Subscription, storage::StorageError> {
        // Subscribe before reading the store: whatever commits after the read is live.
        let mut sub = self.subscribe();
        sub.replay(from)?;
        Ok(sub)
    }
}

/// A subscriber's stream of events.
#[derive(Debug)]
pub struct Subscription {
    rx: broadcast::Receiver<Published>,
    store: storage::Store,
    backlog: std::vec::IntoIter<Published>,
    /// Positions delivered from the store, so live copies are skipped.
    seen: HashSet<u64>,
    high: Option<u64>,
}

impl Subscription {
    fn replay(&mut self, from: u64) -> Result<(), storage::StorageError> {
        let mut events = Vec::new();
        let mut next = from;
        loop {
            let page = self.store.events_since(next, 1_024)?;
            let Some(&(last, _)) = page.last() else { break };
            next = last + 1;
            events.extend(page.into_iter().filter(|(seq, _)| self.seen.insert(*seq)));
        }
        self.backlog = events.into_iter();
        Ok(())
    }

    /// The next event; none once the bus is gone.
    pub async fn next(&mut self) -> Option<Published> {
        loop {
            if let Some(event) = self.backlog.next() {
                self.high = self.high.max(Some(event.0));
                return Some(event);
            }
            match self.rx.recv().await {
                Ok((seq, event)) => {
                    if self.seen.remove(&seq) {
                        continue;
                    }
                    self.high = self.high.max(Some(seq));
                    return Some((seq, event));
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "event bus subscriber fell behind; re-reading the store"
                    );
                    // Events are published in about commit order; look back far enough
                    // to catch stragglers, skipping what was already delivered.
                    let from = self.high.map_or(0, |h| h.saturating_sub(CAPACITY as u64));
                    if self.replay(from).is_err() {
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
            pickup: wire::model::Point { lat: 1.0, lng: 1.0 },
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
}
