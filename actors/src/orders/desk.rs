//! The order desk: where accepted offers become orders. It persists the order before
//! anyone is told, starts the order's actor, and sends both parties the allotment.

use actix::prelude::*;
use wire::model::{OrderState, PartySummary, Role};
use wire::{Allotted, OrderId};

use crate::allotment::CreateOrder;
use crate::error::ActorError;
use crate::orders::Orders;
use crate::orders::order::{OrderActor, new_pin};

/// Creates orders.
pub struct OrderDesk {
    orders: Orders,
}

impl OrderDesk {
    /// A desk for `orders`.
    pub fn new(orders: Orders) -> Self {
        Self { orders }
    }
}

impl Actor for OrderDesk {
    type Context = Context<Self>;
}

/// A party's summary from their profile (a bare one if the profile is gone).
fn summary(store: &storage::Store, id: uuid::Uuid, role: Role) -> Result<PartySummary, ActorError> {
    let found = match role {
        Role::User => store.user(wire::UserId(id))?.map(|p| p.summary()),
        Role::Associate => store.associate(wire::AssociateId(id))?.map(|p| p.summary()),
    };
    Ok(found.unwrap_or(PartySummary {
        id,
        name: String::new(),
        phone: String::new(),
        rating_centi: None,
        rating_count: 0,
    }))
}

impl Handler<CreateOrder> for OrderDesk {
    type Result = ResponseActFuture<Self, Result<OrderId, ActorError>>;

    /// Writes the order, waits until it is durable, then starts its actor and tells both
    /// parties (the user's copy carries the start PIN).
    fn handle(&mut self, msg: CreateOrder, _: &mut Context<Self>) -> Self::Result {
        let a = msg.allotment;
        let store = self.orders.store().clone();
        let record = (|| -> Result<storage::OrderRecord, ActorError> {
            Ok(storage::OrderRecord {
                order_id: OrderId::new(),
                request_id: a.request_id,
                user_id: a.user_id,
                associate_id: a.associate_id,
                state: OrderState::Allotted,
                task: a.task.clone(),
                pickup: a.pickup.into(),
                note: a.note.clone(),
                discount_code: a.discount_code.clone(),
                user: summary(&store, a.user_id.0, Role::User)?,
                associate: summary(&store, a.associate_id.0, Role::Associate)?,
                pin: new_pin(),
                allotted_at_ms: a.allotted_at_ms,
                started_at_ms: None,
                completed_at_ms: None,
                ended_at_ms: None,
                invoice_id: None,
                payment_id: None,
                cancellation: None,
                next_seq: 0,
            })
        })();
        let write = match record.and_then(|r| Ok((self.orders.store_for(&r)?, r))) {
            Ok((fenced, r)) => fenced.create_order_durable(r),
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let client_ref = a.client_ref;
        Box::pin(write.into_actor(self).map(move |committed, act, _| {
            let storage::Committed {
                order,
                event,
                feed_seq,
                ..
            } = committed?;
            let orders = act.orders.clone();
            let actor_orders = orders.clone();
            let record = order.clone();
            let addr = orders
                .dispatch()
                .spawn(move || OrderActor::new(record, actor_orders));
            orders.register(&order, addr);
            let view = OrderActor::view_of(&order, None);
            let mut user_copy = view.clone();
            user_copy.pin = Some(order.pin.clone());
            let sessions = orders.sessions();
            sessions.to_user(
                order.user_id,
                Allotted {
                    client_ref: Some(client_ref),
                    order: Box::new(user_copy),
                },
            );
            sessions.to_associate(
                order.associate_id,
                Allotted {
                    client_ref: None,
                    order: Box::new(view),
                },
            );
            orders.publish(feed_seq, event);
            Ok(order.order_id)
        }))
    }
}
