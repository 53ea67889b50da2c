//! The ops console in a real browser: headless Chromium (Debian's `chromium`) driven by
//! `playwright-core` (npm) through `engine/tests/browser/console.cjs`. A wrong key is
//! refused; after login the socket goes live, counters move, associate markers are drawn,
//! an order's timeline shows, the order is cancelled from the page and an associate taken
//! offline. `.ci/run` installs both and sets `SPEEDY_NODE_MODULES`; elsewhere the test runs
//! when both are found and fails when `SPEEDY_REQUIRE_BROWSER` is set and one is missing.

use std::path::PathBuf;

use wire::ServerMessage;
use wire::model::Availability;

use crate::harness::{TestServer, at, expect, go_online, parties};
use crate::steps::allot;

/// playwright-core's `node_modules` and the Chromium binary, if both are here.
fn tools() -> Option<(PathBuf, PathBuf)> {
    let modules = std::env::var_os("SPEEDY_NODE_MODULES").map(PathBuf::from)?;
    let chromium = PathBuf::from(
        std::env::var_os("SPEEDY_CHROMIUM").unwrap_or_else(|| "/usr/bin/chromium".into()),
    );
    (modules.join("playwright-core").exists() && chromium.exists()).then_some((modules, chromium))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_in_a_real_browser() {
    let Some((modules, chromium)) = tools() else {
        assert!(
            std::env::var_os("SPEEDY_REQUIRE_BROWSER").is_none(),
            "a browser is required here but playwright-core (SPEEDY_NODE_MODULES) or chromium is missing"
        );
        eprintln!("playwright-core or chromium not installed: the browser test did not run");
        return;
    };
    let s = TestServer::start(|_| {});
    // Two associates online (one about to be on an order), and an order that is stuck in
    // allotted.
    let mut p = parties(&s).await;
    let (other, token) = s.associate("Kiran", &["helper"]).await;
    let mut b = s.connect(&token).await;
    go_online(&mut b, at(12.9750, 77.6000)).await;
    expect(&mut b, "available", |m| match m {
        ServerMessage::Status(st) if st.availability == Availability::Available => Some(()),
        _ => None,
    })
    .await;
    let order = allot(&mut p, None).await;
    let screenshot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ops-console.png");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser/console.cjs");
    let out = tokio::process::Command::new("node")
        .arg(&script)
        .env("NODE_PATH", &modules)
        .env("CHROMIUM", &chromium)
        .env("BASE", format!("http://{}", s.addr))
        .env("ADMIN_KEY", &s.admin_key)
        .env("ORDER_ID", order.order_id.to_string())
        .env("ASSOCIATE_ID", other.to_string())
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
    let stored = s
        .admin("GET", &format!("/v1/orders/{}", order.order_id), None)
        .await;
    assert_eq!(stored.body["order"]["state"], "cancelled");
    println!("screenshot: {}", screenshot.display());
}
