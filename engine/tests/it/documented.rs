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

/// Every frame that names an order, as a party of none of it would send it.
fn order_frames(order: wire::OrderId, pin: &str) -> Vec<(&'static str, wire::ClientMessage)> {
    vec![
        ("en_route", wire::EnRoute { order_id: order }.into()),
        ("arrived", wire::Arrived { order_id: order }.into()),
        (
            "start",
            wire::Start {
                order_id: order,
                pin: pin.into(),
            }
            .into(),
        ),
        ("complete", wire::Complete { order_id: order }.into()),
        (
            "cancel_order",
            wire::CancelOrder {
                order_id: order,
                reason: None,
            }
            .into(),
        ),
        (
            "pay",
            wire::Pay {
                order_id: order,
                method: PaymentMethod::Card,
                instrument: "4242424242424242".into(),
                idempotency_key: format!("nosy-{order}-{pin}"),
                tip_minor: None,
            }
            .into(),
        ),
        (
            "cash_received",
            wire::CashReceived {
                order_id: order,
                amount_minor: 1_000_000,
            }
            .into(),
        ),
        (
            "feedback",
            wire::Feedback {
                order_id: order,
                rating: 1,
                comment: None,
            }
            .into(),
        ),
    ]
}

/// Each stranger sends every order frame for `order` and for an order that does not
/// exist: the answers match (the frame reveals nothing of the order) and are
/// `not_your_order`, or `wrong_role` for a frame the sender's role never sends.
async fn strangers_learn_nothing(
    strangers: &mut [(&str, &mut wire::client::Client)],
    order: &wire::model::OrderSnapshot,
    stage: &str,
) {
    let pin = order.pin.clone().unwrap();
    let unknown = wire::OrderId::new();
    for (who, c) in strangers.iter_mut() {
        let frames = order_frames(order.order_id, &pin)
            .into_iter()
            .zip(order_frames(unknown, &pin));
        for ((frame, message), (_, control)) in frames {
            c.send(control).await.unwrap();
            let blind = expect(c, "error", refusal).await.code;
            c.send(message).await.unwrap();
            let e = expect(c, "error", refusal).await;
            assert!(
                matches!(e.code, ErrorCode::NotYourOrder | ErrorCode::WrongRole),
                "{who} sent {frame} on an order {stage}: {:?} {}",
                e.code,
                e.message
            );
            assert_eq!(
                e.code, blind,
                "{who} sent {frame} on an order {stage}: {} (on no order: {blind:?})",
                e.message
            );
        }
    }
}

async fn every_order_frame_from_a_stranger_gets_not_your_order_whatever_the_state(
    backend: crate::harness::Backend,
) {
    // Each stranger sends 48 frames, beyond the default burst.
    let s = TestServer::start_on(backend, |c| c.socket.frames_burst = 200);
    let mut p = parties(&s).await;
    let (_, token) = s.user("Nosy user").await;
    let mut user = s.connect(&token).await;
    let (_, token) = s.associate("Nosy associate", &["companion"]).await;
    let mut associate = s.connect(&token).await;
    let order = allot(&mut p, None).await;
    strangers_learn_nothing(
        &mut [("a user", &mut user), ("an associate", &mut associate)],
        &order,
        "just allotted",
    )
    .await;
    let invoice = work(&mut p, &order).await;
    strangers_learn_nothing(
        &mut [("a user", &mut user), ("an associate", &mut associate)],
        &order,
        "billed",
    )
    .await;
    p.a.send(wire::CashReceived {
        order_id: order.order_id,
        amount_minor: invoice.total_minor,
    })
    .await
    .unwrap();
    state_update(&mut p.u, order.order_id, OrderState::Closed).await;
    strangers_learn_nothing(
        &mut [("a user", &mut user), ("an associate", &mut associate)],
        &order,
        "closed",
    )
    .await;
    // Nothing the strangers sent touched the order: its parties still rate it.
    p.u.send(wire::Feedback {
        order_id: order.order_id,
        rating: 5,
        comment: None,
    })
    .await
    .unwrap();
    expect(&mut p.u, "feedback recorded", |m| {
        matches!(m, ServerMessage::FeedbackRecorded(_)).then_some(())
    })
    .await;
}
crate::both!(every_order_frame_from_a_stranger_gets_not_your_order_whatever_the_state);

#[tokio::test]
async fn a_message_over_the_limit_in_small_fragments_gets_its_error_and_1009() {
    let s = TestServer::start(|_| {});
    let (_, token) = s.user("Asha").await;
    let mut c = s.connect(&token).await;
    let fragment = vec![b'x'; 1024];
    let mut first = br#"{"type":"heartbeat","pad":""#.to_vec();
    first.extend_from_slice(&fragment);
    c.send_raw(Message::Frame(Frame::message(
        first,
        OpCode::Data(Data::Text),
        false,
    )))
    .await
    .unwrap();
    for n in 1..200 {
        let last = n == 199;
        let mut payload = fragment.clone();
        if last {
            payload.extend_from_slice(br#""}"#);
        }
        // The engine reads on after refusing, so the client's writes do not fail.
        c.send_raw(Message::Frame(Frame::message(
            payload,
            OpCode::Data(Data::Continue),
            last,
        )))
        .await
        .unwrap_or_else(|e| panic!("fragment {n} could not be sent: {e}"));
    }
    assert_eq!(
        expect(&mut c, "error", refusal).await.code,
        ErrorCode::FrameTooLarge
    );
    let reason = closed_with(&mut c).await;
    assert!(reason.starts_with("1009"), "{reason}");
}

/// A masked client frame (mask key zero, so the payload goes as is).
fn raw_client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(payload);
    out
}

/// The server's frames in `bytes` (unmasked), as (opcode, payload), up to a cut-off one.
fn raw_server_frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while bytes.len() >= 2 {
        let opcode = bytes[0] & 0x0f;
        let (len, head) = match bytes[1] & 0x7f {
            126 if bytes.len() >= 4 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            127 if bytes.len() >= 10 => (
                u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n if n < 126 => (n as usize, 2),
            _ => break,
        };
        if bytes.len() < head + len {
            break;
        }
        frames.push((opcode, bytes[head..head + len].to_vec()));
        bytes = &bytes[head + len..];
    }
    frames
}

#[tokio::test]
async fn a_message_over_the_limit_written_at_once_in_fragments_still_gets_1009() {
    let s = TestServer::start(|_| {});
    let (_, token) = s.user("Asha").await;
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let request = format!(
        "GET /v1/ws HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Authorization: Bearer {token}\r\n\r\n",
        s.addr
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    // The upgrade answer ends with its blank line; any frame after it is kept.
    let mut got = Vec::new();
    let body_at = loop {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, tcp.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed during the upgrade");
        got.extend_from_slice(&buf[..n]);
        if let Some(at) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    assert!(
        got.starts_with(b"HTTP/1.1 101"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    let mut frames = got.split_off(body_at);
    // 200 fragments of 1 KiB in one go, as a client that writes without reading would.
    let mut message = Vec::new();
    let fragment = vec![b'x'; 1024];
    for n in 0..200 {
        let mut payload = if n == 0 {
            br#"{"type":"heartbeat","pad":""#.to_vec()
        } else {
            Vec::new()
        };
        payload.extend_from_slice(&fragment);
        if n == 199 {
            payload.extend_from_slice(br#""}"#);
        }
        message.extend(raw_client_frame(
            n == 199,
            if n == 0 { 1 } else { 0 },
            &payload,
        ));
    }
    let (mut read, mut write) = tcp.into_split();
    let writer = tokio::spawn(async move {
        // The engine may stop reading before the end: a write error then is expected.
        let _ = write.write_all(&message).await;
        write
    });
    tokio::time::timeout(WAIT, async {
        let mut buf = vec![0u8; 65_536];
        loop {
            match read.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => frames.extend_from_slice(&buf[..n]),
                Err(e) => panic!(
                    "the connection was reset after {:?}: {e}",
                    raw_server_frames(&frames)
                ),
            }
            if raw_server_frames(&frames).iter().any(|(op, _)| *op == 8) {
                break;
            }
        }
    })
    .await
    .expect("the engine answers within the wait");
    let frames = raw_server_frames(&frames);
    let text: Vec<String> = frames
        .iter()
        .filter(|(op, _)| *op == 1)
        .map(|(_, p)| String::from_utf8_lossy(p).into_owned())
        .collect();
    assert!(
        text.iter().any(|t| t.contains("frame_too_large")),
        "no frame_too_large error in {text:?}"
    );
    let close = frames
        .iter()
        .find(|(op, _)| *op == 8)
        .expect("a close frame");
    assert_eq!(u16::from_be_bytes([close.1[0], close.1[1]]), 1009);
    drop(writer.await);
}
