//! The HTTP API: health, metrics, tokens, profiles, errors.

use serde_json::json;
use wire::client::http_api;

use crate::harness::TestServer;

#[tokio::test]
async fn health_profiles_tokens_and_errors() {
    let s = TestServer::start(|_| {});
    let health = http_api::request(s.addr, "GET", "/healthz", &[], None)
        .await
        .unwrap();
    assert_eq!(
        (health.status, health.body["status"].as_str()),
        (200, Some("ok"))
    );

    // Admin routes need the key.
    let r = http_api::request(s.addr, "GET", "/v1/users", &[], None)
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.body["error"]["code"], "unauthorized");
    let r = http_api::request(
        s.addr,
        "GET",
        "/v1/users",
        &[("x-admin-key", "wrong-key-wrong-key")],
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 401);

    let (user, _) = s.user("Asha").await;
    let r = s.admin("GET", &format!("/v1/users/{user}"), None).await;
    assert_eq!((r.status, r.body["name"].as_str()), (200, Some("Asha")));
    let r = s
        .admin(
            "POST",
            "/v1/users",
            Some(json!({ "name": "", "phone": "1" })),
        )
        .await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (422, Some("bad_field"))
    );
    let r = s
        .admin(
            "POST",
            "/v1/users",
            Some(json!({ "name": "B", "phone": "1", "date_of_birth": "1990-13-01" })),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    let r = s
        .admin(
            "POST",
            "/v1/associates",
            Some(json!({ "name": "R", "phone": "2", "skills": ["juggling"] })),
        )
        .await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (422, Some("unknown_task_type"))
    );
    let (associate, _) = s.associate("Ravi", &["companion", "helper"]).await;
    let r = s.admin("GET", "/v1/associates", None).await;
    assert_eq!(r.body.as_array().unwrap().len(), 1);
    assert_eq!(r.body[0]["id"].as_str().unwrap(), associate.to_string());

    // Malformed JSON keeps the server up and says why.
    let r = http_api::request(
        s.addr,
        "POST",
        "/v1/tokens",
        &[("x-admin-key", &s.admin_key)],
        Some(&json!({"sub": "x"})),
    )
    .await
    .unwrap();
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (422, Some("bad_field")),
        "{}",
        r.text
    );
    let r = s
        .admin("GET", &format!("/v1/orders/{}", wire::OrderId::new()), None)
        .await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let r = s.admin("GET", "/v1/pricing", None).await;
    assert_eq!(r.body["currency"], "INR");
    let health = http_api::request(s.addr, "GET", "/healthz", &[], None)
        .await
        .unwrap();
    assert_eq!(health.status, 200);
}

#[tokio::test]
async fn metrics_are_valid_prometheus_text() {
    let s = TestServer::start(|_| {});
    // Some traffic so the exposition has samples.
    let (_, token) = s.user("Asha").await;
    let mut c = s.connect(&token).await;
    c.send(wire::Heartbeat { nonce: Some(1) }).await.unwrap();
    crate::harness::expect(&mut c, "heartbeat", |m| {
        matches!(m, wire::ServerMessage::Heartbeat(_)).then_some(())
    })
    .await;
    let r = http_api::request(s.addr, "GET", "/metrics", &[], None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(
        r.text.contains("speedy_frames_received_total"),
        "{}",
        r.text
    );
    assert!(
        r.text.contains("# TYPE speedy_connections gauge"),
        "{}",
        r.text
    );
    let promtool = std::process::Command::new("promtool")
        .arg("--version")
        .output();
    match promtool {
        Ok(out) if out.status.success() => {
            let mut child = std::process::Command::new("promtool")
                .args(["check", "metrics"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(r.text.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "promtool: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        _ if std::env::var_os("SPEEDY_REQUIRE_PROMTOOL").is_some() => {
            panic!("promtool is required but missing")
        }
        _ => eprintln!("promtool not installed: skipped `promtool check metrics` (CI installs it)"),
    }
}

#[tokio::test]
async fn a_fresh_engine_exposes_its_series_before_any_traffic() {
    let s = TestServer::start(|_| {});
    let r = http_api::request(s.addr, "GET", "/metrics", &[], None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    for series in [
        r#"speedy_connections{role="user"}"#,
        r#"speedy_connections{role="associate"}"#,
        r#"speedy_offers_total{outcome="accepted"}"#,
        r#"speedy_offers_total{outcome="expired"}"#,
        r#"speedy_requests_total{outcome="no_associate"}"#,
        "speedy_open_requests",
        "speedy_index_updates_total",
    ] {
        assert!(
            r.text.lines().any(|l| l.starts_with(series)),
            "{series} missing from\n{}",
            r.text
        );
    }
}

#[tokio::test]
async fn keys_are_checked_before_the_body_and_body_errors_are_json() {
    let s = TestServer::start(|_| {});
    let raw = |path: &'static str,
               headers: Vec<(&'static str, String)>,
               ct: Option<&'static str>,
               body: &'static [u8]| {
        let addr = s.addr;
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            http_api::request_raw(addr, "POST", path, &headers, ct, body)
                .await
                .unwrap()
        }
    };
    // No key, malformed body: 401, not 400. The body is never read.
    for path in ["/v1/feedback", "/v1/users", "/v1/tokens", "/v1/discounts"] {
        let r = raw(path, vec![], Some("application/json"), b"{not json").await;
        assert_eq!(r.status, 401, "{path}: {}", r.text);
        assert_eq!(r.body["error"]["code"], "unauthorized", "{path}");
    }
    let admin = vec![("x-admin-key", s.admin_key.clone())];
    // Malformed JSON: 400 bad_json, as JSON.
    let r = raw(
        "/v1/users",
        admin.clone(),
        Some("application/json"),
        b"{not json",
    )
    .await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (400, Some("bad_json")),
        "{}",
        r.text
    );
    // Not JSON at all: 415 bad_json.
    let r = raw("/v1/users", admin.clone(), Some("text/plain"), b"name=Asha").await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (415, Some("bad_json")),
        "{}",
        r.text
    );
    // Well-formed, but a required field is missing, or has the wrong type: 422.
    let r = raw(
        "/v1/users",
        admin.clone(),
        Some("application/json"),
        br#"{"name":"Asha"}"#,
    )
    .await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (422, Some("missing_field")),
        "{}",
        r.text
    );
    let r = raw(
        "/v1/users",
        admin.clone(),
        Some("application/json"),
        br#"{"name":1,"phone":"1"}"#,
    )
    .await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (422, Some("bad_field")),
        "{}",
        r.text
    );
    let key = vec![("x-api-key", s.feedback_key.clone())];
    let r = raw("/v1/feedback", key, Some("application/json"), b"[").await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (400, Some("bad_json")),
        "{}",
        r.text
    );
    // The server is still up.
    let r = http_api::request(s.addr, "GET", "/healthz", &[], None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
}
