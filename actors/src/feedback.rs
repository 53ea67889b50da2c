//! The feedback actor: asks both parties for a rating when an order closes (it listens
//! on the event bus), and records ratings from the apps (once per party per order) and
//! from elsewhere (posted over HTTP), updating profile ratings.

use actix::prelude::*;
use wire::model::{OrderState, Role};
use wire::{FeedbackId, FeedbackRecorded, FeedbackRequest, OrderId, PartyId};

use crate::bus::Subscription;
use crate::error::ActorError;
use crate::orders::{Orders, side_of};

/// A rating from a party's app.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), ActorError>")]
pub struct Rate {
    /// Who rates (must be on the order); they rate the other side.
    pub party: PartyId,
    /// The order.
    pub order_id: OrderId,
    /// 1 to 5.
    pub rating: u8,
    /// Comment.
    pub comment: Option<String>,
}

/// Feedback gathered elsewhere (social media), posted over HTTP.
#[derive(Debug, Message)]
#[rtype(result = "Result<FeedbackId, ActorError>")]
pub struct External {
    /// The order.
    pub order_id: OrderId,
    /// Who is rated.
    pub about: Role,
    /// 1 to 5.
    pub rating: u8,
    /// Comment.
    pub comment: Option<String>,
    /// Where it came from.
    pub source: String,
}

/// An order closed (from the bus).
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct Closed {
    order: OrderId,
}

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

    fn store(&self, record: storage::FeedbackRecord) -> Result<(), ActorError> {
        match self.orders.store().add_feedback(&record)? {
            storage::FeedbackOutcome::Recorded(_ticket) => {
                let source = match record.source {
                    storage::FeedbackSource::App => "app",
                    storage::FeedbackSource::External { .. } => "external",
                };
                metrics::counter!(crate::telemetry::FEEDBACK, "source" => source).increment(1);
                Ok(())
            }
            storage::FeedbackOutcome::AlreadyRated => Err(ActorError::AlreadyRated),
        }
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

    /// Asks each party to rate the other.
    fn handle(&mut self, msg: Closed, _: &mut Context<Self>) {
        let Ok(Some(order)) = self.orders.store().order(msg.order) else {
            return;
        };
        let sessions = self.orders.sessions();
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
    }
}

impl Handler<Rate> for FeedbackActor {
    type Result = Result<(), ActorError>;

    /// Records a party's rating of the other side of a closed order.
    fn handle(&mut self, msg: Rate, _: &mut Context<Self>) -> Self::Result {
        let order = self
            .orders
            .store()
            .order(msg.order_id)?
            .ok_or(ActorError::NotYourOrder)?;
        let side = side_of(&order, msg.party).ok_or(ActorError::NotYourOrder)?;
        if order.state != OrderState::Closed {
            return Err(ActorError::InvalidState(
                "feedback opens when the order closes".into(),
            ));
        }
        let about = match side {
            Role::User => Role::Associate,
            Role::Associate => Role::User,
        };
        self.store(storage::FeedbackRecord {
            id: FeedbackId::new(),
            order_id: msg.order_id,
            about,
            rating: msg.rating,
            comment: msg.comment,
            source: storage::FeedbackSource::App,
            at_ms: self.orders.dispatch().now_ms(),
        })?;
        self.orders
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
    }
}

impl Handler<External> for FeedbackActor {
    type Result = Result<FeedbackId, ActorError>;

    /// Records feedback from elsewhere about a party of a closed order.
    fn handle(&mut self, msg: External, _: &mut Context<Self>) -> Self::Result {
        let order = self
            .orders
            .store()
            .order(msg.order_id)?
            .ok_or(ActorError::NotYourOrder)?;
        if order.state != OrderState::Closed {
            return Err(ActorError::InvalidState(
                "feedback opens when the order closes".into(),
            ));
        }
        let id = FeedbackId::new();
        self.store(storage::FeedbackRecord {
            id,
            order_id: msg.order_id,
            about: msg.about,
            rating: msg.rating,
            comment: msg.comment,
            source: storage::FeedbackSource::External { source: msg.source },
            at_ms: self.orders.dispatch().now_ms(),
        })?;
        Ok(id)
    }
}
