//! The HTTP contract fuzzed: schemathesis (from PyPI) runs against a live engine over
//! every route of the served OpenAPI document, with the keys and without them; it must
//! find no server error, no status the document does not list and no body outside its
//! schema. `.ci/run` installs it; elsewhere the test runs when `st` is on the PATH or in
//! `SPEEDY_SCHEMATHESIS`, and fails when `SPEEDY_REQUIRE_SCHEMATHESIS` is set and it is
//! missing.

use std::path::PathBuf;
use std::process::Command;

use crate::harness::TestServer;

/// The schemathesis CLI, if installed.
fn schemathesis() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("SPEEDY_SCHEMATHESIS") {
        return Some(PathBuf::from(path));
    }
    let found = Command::new("st").arg("--version").output().ok()?;
    found.status.success().then(|| PathBuf::from("st"))
}

/// Ids of records that exist, so the routes that look one up reach past 404.
struct Known {
    user: String,
    associate: String,
    order: String,
}

/// Runs schemathesis against `s` with `headers`; panics with its report on failure.
fn fuzz(
    st: &PathBuf,
    s: &TestServer,
    known: &Known,
    headers: &[(&str, &str)],
    checks: &str,
    what: &str,
) {
    let report = tempfile::tempdir().unwrap();
    let config = format!(
        r#"
[[operations]]
include-path-regex = '^/v1/orders/[{{]id[}}]'
parameters = {{ "path.id" = "{order}" }}

[[operations]]
include-path = "/v1/users/{{id}}"
parameters = {{ "path.id" = "{user}" }}

[[operations]]
include-path = "/v1/associates/{{id}}"
parameters = {{ "path.id" = "{associate}" }}
"#,
        order = known.order,
        user = known.user,
        associate = known.associate,
    );
    std::fs::write(report.path().join("schemathesis.toml"), config).unwrap();
    let mut cmd = Command::new(st);
    cmd.arg("run")
        .arg(format!("http://{}/v1/openapi.json", s.addr))
        .args(["--checks", checks])
        .args(["--max-examples", "40", "--seed", "20261125"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args([
            "--workers",
            "1",
            "--request-timeout",
            "10",
            "--max-failures",
            "20",
        ])
        .arg("--no-color")
        .env("NO_COLOR", "1")
        .current_dir(report.path());
    for (name, value) in headers {
        cmd.args(["-H", &format!("{name}: {value}")]);
    }
    let out = cmd.output().expect("schemathesis runs");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis found problems {what}:\n{text}"
    );
    let summary: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("generated") || l.contains("warning"))
        .collect();
    eprintln!("schemathesis {what}: {}", summary.join(" | "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_nothing_outside_the_document() {
    let Some(st) = schemathesis() else {
        storage::skips::skip(
            "the HTTP contract fuzz",
            "schemathesis (st)",
            "SPEEDY_REQUIRE_SCHEMATHESIS",
        );
        return;
    };
    let s = TestServer::start(|_| {});
    // A closed order with an invoice, a payment and its events, and its parties.
    let mut p = crate::harness::parties(&s).await;
    let order = crate::steps::allot(&mut p, None).await;
    let invoice = crate::steps::work(&mut p, &order).await;
    p.a.send(wire::CashReceived {
        order_id: order.order_id,
        amount_minor: invoice.total_minor,
    })
    .await
    .unwrap();
    crate::steps::state_update(&mut p.u, order.order_id, wire::model::OrderState::Closed).await;
    let known = Known {
        user: p.user.to_string(),
        associate: p.associate.to_string(),
        order: order.order_id.to_string(),
    };
    let checks = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance";
    tokio::task::block_in_place(|| {
        fuzz(
            &st,
            &s,
            &known,
            &[
                ("x-admin-key", &s.admin_key),
                ("x-api-key", &s.feedback_key),
            ],
            &format!("{checks},ignored_auth"),
            "with the keys",
        );
        fuzz(&st, &s, &known, &[], checks, "without keys");
    });
    // The engine is still up after all that.
    let health = wire::client::http_api::request(s.addr, "GET", "/healthz", &[], None)
        .await
        .unwrap();
    assert_eq!(
        (health.status, health.body["status"].as_str()),
        (200, Some("ok"))
    );
}
