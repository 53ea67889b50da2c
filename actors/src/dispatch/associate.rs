//! The associate actor: one per associate, the single source of truth for their
//! availability. It grants reservations itself (so nobody is reserved twice), owns the
//! associate's position, skills and zone, and keeps its shard supervisor's index in step:
//! in the index exactly when online, connected, known to be somewhere and free.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use geo::{ShardId, Skills};
use tokio::time::Instant;
use wire::model::{Availability, OfferEnd, UnixMs};
use wire::{AssociateId, Offer, OfferEnded, OrderId, RequestId, Status};

use crate::dispatch::lane::{Generation, IndexOp, PositionSlot, Route};
use crate::dispatch::messages::{
    AcceptOffer, AcceptOutcome, AnswerOffer, AssociateView, Connected, Disconnected, GoOffline,
    GoOnline, MarkBusy, Moved, OfferRefused, Refusal, RefusedBy, Reindex, Release, Reserve,
    SetZone, Withdraw,
};
use crate::dispatch::zone::ZoneFilter;
use crate::dispatch::{AssociateProfileInfo, Dispatch};
use crate::error::ActorError;
use crate::peers::remote::Unreached;
use crate::registry::{MAILBOX_CAPACITY, Mailbox};

/// How long past its window a reservation may wait for its request's word.
const RESERVATION_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug)]
enum Phase {
    Free,
    /// Holding `offer` since `since_ms` (the engine's clock, when it was shown).
    Reserved {
        offer: Offer,
        since_ms: UnixMs,
    },
    Busy {
        order: OrderId,
    },
}

/// One associate.
pub struct AssociateActor {
    id: AssociateId,
    profile: AssociateProfileInfo,
    skills: Skills,
    zone: Option<ZoneFilter>,
    online: bool,
    connected: bool,
    phase: Phase,
    /// The shard whose index holds this associate, if any.
    indexed_in: Option<ShardId>,
    /// This actor's generation, on every index change it makes.
    generation: u64,
    /// The newest reported position, and where the next report goes.
    position: Arc<PositionSlot>,
    /// The last reservation that ended, and when: what a late withdrawal is told.
    last_ended: Option<(RequestId, UnixMs)>,
    /// When the last message arrived.
    last_activity: Instant,
    mailbox: Mailbox,
    dispatch: Dispatch,
}

impl AssociateActor {
    /// A disconnected associate: online for `online` skills if they were taking offers
    /// before their actor last stopped, else offline.
    pub(crate) fn new(
        id: AssociateId,
        profile: AssociateProfileInfo,
        online: Option<Skills>,
        position: Arc<PositionSlot>,
        mailbox: Mailbox,
        dispatch: Dispatch,
    ) -> Self {
        let resumed = online.and_then(|s| permitted(s, profile.skills).ok());
        Self {
            id,
            skills: resumed.unwrap_or(profile.skills),
            zone: profile.zone.clone(),
            profile,
            online: resumed.is_some(),
            connected: false,
            phase: Phase::Free,
            last_ended: None,
            indexed_in: None,
            generation: Generation::next(),
            position,
            last_activity: Instant::now(),
            mailbox,
            dispatch,
        }
    }

    /// Counts a message from the registry.
    fn received(&mut self) {
        self.mailbox.handled();
        self.last_activity = Instant::now();
    }

    /// Stops if the app is away, nothing is held (no offer, no order), nothing happened
    /// for the idle time and every message sent here was handled. Whether they were
    /// online is in their stored presence, so the actor rebuilt on reconnect is the same.
    fn retire_if_idle(&mut self, ctx: &mut Context<Self>) {
        let idle = self.dispatch.config().associate_idle;
        if !self.connected
            && matches!(self.phase, Phase::Free)
            && self.indexed_in.is_none()
            && self.last_activity.elapsed() >= idle
            && self
                .dispatch
                .retire_associate(self.id, &ctx.address(), &self.mailbox)
        {
            ctx.stop();
        }
    }

    fn availability(&self) -> Availability {
        match self.phase {
            Phase::Busy { .. } => Availability::Busy,
            Phase::Reserved { .. } => Availability::Reserved,
            Phase::Free if self.online && self.connected => Availability::Available,
            Phase::Free => Availability::Offline,
        }
    }

    fn view(&self) -> AssociateView {
        AssociateView {
            availability: self.availability(),
            skills: self.skills,
            offer: match &self.phase {
                Phase::Reserved { offer, .. } => Some(offer.clone()),
                _ => None,
            },
            order: match self.phase {
                Phase::Busy { order } => Some(order),
                _ => None,
            },
        }
    }

    fn status_frame(&self) -> Status {
        let catalog = self.dispatch.catalog();
        Status {
            availability: self.availability(),
            skills: self
                .skills
                .iter()
                .filter_map(|t| catalog.name(t).map(str::to_owned))
                .collect(),
        }
    }

    /// Brings the supervisors' indexes in line with this actor's state (through their
    /// lanes, in order with the moves reported meanwhile) and sets where the next
    /// position report goes.
    fn sync_index(&mut self) {
        self.position.set_availability(self.availability());
        let eligible = self.availability() == Availability::Available && !self.skills.is_empty();
        let (id, skills, dispatch, generation) =
            (self.id, self.skills, &self.dispatch, self.generation);
        let indexed_in = &mut self.indexed_in;
        self.position.route(|latest| {
            let want = match (eligible, latest) {
                (true, Some(p)) => Some((dispatch.shard_of(p), p)),
                _ => None,
            };
            if let Some(old) = *indexed_in
                && want.map(|(s, _)| s) != Some(old)
            {
                // It holds this associate, so it runs: it cannot retire with a
                // non-empty index.
                dispatch.to_existing_lane(old, IndexOp::Remove { id, generation });
                *indexed_in = None;
            }
            match want {
                Some((shard, point)) => {
                    dispatch.to_lane(
                        shard,
                        IndexOp::Upsert {
                            id,
                            point,
                            skills,
                            generation,
                        },
                    );
                    *indexed_in = Some(shard);
                    Route::Lane(shard)
                }
                None if eligible => Route::Actor,
                None => Route::Keep,
            }
        });
    }

    /// Ends a reservation for `request_id`, if that is the one held; true if it was.
    fn end_reservation(&mut self, request_id: RequestId) -> bool {
        match &self.phase {
            Phase::Reserved { offer, .. } if offer.request_id == request_id => {
                self.phase = Phase::Free;
                self.last_ended = Some((request_id, self.dispatch.now_ms()));
                self.sync_index();
                true
            }
            _ => false,
        }
    }
}

/// The skills an associate may go online for: `asked`, or the profile's when none are
/// asked; never beyond the profile's when it lists any.
fn permitted(asked: Skills, profile: Skills) -> Result<Skills, ActorError> {
    let skills = if asked.is_empty() { profile } else { asked };
    if skills.is_empty() {
        return Err(ActorError::InvalidState(
            "no skills: add task types to the profile".into(),
        ));
    }
    if !profile.is_empty() && skills.bits() & !profile.bits() != 0 {
        return Err(ActorError::InvalidState(
            "skills beyond the profile's".into(),
        ));
    }
    Ok(skills)
}

impl AssociateActor {
    /// Ends the reservation for `request_id` as refused `why`, and tells the request
    /// when it was shown and when it ended.
    fn refuse(&mut self, request_id: RequestId, why: RefusedBy) {
        let Phase::Reserved { since_ms, .. } = self.phase else {
            return;
        };
        self.end_reservation(request_id);
        let ended_ms = self.last_ended.map_or(since_ms, |(_, at)| at);
        if let Some(request) = self.dispatch.request_ref(request_id) {
            request.tell(OfferRefused {
                associate: self.id,
                why,
                offered_at_ms: Some(since_ms),
                ended_at_ms: Some(ended_ms),
            });
        }
    }

    /// Puts their acceptance to the request, wherever its offer loop runs; an error if it
    /// cannot be reached (it ended, or its node is away).
    fn put_acceptance(
        &self,
        request_id: RequestId,
        offered_at_ms: UnixMs,
    ) -> impl Future<Output = Result<AcceptOutcome, Unreached>> + use<> {
        let asked = self.dispatch.request_ref(request_id).map(|request| {
            request.ask(AcceptOffer {
                associate: self.id,
                offered_at_ms: Some(offered_at_ms),
            })
        });
        async move {
            match asked {
                Some(asked) => asked.await,
                None => Err(Unreached::Gone),
            }
        }
    }

    /// Stores whether they take offers (so a restart keeps it), then tells the app.
    fn persist_presence(&self) -> ResponseActFuture<Self, Result<AssociateView, ActorError>> {
        let catalog = self.dispatch.catalog();
        let presence = storage::Presence {
            online: self.online,
            skills: self
                .skills
                .iter()
                .filter_map(|t| catalog.name(t).map(str::to_owned))
                .collect(),
            at_ms: self.dispatch.now_ms(),
        };
        let written = self.dispatch.store().put_presence(self.id, &presence);
        Box::pin(
            crate::disk::write(written)
                .into_actor(self)
                .map(|written, act, _| {
                    written?;
                    act.dispatch
                        .sessions()
                        .to_associate(act.id, act.status_frame());
                    Ok(act.view())
                }),
        )
    }
}

impl Actor for AssociateActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        let every = (self.dispatch.config().associate_idle / 2).max(Duration::from_millis(1));
        ctx.run_interval(every, |act, ctx| act.retire_if_idle(ctx));
    }
}

impl Handler<Connected> for AssociateActor {
    type Result = MessageResult<Connected>;

    /// Refreshes the profile and marks the app connected; an associate who was online
    /// before a disconnect is available again without asking.
    fn handle(&mut self, msg: Connected, _: &mut Context<Self>) -> Self::Result {
        self.received();
        if self.profile != msg.info {
            if !self.online {
                self.skills = msg.info.skills;
            }
            self.zone = msg.info.zone.clone();
            self.profile = msg.info;
        }
        self.connected = true;
        self.sync_index();
        MessageResult(self.view())
    }
}

impl Handler<Disconnected> for AssociateActor {
    type Result = ();

    /// Leaves the index; an open offer counts as refused and the request moves on.
    fn handle(&mut self, _: Disconnected, _: &mut Context<Self>) {
        self.received();
        self.connected = false;
        if let Phase::Reserved { offer, .. } = &self.phase {
            let request_id = offer.request_id;
            self.refuse(request_id, RefusedBy::Disconnected);
        }
        self.sync_index();
    }
}

impl Handler<GoOnline> for AssociateActor {
    type Result = AtomicResponse<Self, Result<AssociateView, ActorError>>;

    /// Online for the given skills (which must be a subset of the profile's, when the
    /// profile has any) or the profile's; durable before the app hears of it.
    fn handle(&mut self, msg: GoOnline, _: &mut Context<Self>) -> Self::Result {
        self.received();
        let skills = match permitted(msg.skills.unwrap_or_default(), self.profile.skills) {
            Ok(s) => s,
            Err(e) => return AtomicResponse::new(Box::pin(fut::ready(Err(e)))),
        };
        self.skills = skills;
        self.online = true;
        self.sync_index();
        AtomicResponse::new(self.persist_presence())
    }
}

impl Handler<GoOffline> for AssociateActor {
    type Result = AtomicResponse<Self, Result<AssociateView, ActorError>>;

    /// Offline (durable before the app hears of it); an open offer stays until answered
    /// or withdrawn.
    fn handle(&mut self, _: GoOffline, _: &mut Context<Self>) -> Self::Result {
        self.received();
        self.online = false;
        self.sync_index();
        AtomicResponse::new(self.persist_presence())
    }
}

impl Handler<Moved> for AssociateActor {
    type Result = ();

    /// Indexes them at the newest position, handing over across shard borders.
    fn handle(&mut self, _: Moved, _: &mut Context<Self>) {
        self.received();
        self.position.woken();
        self.sync_index();
    }
}

impl Handler<SetZone> for AssociateActor {
    type Result = ();

    /// Replaces the zone.
    fn handle(&mut self, msg: SetZone, _: &mut Context<Self>) {
        self.received();
        self.zone = msg.zone;
    }
}

impl Handler<Reserve> for AssociateActor {
    type Result = Result<UnixMs, Refusal>;

    /// Grants the reservation only when free, eligible and in zone; then shows the offer,
    /// answering when (on the engine's clock) it was shown.
    /// Should the request's withdrawal never come (its node lost), the reservation ends
    /// by itself a grace period after the offer's window.
    fn handle(&mut self, msg: Reserve, ctx: &mut Context<Self>) -> Self::Result {
        self.received();
        if self.availability() != Availability::Available {
            return Err(Refusal::NotAvailable);
        }
        if !self.skills.contains(msg.task) {
            return Err(Refusal::NotEligible);
        }
        if self.zone.as_ref().is_some_and(|z| !z.contains(msg.pickup)) {
            return Err(Refusal::OutsideZone);
        }
        self.dispatch
            .sessions()
            .to_associate(self.id, msg.offer.clone());
        let (request_id, expires_at_ms) = (msg.offer.request_id, msg.offer.expires_at_ms);
        let since_ms = self.dispatch.now_ms();
        self.phase = Phase::Reserved {
            offer: msg.offer,
            since_ms,
        };
        self.sync_index();
        let lapse = self.dispatch.clock().instant_at(expires_at_ms) + RESERVATION_GRACE;
        ctx.run_later(
            lapse.saturating_duration_since(Instant::now()),
            move |act, _| {
                if let Phase::Reserved { offer, .. } = &act.phase
                    && offer.request_id == request_id
                {
                    tracing::warn!(associate = %act.id, request = %request_id, "an offer outlived its window with no word from its request: ending it");
                    act.refuse(request_id, RefusedBy::Disconnected);
                    act.dispatch.sessions().to_associate(
                        act.id,
                        OfferEnded {
                            request_id,
                            reason: OfferEnd::Expired,
                        },
                    );
                }
            },
        );
        Ok(since_ms)
    }
}

impl Handler<Withdraw> for AssociateActor {
    type Result = Option<UnixMs>;

    /// Ends the reservation if it is for that request and tells the app why; answers
    /// when the request's reservation ended here (now, or earlier if it already had).
    fn handle(&mut self, msg: Withdraw, _: &mut Context<Self>) -> Self::Result {
        self.received();
        if self.end_reservation(msg.request_id) {
            self.dispatch.sessions().to_associate(
                self.id,
                OfferEnded {
                    request_id: msg.request_id,
                    reason: msg.reason,
                },
            );
        }
        self.last_ended
            .filter(|(request, _)| *request == msg.request_id)
            .map(|(_, at)| at)
    }
}

impl Handler<AnswerOffer> for AssociateActor {
    type Result = AtomicResponse<Self, Result<Option<OrderId>, ActorError>>;

    /// A decline frees the associate at once. An acceptance is put to the request and
    /// nothing else is handled until it answers, so no other message can change the
    /// reservation under it.
    fn handle(&mut self, msg: AnswerOffer, _: &mut Context<Self>) -> Self::Result {
        self.received();
        let since_ms = match &self.phase {
            Phase::Reserved { offer, since_ms } if offer.request_id == msg.request_id => *since_ms,
            _ => return AtomicResponse::new(Box::pin(fut::ready(Err(ActorError::NotYourOffer)))),
        };
        if !msg.accept {
            self.refuse(msg.request_id, RefusedBy::Declined);
            return AtomicResponse::new(Box::pin(fut::ready(Ok(None))));
        }
        let request_id = msg.request_id;
        AtomicResponse::new(Box::pin(
            self.put_acceptance(request_id, since_ms)
                .into_actor(self)
                .map(move |outcome, act, _| match outcome {
                    Ok(AcceptOutcome::Allotted(order)) => {
                        act.phase = Phase::Busy { order };
                        act.sync_index();
                        Ok(Some(order))
                    }
                    Ok(AcceptOutcome::TooLate) | Err(_) => {
                        if act.end_reservation(request_id) {
                            act.dispatch.sessions().to_associate(
                                act.id,
                                OfferEnded {
                                    request_id,
                                    reason: OfferEnd::Expired,
                                },
                            );
                        }
                        Err(ActorError::NotYourOffer)
                    }
                    Ok(AcceptOutcome::Failed(e)) => {
                        act.end_reservation(request_id);
                        Err(e)
                    }
                }),
        ))
    }
}

impl Handler<Release> for AssociateActor {
    type Result = ();

    /// Free again once the order that made them busy ends.
    fn handle(&mut self, msg: Release, _: &mut Context<Self>) {
        self.received();
        if matches!(self.phase, Phase::Busy { order } if order == msg.order) {
            self.phase = Phase::Free;
            self.sync_index();
            self.dispatch
                .sessions()
                .to_associate(self.id, self.status_frame());
        }
    }
}

impl Handler<MarkBusy> for AssociateActor {
    type Result = ();

    /// Busy on a recovered order.
    fn handle(&mut self, msg: MarkBusy, _: &mut Context<Self>) {
        self.received();
        self.phase = Phase::Busy { order: msg.order };
        self.sync_index();
    }
}

impl Handler<Reindex> for AssociateActor {
    type Result = ();

    /// Puts them in the index of `shard` again if they belong there (its new owner
    /// started empty).
    fn handle(&mut self, msg: Reindex, _: &mut Context<Self>) {
        self.received();
        if self.indexed_in == Some(msg.shard) {
            self.sync_index();
        }
    }
}
