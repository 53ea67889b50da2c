//! The board ops watch: each open order run here with its state, since when, whether it
//! has stalled, where both parties last were, and its track (both parties' positions
//! while it moved, thinned to a bounded number of points). Tracks of the most recently
//! finished orders are kept too, so ops can replay them; nothing here is persisted.

use std::collections::VecDeque;
use std::sync::Mutex;

use dashmap::DashMap;
use wire::model::{OrderState, Role};
use wire::{AssociateId, OrderId, UserId};

/// Points kept per order; past it, every other point is dropped and the spacing doubles.
pub const MAX_TRACK_POINTS: usize = 512;
/// Finished orders whose tracks are kept for replay.
pub const FINISHED_KEPT: usize = 1_000;

/// One position of one party on an order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackPoint {
    /// Wall-clock milliseconds.
    pub at_ms: u64,
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lng: f64,
    /// Whose position.
    pub side: Role,
}

/// An order's positions in time order, at most [`MAX_TRACK_POINTS`] of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Track {
    points: Vec<TrackPoint>,
    /// Least time between two kept points of the same side.
    spacing_ms: u64,
}

impl Track {
    /// The kept points, oldest first.
    pub fn points(&self) -> &[TrackPoint] {
        &self.points
    }

    /// Adds `point` unless the same side has a point less than the spacing before it.
    pub fn push(&mut self, point: TrackPoint) {
        let last = self.points.iter().rev().find(|p| p.side == point.side);
        if let Some(last) = last
            && point.at_ms < last.at_ms.saturating_add(self.spacing_ms)
        {
            return;
        }
        if self.points.len() >= MAX_TRACK_POINTS {
            // Thin evenly: the track keeps its whole span at half the detail.
            let mut i = 0;
            self.points.retain(|_| {
                i += 1;
                i % 2 == 1
            });
            self.spacing_ms = (self.spacing_ms * 2).max(1_000);
        }
        self.points.push(point);
    }
}

/// An open order as ops see it.
#[derive(Debug, Clone, PartialEq)]
pub struct BoardOrder {
    /// The order.
    pub order_id: OrderId,
    /// Its user.
    pub user_id: UserId,
    /// Its associate.
    pub associate_id: AssociateId,
    /// Its state.
    pub state: OrderState,
    /// When it entered that state (wall-clock milliseconds).
    pub since_ms: u64,
    /// Whether that state has stalled.
    pub stalled: bool,
    /// The pickup.
    pub pickup: (f64, f64),
    /// The user's last position on this order.
    pub user_at: Option<(f64, f64)>,
    /// The associate's last position on this order.
    pub associate_at: Option<(f64, f64)>,
}

#[derive(Debug)]
struct Entry {
    order: BoardOrder,
    track: Track,
}

/// Open orders and recent tracks, shared by the order actors and the ops console.
#[derive(Debug, Default)]
pub struct Board {
    open: DashMap<OrderId, Entry>,
    finished: Mutex<VecDeque<(OrderId, Track)>>,
}

impl Board {
    /// Puts `order` on the board, or updates its state, keeping its track.
    pub fn upsert(&self, order: BoardOrder) {
        match self.open.get_mut(&order.order_id) {
            Some(mut entry) => {
                let positions = (entry.order.user_at, entry.order.associate_at);
                entry.order = order;
                (entry.order.user_at, entry.order.associate_at) = positions;
            }
            None => {
                self.open.insert(
                    order.order_id,
                    Entry {
                        order,
                        track: Track::default(),
                    },
                );
            }
        }
    }

    /// Puts `order` on the board unless it is there already, so positions relayed before
    /// its actor first posts it are kept.
    pub fn post_if_absent(&self, order: BoardOrder) {
        self.open.entry(order.order_id).or_insert_with(|| Entry {
            order,
            track: Track::default(),
        });
    }

    /// Records where `side` of `order` is, if the order is on the board here.
    pub fn moved(&self, order: OrderId, side: Role, lat: f64, lng: f64, at_ms: u64) {
        if let Some(mut entry) = self.open.get_mut(&order) {
            match side {
                Role::User => entry.order.user_at = Some((lat, lng)),
                Role::Associate => entry.order.associate_at = Some((lat, lng)),
            }
            entry.track.push(TrackPoint {
                at_ms,
                lat,
                lng,
                side,
            });
        }
    }

    /// Takes `order` off the board; its track is kept for replay (`keep`) or dropped
    /// (the order moved to another node).
    pub fn remove(&self, order: OrderId, keep: bool) {
        let Some((_, entry)) = self.open.remove(&order) else {
            return;
        };
        if keep {
            let mut finished = self.finished.lock().unwrap_or_else(|e| e.into_inner());
            if finished.len() >= FINISHED_KEPT {
                finished.pop_front();
            }
            finished.push_back((order, entry.track));
        }
    }

    /// Up to `limit` open orders: stalled ones first, then the longest in their state.
    pub fn orders(&self, limit: usize) -> Vec<BoardOrder> {
        let mut all: Vec<BoardOrder> = self.open.iter().map(|e| e.order.clone()).collect();
        all.sort_by_key(|o| (!o.stalled, o.since_ms));
        all.truncate(limit);
        all
    }

    /// The track of `order`, open or recently finished.
    pub fn track(&self, order: OrderId) -> Option<Track> {
        if let Some(entry) = self.open.get(&order) {
            return Some(entry.track.clone());
        }
        self.finished
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .rev()
            .find(|(id, _)| *id == order)
            .map(|(_, track)| track.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn order(n: u128, stalled: bool, since_ms: u64) -> BoardOrder {
        BoardOrder {
            order_id: OrderId(uuid::Uuid::from_u128(n)),
            user_id: UserId(uuid::Uuid::from_u128(n)),
            associate_id: AssociateId(uuid::Uuid::from_u128(n)),
            state: OrderState::EnRoute,
            since_ms,
            stalled,
            pickup: (12.97, 77.59),
            user_at: None,
            associate_at: None,
        }
    }

    #[test]
    fn positions_survive_a_change_of_state_and_tracks_outlive_the_order() {
        let board = Board::default();
        let o = order(1, false, 10);
        board.upsert(o.clone());
        board.moved(o.order_id, Role::Associate, 12.9, 77.5, 100);
        board.moved(o.order_id, Role::User, 12.8, 77.4, 150);
        board.upsert(BoardOrder {
            state: OrderState::Started,
            ..o.clone()
        });
        let now = &board.orders(10)[0];
        assert_eq!(now.state, OrderState::Started);
        assert_eq!(now.associate_at, Some((12.9, 77.5)));
        assert_eq!(now.user_at, Some((12.8, 77.4)));
        board.remove(o.order_id, true);
        assert!(board.orders(10).is_empty());
        assert_eq!(board.track(o.order_id).unwrap().points().len(), 2);
        // An order handed to another node leaves nothing behind.
        let other = order(2, false, 10);
        board.upsert(other.clone());
        board.remove(other.order_id, false);
        assert!(board.track(other.order_id).is_none());
    }

    #[test]
    fn an_order_posted_before_its_actor_keeps_its_first_positions() {
        let board = Board::default();
        let o = order(1, false, 10);
        board.post_if_absent(o.clone());
        board.moved(o.order_id, Role::User, 12.8, 77.4, 20);
        // The actor's own post, later, and a second early post change nothing kept.
        board.upsert(BoardOrder {
            stalled: true,
            ..o.clone()
        });
        board.post_if_absent(o.clone());
        let now = &board.orders(10)[0];
        assert!(now.stalled);
        assert_eq!(now.user_at, Some((12.8, 77.4)));
        assert_eq!(board.track(o.order_id).unwrap().points().len(), 1);
    }

    #[test]
    fn stalled_orders_come_first_then_the_oldest() {
        let board = Board::default();
        board.upsert(order(1, false, 5));
        board.upsert(order(2, true, 50));
        board.upsert(order(3, false, 1));
        let ids: Vec<u128> = board
            .orders(10)
            .iter()
            .map(|o| o.order_id.0.as_u128())
            .collect();
        assert_eq!(ids, [2, 3, 1]);
        assert_eq!(board.orders(1).len(), 1);
    }

    #[test]
    fn only_the_latest_finished_tracks_are_kept() {
        let board = Board::default();
        for n in 0..(FINISHED_KEPT as u128 + 5) {
            let o = order(n, false, 0);
            board.upsert(o.clone());
            board.remove(o.order_id, true);
        }
        assert!(board.track(order(0, false, 0).order_id).is_none());
        assert!(
            board
                .track(order(FINISHED_KEPT as u128 + 4, false, 0).order_id)
                .is_some()
        );
    }

    proptest! {
        /// However long an order moves, its track stays bounded, in time order, and still
        /// spans from its first point to (nearly) its last.
        #[test]
        fn a_track_is_bounded_ordered_and_spans_the_order(
            steps in proptest::collection::vec((1u64..5_000, any::<bool>()), 1..3_000)
        ) {
            let mut track = Track::default();
            let mut at = 0;
            let mut first = None;
            for (gap, user) in &steps {
                at += gap;
                first.get_or_insert(at);
                let side = if *user { Role::User } else { Role::Associate };
                track.push(TrackPoint { at_ms: at, lat: 0.0, lng: 0.0, side });
            }
            let points = track.points();
            prop_assert!(points.len() <= MAX_TRACK_POINTS);
            prop_assert!(points.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
            prop_assert_eq!(points[0].at_ms, first.unwrap());
            // The newest kept point is within one spacing of the newest point seen.
            let newest = points.last().unwrap().at_ms;
            prop_assert!(at - newest <= track.spacing_ms.max(5_000));
        }
    }
}
