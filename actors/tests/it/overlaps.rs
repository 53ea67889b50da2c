//! No request is ever offered to two associates at once, and no associate ever holds two
//! offers, judged from the engine's own records (each request's offer trail, with the
//! times the associate actors saw), under concurrency: many requests over few
//! associates, who accept, decline, let the window pass or disconnect, acceptances,
//! declines and disconnects racing the window's end. On both backends.

use std::collections::HashMap;
use std::time::Duration;

use actors::{DispatchConfig, RequestTrail};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;
use wire::{AssociateId, PartyId, RequestId, ServerMessage};

use crate::harness::{Harness, at};

const ASSOCIATES: usize = 24;
const REQUESTS: usize = 60;
const WINDOW: Duration = Duration::from_secs(45);

enum Answer {
    Accept,
    Decline,
    Disconnect,
}

struct Pending {
    associate: AssociateId,
    request: RequestId,
    due: Instant,
    answer: Answer,
}

fn store(postgres: bool) -> storage::Store {
    if postgres {
        let url = storage::pg::testing::fresh_database();
        storage::Store::postgres(&storage::pg::PgConfig::new(url)).expect("postgres store")
    } else {
        storage::Store::temporary().expect("sled store")
    }
}

/// Within ±300 ms of the window's end: racing the expiry.
fn near_the_end(rng: &mut StdRng, shown: Instant) -> Instant {
    shown + WINDOW - Duration::from_millis(300) + Duration::from_millis(rng.random_range(0..600))
}

async fn no_two_live_offers(postgres: bool) {
    tokio::time::pause();
    let config = DispatchConfig {
        offer_window: WINDOW,
        request_timeout: Duration::from_secs(300),
        ..DispatchConfig::default()
    };
    let mut h = Harness::with_store(config, store(postgres));
    let mut rng = StdRng::seed_from_u64(24);
    let mut associates = Vec::new();
    for n in 0..ASSOCIATES {
        let d = 0.0005 * (n % 6) as f64;
        let e = 0.0005 * (n / 6) as f64;
        associates.push(h.associate(at(12.97 + d, 77.59 + e), &[0]).await);
    }
    let mut requests = Vec::new();
    let mut users = Vec::new();
    for n in 0..REQUESTS {
        let user = h.user();
        let d = 0.0003 * (n % 8) as f64;
        requests.push(h.request(user, "companion", at(12.9712 + d, 77.5915)).await);
        users.push(user);
    }
    let mut pending: Vec<Pending> = Vec::new();
    let mut reconnect: Vec<(AssociateId, Instant)> = Vec::new();
    let mut offers_seen: HashMap<RequestId, usize> = HashMap::new();
    let mut ended = 0;
    let give_up = Instant::now() + Duration::from_secs(900);
    while ended < REQUESTS {
        assert!(
            Instant::now() < give_up,
            "{ended} of {REQUESTS} requests ended"
        );
        let now = Instant::now();
        for &a in &associates {
            while let Some(frame) = h.pending(PartyId::Associate(a)) {
                if let ServerMessage::Offer(offer) = frame {
                    *offers_seen.entry(offer.request_id).or_default() += 1;
                    let roll = rng.random_range(0..100);
                    let (answer, due) = match roll {
                        0..15 => (
                            Answer::Accept,
                            now + Duration::from_millis(rng.random_range(0..44_000)),
                        ),
                        // An acceptance racing the window's end (and the withdrawal).
                        15..25 => (Answer::Accept, near_the_end(&mut rng, now)),
                        25..55 => (Answer::Decline, near_the_end(&mut rng, now)),
                        55..75 => continue, // lets the window pass
                        _ => (Answer::Disconnect, near_the_end(&mut rng, now)),
                    };
                    pending.push(Pending {
                        associate: a,
                        request: offer.request_id,
                        due,
                        answer,
                    });
                }
            }
        }
        for &u in &users {
            while let Some(frame) = h.pending(PartyId::User(u)) {
                if matches!(
                    frame,
                    ServerMessage::NoAssociate(_) | ServerMessage::RequestCancelled(_)
                ) {
                    ended += 1;
                }
            }
        }
        ended = ended.max(h.allotments.lock().unwrap().len());
        let (due, later): (Vec<_>, Vec<_>) = pending.drain(..).partition(|p| p.due <= now);
        pending = later;
        for p in due {
            match p.answer {
                // Late answers are refused; the trail must hold either way.
                Answer::Accept => drop(h.dispatch.answer_offer(p.associate, p.request, true).await),
                Answer::Decline => {
                    drop(h.dispatch.answer_offer(p.associate, p.request, false).await)
                }
                Answer::Disconnect => {
                    h.dispatch.associate_disconnected(p.associate);
                    let back = now + Duration::from_millis(rng.random_range(500..3_000));
                    reconnect.push((p.associate, back));
                }
            }
        }
        let (back, still): (Vec<_>, Vec<_>) = reconnect.drain(..).partition(|(_, t)| *t <= now);
        reconnect = still;
        for (a, _) in back {
            h.dispatch
                .associate_connected(a, crate::harness::profile(&[0]))
                .await
                .unwrap();
            drop(h.dispatch.go_online(a, None).await);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Allotments end the loop as soon as the order exists: let their trails close.
    let trails: Vec<RequestTrail> = requests
        .iter()
        .map(|r| {
            h.dispatch
                .trail(*r)
                .unwrap_or_else(|| panic!("no trail for {r}"))
        })
        .collect();
    check(&trails, &offers_seen);
}

/// The invariants, from the trails alone.
fn check(trails: &[RequestTrail], offers_seen: &HashMap<RequestId, usize>) {
    let mut by_associate: HashMap<AssociateId, Vec<(u64, u64, RequestId)>> = HashMap::new();
    let mut offers = 0;
    for trail in trails {
        assert!(trail.outcome.is_some(), "{} never ended", trail.request_id);
        assert_eq!(
            trail.offers.len(),
            offers_seen.get(&trail.request_id).copied().unwrap_or(0),
            "{}: the trail and the offer frames disagree: {:?}",
            trail.request_id,
            trail.offers
        );
        for pair in trail.offers.windows(2) {
            let ended = pair[0].ended_at_ms.expect("an earlier offer ended");
            assert!(
                ended <= pair[1].at_ms,
                "{}: offered to {} at {} while {} held it until {ended}",
                trail.request_id,
                pair[1].associate,
                pair[1].at_ms,
                pair[0].associate
            );
        }
        for step in &trail.offers {
            offers += 1;
            let ended = step
                .ended_at_ms
                .unwrap_or_else(|| panic!("{}: an offer never ended: {step:?}", trail.request_id));
            assert_ne!(step.outcome, "open");
            by_associate.entry(step.associate).or_default().push((
                step.at_ms,
                ended,
                trail.request_id,
            ));
        }
    }
    for (associate, mut spans) in by_associate {
        spans.sort();
        for pair in spans.windows(2) {
            assert!(
                pair[0].1 <= pair[1].0,
                "{associate} held {} until {} and was shown {} at {}",
                pair[0].2,
                pair[0].1,
                pair[1].2,
                pair[1].0
            );
        }
    }
    assert!(
        offers > REQUESTS,
        "only {offers} offers: the run had no contention"
    );
}

#[actix_rt::test]
async fn no_request_has_two_live_offers_and_no_associate_holds_two_on_sled() {
    no_two_live_offers(false).await;
}

#[actix_rt::test]
async fn no_request_has_two_live_offers_and_no_associate_holds_two_on_postgres() {
    no_two_live_offers(true).await;
}
