//! The ops console: login with the admin key into an HttpOnly, SameSite cookie session,
//! the ops socket's snapshots, and every refusal (wrong key, no session, another site's
//! origin, a missing CSRF token, a session after logout).

use std::time::Duration;

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use wire::client::http_api;

use crate::harness::{TestServer, WAIT, at, go_online};

/// Logs in; the session cookie (`speedy_ops=…`).
async fn log_in(s: &TestServer) -> String {
    let origin = format!("http://{}", s.addr);
    let r = http_api::request_raw(
        s.addr,
        "POST",
        "/ops/login",
        &[("origin", &origin)],
        Some("application/x-www-form-urlencoded"),
        format!("key={}", s.admin_key).as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 303, "{}", r.text);
    assert_eq!(r.header("location"), Some("/ops"));
    let cookie = r.header("set-cookie").expect("a session cookie").to_owned();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(cookie.contains(flag), "{cookie} lacks {flag}");
    }
    cookie.split(';').next().unwrap().to_owned()
}

/// The ops socket as a browser would open it, with `cookie` and `origin`.
async fn ops_socket(
    s: &TestServer,
    cookie: Option<&str>,
    origin: &str,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    tokio_tungstenite::tungstenite::Error,
> {
    let mut request = format!("ws://{}/v1/ops/ws", s.addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("origin", origin.parse().unwrap());
    if let Some(cookie) = cookie {
        request
            .headers_mut()
            .insert("cookie", cookie.parse().unwrap());
    }
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(ws, _)| ws)
}

/// Reads snapshots (one a second) until `wanted` holds for one; that one.
async fn snapshot_where(
    ops: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    wanted: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(3), ops.next())
            .await
            .expect("a snapshot every second")
            .unwrap()
            .unwrap();
        let snapshot: serde_json::Value = serde_json::from_str(frame.to_text().unwrap()).unwrap();
        assert_eq!(snapshot["type"], "snapshot");
        if wanted(&snapshot) {
            return snapshot;
        }
        assert!(tokio::time::Instant::now() < deadline, "{snapshot:#}");
    }
}

fn refused_with(result: Result<impl Sized, tokio_tungstenite::tungstenite::Error>) -> Option<u16> {
    match result {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Some(r.status().as_u16()),
        _ => None,
    }
}

#[tokio::test]
async fn the_console_needs_the_admin_key_and_a_session() {
    let s = TestServer::start(|_| {});
    // Not logged in: the login form.
    let r = http_api::request(s.addr, "GET", "/ops", &[], None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(r.text.contains("action=\"/ops/login\""), "{}", r.text);
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    // A wrong key is refused.
    let origin = format!("http://{}", s.addr);
    let wrong = http_api::request_raw(
        s.addr,
        "POST",
        "/ops/login",
        &[("origin", &origin)],
        Some("application/x-www-form-urlencoded"),
        b"key=not-the-key",
    )
    .await
    .unwrap();
    assert_eq!(wrong.status, 401);
    assert!(wrong.header("set-cookie").is_none());
    // The right key from another site is refused too.
    let elsewhere = http_api::request_raw(
        s.addr,
        "POST",
        "/ops/login",
        &[("origin", "http://evil.example")],
        Some("application/x-www-form-urlencoded"),
        format!("key={}", s.admin_key).as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(elsewhere.status, 403);
    // Logged in: the console, with its CSRF token.
    let cookie = log_in(&s).await;
    let page = http_api::request(s.addr, "GET", "/ops", &[("cookie", &cookie)], None)
        .await
        .unwrap();
    assert_eq!(page.status, 200);
    assert!(page.text.contains("<canvas id=\"map\">"));
    let csrf = page
        .text
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .unwrap()
        .to_owned();
    assert_eq!(csrf.len(), 64);
    // Logging out needs the CSRF token; after it the session is gone.
    let no_token = http_api::request_raw(
        s.addr,
        "POST",
        "/ops/logout",
        &[("origin", &origin), ("cookie", &cookie)],
        Some("application/x-www-form-urlencoded"),
        b"csrf=wrong",
    )
    .await
    .unwrap();
    assert_eq!(no_token.status, 403);
    let out = http_api::request_raw(
        s.addr,
        "POST",
        "/ops/logout",
        &[("origin", &origin), ("cookie", &cookie)],
        Some("application/x-www-form-urlencoded"),
        format!("csrf={csrf}").as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(out.status, 303);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(
        refused_with(ops_socket(&s, Some(&cookie), &origin).await),
        Some(401),
        "a session after logout"
    );
}

#[tokio::test]
async fn the_ops_socket_streams_the_market_to_a_session_from_the_own_origin() {
    let s = TestServer::start(|_| {});
    let origin = format!("http://{}", s.addr);
    assert_eq!(
        refused_with(ops_socket(&s, None, &origin).await),
        Some(401),
        "no session"
    );
    let cookie = log_in(&s).await;
    assert_eq!(
        refused_with(ops_socket(&s, Some(&cookie), "http://evil.example").await),
        Some(403),
        "another site's page opening the socket with the admin's cookie"
    );
    let (_, token) = s.associate("Ravi", &["companion"]).await;
    let mut a = s.connect(&token).await;
    go_online(&mut a, at(12.9716, 77.5946)).await;
    let mut ops = ops_socket(&s, Some(&cookie), &origin).await.unwrap();
    let snapshot = snapshot_where(&mut ops, |snapshot| {
        let points = snapshot["associates"].as_array().unwrap();
        snapshot["connections"]["associate"] == 1
            && points.len() == 1
            && points[0][2] == "available"
    })
    .await;
    let point = &snapshot["associates"][0];
    assert!((point[0].as_f64().unwrap() - 12.9716).abs() < 1e-9);
}

#[tokio::test]
async fn the_grafana_dashboard_names_only_series_the_engine_exposes() {
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../deploy/grafana/speedy-cheers.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut named = std::collections::BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(at) = rest.find("speedy_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                named.insert(name);
            }
        }
    }
    assert!(named.len() >= 10, "{named:?}");
    // An engine that has dispatched an order, so its histograms have samples.
    let s = TestServer::start(|_| {});
    let mut p = crate::harness::parties(&s).await;
    crate::steps::allot(&mut p, None).await;
    let exposition = http_api::request(s.addr, "GET", "/metrics", &[], None)
        .await
        .unwrap()
        .text;
    let exposed: std::collections::BTreeSet<&str> = exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let missing: Vec<&String> = named
        .iter()
        .filter(|n| !exposed.contains(n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard names series the engine does not expose: {missing:?}"
    );
}

#[tokio::test]
async fn an_open_request_shows_with_its_offer_chain() {
    let s = TestServer::start(|_| {});
    let origin = format!("http://{}", s.addr);
    let cookie = log_in(&s).await;
    let mut p = crate::harness::parties(&s).await;
    p.u.send(crate::steps::request(None)).await.unwrap();
    let offer = crate::harness::expect(&mut p.a, "offer", |m| match m {
        wire::ServerMessage::Offer(o) => Some(o),
        _ => None,
    })
    .await;
    let mut ops = ops_socket(&s, Some(&cookie), &origin).await.unwrap();
    let snapshot = snapshot_where(&mut ops, |snapshot| {
        snapshot["requests"][0]["offers"]
            .as_array()
            .is_some_and(|o| !o.is_empty())
    })
    .await;
    let r = &snapshot["requests"][0];
    assert_eq!(r["request_id"], serde_json::json!(offer.request_id));
    assert_eq!(r["offers"][0][0], serde_json::json!(p.associate));
    assert_eq!(r["offers"][0][2], "open");
}
