//! Moving up: `engine migrate` and `engine copy-data` through the binary; an engine on
//! Postgres serves what an embedded engine recorded.

use std::process::Command;

use wire::model::{OrderState, PaymentStatus};

use crate::harness::{Backend, TestServer, parties};
use crate::steps::{allot, payment_result, state_update, work};

fn engine(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(args)
        .env_remove("SPEEDY_CONFIG")
        .env_remove("SPEEDY_DATABASE_URL")
        .output()
        .unwrap()
}

#[test]
fn migrate_brings_an_empty_database_up_and_is_idempotent() {
    let url = storage::pg::testing::fresh_database();
    let first = engine(&["--database", &url, "migrate"]);
    assert!(first.status.success(), "{first:?}");
    let text = String::from_utf8_lossy(&first.stdout);
    assert!(
        text.contains(&format!("version 0 -> {}", storage::pg::PG_SCHEMA_VERSION)),
        "{text}"
    );
    let again = engine(&["--database", &url, "migrate"]);
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(
        text.contains(&format!(
            "version {v} -> {v}",
            v = storage::pg::PG_SCHEMA_VERSION
        )),
        "{text}"
    );
    // The URL may come from SPEEDY_DATABASE_URL instead of the flag.
    let url = storage::pg::testing::fresh_database();
    let from_env = Command::new(env!("CARGO_BIN_EXE_engine"))
        .arg("migrate")
        .env_remove("SPEEDY_CONFIG")
        .env("SPEEDY_DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(from_env.status.success(), "{from_env:?}");
    let text = String::from_utf8_lossy(&from_env.stdout);
    assert!(
        text.contains(&format!("version 0 -> {}", storage::pg::PG_SCHEMA_VERSION)),
        "{text}"
    );
    // A URL that is not Postgres is refused up front, naming the setting.
    let bad = engine(&["--database", "mysql://x", "migrate"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("database"),
        "{bad:?}"
    );
}

#[tokio::test]
async fn copy_data_moves_an_embedded_market_into_postgres() {
    // An embedded engine records a closed, cash-paid order.
    let embedded = TestServer::start(|_| {});
    let mut p = parties(&embedded).await;
    let order = allot(&mut p, None).await;
    let invoice = work(&mut p, &order).await;
    p.a.send(wire::CashReceived {
        order_id: order.order_id,
        amount_minor: invoice.total_minor,
    })
    .await
    .unwrap();
    assert_eq!(
        payment_result(&mut p.u).await.status,
        PaymentStatus::Succeeded
    );
    state_update(&mut p.a, order.order_id, OrderState::Closed).await;
    let path = format!("/v1/orders/{}", order.order_id);
    let before = embedded.admin("GET", &path, None).await;
    assert_eq!(before.status, 200, "{}", before.text);
    let users_before = embedded.admin("GET", "/v1/users", None).await.body;
    drop(p);
    let data = embedded.stop_keeping_data();

    // Copied by the binary, as an operator would.
    let url = Backend::Postgres.database().unwrap();
    let from = data.path().display().to_string();
    let out = engine(&["copy-data", "--from", &from, "--to", &url]);
    assert!(out.status.success(), "{out:?}");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("orders: 1"), "{report}");

    // An engine on Postgres serves the same order and the same people.
    let on_pg = TestServer::start(|c| c.database = Some(url.clone()));
    let after = on_pg.admin("GET", &path, None).await;
    assert_eq!(after.status, 200, "{}", after.text);
    assert_eq!(after.body, before.body);
    assert_eq!(
        on_pg.admin("GET", "/v1/users", None).await.body,
        users_before
    );

    // A second copy into the same database is refused: it holds records now.
    on_pg.stop();
    let again = engine(&["copy-data", "--from", &from, "--to", &url]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("empty"),
        "{again:?}"
    );
}
