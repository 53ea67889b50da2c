//! The request actor: one per open request. Runs the sequential offer loop: gather
//! candidates (nearest first, across shard borders), reserve one, offer, wait for an
//! answer or the window, move on; widen the radius when candidates run out; give up at
//! the request's deadline; stop at once on cancel.

use std::collections::{HashSet, VecDeque};

use actix::prelude::*;
use geo::{LatLng, Neighbor, TaskType};
use tokio::time::Instant;
use wire::model::OfferEnd;
use wire::{
    AssociateId, ErrorFrame, NoAssociate, Offer, OrderId, RequestCancelled, RequestId, UserId,
};

use crate::allotment::{Allotment, CreateOrder};
use crate::associate::{self, AssociateActor, Refusal};
use crate::dispatch::Dispatch;
use crate::error::ActorError;
use crate::supervisor::{Candidates, LocalNearest};
use crate::telemetry;

/// The offered associate accepts.
#[derive(Debug, Message)]
#[rtype(result = "AcceptOutcome")]
pub struct AcceptOffer {
    /// Who accepts.
    pub associate: AssociateId,
}

/// The offered associate declined or went away.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct OfferRefused {
    /// Who.
    pub associate: AssociateId,
    /// How.
    pub why: RefusedBy,
}

/// The user cancels.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), ActorError>")]
pub struct Cancel {
    /// Who asks (must be the request's user).
    pub user: UserId,
}

/// How an offer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedBy {
    /// The associate said no.
    Declined,
    /// The associate's app disconnected.
    Disconnected,
}

/// The answer to an acceptance.
#[derive(Debug, Clone, PartialEq, Eq, MessageResponse)]
pub enum AcceptOutcome {
    /// The order exists.
    Allotted(OrderId),
    /// The offer had already moved on (window passed, cancelled).
    TooLate,
    /// The order could not be created.
    Failed(ActorError),
}

/// What a request is.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    /// The request.
    pub request_id: RequestId,
    /// Who asked.
    pub user_id: UserId,
    /// Their reference.
    pub client_ref: String,
    /// Task type.
    pub task: TaskType,
    /// Its name.
    pub task_name: String,
    /// Where.
    pub pickup: LatLng,
    /// Note for the associate.
    pub note: Option<String>,
    /// Discount code for billing.
    pub discount_code: Option<String>,
    /// When it was made.
    pub created: Instant,
    /// When to give up.
    pub deadline: Instant,
}

/// Where the offer loop stands.
#[derive(Debug, Clone)]
enum Phase {
    /// Looking for candidates (a search may be in flight).
    Searching,
    /// Asking an associate to reserve themselves.
    /// The associate may already hold the reservation (and answer) before its reply
    /// reaches this actor: an answer from them counts as for the offer.
    Reserving {
        associate: AssociateId,
        addr: Addr<AssociateActor>,
        generation: u64,
        distance_m: u32,
    },
    /// An offer is out.
    Offering {
        associate: AssociateId,
        addr: Addr<AssociateActor>,
        generation: u64,
        distance_m: u32,
    },
    /// Accepted; the order is being created.
    Allotting,
    /// Finished.
    Done,
}

/// One open request.
pub struct RequestActor {
    spec: RequestSpec,
    dispatch: Dispatch,
    phase: Phase,
    /// Bumped per reservation so late replies and timers of an old offer are ignored.
    generation: u64,
    /// Candidates of the current search, nearest first.
    queue: VecDeque<Neighbor<AssociateId>>,
    /// Declined, let expire or disconnected: never offered this request again.
    refused: HashSet<AssociateId>,
    /// Could not be reserved (busy elsewhere): skipped until the next search round.
    skipped: HashSet<AssociateId>,
    radius_step: usize,
    offered_any: bool,
}

impl RequestActor {
    /// A request actor; it starts searching when started.
    pub fn new(spec: RequestSpec, dispatch: Dispatch) -> Self {
        Self {
            spec,
            dispatch,
            phase: Phase::Searching,
            generation: 0,
            queue: VecDeque::new(),
            refused: HashSet::new(),
            skipped: HashSet::new(),
            radius_step: 0,
            offered_any: false,
        }
    }

    fn radius(&self) -> f64 {
        let steps = &self.dispatch.config().radius_steps_m;
        steps[self.radius_step.min(steps.len().saturating_sub(1))]
    }

    /// Starts a candidate search at the current radius.
    fn search(&mut self, ctx: &mut Context<Self>) {
        self.phase = Phase::Searching;
        let exclude: Vec<AssociateId> = self.refused.iter().chain(&self.skipped).copied().collect();
        let search = LocalNearest {
            point: self.spec.pickup,
            task: self.spec.task,
            radius_m: self.radius(),
            k: self.dispatch.config().candidates_per_search,
            exclude,
        };
        let shard = self.dispatch.shared.map.shard_of(self.spec.pickup);
        self.dispatch
            .supervisor(shard)
            .send(Candidates { search })
            .into_actor(self)
            .map(|found, act, ctx| act.on_candidates(found.unwrap_or_default(), ctx))
            .spawn(ctx);
    }

    fn on_candidates(&mut self, found: Vec<Neighbor<AssociateId>>, ctx: &mut Context<Self>) {
        if !matches!(self.phase, Phase::Searching) {
            return;
        }
        if !found.is_empty() {
            self.queue = found.into();
            self.next_candidate(ctx);
        } else if self.radius_step + 1 < self.dispatch.config().radius_steps_m.len() {
            self.radius_step += 1;
            self.search(ctx);
        } else {
            // Nobody anywhere in reach: look again later; the busy may be free by then.
            self.skipped.clear();
            ctx.run_later(self.dispatch.config().retry_interval, |act, ctx| {
                if matches!(act.phase, Phase::Searching) {
                    act.search(ctx);
                }
            });
        }
    }

    /// Reserves the nearest remaining candidate, or searches again.
    fn next_candidate(&mut self, ctx: &mut Context<Self>) {
        while let Some(candidate) = self.queue.pop_front() {
            if self.refused.contains(&candidate.id) || self.skipped.contains(&candidate.id) {
                continue;
            }
            let Some(addr) = self.dispatch.associate_addr(candidate.id) else {
                continue;
            };
            self.reserve(candidate, addr, ctx);
            return;
        }
        self.search(ctx);
    }

    fn reserve(
        &mut self,
        candidate: Neighbor<AssociateId>,
        addr: Addr<AssociateActor>,
        ctx: &mut Context<Self>,
    ) {
        self.generation += 1;
        let generation = self.generation;
        let associate = candidate.id;
        let distance_m = candidate.distance_m.round() as u32;
        self.phase = Phase::Reserving {
            associate,
            addr: addr.clone(),
            generation,
            distance_m,
        };
        let window = self.dispatch.config().window_for(self.spec.task);
        let expires = Instant::now() + window;
        let offer = Offer {
            request_id: self.spec.request_id,
            task: self.spec.task_name.clone(),
            pickup: self.spec.pickup.into(),
            distance_m,
            note: self.spec.note.clone(),
            expires_at_ms: self.dispatch.clock().ms_at(expires),
        };
        let reserve = associate::Reserve {
            request: ctx.address(),
            task: self.spec.task,
            pickup: self.spec.pickup,
            offer,
        };
        addr.send(reserve)
            .into_actor(self)
            .map(move |reply, act, ctx| {
                let still_ours =
                    matches!(act.phase, Phase::Reserving { generation: g, .. } if g == generation);
                if !still_ours {
                    // The request ended while the reservation was in flight; finishing
                    // already sent a withdrawal, which reaches the associate after it.
                    return;
                }
                match reply {
                    Ok(Ok(())) => {
                        act.offered(associate, addr, generation, distance_m, expires, ctx)
                    }
                    Ok(Err(
                        Refusal::NotAvailable | Refusal::NotEligible | Refusal::OutsideZone,
                    ))
                    | Err(_) => {
                        act.skipped.insert(associate);
                        act.next_candidate(ctx);
                    }
                }
            })
            .spawn(ctx);
    }

    fn offered(
        &mut self,
        associate: AssociateId,
        addr: Addr<AssociateActor>,
        generation: u64,
        distance_m: u32,
        expires: Instant,
        ctx: &mut Context<Self>,
    ) {
        self.note_sent();
        self.phase = Phase::Offering {
            associate,
            addr,
            generation,
            distance_m,
        };
        ctx.run_later(
            expires.saturating_duration_since(Instant::now()),
            move |act, ctx| {
                act.window_elapsed(generation, ctx);
            },
        );
    }

    fn window_elapsed(&mut self, generation: u64, ctx: &mut Context<Self>) {
        let Phase::Offering {
            associate,
            addr,
            generation: g,
            ..
        } = &self.phase
        else {
            return;
        };
        if *g != generation {
            return;
        }
        addr.do_send(associate::Withdraw {
            request_id: self.spec.request_id,
            reason: OfferEnd::Expired,
        });
        telemetry::offer("expired");
        self.refused.insert(*associate);
        self.phase = Phase::Searching;
        self.next_candidate(ctx);
    }

    /// Counts an offer that reached an associate (and the first one's latency).
    fn note_sent(&mut self) {
        telemetry::offer("sent");
        if !self.offered_any {
            self.offered_any = true;
            metrics::histogram!(telemetry::TIME_TO_FIRST_OFFER)
                .record(self.spec.created.elapsed().as_secs_f64());
        }
    }

    /// The associate holding (or being asked for) the offer, and their distance.
    fn holder(&self) -> Option<(AssociateId, u32)> {
        match &self.phase {
            Phase::Reserving {
                associate,
                distance_m,
                ..
            }
            | Phase::Offering {
                associate,
                distance_m,
                ..
            } => Some((*associate, *distance_m)),
            _ => None,
        }
    }

    /// Withdraws the open offer or the reservation in flight, telling the associate why.
    /// A withdrawal follows the reservation into the associate's mailbox, so it lands
    /// after it whichever way the reservation went.
    fn withdraw_current(&mut self, reason: OfferEnd) {
        let addr = match &self.phase {
            Phase::Offering { addr, .. } => {
                telemetry::offer("withdrawn");
                addr
            }
            Phase::Reserving { addr, .. } => addr,
            _ => return,
        };
        addr.do_send(associate::Withdraw {
            request_id: self.spec.request_id,
            reason,
        });
    }

    fn finish(&mut self, outcome: &'static str, ctx: &mut Context<Self>) {
        self.phase = Phase::Done;
        self.dispatch
            .request_finished(self.spec.request_id, self.spec.user_id);
        telemetry::request_ended(outcome);
        ctx.stop();
    }

    fn deadline_passed(&mut self, ctx: &mut Context<Self>) {
        if matches!(self.phase, Phase::Allotting | Phase::Done) {
            return;
        }
        self.withdraw_current(OfferEnd::RequestExpired);
        self.dispatch.sessions().to_user(
            self.spec.user_id,
            NoAssociate {
                client_ref: self.spec.client_ref.clone(),
                request_id: self.spec.request_id,
            },
        );
        self.finish("no_associate", ctx);
    }
}

impl Actor for RequestActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        telemetry::request_opened();
        ctx.run_later(
            self.spec.deadline.saturating_duration_since(Instant::now()),
            |act, ctx| {
                act.deadline_passed(ctx);
            },
        );
        self.search(ctx);
    }
}

impl Handler<AcceptOffer> for RequestActor {
    type Result = ResponseActFuture<Self, AcceptOutcome>;

    /// Accepts only from the associate holding the open offer; then creates the order
    /// (durably) before answering, and the request ends.
    fn handle(&mut self, msg: AcceptOffer, _: &mut Context<Self>) -> Self::Result {
        let offered_distance = self
            .holder()
            .filter(|(a, _)| *a == msg.associate)
            .map(|(_, d)| d);
        if offered_distance.is_some() && matches!(self.phase, Phase::Reserving { .. }) {
            // Accepted before the grant reached us: the offer was out all the same.
            self.note_sent();
        }
        let current = offered_distance.is_some();
        let sink = self.dispatch.order_sink().cloned();
        let (Some(distance_m), Some(sink)) = (offered_distance, sink) else {
            let outcome = if current {
                AcceptOutcome::Failed(ActorError::Internal(
                    "orders are not wired to dispatch".into(),
                ))
            } else {
                AcceptOutcome::TooLate
            };
            return Box::pin(fut::ready(outcome));
        };
        self.phase = Phase::Allotting;
        let now = self.dispatch.now_ms();
        let allotment = Allotment {
            request_id: self.spec.request_id,
            client_ref: self.spec.client_ref.clone(),
            user_id: self.spec.user_id,
            associate_id: msg.associate,
            task: self.spec.task_name.clone(),
            pickup: self.spec.pickup,
            note: self.spec.note.clone(),
            discount_code: self.spec.discount_code.clone(),
            distance_m,
            requested_at_ms: self.dispatch.clock().ms_at(self.spec.created),
            allotted_at_ms: now,
        };
        Box::pin(sink.send(CreateOrder { allotment }).into_actor(self).map(|created, act, ctx| {
            let created = created.map_err(ActorError::from).and_then(|r| r);
            match created {
                Ok(order) => {
                    telemetry::offer("accepted");
                    metrics::histogram!(telemetry::TIME_TO_ALLOT).record(act.spec.created.elapsed().as_secs_f64());
                    act.finish("allotted", ctx);
                    AcceptOutcome::Allotted(order)
                }
                Err(e) => {
                    tracing::error!(request = %act.spec.request_id, error = %e, "order creation failed");
                    act.dispatch.sessions().to_user(
                        act.spec.user_id,
                        ErrorFrame {
                            code: e.code(),
                            message: format!("the request could not be allotted: {e}"),
                            client_ref: Some(act.spec.client_ref.clone()),
                        },
                    );
                    act.finish("failed", ctx);
                    AcceptOutcome::Failed(e)
                }
            }
        }))
    }
}

impl Handler<OfferRefused> for RequestActor {
    type Result = ();

    /// Moves on if the refusal is about the open offer.
    fn handle(&mut self, msg: OfferRefused, ctx: &mut Context<Self>) {
        let Some((holder, _)) = self.holder() else {
            return;
        };
        if holder != msg.associate {
            return;
        }
        if matches!(self.phase, Phase::Reserving { .. }) {
            // Refused before the grant reached us: the offer was out all the same.
            self.note_sent();
        }
        telemetry::offer(match msg.why {
            RefusedBy::Declined => "declined",
            RefusedBy::Disconnected => "disconnected",
        });
        self.refused.insert(msg.associate);
        self.phase = Phase::Searching;
        self.next_candidate(ctx);
    }
}

impl Handler<Cancel> for RequestActor {
    type Result = Result<(), ActorError>;

    /// Ends the request unless it is already being allotted.
    fn handle(&mut self, msg: Cancel, ctx: &mut Context<Self>) -> Self::Result {
        if msg.user != self.spec.user_id {
            return Err(ActorError::UnknownRequest);
        }
        match self.phase {
            Phase::Allotting => {
                return Err(ActorError::InvalidState(
                    "the request is already being allotted".into(),
                ));
            }
            Phase::Done => return Err(ActorError::UnknownRequest),
            _ => {}
        }
        self.withdraw_current(OfferEnd::Cancelled);
        self.dispatch.sessions().to_user(
            self.spec.user_id,
            RequestCancelled {
                client_ref: self.spec.client_ref.clone(),
                request_id: self.spec.request_id,
            },
        );
        self.finish("cancelled", ctx);
        Ok(())
    }
}
