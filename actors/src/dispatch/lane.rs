//! Index lanes: the ordered queue of index changes waiting for a shard supervisor, and
//! each associate's newest position with the route its next report takes.
//!
//! Location reports never queue in an actor mailbox. A report for an associate already
//! in a shard's index, still inside that shard, goes straight onto the shard's lane from
//! the socket's thread; the supervisor applies the lane in batches, and always before it
//! answers a search, so every search sees every report made before it. Only a report
//! that needs a decision (the first position, a shard border crossed) wakes the
//! associate's actor. Requests, offers and answers therefore wait behind at most one
//! batch per shard, never behind thousands of single updates.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use geo::{LatLng, ShardDisc, ShardId, Skills};
use wire::AssociateId;
use wire::model::Availability;

/// One change to a shard's index.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) enum IndexOp {
    /// Put an available associate in the index, or move them.
    Upsert {
        /// The associate.
        id: AssociateId,
        /// Where they are.
        point: LatLng,
        /// What they do.
        skills: Skills,
        /// The generation of the actor that sent it (see [`Generation`]).
        generation: u64,
    },
    /// Move an associate already in the index; nothing if they are not.
    Move {
        /// The associate.
        id: AssociateId,
        /// Where they are now.
        point: LatLng,
    },
    /// Take an associate out of the index.
    Remove {
        /// The associate.
        id: AssociateId,
        /// The generation of the actor that sent it.
        generation: u64,
    },
}

impl actix::Message for IndexOp {
    type Result = ();
}

impl crate::peers::remote::Remote for IndexOp {
    const NAME: &'static str = "index";
}

/// Which of an associate's actors, over time and across nodes, an index change comes
/// from: a newer actor (the same associate reconnected, maybe through another node) has a
/// larger generation. A shard applies an `Upsert` or `Remove` only if no newer actor's
/// has come before it: the changes of two actors reach a shard's owner by different
/// routes, so an old actor's `Remove` (its session replaced) may arrive after the new
/// actor's `Upsert`, and must not take the associate out of the index.
pub(crate) struct Generation;

impl Generation {
    /// A generation above every one this process handed out before, and above the wall
    /// clock in microseconds (so above those of actors other nodes made earlier).
    pub(crate) fn next() -> u64 {
        static LAST: AtomicU64 = AtomicU64::new(0);
        let wall_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let mut last = LAST.load(Ordering::Relaxed);
        loop {
            let next = wall_us.max(last + 1);
            match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }
}

/// Index changes for one shard, in the order they were made.
#[derive(Debug, Default)]
pub(crate) struct IndexLane {
    ops: Mutex<Vec<IndexOp>>,
    /// A drain is on its way to the supervisor.
    scheduled: AtomicBool,
}

impl IndexLane {
    /// Queues `op`; true if the supervisor needs a wake-up to drain.
    pub(crate) fn push(&self, op: IndexOp) -> bool {
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).push(op);
        !self.scheduled.swap(true, Ordering::AcqRel)
    }

    /// Moves every queued change into `into` (which it clears first), re-arming the
    /// wake-up.
    pub(crate) fn take(&self, into: &mut Vec<IndexOp>) {
        into.clear();
        // Re-armed before the swap: a push after this point schedules another drain.
        self.scheduled.store(false, Ordering::Release);
        std::mem::swap(
            &mut *self.ops.lock().unwrap_or_else(|e| e.into_inner()),
            into,
        );
    }

    /// True if nothing waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.ops
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }
}

/// Where an associate's next position report goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// Nowhere: not available, so the position is only kept for later.
    Keep,
    /// To the actor: available but not yet in any index.
    Actor,
    /// Onto this shard's lane while the position stays inside it; to the actor once it
    /// leaves.
    Lane(ShardId),
}

/// What the caller of [`PositionSlot::report`] must do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Nothing.
    Nothing,
    /// Wake the associate's actor.
    WakeActor,
    /// Queue a move on this shard's lane if the position is inside it, else wake the actor.
    Lane(ShardId),
    /// Queue a move on this shard's lane: the position is inside the disc last located
    /// there, so inside the shard.
    Inside(ShardId),
}

#[derive(Debug)]
struct SlotState {
    latest: Option<LatLng>,
    route: Route,
    /// A wake-up is in the actor's mailbox.
    woken: bool,
    /// A disc known to lie inside the lane's shard, around the last located position.
    disc: Option<ShardDisc>,
}

/// An associate's newest reported position and the route the next report takes. The
/// actor decides the route and reads the position under the same lock a report writes
/// it under, so no report falls between the actor's decision and the lane.
#[derive(Debug)]
pub(crate) struct PositionSlot {
    state: Mutex<SlotState>,
    /// The associate's availability as their actor last set it (for the ops console).
    availability: std::sync::atomic::AtomicU8,
}

impl Default for PositionSlot {
    fn default() -> Self {
        Self {
            state: Mutex::new(SlotState {
                latest: None,
                route: Route::Keep,
                woken: false,
                disc: None,
            }),
            availability: std::sync::atomic::AtomicU8::new(0),
        }
    }
}

impl PositionSlot {
    /// Stores `point` as the newest position; says where the report goes next.
    pub(crate) fn report(&self, point: LatLng) -> Next {
        let mut state = self.lock();
        state.latest = Some(point);
        match state.route {
            Route::Keep => Next::Nothing,
            Route::Lane(shard) => match state.disc {
                Some(d) if d.shard() == shard && d.contains(point) => Next::Inside(shard),
                _ => Next::Lane(shard),
            },
            Route::Actor => state.wake(),
        }
    }

    /// The actor is needed after all (the position left the lane's shard).
    pub(crate) fn wake_actor(&self) -> bool {
        self.lock().wake() == Next::WakeActor
    }

    /// `disc` was located around a reported position: later reports inside it skip
    /// locating, while the route is still that shard's lane.
    pub(crate) fn located(&self, disc: ShardDisc) {
        let mut state = self.lock();
        if state.route == Route::Lane(disc.shard()) {
            state.disc = Some(disc);
        }
    }

    /// The newest position, the shard whose index holds the associate (if any), and their
    /// availability as their actor last set it.
    pub(crate) fn seen(&self) -> (Option<LatLng>, Option<ShardId>, Availability) {
        let state = self.lock();
        let lane = match state.route {
            Route::Lane(shard) => Some(shard),
            Route::Keep | Route::Actor => None,
        };
        let availability = match self.availability.load(Ordering::Relaxed) {
            1 => Availability::Available,
            2 => Availability::Reserved,
            3 => Availability::Busy,
            _ => Availability::Offline,
        };
        (state.latest, lane, availability)
    }

    /// Records the associate's availability (their actor, whenever it changes).
    pub(crate) fn set_availability(&self, availability: Availability) {
        let code = match availability {
            Availability::Offline => 0,
            Availability::Available => 1,
            Availability::Reserved => 2,
            Availability::Busy => 3,
        };
        self.availability.store(code, Ordering::Relaxed);
    }

    /// The shard whose lane the next report goes to, if any.
    pub(crate) fn lane(&self) -> Option<ShardId> {
        match self.lock().route {
            Route::Lane(shard) => Some(shard),
            Route::Keep | Route::Actor => None,
        }
    }

    /// The actor took its wake-up.
    pub(crate) fn woken(&self) {
        self.lock().woken = false;
    }

    /// Runs `decide` on the newest position and sets the route it returns, with no report
    /// in between.
    pub(crate) fn route(&self, decide: impl FnOnce(Option<LatLng>) -> Route) {
        let mut state = self.lock();
        state.route = decide(state.latest);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl SlotState {
    fn wake(&mut self) -> Next {
        if std::mem::replace(&mut self.woken, true) {
            Next::Nothing
        } else {
            Next::WakeActor
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(lat: f64) -> LatLng {
        LatLng::new(lat, 77.6).unwrap()
    }

    #[test]
    fn a_lane_gives_back_its_changes_in_order_and_wakes_once_per_drain() {
        let lane = IndexLane::default();
        let id = AssociateId(uuid::Uuid::nil());
        assert!(lane.push(IndexOp::Remove { id, generation: 1 }));
        assert!(!lane.push(IndexOp::Move {
            id,
            point: at(12.9)
        }));
        let mut batch = Vec::new();
        lane.take(&mut batch);
        assert_eq!(
            batch,
            [
                IndexOp::Remove { id, generation: 1 },
                IndexOp::Move {
                    id,
                    point: at(12.9)
                }
            ]
        );
        assert!(lane.is_empty());
        assert!(
            lane.push(IndexOp::Remove { id, generation: 2 }),
            "re-armed by the drain"
        );
    }

    #[test]
    fn reports_follow_the_route_the_actor_set() {
        let slot = PositionSlot::default();
        assert_eq!(
            slot.report(at(12.9)),
            Next::Nothing,
            "kept while unavailable"
        );
        let mut seen = None;
        slot.route(|latest| {
            seen = latest;
            Route::Actor
        });
        assert_eq!(seen, Some(at(12.9)));
        assert_eq!(slot.report(at(13.0)), Next::WakeActor);
        assert_eq!(slot.report(at(13.1)), Next::Nothing, "one wake-up queued");
        slot.woken();
        let shard = geo::ShardMap::new(6).unwrap().shard_of(at(13.1));
        slot.route(|_| Route::Lane(shard));
        assert_eq!(slot.report(at(13.1)), Next::Lane(shard));
        assert!(slot.wake_actor());
        assert!(!slot.wake_actor());
    }

    #[test]
    fn a_located_disc_skips_locating_until_the_position_leaves_it_or_the_route_changes() {
        let map = geo::ShardMap::new(6).unwrap();
        let slot = PositionSlot::default();
        let centre = map.shard_of(at(12.97)).centre();
        let disc = map.locate(centre);
        let shard = disc.shard();
        assert!(disc.radius_m() > 1_000.0);
        // Not on this shard's lane yet: the disc is not taken.
        slot.located(disc);
        slot.route(|_| Route::Lane(shard));
        assert_eq!(slot.report(centre), Next::Lane(shard));
        slot.located(disc);
        // 100 m north: inside the disc.
        let near = LatLng::new(centre.lat() + 0.0009, centre.lng()).unwrap();
        assert_eq!(slot.report(near), Next::Inside(shard));
        // Past the disc's rim (10 km north, another res-6 cell): located again.
        let far = LatLng::new(centre.lat() + 0.09, centre.lng()).unwrap();
        assert_eq!(slot.report(far), Next::Lane(shard));
        // Another shard's lane: the old disc does not apply.
        let other = map.shard_of(far);
        slot.route(|_| Route::Lane(other));
        assert_ne!(other, shard);
        assert_eq!(slot.report(near), Next::Lane(other));
    }
}
