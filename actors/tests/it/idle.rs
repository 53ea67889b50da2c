//! Bounded over time: shard supervisors with nothing to do and the actors of associates
//! who went away stop after their idle time, and come back, unchanged, when needed.

use std::time::Duration;

use actors::{AssociateProfileInfo, DispatchConfig};
use wire::model::Availability;
use wire::{PartyId, ServerMessage};

use crate::harness::{Harness, at, skills};

const IDLE: Duration = Duration::from_secs(60);

fn config() -> DispatchConfig {
    DispatchConfig {
        shard_idle: IDLE,
        associate_idle: IDLE,
        ..DispatchConfig::default()
    }
}

/// Lets virtual time pass in steps, so interval timers fire on the way.
async fn pass(d: Duration) {
    let step = Duration::from_secs(1);
    let mut left = d;
    while !left.is_zero() {
        let now = step.min(left);
        tokio::time::advance(now).await;
        tokio::task::yield_now().await;
        left -= now;
    }
    // Let the stops the timers decided run.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[actix_rt::test]
async fn supervisors_and_away_associates_stop_when_idle_and_come_back() {
    tokio::time::pause();
    let mut h = Harness::new(config());
    // A request from a point nobody serves starts a supervisor there.
    let user = h.user();
    let far = h.request(user, "companion", at(-33.9, 18.4)).await;
    let a = h.associate(at(12.9726, 77.5946), &[0]).await;
    assert_eq!(h.dispatch.actor_counts(), (2, 1));
    // Busy with a request or an available associate: nothing stops.
    pass(IDLE * 3).await;
    assert_eq!(h.dispatch.actor_counts(), (2, 1));
    h.dispatch.cancel_request(user, far).await.unwrap();
    // The associate goes away (still online: that is stored).
    h.dispatch.associate_disconnected(a);
    pass(IDLE * 2).await;
    assert_eq!(h.dispatch.actor_counts(), (0, 0), "all idle actors stopped");

    // Back: rebuilt from their presence, online without asking, and offered work.
    let info = AssociateProfileInfo {
        skills: skills(&[0]),
        zone: None,
    };
    let view = h.dispatch.associate_connected(a, info).await.unwrap();
    assert_eq!(view.availability, Availability::Available);
    h.dispatch.associate_location(a, at(12.9726, 77.5946));
    let user = h.user();
    let request = h.request(user, "companion", at(12.9716, 77.5946)).await;
    assert_eq!(h.offer(a).await.request_id, request);
}

#[actix_rt::test]
async fn an_associate_holding_an_offer_or_an_order_never_stops() {
    tokio::time::pause();
    let mut config = config();
    config.offer_window = IDLE * 10;
    let mut h = Harness::new(config);
    let a = h.associate(at(12.9726, 77.5946), &[0]).await;
    let user = h.user();
    let request = h.request(user, "companion", at(12.9716, 77.5946)).await;
    h.offer(a).await;
    // Reserved and away: the reservation ends with the disconnect, as it always did.
    // Accepted: busy on the order, then away for far longer than the idle time.
    h.dispatch.answer_offer(a, request, true).await.unwrap();
    h.dispatch.associate_disconnected(a);
    pass(IDLE * 3).await;
    assert_eq!(h.dispatch.actor_counts().1, 1, "busy: still there");
    let order = h.allotments.lock().unwrap()[0].1;
    h.dispatch.order_finished(a, order);
    pass(IDLE * 2).await;
    assert_eq!(h.dispatch.actor_counts().1, 0, "free and away: stopped");
}

#[actix_rt::test]
async fn churn_at_a_tiny_idle_time_loses_no_message() {
    tokio::time::pause();
    let mut h = Harness::new(DispatchConfig {
        shard_idle: Duration::from_millis(2),
        associate_idle: Duration::from_millis(1),
        ..DispatchConfig::default()
    });
    let info = AssociateProfileInfo {
        skills: skills(&[0]),
        zone: None,
    };
    let mut ids = Vec::new();
    for n in 0..40 {
        let a = h.associate(at(12.9 + n as f64 * 0.002, 77.59), &[0]).await;
        ids.push(a);
    }
    // Every associate leaves and comes back many times while time races on: each
    // actor and supervisor may stop between any two messages.
    let mut stopped = 0;
    for round in 0..20u32 {
        for (n, a) in ids.iter().enumerate() {
            h.dispatch.associate_disconnected(*a);
            if (n as u32 + round) % 3 == 0 {
                let before = h.dispatch.actor_counts().1;
                tokio::task::yield_now().await;
                for _ in 0..3 {
                    tokio::time::advance(Duration::from_millis(1)).await;
                    tokio::task::yield_now().await;
                }
                stopped += before.saturating_sub(h.dispatch.actor_counts().1);
            }
            h.dispatch
                .associate_connected(*a, info.clone())
                .await
                .unwrap();
            h.dispatch.associate_location(
                *a,
                at(12.9 + n as f64 * 0.002, 77.59 + f64::from(round) * 1e-5),
            );
        }
    }
    assert!(
        stopped > 20,
        "only {stopped} actors stopped during the churn"
    );
    // Everyone is connected, online and somewhere: each request finds the nearest.
    for (n, a) in ids.iter().enumerate().step_by(7) {
        let user = h.user();
        let request = h
            .request(user, "companion", at(12.9 + n as f64 * 0.002, 77.5901))
            .await;
        let offer = loop {
            match h.next(PartyId::Associate(*a)).await {
                ServerMessage::Offer(o) => break o,
                _ => continue,
            }
        };
        assert_eq!(offer.request_id, request);
        h.dispatch.answer_offer(*a, request, false).await.unwrap();
        h.dispatch.cancel_request(user, request).await.ok();
    }
}
