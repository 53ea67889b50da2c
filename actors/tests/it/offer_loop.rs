//! The sequential offer loop, case by case.

use std::time::Duration;

use actors::DispatchConfig;
use tokio::time::Instant;
use wire::model::{OfferEnd, Zone};
use wire::{PartyId, ServerMessage};

use crate::harness::{Harness, at};

fn paused() {
    tokio::time::pause();
}

/// Two associates north of a pickup: A at about 110 m, B at about 330 m.
const PICKUP: (f64, f64) = (12.9716, 77.5946);

fn near(dlat: f64) -> geo::LatLng {
    at(PICKUP.0 + dlat, PICKUP.1)
}

#[actix_rt::test]
async fn the_first_candidate_accepts() {
    paused();
    let mut h = Harness::new(DispatchConfig::default());
    let a = h.associate(near(0.001), &[0]).await;
    let b = h.associate(near(0.003), &[0]).await;
    let user = h.user();
    let request = h.request(user, "companion", near(0.0)).await;
    let offer = h.offer(a).await;
    assert_eq!(offer.request_id, request);
    assert!(
        (100..=120).contains(&offer.distance_m),
        "{}",
        offer.distance_m
    );
    assert_eq!(offer.expires_at_ms, h.dispatch.now_ms() + 45_000);
    let order = h
        .dispatch
        .answer_offer(a, request, true)
        .await
        .unwrap()
        .unwrap();
    let allotted = h.allotments.lock().unwrap().clone();
    assert_eq!(allotted.len(), 1);
    assert_eq!((allotted[0].0.associate_id, allotted[0].1), (a, order));
    assert_eq!(allotted[0].0.user_id, user);
    assert!(
        h.pending(PartyId::Associate(b)).is_none(),
        "B must not be offered"
    );
    assert_eq!(h.dispatch.open_requests(), 0);
    // A is busy: a second user's request goes to B.
    let user2 = h.user();
    let request2 = h.request(user2, "companion", near(0.0)).await;
    assert_eq!(h.offer(b).await.request_id, request2);
}

#[actix_rt::test]
async fn the_first_declines_and_the_second_accepts() {
    paused();
    let mut h = Harness::new(DispatchConfig::default());
    let a = h.associate(near(0.001), &[0]).await;
    let b = h.associate(near(0.003), &[0]).await;
    let user = h.user();
    let request = h.request(user, "companion", near(0.0)).await;
    h.offer(a).await;
    assert_eq!(
        h.dispatch.answer_offer(a, request, false).await.unwrap(),
        None
    );
    assert_eq!(h.offer(b).await.request_id, request);
    h.dispatch
        .answer_offer(b, request, true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(h.allotments.lock().unwrap()[0].0.associate_id, b);
    // A declined and was never offered this request again.
    assert!(h.pending(PartyId::Associate(a)).is_none());
    // A declining a second time is refused: the offer is no longer theirs.
    assert!(h.dispatch.answer_offer(a, request, true).await.is_err());
}

#[actix_rt::test]
async fn a_silent_first_candidate_loses_the_offer_exactly_at_the_window() {
    paused();
    let mut config = DispatchConfig::default();
    config
        .offer_window_by_task
        .insert(geo::TaskType::new(0).unwrap(), Duration::from_secs(60));
    let mut h = Harness::new(config);
    let a = h.associate(near(0.001), &[0]).await;
    let b = h.associate(near(0.003), &[0]).await;
    let user = h.user();
    let request = h.request(user, "companion", near(0.0)).await;
    h.offer(a).await;
    let offered_at = Instant::now();
    let second = h.offer(b).await;
    let waited = offered_at.elapsed();
    assert!(
        waited >= Duration::from_secs(60) && waited <= Duration::from_millis(60_001),
        "moved on after {waited:?}"
    );
    assert_eq!(second.request_id, request);
    match h.next(PartyId::Associate(a)).await {
        ServerMessage::OfferEnded(e) => assert_eq!(e.reason, OfferEnd::Expired),
        other => panic!("{other:?}"),
    }
    // Too late to accept now.
    assert!(h.dispatch.answer_offer(a, request, true).await.is_err());
}

#[actix_rt::test]
async fn a_disconnect_mid_offer_moves_on_at_once() {
    paused();
    let mut h = Harness::new(DispatchConfig::default());
    let a = h.associate(near(0.001), &[0]).await;
    let b = h.associate(near(0.003), &[0]).await;
    let user = h.user();
    let request = h.request(user, "companion", near(0.0)).await;
    h.offer(a).await;
    let before = Instant::now();
    h.dispatch.associate_disconnected(a);
    assert_eq!(h.offer(b).await.request_id, request);
    assert_eq!(before.elapsed(), Duration::ZERO);
}

#[actix_rt::test]
async fn a_cancel_mid_offer_withdraws_it_and_frees_the_associate() {
    paused();
    let mut h = Harness::new(DispatchConfig::default());
    let a = h.associate(near(0.001), &[0]).await;
    let user = h.user();
    let request = h.request(user, "companion", near(0.0)).await;
    h.offer(a).await;
    h.dispatch.cancel_request(user, request).await.unwrap();
    match h.next(PartyId::Associate(a)).await {
        ServerMessage::OfferEnded(e) => {
            assert_eq!((e.request_id, e.reason), (request, OfferEnd::Cancelled))
        }
        other => panic!("{other:?}"),
    }
    match h.next(PartyId::User(user)).await {
        ServerMessage::RequestCancelled(c) => assert_eq!(c.request_id, request),
        other => panic!("{other:?}"),
    }
    assert!(
        h.dispatch.cancel_request(user, request).await.is_err(),
        "cancel is once"
    );
    assert!(
        h.dispatch.answer_offer(a, request, true).await.is_err(),
        "withdrawn offers cannot be accepted"
    );
    // A is free: the user's next request reaches them.
    let again = h.request(user, "companion", near(0.0)).await;
    assert_eq!(h.offer(a).await.request_id, again);
}

#[actix_rt::test]
async fn the_radius_widens_when_nobody_is_near() {
    paused();
    let mut h = Harness::new(DispatchConfig::default());
    // About 4 km away: beyond the first 2 km step, inside the 5 km one.
    let far = h.associate(near(0.036), &[1]).await;
    let user = h.user();
    let request = h.request(user, "helper", near(0.0)).await;
    let offer = h.offer(far).await;
    assert_eq!(offer.request_id, request);
    assert!(
        (3_900..=4_100).contains(&offer.distance_m),
        "{}",
        offer.distance_m
    );
}

#[actix_rt::test]
async fn nobody_available_until_the_deadline() {
    paused();
    let config = DispatchConfig {
        request_timeout: Duration::from_secs(300),
        ..DispatchConfig::default()
    };
    let mut h = Harness::new(config);
    // Wrong skill, and another one too far (about 15 km).
    h.associate(near(0.001), &[2]).await;
    h.associate(near(0.135), &[0]).await;
    let user = h.user();
    let start = Instant::now();
    let request = h.request(user, "companion", near(0.0)).await;
    match h.next(PartyId::User(user)).await {
        ServerMessage::NoAssociate(n) => assert_eq!(n.request_id, request),
        other => panic!("{other:?}"),
    }
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(300) && waited <= Duration::from_millis(300_001),
        "{waited:?}"
    );
    assert_eq!(h.dispatch.open_requests(), 0);
    assert!(h.dispatch.open_request_of(user).is_none());
}

#[actix_rt::test]
async fn an_associate_who_comes_online_later_is_found_on_retry() {
    paused();
    let mut h = Harness::new(DispatchConfig::default());
    let user = h.user();
    let request = h.request(user, "companion", near(0.0)).await;
    tokio::time::advance(Duration::from_secs(30)).await;
    let late = h.associate(near(0.001), &[0]).await;
    assert_eq!(h.offer(late).await.request_id, request);
}

/// A pickup just inside one shard cell, with the nearest associate just across the border.
fn border_points(h: &Harness) -> (geo::LatLng, geo::LatLng, geo::LatLng) {
    let map = geo::ShardMap::new(h.dispatch.config().shard_resolution).unwrap();
    let home = map.shard_of(at(PICKUP.0, PICKUP.1));
    // Walk east from the home cell's centre until the shard changes.
    let centre = home.centre();
    let mut step = 0.0;
    let mut prev = centre;
    loop {
        step += 0.0001;
        let p = at(centre.lat(), centre.lng() + step);
        if map.shard_of(p) != home {
            // `prev` is the last point inside; `p` the first outside.
            let inside = at(prev.lat(), prev.lng() - 0.0004);
            let across = at(p.lat(), p.lng() + 0.0004);
            let same_shard_far = at(prev.lat(), prev.lng() - 0.006);
            assert_eq!(map.shard_of(inside), home);
            assert_ne!(map.shard_of(across), home);
            assert_eq!(map.shard_of(same_shard_far), home);
            return (inside, across, same_shard_far);
        }
        prev = p;
    }
}

#[actix_rt::test]
async fn the_nearest_candidate_in_a_neighbouring_shard_comes_first() {
    paused();
    let mut h = Harness::new(DispatchConfig::default());
    let (pickup, across, same_far) = border_points(&h);
    let same = h.associate(same_far, &[0]).await;
    let neighbour = h.associate(across, &[0]).await;
    let user = h.user();
    let request = h.request(user, "companion", pickup).await;
    assert_eq!(h.offer(neighbour).await.request_id, request);
    h.dispatch
        .answer_offer(neighbour, request, false)
        .await
        .unwrap();
    assert_eq!(h.offer(same).await.request_id, request);
}

#[actix_rt::test]
async fn an_associate_crossing_a_border_while_reserved_is_found_in_the_new_shard() {
    paused();
    let mut h = Harness::new(DispatchConfig::default());
    let (inside, across, _) = border_points(&h);
    let a = h.associate(inside, &[0]).await;
    let user = h.user();
    let request = h.request(user, "companion", inside).await;
    h.offer(a).await;
    // Reserved, A drives across the border, then declines.
    h.dispatch.associate_location(a, across);
    h.dispatch.answer_offer(a, request, false).await.unwrap();
    h.dispatch.cancel_request(user, request).await.unwrap();
    // A request right by A's new position, in the other shard, reaches A.
    let user2 = h.user();
    let request2 = h.request(user2, "companion", across).await;
    assert_eq!(h.offer(a).await.request_id, request2);
}

#[actix_rt::test]
async fn a_service_zone_keeps_far_pickups_away() {
    paused();
    let mut h = Harness::new(DispatchConfig::default());
    let picky = h.associate(near(0.001), &[0]).await;
    let zone = Zone::Circle {
        centre: near(0.05).into(),
        radius_m: 1_000,
    };
    h.dispatch
        .set_zone(picky, actors::ZoneFilter::from_wire(&zone))
        .await
        .unwrap();
    let other = h.associate(near(0.004), &[0]).await;
    let user = h.user();
    let request = h.request(user, "companion", near(0.0)).await;
    assert_eq!(h.offer(other).await.request_id, request);
    assert!(h.pending(PartyId::Associate(picky)).is_none());
}

#[actix_rt::test]
async fn accept_and_cancel_crossing_allot_at_most_once() {
    paused();
    for accept_first in [true, false] {
        let mut h = Harness::new(DispatchConfig::default());
        let a = h.associate(near(0.001), &[0]).await;
        let user = h.user();
        let request = h.request(user, "companion", near(0.0)).await;
        h.offer(a).await;
        let d = h.dispatch.clone();
        let (accepted, cancelled) = if accept_first {
            tokio::join!(
                d.answer_offer(a, request, true),
                d.cancel_request(user, request)
            )
        } else {
            let (c, a) = tokio::join!(
                d.cancel_request(user, request),
                d.answer_offer(a, request, true)
            );
            (a, c)
        };
        let allotted = h.allotments.lock().unwrap().len();
        assert_eq!(
            allotted,
            usize::from(accepted.is_ok()),
            "accept_first={accept_first}"
        );
        assert!(
            accepted.is_ok() != cancelled.is_ok(),
            "exactly one wins: {accepted:?} {cancelled:?}"
        );
    }
}

#[actix_rt::test]
async fn a_search_sees_every_move_reported_before_it() {
    paused();
    let mut h = Harness::new(DispatchConfig::default());
    let a = h.associate(near(0.001), &[0]).await; // ~110 m
    let b = h.associate(near(0.008), &[0]).await; // ~900 m
    // B comes within 20 m, in the same shard: the move goes onto the shard's lane, with
    // no round trip through anyone's actor, and the request follows straight after.
    for step in [0.006, 0.004, 0.002, 0.0002] {
        h.dispatch.associate_location(b, near(step));
    }
    let user = h.user();
    let request = h.request(user, "companion", near(0.0)).await;
    let offer = h.offer(b).await;
    assert_eq!(offer.request_id, request);
    assert!(
        (15..=30).contains(&offer.distance_m),
        "{}",
        offer.distance_m
    );
    assert!(h.pending(PartyId::Associate(a)).is_none(), "A was offered");
}

#[actix_rt::test]
async fn each_offer_goes_to_whoever_is_nearest_when_it_is_made() {
    paused();
    let mut h = Harness::new(DispatchConfig::default());
    let a = h.associate(near(0.001), &[0]).await; // ~110 m
    let b = h.associate(near(0.008), &[0]).await; // ~900 m
    let c = h.associate(near(0.016), &[0]).await; // ~1.8 km
    let user = h.user();
    let request = h.request(user, "companion", near(0.0)).await;
    assert_eq!(h.offer(a).await.request_id, request);
    // While A's offer is out, B drives 30 km away and D arrives 100 m from the pickup.
    h.dispatch.associate_location(b, near(0.27));
    // A round trip through B's actor: the move is applied before anything after it.
    h.dispatch.go_online(b, None).await.unwrap();
    assert!(matches!(
        h.next(PartyId::Associate(b)).await,
        ServerMessage::Status(_)
    ));
    let d = h.associate(near(0.0009), &[0]).await;
    h.dispatch.answer_offer(a, request, false).await.unwrap();
    // The next offer is D's (nearest now), at D's distance now.
    let offer = h.offer(d).await;
    assert_eq!(offer.request_id, request);
    assert!(
        (90..=110).contains(&offer.distance_m),
        "{}",
        offer.distance_m
    );
    h.dispatch.answer_offer(d, request, false).await.unwrap();
    // Then C at 1.8 km: B, once at 900 m, is now beyond every radius.
    let offer = h.offer(c).await;
    assert!(
        (1_700..=1_900).contains(&offer.distance_m),
        "{}",
        offer.distance_m
    );
    assert!(h.pending(PartyId::Associate(b)).is_none(), "B was offered");
}
