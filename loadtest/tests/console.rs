//! The ops console in a real browser during a short simulator run: headless Chromium
//! (Debian's `chromium`) driven by `playwright-core` (npm) through
//! `tests/browser/console.cjs`. Beside the simulated market, the test makes one order that
//! nobody moves (a user and an associate of its own, far from the simulated city), so the
//! console has a stalled order to find, replay and cancel. `.ci/run` installs both tools
//! and sets `SPEEDY_NODE_MODULES`; elsewhere the test runs when both are found, and fails
//! when `SPEEDY_REQUIRE_BROWSER` is set and one is missing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use loadtest::flow::{self, FlowConfig};
use loadtest::stats::Stats;
use loadtest::target::{InProcess, Target};
use wire::client::Client;
use wire::model::{Availability, Point};
use wire::{OrderId, ServerMessage};

/// How long one expected frame may take.
const WAIT: Duration = Duration::from_secs(10);
/// Where the stuck order is: about 30 km north of the simulated city, out of its reach.
const AWAY: (f64, f64) = (13.36, 77.60);

/// playwright-core's `node_modules` and the Chromium binary, if both are here.
fn tools() -> Option<(PathBuf, PathBuf)> {
    let modules = std::env::var_os("SPEEDY_NODE_MODULES").map(PathBuf::from)?;
    let chromium = PathBuf::from(
        std::env::var_os("SPEEDY_CHROMIUM").unwrap_or_else(|| "/usr/bin/chromium".into()),
    );
    (modules.join("playwright-core").exists() && chromium.exists()).then_some((modules, chromium))
}

/// The first frame `pick` accepts, within [`WAIT`].
async fn expect<T>(c: &mut Client, what: &str, pick: impl FnMut(ServerMessage) -> Option<T>) -> T {
    c.recv_until(WAIT, pick)
        .await
        .unwrap_or_else(|e| panic!("waiting for {what}: {e}"))
}

/// Sends `frame` from `from` until `to` hears it relayed (the engine relays a party's
/// position at most once per tracking interval, so one may be skipped).
async fn relayed(from: &mut Client, to: &mut Client, lat: f64, lng: f64) {
    for _ in 0..50 {
        from.send(wire::Location {
            point: Point { lat, lng },
            accuracy_m: Some(5),
        })
        .await
        .unwrap();
        let heard = to
            .recv_until(Duration::from_millis(200), |m| {
                matches!(m, ServerMessage::PeerLocation(_)).then_some(())
            })
            .await;
        if heard.is_ok() {
            return;
        }
    }
    panic!("a position at ({lat}, {lng}) was never relayed");
}

/// An allotted order far from the simulation, whose parties then only move about: both
/// stay connected, and nobody moves it on.
async fn stuck_order(target: &Target) -> (OrderId, wire::AssociateId, Client, Client) {
    let (_, user_token) = target.user(900_001).await.unwrap();
    let (associate, associate_token) = target
        .associate(900_002, &["helper".to_owned()])
        .await
        .unwrap();
    let mut a = Client::connect(&target.ws_url(), &associate_token)
        .await
        .unwrap();
    let mut u = Client::connect(&target.ws_url(), &user_token)
        .await
        .unwrap();
    a.send(wire::Location {
        point: Point {
            lat: AWAY.0 + 0.01,
            lng: AWAY.1,
        },
        accuracy_m: None,
    })
    .await
    .unwrap();
    a.send(wire::GoOnline { skills: vec![] }).await.unwrap();
    expect(&mut a, "available", |m| match m {
        ServerMessage::Status(s) if s.availability == Availability::Available => Some(()),
        _ => None,
    })
    .await;
    u.send(wire::TaskRequest {
        client_ref: "stuck-1".into(),
        task: "helper".into(),
        pickup: Point {
            lat: AWAY.0,
            lng: AWAY.1,
        },
        note: None,
        discount_code: None,
    })
    .await
    .unwrap();
    let offer = expect(&mut a, "offer", |m| match m {
        ServerMessage::Offer(o) => Some(o),
        _ => None,
    })
    .await;
    a.send(wire::Accept {
        request_id: offer.request_id,
    })
    .await
    .unwrap();
    let order = expect(&mut u, "allotted", |m| match m {
        ServerMessage::Allotted(x) => Some(x.order.order_id),
        _ => None,
    })
    .await;
    // A short track: the associate walks towards the user, who stays put.
    relayed(&mut u, &mut a, AWAY.0, AWAY.1).await;
    for step in 0..5 {
        let lat = AWAY.0 + 0.01 - 0.002 * f64::from(step);
        relayed(&mut a, &mut u, lat, AWAY.1 + 0.001 * f64::from(step)).await;
    }
    (order, associate, a, u)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_in_a_real_browser_during_a_simulator_run() {
    let Some((modules, chromium)) = tools() else {
        storage::skips::skip(
            "the console in a real browser",
            "playwright-core (SPEEDY_NODE_MODULES) or chromium",
            "SPEEDY_REQUIRE_BROWSER",
        );
        return;
    };
    // As fast as the CI smoke run, so the simulated orders finish within the test.
    let compression = 600.0;
    let mut config = flow::engine_config(compression);
    config.workers = 1;
    // Positions relayed as often as they come, and an order stalls after 2 s in allotted.
    config.orders.tracking_interval_ms = 1;
    config.orders.stall_after_ms.allotted = 2_000;
    let engine = InProcess::start(config).unwrap();
    let target = engine.target.clone();
    let (order, associate, _a, _u) = stuck_order(&target).await;

    let cfg = FlowConfig {
        associates: 150,
        users: 60,
        duration: Duration::from_secs(25),
        drain: Duration::from_secs(25),
        compression,
        location_every_s: 60.0,
        seed: 20_261_130,
        ..FlowConfig::default()
    };
    let stats = Arc::new(Stats::default());
    let simulation = tokio::spawn(flow::run(target.clone(), cfg, stats, |_, _, _| {}));

    let screenshot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ops-console.png");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser/console.cjs");
    let out = tokio::process::Command::new("node")
        .arg(&script)
        .env("NODE_PATH", &modules)
        .env("CHROMIUM", &chromium)
        .env("BASE", format!("http://{}", target.http))
        .env("ADMIN_KEY", &target.admin_key)
        .env("ORDER_ID", order.to_string())
        .env("ASSOCIATE_ID", associate.to_string())
        .env("SCREENSHOT", &screenshot)
        .output()
        .await
        .expect("node runs");
    assert!(
        out.status.success(),
        "the browser test failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        screenshot.exists(),
        "a screenshot at {}",
        screenshot.display()
    );
    println!("screenshot: {}", screenshot.display());

    // What the page did is what the engine holds.
    let stored = target
        .admin("GET", &format!("/v1/orders/{order}"), None)
        .await
        .unwrap();
    assert_eq!(
        stored.body["order"]["state"], "cancelled",
        "{}",
        stored.text
    );
    let events = stored.body["events"].as_array().unwrap();
    assert!(
        events.iter().any(|e| e["kind"].get("stalled").is_some()),
        "the stall is in the order's events: {events:?}"
    );
    // The simulated market ran on, untouched by the console.
    let result = simulation.await.unwrap().unwrap();
    assert!(result.clean(), "{result:#?}");
    assert!(result.orders_seen >= 10, "{result:#?}");
    engine.stop().unwrap();
}
