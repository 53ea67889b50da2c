//! The protocol as docs/PROTOCOL.md states it, item by item, as a client written from the
//! document alone would find it.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use wire::model::{OrderState, PaymentMethod};
use wire::{ErrorCode, ServerMessage};

use crate::harness::{TestServer, WAIT, at, closed_with, expect, parties};
use crate::steps::{allot, error, request, state_update, work};

fn refusal(m: ServerMessage) -> Option<wire::ErrorFrame> {
    match m {
        ServerMessage::Error(e) => Some(e),
        _ => None,
    }
}

#[tokio::test]
async fn a_user_with_an_open_order_gets_already_active() {
    let s = TestServer::start(|_| {});
    let mut p = parties(&s).await;
    let order = allot(&mut p, None).await;
    p.u.send(request(None)).await.unwrap();
    let e = expect(&mut p.u, "error", refusal).await;
    assert_eq!(e.code, ErrorCode::AlreadyActive);
    assert!(
        e.message.contains(&order.order_id.to_string()),
        "{}",
        e.message
    );
    assert_eq!(e.client_ref.as_deref(), Some("flow-1"));
}

#[tokio::test]
async fn refused_frames_echo_their_reference_even_when_a_field_is_invalid() {
    let s = TestServer::start(|_| {});
    let mut p = parties(&s).await;
    for (raw, code) in [
        (
            r#"{"type":"request","client_ref":"ref-1","task":"juggling","pickup":{"lat":1,"lng":1}}"#,
            ErrorCode::UnknownTaskType,
        ),
        (
            r#"{"type":"request","client_ref":"ref-1","task":"companion","pickup":{"lat":91,"lng":1}}"#,
            ErrorCode::BadCoordinates,
        ),
        (
            r#"{"type":"request","client_ref":"ref-1","task":"companion","pickup":{"lat":1,"lng":1},"note":"NOTE"}"#,
            ErrorCode::TooLong,
        ),
    ] {
        let raw = raw.replace("NOTE", &"n".repeat(600));
        p.u.send_raw(Message::text(raw.clone())).await.unwrap();
        let e = expect(&mut p.u, "error", refusal).await;
        assert_eq!(
            (e.code, e.client_ref.as_deref()),
            (code, Some("ref-1")),
            "{raw}"
        );
    }
    let pay = format!(
        r#"{{"type":"pay","order_id":"{}","method":"card","instrument":"4242","idempotency_key":"key-9","tip_minor":-5}}"#,
        wire::OrderId::new()
    );
    p.u.send_raw(Message::text(pay)).await.unwrap();
    let e = expect(&mut p.u, "error", refusal).await;
    assert_eq!(
        (e.code, e.client_ref.as_deref()),
        (ErrorCode::NegativeAmount, Some("key-9"))
    );
    // Binary frames too.
    let (_, token) = s.user("Bin").await;
    let mut b = s.connect_with(&token, wire::Encoding::Binary).await;
    b.send(wire::TaskRequest {
        client_ref: "bin-1".into(),
        task: "juggling".into(),
        pickup: crate::harness::at(1.0, 1.0),
        note: None,
        discount_code: None,
    })
    .await
    .unwrap();
    let e = expect(&mut b, "error", refusal).await;
    assert_eq!(
        (e.code, e.client_ref.as_deref()),
        (ErrorCode::UnknownTaskType, Some("bin-1"))
    );
}

#[tokio::test]
async fn invalid_utf8_gets_its_error_then_the_close_rfc_6455_requires() {
    let s = TestServer::start(|_| {});
    let (_, token) = s.user("Asha").await;
    let mut c = s.connect(&token).await;
    let bad = Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
    c.send_raw(Message::Frame(bad)).await.unwrap();
    assert_eq!(
        expect(&mut c, "error", refusal).await.code,
        ErrorCode::InvalidUtf8
    );
    let reason = closed_with(&mut c).await;
    assert!(reason.starts_with("1007"), "{reason}");
}

#[tokio::test]
async fn a_frame_over_the_limit_gets_its_error_and_1009() {
    let s = TestServer::start(|_| {});
    let (_, token) = s.user("Asha").await;
    let mut c = s.connect(&token).await;
    let huge = format!(r#"{{"type":"heartbeat","pad":"{}"}}"#, "x".repeat(100_000));
    c.send_raw(Message::text(huge)).await.unwrap();
    assert_eq!(
        expect(&mut c, "error", refusal).await.code,
        ErrorCode::FrameTooLarge
    );
    let reason = closed_with(&mut c).await;
    assert!(reason.starts_with("1009"), "{reason}");
}

#[tokio::test]
async fn money_frames_on_a_closed_order_say_invalid_state_alike() {
    let s = TestServer::start(|_| {});
    let mut p = parties(&s).await;
    let order = allot(&mut p, None).await;
    let invoice = work(&mut p, &order).await;
    p.a.send(wire::CashReceived {
        order_id: order.order_id,
        amount_minor: invoice.total_minor,
    })
    .await
    .unwrap();
    state_update(&mut p.u, order.order_id, OrderState::Closed).await;
    p.a.send(wire::CashReceived {
        order_id: order.order_id,
        amount_minor: invoice.total_minor,
    })
    .await
    .unwrap();
    assert_eq!(error(&mut p.a).await, ErrorCode::InvalidState);
    p.u.send(wire::Pay {
        order_id: order.order_id,
        method: PaymentMethod::Card,
        instrument: "4242424242424242".into(),
        idempotency_key: "late".into(),
        tip_minor: None,
    })
    .await
    .unwrap();
    assert_eq!(error(&mut p.u).await, ErrorCode::InvalidState);
    p.a.send(wire::Arrived {
        order_id: order.order_id,
    })
    .await
    .unwrap();
    assert_eq!(error(&mut p.a).await, ErrorCode::InvalidState);
    // Someone else's closed order is not theirs to know about.
    let (_, token) = s.user("Other").await;
    let mut other = s.connect(&token).await;
    other
        .send(wire::Pay {
            order_id: order.order_id,
            method: PaymentMethod::Card,
            instrument: "4242424242424242".into(),
            idempotency_key: "nosy".into(),
            tip_minor: None,
        })
        .await
        .unwrap();
    assert_eq!(error(&mut other).await, ErrorCode::NotYourOrder);
}

/// A raw upgrade request offering `protocol`; the status line and body of the answer.
async fn upgrade_with_protocol(s: &TestServer, token: &str, protocol: &str) -> (String, String) {
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let request = format!(
        "GET /v1/ws HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Protocol: {protocol}\r\nAuthorization: Bearer {token}\r\n\r\n",
        s.addr
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut raw = vec![0u8; 4096];
    let n = tokio::time::timeout(WAIT, tcp.read(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&raw[..n]).into_owned();
    let status = text.lines().next().unwrap_or_default().to_owned();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

#[tokio::test]
async fn an_unknown_subprotocol_is_refused_not_answered_in_json() {
    let s = TestServer::start(|_| {});
    let (_, token) = s.user("Asha").await;
    let (status, body) = upgrade_with_protocol(&s, &token, "speedy.v2.bin").await;
    assert!(status.contains(" 400 "), "{status}");
    let body: serde_json::Value = serde_json::from_str(body.trim()).unwrap();
    assert_eq!(body["error"]["code"], "bad_field");
    // One known among unknown ones is chosen.
    let (status, _) = upgrade_with_protocol(&s, &token, "speedy.v2.bin, speedy.v1.json").await;
    assert!(status.contains(" 101 "), "{status}");
}

#[tokio::test]
async fn every_frame_type_is_rate_limited_and_a_flood_of_any_closes_the_socket() {
    let s = TestServer::start(|c| {
        c.socket.frames_per_s = 5;
        c.socket.frames_burst = 5;
        c.socket.location_per_s = 5;
        c.socket.location_burst = 5;
    });
    let (_, token) = s.user("Asha").await;
    // A heartbeat without a nonce is answered (the nonce is optional in both encodings).
    for encoding in [wire::Encoding::Json, wire::Encoding::Binary] {
        let mut c = s.connect_with(&token, encoding).await;
        c.send(wire::Heartbeat { nonce: None }).await.unwrap();
        let answer = expect(&mut c, "the heartbeat's answer", |m| match m {
            ServerMessage::Heartbeat(h) => Some(h),
            _ => None,
        })
        .await;
        assert_eq!(answer.nonce, None, "{encoding:?}");
    }
    // A burst over the limit: refused with rate_limited, the socket stays.
    let mut c = s.connect(&token).await;
    for n in 0..8 {
        c.send(wire::Heartbeat { nonce: Some(n) }).await.unwrap();
    }
    assert_eq!(
        expect(&mut c, "rate limited", refusal).await.code,
        ErrorCode::RateLimited
    );
    // A flood (far over ten times the rate within a second) closes it, for any type,
    // and for frames that are not frames at all.
    for flood in [
        Message::text(r#"{"type":"heartbeat"}"#),
        Message::text("{not json"),
        Message::text(
            r#"{"type":"cancel_request","request_id":"01930000-0000-7000-8000-000000000001"}"#,
        ),
    ] {
        let mut c = s.connect(&token).await;
        for _ in 0..200 {
            if c.send_raw(flood.clone()).await.is_err() {
                break;
            }
        }
        let reason = closed_with(&mut c).await;
        assert!(
            reason.starts_with("1008") && reason.contains("flooding"),
            "{reason}"
        );
    }
    // Locations have a bucket of their own, and binary frames are counted alike.
    let location = wire::Location {
        point: at(12.97, 77.59),
        accuracy_m: None,
    };
    for encoding in [wire::Encoding::Json, wire::Encoding::Binary] {
        let mut c = s.connect_with(&token, encoding).await;
        for _ in 0..200 {
            if c.send(location.clone()).await.is_err() {
                break;
            }
        }
        let reason = closed_with(&mut c).await;
        assert!(
            reason.starts_with("1008") && reason.contains("flooding"),
            "{encoding:?}: {reason}"
        );
    }
    let mut c = s.connect_with(&token, wire::Encoding::Binary).await;
    for n in 0..200 {
        if c.send(wire::Heartbeat { nonce: Some(n) }).await.is_err() {
            break;
        }
    }
    let reason = closed_with(&mut c).await;
    assert!(
        reason.starts_with("1008") && reason.contains("flooding"),
        "binary heartbeats: {reason}"
    );
}

/// The numbers PROTOCOL.md gives are the engine's defaults.
#[test]
fn protocol_md_states_the_defaults() {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/PROTOCOL.md"),
    )
    .unwrap();
    let c = engine::Config::default();
    let thousands = |m: f64| {
        let m = m as u64;
        if m >= 1_000 {
            format!("{} {:03} m", m / 1_000, m % 1_000)
        } else {
            format!("{m} m")
        }
    };
    let mut expected = vec![
        format!(
            "`location` {} frames/s sustained with bursts of {}",
            c.socket.location_per_s, c.socket.location_burst
        ),
        format!(
            "{} frames/s with bursts of {}",
            c.socket.frames_per_s, c.socket.frames_burst
        ),
        format!(
            "`dispatch.candidates_per_search` (default {})",
            c.dispatch.candidates_per_search
        ),
        format!(
            "`dispatch.retry_interval_ms` (default {} ms)",
            thousands(c.dispatch.retry_interval_ms as f64).trim_end_matches(" m")
        ),
        format!("over {} KiB", c.socket.max_frame_bytes / 1024),
    ];
    expected.extend(c.dispatch.radius_steps_m.iter().map(|r| thousands(*r)));
    let stall = &c.orders.stall_after_ms;
    expected.push(format!("allotted {} min", stall.allotted / 60_000));
    expected.push(format!("billed {} min", stall.billed / 60_000));
    for text in expected {
        assert!(doc.contains(&text), "PROTOCOL.md does not say {text:?}");
    }
}
