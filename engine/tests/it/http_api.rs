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
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        r.body["items"][0]["id"].as_str().unwrap(),
        associate.to_string()
    );
    assert_eq!(r.body["next"], serde_json::Value::Null);

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
        _ => storage::skips::skip(
            "promtool check metrics",
            "promtool",
            "SPEEDY_REQUIRE_PROMTOOL",
        ),
    }
}

/// The sum of every sample line of `series` whose labels include each of `labels`.
fn sample_sum(exposition: &str, series: &str, labels: &[&str]) -> f64 {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(series)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
        })
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn latency_and_queue_depth_are_prometheus_histograms() {
    let s = TestServer::start(|_| {});
    let mut p = crate::harness::parties(&s).await;
    crate::steps::allot(&mut p, None).await;
    let r = http_api::request(s.addr, "GET", "/metrics", &[], None)
        .await
        .unwrap();
    for (series, labels) in [
        ("speedy_time_to_first_offer_seconds", &[][..]),
        ("speedy_time_to_allot_seconds", &[]),
        ("speedy_durable_write_seconds", &[]),
        ("speedy_frame_handling_seconds", &[r#"type="location""#][..]),
        ("speedy_frame_handling_seconds", &[r#"type="request""#]),
        ("speedy_session_outbox_depth", &[]),
        ("speedy_mailbox_depth", &[r#"actor="associate""#]),
        ("speedy_mailbox_depth", &[r#"actor="supervisor""#]),
    ] {
        assert!(
            r.text.contains(&format!("# TYPE {series} histogram")),
            "{series} is not a histogram:\n{}",
            r.text
        );
        let inf = [labels, &[r#"le="+Inf""#]].concat();
        let count = sample_sum(&r.text, &format!("{series}_bucket"), &inf);
        assert!(
            count >= 1.0,
            "{series} {labels:?} has no samples:\n{}",
            r.text
        );
        assert_eq!(
            count,
            sample_sum(&r.text, &format!("{series}_count"), labels),
            "{series}: the +Inf bucket is the count"
        );
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
    // A wrong key, malformed body: 401 too, before the body.
    for (path, header) in [
        ("/v1/users", "x-admin-key"),
        ("/v1/tokens", "x-admin-key"),
        ("/v1/discounts", "x-admin-key"),
        ("/v1/feedback", "x-api-key"),
    ] {
        let wrong = vec![(header, "wrong-key-0123456789abcdef".to_owned())];
        let r = raw(path, wrong, Some("application/json"), b"{not json").await;
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

/// The status and JSON error code of a raw request.
async fn answer(s: &TestServer, method: &str, path: &str, admin: bool) -> (u16, Option<String>) {
    let headers: Vec<(&str, &str)> = if admin {
        vec![("x-admin-key", s.admin_key.as_str())]
    } else {
        vec![]
    };
    let r = http_api::request(s.addr, method, path, &headers, None)
        .await
        .unwrap();
    (
        r.status,
        r.body["error"]["code"].as_str().map(str::to_owned),
    )
}

#[tokio::test]
async fn every_error_is_json_with_a_stable_code() {
    let s = TestServer::start(|_| {});
    let code = |c: &str| Some(c.to_owned());
    // Unknown routes and methods.
    assert_eq!(
        answer(&s, "GET", "/v1/nowhere", true).await,
        (404, code("not_found"))
    );
    assert_eq!(
        answer(&s, "DELETE", "/v1/users", true).await,
        (405, code("bad_field"))
    );
    // Malformed path and query parameters.
    assert_eq!(
        answer(&s, "GET", "/v1/users/not-a-uuid", true).await,
        (422, code("bad_field"))
    );
    assert_eq!(
        answer(&s, "GET", "/v1/orders/42", true).await,
        (422, code("bad_field"))
    );
    assert_eq!(
        answer(&s, "GET", "/v1/users?limit=abc", true).await,
        (422, code("bad_field"))
    );
    assert_eq!(
        answer(&s, "GET", "/v1/users?limit=0", true).await,
        (422, code("bad_field"))
    );
    assert_eq!(
        answer(&s, "GET", "/v1/users?limit=501", true).await,
        (422, code("bad_field"))
    );
    assert_eq!(
        answer(&s, "GET", "/v1/orders?state=flying", true).await,
        (422, code("bad_field"))
    );
    assert_eq!(
        answer(&s, "GET", "/v1/orders?from_ms=10&to_ms=5", true).await,
        (422, code("bad_field"))
    );
    // Unknown resources and missing keys.
    assert_eq!(
        answer(
            &s,
            "GET",
            &format!("/v1/users/{}", wire::UserId::new()),
            true
        )
        .await,
        (404, code("not_found"))
    );
    assert_eq!(
        answer(&s, "GET", "/v1/users", false).await,
        (401, code("unauthorized"))
    );
    assert_eq!(
        answer(
            &s,
            "GET",
            &format!("/v1/orders/{}", wire::OrderId::new()),
            false
        )
        .await,
        (401, code("unauthorized"))
    );
    // The WebSocket route, asked without an upgrade.
    let (status, c) = answer(&s, "GET", "/v1/ws", false).await;
    assert!(status == 400 || status == 426, "{status}");
    assert_eq!(c, code("bad_frame"));
    // A second profile with the same id conflicts.
    let (user, _) = s.user("Asha").await;
    let r = s
        .admin(
            "POST",
            "/v1/users",
            Some(json!({ "id": user, "name": "B", "phone": "1" })),
        )
        .await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (409, Some("already_exists"))
    );
}

#[tokio::test]
async fn lists_are_paginated_and_orders_can_be_found() {
    let s = TestServer::start(|_| {});
    // Follows `next` from `first` to the end: every page at most `limit` long, and the
    // `key` of every item in the order given.
    let walk = |first: String, limit: usize, key: &'static str| {
        let s = &s;
        async move {
            let mut seen = Vec::new();
            let mut path = first.clone();
            loop {
                let r = s.admin("GET", &path, None).await;
                assert_eq!(r.status, 200, "{}", r.text);
                let items = r.body["items"].as_array().unwrap();
                assert!(items.len() <= limit, "{}", r.text);
                seen.extend(items.iter().map(|i| i[key].as_str().unwrap().to_owned()));
                match r.body["next"].as_str() {
                    Some(next) => path = format!("{first}&after={next}"),
                    None => return seen,
                }
            }
        }
    };
    let mut users = Vec::new();
    let mut associates = Vec::new();
    for n in 0..7 {
        users.push(s.user(&format!("U{n}")).await.0.to_string());
        associates.push(
            s.associate(&format!("A{n}"), &["errand"])
                .await
                .0
                .to_string(),
        );
    }
    assert_eq!(walk("/v1/users?limit=3".into(), 3, "id").await, users);
    assert_eq!(
        walk("/v1/associates?limit=2".into(), 2, "id").await,
        associates
    );

    let mut p = crate::harness::parties(&s).await;
    let order = crate::steps::allot(&mut p, None).await;
    let r = s
        .admin(
            "GET",
            &format!("/v1/orders?user_id={}&state=allotted", p.user),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let found: Vec<&str> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["order_id"].as_str().unwrap())
        .collect();
    assert_eq!(found, [order.order_id.to_string()]);
    let r = s
        .admin(
            "GET",
            &format!("/v1/orders?associate_id={}&state=closed", p.associate),
            None,
        )
        .await;
    assert!(r.body["items"].as_array().unwrap().is_empty());
    let now = order.allotted_at_ms;
    let r = s
        .admin(
            "GET",
            &format!("/v1/orders?from_ms={}&to_ms={}", now, now + 1),
            None,
        )
        .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1, "{}", r.text);
    let r = s
        .admin("GET", &format!("/v1/orders?from_ms={}", now + 1), None)
        .await;
    assert!(r.body["items"].as_array().unwrap().is_empty(), "{}", r.text);
    // Three orders of one user, walked two at a time.
    let mut orders = vec![order.order_id.to_string()];
    for _ in 0..2 {
        let last = orders.last().unwrap();
        let r = s
            .admin(
                "POST",
                &format!("/v1/orders/{last}/cancel"),
                Some(json!({ "reason": "paging test" })),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        crate::steps::state_update(
            &mut p.a,
            last.parse().unwrap(),
            wire::model::OrderState::Cancelled,
        )
        .await;
        orders.push(crate::steps::allot(&mut p, None).await.order_id.to_string());
    }
    let mut walked = walk(
        format!("/v1/orders?user_id={}&limit=2", p.user),
        2,
        "order_id",
    )
    .await;
    walked.sort();
    assert_eq!(walked, orders);
}

#[tokio::test]
async fn the_served_openapi_document_is_the_committed_one() {
    let s = TestServer::start(|_| {});
    let r = http_api::request(s.addr, "GET", "/v1/openapi.json", &[], None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body["openapi"], "3.1.0");
    let committed = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json"),
    )
    .unwrap();
    assert_eq!(
        r.text.trim(),
        committed.trim(),
        "docs/openapi.json is stale: cargo run -p engine -- openapi > docs/openapi.json"
    );
    // Every route the engine serves is in it, with its errors as JSON.
    let paths = r.body["paths"].as_object().unwrap();
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/openapi.json",
        "/v1/ws",
        "/v1/tokens",
        "/v1/users",
        "/v1/users/{id}",
        "/v1/associates",
        "/v1/associates/{id}",
        "/v1/orders",
        "/v1/orders/{id}",
        "/v1/orders/{id}/cancel",
        "/v1/orders/{id}/complete",
        "/v1/pricing",
        "/v1/discounts",
        "/v1/feedback",
    ] {
        assert!(paths.contains_key(path), "{path} is not documented");
    }
    for (path, ops) in paths {
        for (method, op) in ops.as_object().unwrap() {
            for (status, response) in op["responses"].as_object().unwrap() {
                // /readyz's 503 is a readiness answer (its reasons), not a request's error.
                if (status.starts_with('4') || status.starts_with('5')) && path != "/readyz" {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
}

#[test]
fn http_md_covers_every_route_of_the_document() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let doc = std::fs::read_to_string(root.join("docs/HTTP.md")).unwrap();
    let api: serde_json::Value = serde_json::from_str(&engine::openapi_json()).unwrap();
    for (path, ops) in api["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let method = method.to_uppercase();
            let shown = [format!("`{method} {path}`"), format!("`{method} {path}?")];
            assert!(
                shown.iter().any(|s| doc.contains(s.as_str())),
                "docs/HTTP.md does not cover {method} {path}"
            );
        }
    }
}

#[tokio::test]
async fn a_party_reads_only_its_own_order_and_the_associate_never_sees_the_pin() {
    let s = TestServer::start(|_| {});
    let (user, user_token) = s.user("Asha").await;
    let (associate, associate_token) = s.associate("Ravi", &["companion"]).await;
    let mut a = s.connect(&associate_token).await;
    crate::harness::go_online(&mut a, crate::harness::at(12.9726, 77.5946)).await;
    let u = s.connect(&user_token).await;
    let mut p = crate::harness::Parties {
        u,
        a,
        user,
        associate,
    };
    let order = crate::steps::allot(&mut p, None).await;
    let (_, stranger) = s.user("Meera").await;
    let path = format!("/v1/orders/{}", order.order_id);
    let get = |auth: Option<String>| {
        let path = path.clone();
        async move {
            let headers: Vec<(&str, String)> = auth
                .map(|t| vec![("authorization", format!("Bearer {t}"))])
                .unwrap_or_default();
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            http_api::request(s.addr, "GET", &path, &headers, None)
                .await
                .unwrap()
        }
    };
    // The user sees their order with its PIN; the associate sees it without.
    let r = get(Some(user_token.clone())).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["order"]["order_id"], json!(order.order_id));
    assert_eq!(r.body["order"]["pin"], json!(order.pin));
    let r = get(Some(associate_token)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["order"]["pin"], "", "as documented: {}", r.text);
    // Anyone else: not found (whether it exists is not theirs to know).
    let r = get(Some(stranger)).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (404, Some("not_found")),
        "{}",
        r.text
    );
    // A token that is not one, or none: 401.
    for auth in [Some("not-a-token".to_owned()), None] {
        let r = get(auth).await;
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (401, Some("unauthorized")),
            "{}",
            r.text
        );
    }
}

/// `/readyz` until `want` answers, polled for at most ten seconds: the last answer.
async fn readiness_until(s: &TestServer, want: u16) -> (u16, serde_json::Value) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = http_api::request(s.addr, "GET", "/readyz", &[], None)
            .await
            .unwrap();
        if r.status == want || std::time::Instant::now() >= deadline {
            return (r.status, r.body);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn readiness_follows_the_store(backend: crate::harness::Backend) {
    let database = backend.database();
    let s = TestServer::start_on(backend, |c| c.database = database.clone());
    let (status, body) = readiness_until(&s, 200).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("ready")),
        "{body}"
    );
    let Some(url) = database else {
        return;
    };
    // The database refuses connections and drops the engine's: not ready, and why.
    let (_, path) = url
        .trim_start_matches("postgres://")
        .split_once('/')
        .unwrap();
    let name = path.split('?').next().unwrap().to_string();
    let admin = url.replacen(&format!("/{name}"), "/postgres", 1);
    storage::pg::testing::execute(
        &admin,
        &format!(
            "ALTER DATABASE {name} ALLOW_CONNECTIONS false; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        ),
    );
    let (status, body) = readiness_until(&s, 503).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "not_ready");
    assert!(
        body["reasons"][0]
            .as_str()
            .is_some_and(|r| r.starts_with("store unreachable")),
        "{body}"
    );
    // Liveness is another matter: the process runs.
    let health = http_api::request(s.addr, "GET", "/healthz", &[], None)
        .await
        .unwrap();
    assert_eq!(health.status, 200);
    // The database is back: ready again, without a restart.
    storage::pg::testing::execute(
        &admin,
        &format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"),
    );
    let (status, body) = readiness_until(&s, 200).await;
    assert_eq!(status, 200, "{body}");
}
crate::both!(readiness_follows_the_store);
