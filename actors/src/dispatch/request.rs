//! The request actor: one per open request. Runs the sequential offer loop: gather
//! candidates (nearest first, across shard borders), reserve one, offer, wait for an
//! answer or the window, move on; widen the radius when candidates run out; give up at
//! the request's deadline; stop at once on cancel.

use std::collections::{HashSet, VecDeque};

use actix::prelude::*;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use geo::{LatLng, Neighbor, TaskType};
use tokio::time::Instant;
use wire::model::{OfferEnd, UnixMs};
use wire::{AssociateId, ErrorFrame, NoAssociate, Offer, RequestCancelled, RequestId, UserId};

use crate::allotment::{Allotment, CreateOrder};
use crate::clock::Clock;
use crate::dispatch::Dispatch;
use crate::dispatch::messages;
use crate::dispatch::messages::{
    AcceptOffer, AcceptOutcome, Cancel, Candidates, LocalNearest, OfferRefused, Refusal, RefusedBy,
};
use crate::error::ActorError;
use crate::peers::Relinquish;
use crate::telemetry;

/// How long a request waits for an associate's actor to confirm a withdrawal before it
/// moves on all the same (their actor ends the reservation itself after its window).
const CONFIRM_WITHDRAWAL: std::time::Duration = std::time::Duration::from_secs(5);

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
    /// When it was made, in Unix milliseconds (as stored).
    pub created_at_ms: UnixMs,
    /// When to give up, in Unix milliseconds (as stored and told to the user).
    pub deadline_at_ms: UnixMs,
    /// Associates who already refused it (a resumed request remembers them).
    pub refused: Vec<AssociateId>,
}

impl RequestSpec {
    /// The spec of a stored request, with its times placed on tokio's clock.
    pub(crate) fn resumed(
        stored: &storage::OpenRequest,
        task: TaskType,
        pickup: LatLng,
        clock: &Clock,
    ) -> Self {
        let now = Instant::now();
        let created_ago = clock.now_ms().saturating_sub(stored.created_at_ms);
        Self {
            request_id: stored.request_id,
            user_id: stored.user_id,
            client_ref: stored.client_ref.clone(),
            task,
            task_name: stored.task.clone(),
            pickup,
            note: stored.note.clone(),
            discount_code: stored.discount_code.clone(),
            created: now
                .checked_sub(std::time::Duration::from_millis(created_ago))
                .unwrap_or(now),
            deadline: clock.instant_at(stored.deadline_at_ms),
            created_at_ms: stored.created_at_ms,
            deadline_at_ms: stored.deadline_at_ms,
            refused: stored.refused.clone(),
        }
    }

    /// The request as stored.
    fn stored(&self, refused: &HashSet<AssociateId>) -> storage::OpenRequest {
        let mut refused: Vec<AssociateId> = refused.iter().copied().collect();
        refused.sort();
        storage::OpenRequest {
            request_id: self.request_id,
            user_id: self.user_id,
            client_ref: self.client_ref.clone(),
            task: self.task_name.clone(),
            pickup: self.pickup,
            note: self.note.clone(),
            discount_code: self.discount_code.clone(),
            created_at_ms: self.created_at_ms,
            deadline_at_ms: self.deadline_at_ms,
            refused,
        }
    }
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
        generation: u64,
        distance_m: u32,
    },
    /// An offer is out.
    Offering {
        associate: AssociateId,
        generation: u64,
        distance_m: u32,
    },
    /// An offer ended: its refusal is being stored and, when its window passed, the
    /// associate's actor asked to confirm the end. The request still answers (a late
    /// acceptance is too late, a cancel ends it) but offers nothing meanwhile.
    MovingOn,
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
    /// When the current offer's window ends (the engine's clock).
    expires_at_ms: UnixMs,
}

impl RequestActor {
    /// A request actor; it starts searching when started.
    pub fn new(spec: RequestSpec, dispatch: Dispatch) -> Self {
        let refused = spec.refused.iter().copied().collect();
        Self {
            spec,
            dispatch,
            phase: Phase::Searching,
            generation: 0,
            queue: VecDeque::new(),
            refused,
            skipped: HashSet::new(),
            radius_step: 0,
            offered_any: false,
            expires_at_ms: 0,
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
        let shard = self.dispatch.shard_of(self.spec.pickup);
        self.dispatch
            .ask_supervisor(shard, Candidates { search })
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
            self.reserve(candidate, ctx);
            return;
        }
        self.search(ctx);
    }

    fn reserve(&mut self, candidate: Neighbor<AssociateId>, ctx: &mut Context<Self>) {
        self.generation += 1;
        let generation = self.generation;
        let associate = candidate.id;
        let distance_m = candidate.distance_m.round() as u32;
        self.phase = Phase::Reserving {
            associate,
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
        self.expires_at_ms = offer.expires_at_ms;
        let asked = self
            .dispatch
            .reserve(associate, self.spec.task, self.spec.pickup, offer);
        asked
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
                    Ok(shown_at_ms) => {
                        act.offered(associate, generation, distance_m, expires, shown_at_ms, ctx)
                    }
                    Err(Refusal::NotAvailable | Refusal::NotEligible | Refusal::OutsideZone) => {
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
        generation: u64,
        distance_m: u32,
        expires: Instant,
        shown_at_ms: UnixMs,
        ctx: &mut Context<Self>,
    ) {
        self.note_sent(shown_at_ms);
        self.phase = Phase::Offering {
            associate,
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
            generation: g,
            ..
        } = self.phase
        else {
            return;
        };
        if g != generation {
            return;
        }
        let ended =
            self.dispatch
                .withdraw_confirmed(associate, self.spec.request_id, OfferEnd::Expired);
        self.refused_then_search(associate, "expired", ended, ctx);
    }

    /// Remembers, durably, that `associate` refused (declined, let the window pass, or
    /// went away), so they are never offered this request again, even after a restart;
    /// then searches again. The next offer goes out only once the refusal is on disk and
    /// `ended` has said when the associate's reservation ended (so no two associates
    /// ever hold this request's offer at once); that time closes the offer in the trail.
    fn refused_then_search(
        &mut self,
        associate: AssociateId,
        outcome: &'static str,
        ended: BoxFuture<'static, Option<UnixMs>>,
        ctx: &mut Context<Self>,
    ) {
        self.refused.insert(associate);
        self.phase = Phase::MovingOn;
        let stored = self.spec.stored(&self.refused);
        let request = self.spec.request_id;
        let written = crate::disk::write(self.dispatch.store().put_request(&stored));
        // Not `wait`: the associate may be putting an acceptance to this request at this
        // very moment, and answers the withdrawal only once that is answered (too late).
        // The offer's end goes into the trail even if the request ends meanwhile.
        let (dispatch, (tx, rx)) = (self.dispatch.clone(), tokio::sync::oneshot::channel());
        actix_rt::spawn(async move {
            let ended = tokio::time::timeout(CONFIRM_WITHDRAWAL, ended).await;
            let at_ms = ended.ok().flatten().unwrap_or_else(|| dispatch.now_ms());
            telemetry::offer(outcome);
            dispatch.offer_ended(request, associate, at_ms, outcome);
            let _ = tx.send(());
        });
        let both = futures_util::future::join(rx, written);
        ctx.spawn(both.into_actor(self).map(move |(_, written), act, ctx| {
            if let Err(e) = written {
                tracing::error!(%request, error = %e, "could not store a refusal");
            }
            if matches!(act.phase, Phase::MovingOn) {
                act.search_again(ctx);
            }
        }));
    }

    /// After an offer ends: search afresh, so the next offer goes to whoever is nearest
    /// now, not to the next of a ranking made before the window.
    fn search_again(&mut self, ctx: &mut Context<Self>) {
        self.queue.clear();
        self.search(ctx);
    }

    /// Counts how an offer ended and closes it in the request's trail at `at_ms`.
    fn offer_ended(&self, associate: AssociateId, at_ms: UnixMs, outcome: &'static str) {
        telemetry::offer(outcome);
        self.dispatch
            .offer_ended(self.spec.request_id, associate, at_ms, outcome);
    }

    /// Counts an offer that reached an associate at `shown_at_ms` (and the first one's
    /// latency), and opens it in the request's trail.
    fn note_sent(&mut self, shown_at_ms: UnixMs) {
        telemetry::offer("sent");
        if let Some((associate, _)) = self.holder() {
            self.dispatch.offer_started(
                self.spec.request_id,
                associate,
                shown_at_ms,
                self.expires_at_ms,
            );
        }
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
        let associate = match self.phase {
            Phase::Offering { associate, .. } => {
                // Told now, so it ends no later than the associate hears of it.
                self.offer_ended(associate, self.dispatch.now_ms(), "withdrawn");
                associate
            }
            Phase::Reserving { associate, .. } => associate,
            _ => return,
        };
        self.dispatch
            .withdraw(associate, self.spec.request_id, reason);
    }

    fn finish(&mut self, outcome: &'static str, ctx: &mut Context<Self>) {
        self.phase = Phase::Done;
        self.dispatch.close_trail(self.spec.request_id, outcome);
        self.dispatch
            .request_finished(self.spec.request_id, self.spec.user_id);
        let shard = self.dispatch.shard_of(self.spec.pickup);
        // Its supervisor runs: it cannot retire while this request does.
        self.dispatch
            .to_existing_supervisor(shard, crate::dispatch::messages::RequestDone {});
        telemetry::request_ended(outcome);
        ctx.stop();
    }

    /// Ends a request that got no order: forgets it durably, then tells the user
    /// `frame`, so a request the user heard had ended can never resume after a crash.
    fn end_without_order(
        &mut self,
        outcome: &'static str,
        frame: wire::ServerMessage,
        ctx: &mut Context<Self>,
    ) {
        let removal = self.dispatch.store().remove_request(self.spec.request_id);
        let sessions = self.dispatch.sessions().clone();
        let (request, user) = (self.spec.request_id, self.spec.user_id);
        actix_rt::spawn(async move {
            if let Err(e) = crate::disk::write(removal).await {
                tracing::error!(%request, error = %e, "could not forget an ended request");
            }
            sessions.to_user(user, frame);
        });
        self.finish(outcome, ctx);
    }

    fn deadline_passed(&mut self, ctx: &mut Context<Self>) {
        if matches!(self.phase, Phase::Allotting | Phase::Done) {
            return;
        }
        self.withdraw_current(OfferEnd::RequestExpired);
        let frame = NoAssociate {
            client_ref: self.spec.client_ref.clone(),
            request_id: self.spec.request_id,
        };
        self.end_without_order("no_associate", frame.into(), ctx);
    }
}

impl Actor for RequestActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        telemetry::request_opened();
        self.dispatch.open_trail(&self.spec);
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
        let accepted_at_ms = self.dispatch.now_ms();
        if offered_distance.is_some() && matches!(self.phase, Phase::Reserving { .. }) {
            // Accepted before the grant reached us: the offer was out all the same.
            self.note_sent(msg.offered_at_ms.unwrap_or(accepted_at_ms));
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
        let accepted_by = msg.associate;
        Box::pin(sink.send(CreateOrder { allotment }).into_actor(self).map(move |created, act, ctx| {
            let created = created.map_err(ActorError::from).and_then(|r| r);
            match created {
                Ok(order) => {
                    act.offer_ended(accepted_by, accepted_at_ms, "accepted");
                    metrics::histogram!(telemetry::TIME_TO_ALLOT).record(act.spec.created.elapsed().as_secs_f64());
                    act.finish("allotted", ctx);
                    AcceptOutcome::Allotted(order)
                }
                Err(e) => {
                    act.offer_ended(accepted_by, accepted_at_ms, "failed");
                    tracing::error!(request = %act.spec.request_id, error = %e, "order creation failed");
                    let frame = ErrorFrame {
                        code: e.code(),
                        message: format!("the request could not be allotted: {e}"),
                        client_ref: Some(act.spec.client_ref.clone()),
                    };
                    act.end_without_order("failed", frame.into(), ctx);
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
        let now = self.dispatch.now_ms();
        if matches!(self.phase, Phase::Reserving { .. }) {
            // Refused before the grant reached us: the offer was out all the same.
            self.note_sent(msg.offered_at_ms.unwrap_or(now));
        }
        let outcome = match msg.why {
            RefusedBy::Declined => "declined",
            RefusedBy::Disconnected => "disconnected",
        };
        // Ended over there already: the associate's own time, or (an older node) now.
        let ended = futures_util::future::ready(Some(msg.ended_at_ms.unwrap_or(now))).boxed();
        self.refused_then_search(msg.associate, outcome, ended, ctx);
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
        let frame = RequestCancelled {
            client_ref: self.spec.client_ref.clone(),
            request_id: self.spec.request_id,
        };
        self.end_without_order("cancelled", frame.into(), ctx);
        Ok(())
    }
}

impl Handler<Relinquish> for RequestActor {
    type Result = ();

    /// Stops here without ending the request if its pickup is in the cell handed over:
    /// the open offer is withdrawn, and the cell's new owner resumes the request from the
    /// store.
    fn handle(&mut self, msg: Relinquish, ctx: &mut Context<Self>) {
        let shard = self.dispatch.shard_of(self.spec.pickup);
        if shard != msg.shard || matches!(self.phase, Phase::Allotting | Phase::Done) {
            return;
        }
        self.withdraw_current(OfferEnd::Expired);
        self.phase = Phase::Done;
        self.dispatch
            .close_trail(self.spec.request_id, "handed_over");
        self.dispatch.request_stopped(self.spec.request_id);
        self.dispatch
            .to_existing_supervisor(shard, messages::RequestDone {});
        telemetry::request_ended("handed_over");
        ctx.stop();
    }
}
