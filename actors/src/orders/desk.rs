//! The order desk: where accepted offers become orders. It persists the order before
//! anyone is told, starts the order's actor, and sends both parties the allotment.

use actix::prelude::*;
use wire::model::{OrderState, PartySummary};
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

/// A party's summary from their profile, if it is there (a bare one if it is gone).
fn summary(id: uuid::Uuid, found: Option<PartySummary>) -> PartySummary {
    found.unwrap_or(PartySummary {
        id,
        name: String::new(),
        phone: String::new(),
        rating_centi: None,
        rating_count: 0,
    })
}

impl Handler<CreateOrder> for OrderDesk {
    type Result = ResponseActFuture<Self, Result<OrderId, ActorError>>;

    /// Writes the order, waits until it is durable, then starts its actor and tells both
    /// parties (the user's copy carries the start PIN).
    fn handle(&mut self, msg: CreateOrder, _: &mut Context<Self>) -> Self::Result {
        let a = msg.allotment;
        let store = self.orders.store().clone();
        let orders = self.orders.clone();
        let client_ref = a.client_ref.clone();
        // The profiles are read without holding this desk's thread.
        let write = async move {
            let (user, associate) = futures_util::future::join(
                store.user_async(a.user_id),
                store.associate_async(a.associate_id),
            )
            .await;
            let record = storage::OrderRecord {
                order_id: OrderId::new(),
                request_id: a.request_id,
                user_id: a.user_id,
                associate_id: a.associate_id,
                state: OrderState::Allotted,
                task: a.task.clone(),
                pickup: a.pickup,
                note: a.note.clone(),
                discount_code: a.discount_code.clone(),
                user: summary(a.user_id.0, user?.map(|p| p.summary())),
                associate: summary(a.associate_id.0, associate?.map(|p| p.summary())),
                pin: new_pin(),
                allotted_at_ms: a.allotted_at_ms,
                started_at_ms: None,
                completed_at_ms: None,
                ended_at_ms: None,
                invoice_id: None,
                payment_id: None,
                cancellation: None,
                next_seq: 0,
            };
            let fenced = orders.store_for(&record)?;
            Ok::<_, ActorError>(fenced.create_order_durable(record).await?)
        };
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
                .spawn(move || OrderActor::allotted(record, actor_orders));
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
