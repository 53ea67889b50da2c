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

/// Sends the viewer's `view` message on the ops socket.
async fn send_view(
    ops: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    text: String,
) {
    use futures_util::SinkExt;
    ops.send(tokio_tungstenite::tungstenite::Message::Text(text.into()))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_wide_view_counts_associates_per_cell_and_a_narrow_one_lists_them() {
    let s = TestServer::start(|_| {});
    let origin = format!("http://{}", s.addr);
    let cookie = log_in(&s).await;
    let mut online = Vec::new();
    for (name, lng) in [("Ravi", 77.5946), ("Kiran", 77.5950)] {
        let (_, token) = s.associate(name, &["companion"]).await;
        let mut a = s.connect(&token).await;
        go_online(&mut a, at(12.9716, lng)).await;
        online.push(a);
    }
    let mut ops = ops_socket(&s, Some(&cookie), &origin).await.unwrap();
    // A city block: each associate, no cells.
    send_view(
        &mut ops,
        r#"{"type":"view","south":12.96,"west":77.58,"north":12.98,"east":77.61}"#.into(),
    )
    .await;
    let near = snapshot_where(&mut ops, |s| s["associates"].as_array().unwrap().len() == 2).await;
    assert_eq!(near["resolution"], serde_json::Value::Null);
    assert!(near["cells"].as_array().unwrap().is_empty());
    // A view elsewhere shows neither.
    send_view(
        &mut ops,
        r#"{"type":"view","south":40.0,"west":-74.1,"north":40.1,"east":-73.9}"#.into(),
    )
    .await;
    snapshot_where(&mut ops, |s| {
        s["associates"].as_array().unwrap().is_empty() && s["associates_located"] == 2
    })
    .await;
    // A continent: counted per coarse cell, both in one.
    send_view(
        &mut ops,
        r#"{"type":"view","south":5.0,"west":65.0,"north":35.0,"east":95.0}"#.into(),
    )
    .await;
    let far = snapshot_where(&mut ops, |s| !s["resolution"].is_null()).await;
    assert!(far["associates"].as_array().unwrap().is_empty(), "{far:#}");
    assert!(far["resolution"].as_u64().unwrap() <= 3, "{far:#}");
    let cells = far["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 1, "{far:#}");
    assert_eq!(cells[0][2], 2);
    // A view that makes no sense is refused with a reason, and the socket carries on.
    send_view(
        &mut ops,
        r#"{"type":"view","south":30.0,"west":65.0,"north":5.0,"east":95.0}"#.into(),
    )
    .await;
    let frame = tokio::time::timeout(WAIT, async {
        loop {
            let f = ops.next().await.unwrap().unwrap();
            let v: serde_json::Value = serde_json::from_str(f.to_text().unwrap()).unwrap();
            if v["type"] == "error" {
                return v;
            }
        }
    })
    .await
    .expect("an error frame");
    assert!(
        frame["message"]
            .as_str()
            .unwrap()
            .contains("invalid viewport"),
        "{frame}"
    );
    snapshot_where(&mut ops, |s| !s["resolution"].is_null()).await;
}

#[tokio::test]
async fn an_order_on_the_move_shows_both_parties_and_its_track_replays() {
    let s = TestServer::start(|_| {});
    let origin = format!("http://{}", s.addr);
    let cookie = log_in(&s).await;
    let mut p = crate::harness::parties(&s).await;
    let order = crate::steps::allot(&mut p, None).await.order_id;
    let peer_heard =
        |m: wire::ServerMessage| matches!(m, wire::ServerMessage::PeerLocation(_)).then_some(());
    let location = |point| wire::Location {
        point,
        accuracy_m: None,
    };
    p.a.send(location(at(12.9800, 77.6000))).await.unwrap();
    crate::harness::expect(&mut p.u, "the associate's position", peer_heard).await;
    p.u.send(location(at(12.9716, 77.5946))).await.unwrap();
    crate::harness::expect(&mut p.a, "the user's position", peer_heard).await;
    let mut ops = ops_socket(&s, Some(&cookie), &origin).await.unwrap();
    let snapshot = snapshot_where(&mut ops, |s| {
        s["orders"][0]["user_at"].is_array() && s["orders"][0]["associate_at"].is_array()
    })
    .await;
    let o = &snapshot["orders"][0];
    assert_eq!(o["order_id"], serde_json::json!(order));
    assert_eq!(o["state"], "allotted");
    assert_eq!(o["stalled"], false);
    assert_eq!(o["associate_at"], serde_json::json!([12.98, 77.6]));
    assert_eq!(o["user_at"], serde_json::json!([12.9716, 77.5946]));

    let track = |id: String| {
        let cookie = cookie.clone();
        async move {
            http_api::request(
                s.addr,
                "GET",
                &format!("/ops/api/orders/{id}/track"),
                &[("cookie", &cookie)],
                None,
            )
            .await
            .unwrap()
        }
    };
    let t = track(order.to_string()).await;
    assert_eq!(t.status, 200, "{}", t.text);
    let points = t.body["points"].as_array().unwrap();
    assert_eq!(points.len(), 2, "{}", t.text);
    assert_eq!(points[0][3], "associate");
    assert_eq!(points[1][3], "user");
    assert!(points[0][0].as_u64() <= points[1][0].as_u64());
    // The order ends; its track is still there to replay.
    let r = s
        .admin(
            "POST",
            &format!("/v1/orders/{order}/cancel"),
            Some(serde_json::json!({ "reason": "test" })),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    snapshot_where(&mut ops, |s| s["orders"].as_array().unwrap().is_empty()).await;
    assert_eq!(track(order.to_string()).await.status, 200);
    // An order never run here has none; without a session, nothing.
    let none = track(wire::OrderId::new().to_string()).await;
    assert_eq!(none.status, 404, "{}", none.text);
    assert_eq!(none.body["error"]["code"], "not_found");
    let r = http_api::request(
        s.addr,
        "GET",
        &format!("/ops/api/orders/{order}/track"),
        &[],
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 401);
}
