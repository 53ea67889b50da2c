//! The feedback actor: asks both parties for a rating when an order closes (it listens
//! on the event bus), and records ratings from the apps (once per party per order) and
//! from elsewhere (posted over HTTP), updating profile ratings.

use actix::prelude::*;
use wire::model::{OrderState, Role};
use wire::{FeedbackId, FeedbackRecorded, FeedbackRequest, OrderId};

use crate::error::ActorError;
use crate::orders::bus::Subscription;
use crate::orders::messages::{Closed, External, ExternalOutcome, Rate};
use crate::orders::{Orders, side_of};

/// Records feedback.
pub struct FeedbackActor {
    orders: Orders,
    /// Taken when the actor starts; subscribed before, so no event is missed.
    events: Option<Subscription>,
}

impl FeedbackActor {
    /// A feedback actor fed by `events` from the bus.
    pub fn new(orders: Orders, events: Subscription) -> Self {
        Self {
            orders,
            events: Some(events),
        }
    }
}

/// Records `record`; the outcome says whether it was new. The write is durable before
/// the caller hears of it.
async fn record(
    orders: Orders,
    record: storage::FeedbackRecord,
) -> Result<ExternalOutcome, ActorError> {
    match orders.store().add_feedback_async(&record).await? {
        storage::FeedbackOutcome::Recorded(ticket) => {
            crate::disk::durable(ticket).await?;
            let source = match record.source {
                storage::FeedbackSource::App => "app",
                storage::FeedbackSource::External { .. } => "external",
            };
            metrics::counter!(crate::telemetry::FEEDBACK, "source" => source).increment(1);
            Ok(ExternalOutcome {
                record,
                created: true,
            })
        }
        storage::FeedbackOutcome::AlreadyRated(earlier) => Ok(ExternalOutcome {
            record: *earlier,
            created: false,
        }),
    }
}

impl Actor for FeedbackActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some(mut events) = self.events.take() else {
            return;
        };
        let addr = ctx.address();
        actix_rt::spawn(async move {
            while let Some((_, event)) = events.next().await {
                if event.state == OrderState::Closed {
                    addr.do_send(Closed {
                        order: event.order_id,
                    });
                }
            }
        });
    }
}

impl Handler<Closed> for FeedbackActor {
    type Result = ();

    /// Asks each party to rate the other (the order is read without holding this
    /// actor's thread).
    fn handle(&mut self, msg: Closed, ctx: &mut Context<Self>) {
        let read = self.orders.store().order_async(msg.order);
        let sessions = self.orders.sessions().clone();
        ctx.spawn(fut::wrap_future(async move {
            let Ok(Some(order)) = read.await else {
                return;
            };
            sessions.to_user(
                order.user_id,
                FeedbackRequest {
                    order_id: order.order_id,
                    about: Box::new(order.associate.clone()),
                },
            );
            sessions.to_associate(
                order.associate_id,
                FeedbackRequest {
                    order_id: order.order_id,
                    about: Box::new(order.user.clone()),
                },
            );
        }));
    }
}

impl Handler<Rate> for FeedbackActor {
    type Result = ResponseFuture<Result<(), ActorError>>;

    /// Records a party's rating of the other side of a closed order, once.
    fn handle(&mut self, msg: Rate, _: &mut Context<Self>) -> Self::Result {
        let orders = self.orders.clone();
        Box::pin(async move {
            // Whose it is comes first: a stranger learns nothing of the order's state.
            let order = stored_order(&orders, msg.order_id).await?;
            let side = side_of(&order, msg.party).ok_or(ActorError::NotYourOrder)?;
            closed(&order)?;
            let about = match side {
                Role::User => Role::Associate,
                Role::Associate => Role::User,
            };
            let at_ms = orders.dispatch().now_ms();
            let stored = record(
                orders.clone(),
                storage::FeedbackRecord {
                    id: FeedbackId::new(),
                    order_id: msg.order_id,
                    about,
                    rating: msg.rating,
                    comment: msg.comment,
                    source: storage::FeedbackSource::App,
                    at_ms,
                },
            )
            .await?;
            if !stored.created {
                return Err(ActorError::AlreadyRated);
            }
            orders
                .sessions()
                .send(
                    msg.party,
                    FeedbackRecorded {
                        order_id: msg.order_id,
                    }
                    .into(),
                )
                .ok();
            Ok(())
        })
    }
}

impl Handler<External> for FeedbackActor {
    type Result = ResponseFuture<Result<ExternalOutcome, ActorError>>;

    /// Records feedback from elsewhere about a party of a closed order, once per source.
    fn handle(&mut self, msg: External, _: &mut Context<Self>) -> Self::Result {
        let orders = self.orders.clone();
        Box::pin(async move {
            closed(&stored_order(&orders, msg.order_id).await?)?;
            let at_ms = orders.dispatch().now_ms();
            record(
                orders,
                storage::FeedbackRecord {
                    id: FeedbackId::new(),
                    order_id: msg.order_id,
                    about: msg.about,
                    rating: msg.rating,
                    comment: msg.comment,
                    source: storage::FeedbackSource::External { source: msg.source },
                    at_ms,
                },
            )
            .await
        })
    }
}

/// The stored order (`not_your_order` when there is none).
async fn stored_order(orders: &Orders, id: OrderId) -> Result<storage::OrderRecord, ActorError> {
    orders
        .store()
        .order_async(id)
        .await?
        .ok_or(ActorError::NotYourOrder)
}

/// Whether the order is closed (feedback opens at close).
fn closed(order: &storage::OrderRecord) -> Result<(), ActorError> {
    if order.state != OrderState::Closed {
        return Err(ActorError::InvalidState(
            "feedback opens when the order closes".into(),
        ));
    }
    Ok(())
}
