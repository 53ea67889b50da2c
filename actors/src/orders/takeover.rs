//! Orders that outlive a node or a cell's owner: recovery at start-up, and the open
//! orders of cells this node gains or loses in cluster mode.

use actix::Addr;
use wire::PartyId;

use crate::dispatch::AssociateProfileInfo;
use crate::error::ActorError;
use crate::orders::billing::BillingActor;
use crate::orders::feedback::FeedbackActor;
use crate::orders::messages::Recover;
use crate::orders::order::OrderActor;
use crate::orders::payment::PaymentActor;

use super::handle::{Orders, Recovered};

impl Orders {
    /// The shard of an order's pickup.
    pub(super) fn shard_of(&self, record: &storage::OrderRecord) -> geo::ShardId {
        self.shared.dispatch.shard_of(record.pickup)
    }

    /// The store to write `record` through: in cluster mode fenced with the epoch of
    /// this node's claim on its cell, and refused if this node no longer holds the cell.
    pub(crate) fn store_for(
        &self,
        record: &storage::OrderRecord,
    ) -> Result<storage::Store, ActorError> {
        let Some(peers) = self.shared.dispatch.peers() else {
            return Ok(self.shared.store.clone());
        };
        let shard = self.shard_of(record);
        match peers.epoch_of(shard) {
            Some(epoch) => Ok(self.shared.store.fenced(epoch)),
            None => Err(ActorError::PeerUnavailable(format!(
                "cell {shard} of order {} is not served by this node any more",
                record.order_id
            ))),
        }
    }

    /// This node now serves `shards`: rebuild their open orders that do not run here,
    /// and settle their pending payments.
    pub(crate) async fn cells_gained(&self, shards: &[geo::ShardId]) {
        match self.take_over_orders(shards).await {
            Ok(r) if r == Recovered::default() => {}
            Ok(r) => tracing::info!(
                open_orders = r.open_orders,
                pending_payments = r.pending_payments,
                cells = shards.len(),
                "open orders taken over with cells"
            ),
            Err(e) => {
                tracing::error!(error = %e, "could not take over the open orders of gained cells")
            }
        }
    }

    /// This node no longer serves `shard`: stop the order actors whose pickup is there
    /// (resolves once they are out of the address book).
    pub(crate) async fn cell_lost(&self, shard: geo::ShardId) {
        crate::peers::relinquish_all(&self.shared.actors, shard).await;
    }

    /// An order's actor stopped here because its cell moved: forget it here without
    /// telling its parties (the new owner does).
    pub(crate) fn handed_over(&self, record: &storage::OrderRecord) {
        self.shared.actors.remove(&record.order_id);
        self.shared.board.remove(record.order_id, false);
        metrics::gauge!(crate::telemetry::ORDER_ACTORS).set(self.shared.actors.len() as f64);
        for party in [
            PartyId::User(record.user_id),
            PartyId::Associate(record.associate_id),
        ] {
            self.shared
                .by_party
                .remove_if(&party, |_, o| *o == record.order_id);
            self.mirror_untracked(party, record.order_id);
        }
        if let Some(peers) = self.shared.dispatch.peers() {
            peers.unserve(crate::peers::Served::Order(record.order_id));
        }
    }

    /// Rebuilds the actors of the open orders whose pickup shard `wanted` accepts (and
    /// that do not run here yet), marks their associates busy (unless the order only
    /// owes a cancellation fee), and settles their payments left pending.
    pub(super) fn recover(
        &self,
        wanted: impl Fn(geo::ShardId) -> bool,
    ) -> Result<Recovered, ActorError> {
        let records = self.open_orders_in(wanted)?;
        self.adopt(records)
    }

    /// The stored open orders whose pickup shard `wanted` accepts and that do not run
    /// here.
    pub(super) fn open_orders_in(
        &self,
        wanted: impl Fn(geo::ShardId) -> bool,
    ) -> Result<Vec<storage::OrderRecord>, ActorError> {
        Ok(self
            .shared
            .store
            .open_orders()?
            .into_iter()
            .filter(|r| !self.shared.actors.contains_key(&r.order_id) && wanted(self.shard_of(r)))
            .collect())
    }

    /// Cluster mode: takes over the open orders of gained cells, each stamped with this
    /// node's epoch first, so the former owner's late writes are refused from then on.
    pub(super) async fn take_over_orders(
        &self,
        shards: &[geo::ShardId],
    ) -> Result<Recovered, ActorError> {
        let mut fenced = Vec::new();
        for record in self.open_orders_in(|s| shards.contains(&s))? {
            let stamped = self
                .store_for(&record)
                .and_then(|store| Ok(store.fence_order(record.order_id)?));
            match stamped {
                Ok(ticket) => match ticket.durable().await {
                    Ok(()) => fenced.push(record),
                    Err(e) => {
                        tracing::warn!(order = %record.order_id, error = %e, "not taking over an order")
                    }
                },
                Err(e) => {
                    tracing::warn!(order = %record.order_id, error = %e, "not taking over an order")
                }
            }
        }
        self.adopt(fenced)
    }

    /// Rebuilds the actors of `records`, marks their associates busy (unless the order
    /// only owes a cancellation fee), and settles their payments left pending (every
    /// pending payment on a single node).
    pub(super) fn adopt(
        &self,
        records: Vec<storage::OrderRecord>,
    ) -> Result<Recovered, ActorError> {
        let store = &self.shared.store;
        let mut recovered = Recovered::default();
        let mut taken = std::collections::HashSet::new();
        for record in records {
            if self.shared.actors.contains_key(&record.order_id) {
                continue;
            }
            taken.insert(record.order_id);
            recovered.open_orders += 1;
            if record.owes_fee() {
                recovered.owing_fee += 1;
            } else {
                let info = match store.associate(record.associate_id)? {
                    Some(profile) => {
                        crate::dispatch::profile_info(&profile, self.shared.dispatch.catalog())
                    }
                    None => AssociateProfileInfo::default(),
                };
                self.shared
                    .dispatch
                    .restore_busy(record.associate_id, record.order_id, info);
            }
            // Its invoice, payments and events are read here, not on an actor's thread.
            let actor = OrderActor::new(record.clone(), self.clone());
            let addr = self.shared.dispatch.spawn(move || actor);
            self.register(&record, addr);
        }
        for payment in store.pending_payments()? {
            if self.shared.dispatch.peers().is_some() && !taken.contains(&payment.order_id) {
                continue;
            }
            recovered.pending_payments += 1;
            self.payments().do_send(Recover { payment });
        }
        Ok(recovered)
    }

    pub(crate) fn billing(&self) -> &Addr<BillingActor> {
        // expect: start() sets every actor before the handle is shared.
        self.shared.billing.get().expect("started")
    }

    pub(crate) fn payments(&self) -> &Addr<PaymentActor> {
        // expect: start() sets every actor before the handle is shared.
        self.shared.payments.get().expect("started")
    }

    pub(super) fn feedback(&self) -> &Addr<FeedbackActor> {
        // expect: start() sets every actor before the handle is shared.
        self.shared.feedback.get().expect("started")
    }
}
