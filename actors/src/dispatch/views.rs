//! Ops views of dispatch: where associates are, and the trails of offers each request
//! made (the ops console and the HTTP history read these).

use geo::ShardId;
use wire::model::UnixMs;
use wire::{AssociateId, RequestId};

use crate::dispatch::request::RequestSpec;

use super::handle::Dispatch;

impl Dispatch {
    /// How many shard supervisors and associate actors run now.
    pub fn actor_counts(&self) -> (usize, usize) {
        (self.shared.supervisors.len(), self.shared.associates.len())
    }

    /// Where the associates whose actors run here are, and in which state, inside `view`
    /// (by default a box around them all): one by one while at most `max_points` are in
    /// view and the view is at most [`DETAIL_SPAN_M`] across, else counted per H3 cell at
    /// a resolution that suits the view's width; and how many are available in each shard
    /// cell.
    pub fn positions(&self, view: Option<geo::Viewport>, max_points: usize) -> MarketView {
        let mut points = Vec::new();
        let mut available: std::collections::HashMap<ShardId, usize> = Default::default();
        self.shared.associates.for_each(|slot| {
            let (latest, lane, availability) = slot.extra.seen();
            if let Some(shard) = lane {
                *available.entry(shard).or_default() += 1;
            }
            if let Some(p) = latest {
                points.push((p, availability));
            }
        });
        let located = points.len();
        let view = view.unwrap_or_else(|| geo::Viewport::around(points.iter().map(|(p, _)| *p)));
        points.retain(|(p, _)| view.contains(*p));
        let counted = |counts: std::collections::HashMap<ShardId, usize>| {
            counts
                .into_iter()
                .map(|(shard, count)| {
                    let c = shard.centre();
                    CellCount {
                        lat: c.lat(),
                        lng: c.lng(),
                        count,
                    }
                })
                .collect::<Vec<_>>()
        };
        let available = counted(available);
        if points.len() <= max_points && view.span_m() <= DETAIL_SPAN_M {
            return MarketView {
                located,
                points: points
                    .into_iter()
                    .map(|(p, availability)| AssociatePoint {
                        lat: p.lat(),
                        lng: p.lng(),
                        availability,
                    })
                    .collect(),
                cells: Vec::new(),
                resolution: None,
                available,
            };
        }
        let resolution = view.resolution_for(CELLS_ACROSS, FINEST_AGGREGATE);
        let map = geo::ShardMap::new(resolution).unwrap_or(self.shared.map);
        let mut per_cell: std::collections::HashMap<ShardId, usize> = Default::default();
        for (p, _) in &points {
            *per_cell.entry(map.shard_of(*p)).or_default() += 1;
        }
        MarketView {
            located,
            points: Vec::new(),
            cells: counted(per_cell),
            resolution: Some(map.resolution()),
            available,
        }
    }

    /// Starts the trail of a request whose offer loop runs here.
    pub(crate) fn open_trail(&self, spec: &RequestSpec) {
        self.shared.trails.insert(
            spec.request_id,
            RequestTrail {
                request_id: spec.request_id,
                task: spec.task_name.clone(),
                lat: spec.pickup.lat(),
                lng: spec.pickup.lng(),
                created_at_ms: spec.created_at_ms,
                offers: Vec::new(),
                outcome: None,
                ended_at_ms: None,
            },
        );
    }

    /// Opens an offer of `request` to `associate`, shown at `at_ms` until `expires_at_ms`.
    pub(crate) fn offer_started(
        &self,
        request: RequestId,
        associate: AssociateId,
        at_ms: UnixMs,
        expires_at_ms: UnixMs,
    ) {
        if let Some(mut trail) = self.shared.trails.get_mut(&request) {
            if trail.offers.len() >= MAX_TRAIL {
                trail.offers.remove(0);
            }
            trail.offers.push(OfferStep {
                associate,
                at_ms,
                expires_at_ms,
                ended_at_ms: None,
                outcome: "open",
            });
        }
    }

    /// Ends the open offer of `request` to `associate` at `at_ms` with `outcome`.
    pub(crate) fn offer_ended(
        &self,
        request: RequestId,
        associate: AssociateId,
        at_ms: UnixMs,
        outcome: &'static str,
    ) {
        let end = |trail: &mut RequestTrail| {
            if let Some(step) = trail
                .offers
                .iter_mut()
                .rev()
                .find(|s| s.associate == associate && s.outcome == "open")
            {
                step.outcome = outcome;
                step.ended_at_ms = Some(at_ms.max(step.at_ms));
            }
        };
        if let Some(mut trail) = self.shared.trails.get_mut(&request) {
            end(&mut trail);
            return;
        }
        // Ended meanwhile (a confirmation that came after the request's end).
        let mut recent = self
            .shared
            .ended_trails
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(trail) = recent.iter_mut().rev().find(|t| t.request_id == request) {
            end(trail);
        }
    }

    /// Ends a request's trail with `outcome`, keeping it among the recent ones.
    pub(crate) fn close_trail(&self, request: RequestId, outcome: &'static str) {
        if let Some((_, mut trail)) = self.shared.trails.remove(&request) {
            trail.outcome = Some(outcome);
            trail.ended_at_ms = Some(self.now_ms());
            let mut recent = self
                .shared
                .ended_trails
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if recent.len() >= MAX_ENDED_TRAILS {
                recent.pop_front();
            }
            recent.push_back(trail);
        }
    }

    /// The trail of a request whose offer loop runs here or ended here recently.
    pub fn trail(&self, request: RequestId) -> Option<RequestTrail> {
        if let Some(trail) = self.shared.trails.get(&request) {
            return Some(trail.clone());
        }
        let recent = self
            .shared
            .ended_trails
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        recent
            .iter()
            .rev()
            .find(|t| t.request_id == request)
            .cloned()
    }

    /// The open requests running here with their offers, at most `max`, oldest first.
    pub fn trails(&self, max: usize) -> Vec<RequestTrail> {
        let mut all: Vec<RequestTrail> = self.shared.trails.iter().map(|t| t.clone()).collect();
        all.sort_by_key(|t| t.created_at_ms);
        all.truncate(max);
        all
    }
}

/// Offers kept per request for the console (the oldest go first).
const MAX_TRAIL: usize = 32;

/// Ended requests whose trails are kept (the oldest go first).
pub const MAX_ENDED_TRAILS: usize = 65_536;

/// An open request and the offers it made, for the ops console.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestTrail {
    /// The request.
    pub request_id: RequestId,
    /// Its task type.
    pub task: String,
    /// Pickup latitude.
    pub lat: f64,
    /// Pickup longitude.
    pub lng: f64,
    /// When it was made.
    pub created_at_ms: UnixMs,
    /// Its offers, in order.
    pub offers: Vec<OfferStep>,
    /// How it ended (allotted, cancelled, no_associate, failed, handed_over); none while
    /// open.
    pub outcome: Option<&'static str>,
    /// When it ended here.
    pub ended_at_ms: Option<UnixMs>,
}

/// One offer of a request, its times on the engine's clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OfferStep {
    /// To whom.
    pub associate: AssociateId,
    /// When the associate was shown it.
    pub at_ms: UnixMs,
    /// When its window ends.
    pub expires_at_ms: UnixMs,
    /// When the associate's hold on it ended; none while open.
    pub ended_at_ms: Option<UnixMs>,
    /// `open`, or how it ended: accepted, declined, expired, withdrawn, disconnected,
    /// failed.
    pub outcome: &'static str,
}

/// Views wider than this (metres) show associates counted per cell.
pub const DETAIL_SPAN_M: f64 = 100_000.0;

/// Cells side to side across a view counted per cell.
const CELLS_ACROSS: f64 = 48.0;

/// The finest resolution associates are counted at (res 9 cells are ~350 m across).
const FINEST_AGGREGATE: u8 = 9;

/// Where associates are, for the ops console.
#[derive(Debug, Clone, PartialEq)]
pub struct MarketView {
    /// Associates with a known position.
    pub located: usize,
    /// Each of them, when they are few enough.
    pub points: Vec<AssociatePoint>,
    /// Otherwise, how many in each H3 cell at `resolution`.
    pub cells: Vec<CellCount>,
    /// The H3 resolution of `cells`, when counted per cell.
    pub resolution: Option<u8>,
    /// Available associates per shard cell (the load a cell's index carries).
    pub available: Vec<CellCount>,
}

/// One associate on the map.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AssociatePoint {
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lng: f64,
    /// Offline, available, reserved for an offer, or busy on an order.
    pub availability: wire::model::Availability,
}

/// Associates in one shard cell.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CellCount {
    /// The cell's centre latitude.
    pub lat: f64,
    /// The cell's centre longitude.
    pub lng: f64,
    /// How many.
    pub count: usize,
}
