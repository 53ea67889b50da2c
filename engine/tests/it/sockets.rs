//! WebSocket sessions: identity, the dispatch happy path with live tracking, errors that
//! keep the socket, oversize frames, slow readers, missed pongs, reconnects.

use std::time::Duration;

use tokio_tungstenite::tungstenite::Message;
use wire::{ClientMessage, Encoding, ErrorCode, ServerMessage};

use crate::harness::{TestServer, WAIT, at, expect, go_online, parties};

fn error_code(m: ServerMessage) -> Option<ErrorCode> {
    match m {
        ServerMessage::Error(e) => Some(e.code),
        _ => None,
    }
}

#[tokio::test]
async fn the_upgrade_needs_a_valid_token_and_a_profile() {
    let s = TestServer::start(|_| {});
    let e = s.try_connect(&s.ws_url(), "not-a-token").await.unwrap_err();
    assert_eq!(e.http_status(), Some(401), "{e}");
    let e = wire::client::Client::connect(&s.ws_url(), "")
        .await
        .unwrap_err();
    assert_eq!(e.http_status(), Some(401), "{e}");
    let stranger = s.token(uuid::Uuid::now_v7(), "user").await;
    let e = s.try_connect(&s.ws_url(), &stranger).await.unwrap_err();
    assert_eq!(e.http_status(), Some(403), "{e}");
    let (id, token) = s.user("Asha").await;
    // The token also works as a query parameter, for browsers.
    let url = format!("{}?token={token}", s.ws_url());
    let mut c = wire::client::Client::connect(&url, "").await.unwrap();
    match c.recv_timeout(WAIT).await.unwrap() {
        ServerMessage::Welcome(w) => assert_eq!(w.id, id.0),
        other => panic!("{other:?}"),
    }
}

fn request() -> wire::TaskRequest {
    wire::TaskRequest {
        client_ref: "r-1".into(),
        task: "companion".into(),
        pickup: at(12.9716, 77.5946),
        note: Some("gate 2".into()),
        discount_code: None,
    }
}

#[tokio::test]
async fn request_offer_accept_allot_and_track_both_ways() {
    let s = TestServer::start(|_| {});
    let crate::harness::Parties {
        mut u,
        mut a,
        associate,
        ..
    } = parties(&s).await;
    u.send(request()).await.unwrap();
    let received = expect(&mut u, "request_received", |m| match m {
        ServerMessage::RequestReceived(r) => Some(r),
        _ => None,
    })
    .await;
    assert_eq!(received.client_ref, "r-1");
    let offer = expect(&mut a, "offer", |m| match m {
        ServerMessage::Offer(o) => Some(o),
        _ => None,
    })
    .await;
    assert_eq!(
        (offer.request_id, offer.task.as_str(), offer.note.as_deref()),
        (received.request_id, "companion", Some("gate 2"))
    );
    assert!(
        (100..=120).contains(&offer.distance_m),
        "{}",
        offer.distance_m
    );
    a.send(wire::Accept {
        request_id: offer.request_id,
    })
    .await
    .unwrap();
    let mine = expect(&mut a, "allotted", |m| match m {
        ServerMessage::Allotted(x) => Some(x),
        _ => None,
    })
    .await;
    let theirs = expect(&mut u, "allotted", |m| match m {
        ServerMessage::Allotted(x) => Some(x),
        _ => None,
    })
    .await;
    assert_eq!(mine.order.order_id, theirs.order.order_id);
    assert_eq!(theirs.client_ref.as_deref(), Some("r-1"));
    assert!(mine.order.pin.is_none(), "the associate never sees the PIN");
    assert_eq!(theirs.order.pin.as_ref().map(String::len), Some(4));
    assert_eq!(theirs.order.associate.id, associate.0);
    // Live tracking, both ways.
    a.send(wire::Location {
        point: at(12.9720, 77.5946),
        accuracy_m: None,
    })
    .await
    .unwrap();
    let seen = expect(&mut u, "peer location", |m| match m {
        ServerMessage::PeerLocation(p) => Some(p),
        _ => None,
    })
    .await;
    assert_eq!(
        (seen.order_id, seen.point),
        (mine.order.order_id, at(12.9720, 77.5946))
    );
    u.send(wire::Location {
        point: at(12.9717, 77.5947),
        accuracy_m: None,
    })
    .await
    .unwrap();
    let seen = expect(&mut a, "peer location", |m| match m {
        ServerMessage::PeerLocation(p) => Some(p),
        _ => None,
    })
    .await;
    assert_eq!(seen.point, at(12.9717, 77.5947));
    // The order's history over HTTP, for the user with their own token.
    let r = s
        .admin("GET", &format!("/v1/orders/{}", mine.order.order_id), None)
        .await;
    assert_eq!(r.body["order"]["state"], "allotted");
    assert_eq!(r.body["events"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn wrong_roles_and_malformed_frames_get_errors_and_the_socket_stays_usable() {
    let s = TestServer::start(|_| {});
    let crate::harness::Parties { mut u, mut a, .. } = parties(&s).await;
    // A user may not accept, an associate may not request.
    u.send(wire::Accept {
        request_id: wire::RequestId::new(),
    })
    .await
    .unwrap();
    assert_eq!(
        expect(&mut u, "error", error_code).await,
        ErrorCode::WrongRole
    );
    a.send(request()).await.unwrap();
    assert_eq!(
        expect(&mut a, "error", error_code).await,
        ErrorCode::WrongRole
    );
    // An associate accepting an offer that is not theirs.
    a.send(wire::Accept {
        request_id: wire::RequestId::new(),
    })
    .await
    .unwrap();
    assert_eq!(
        expect(&mut a, "error", error_code).await,
        ErrorCode::NotYourOffer
    );
    for (raw, code) in [
        ("{not json", ErrorCode::BadFrame),
        (r#"{"type":"teleport"}"#, ErrorCode::UnknownType),
        (r#"{"type":"location"}"#, ErrorCode::MissingField),
        (
            r#"{"type":"location","point":{"lat":NaN,"lng":0}}"#,
            ErrorCode::BadFrame,
        ),
        (
            r#"{"type":"location","point":{"lat":95,"lng":0}}"#,
            ErrorCode::BadCoordinates,
        ),
        (
            r#"{"type":"request","client_ref":"x","task":"juggling","pickup":{"lat":1,"lng":1}}"#,
            ErrorCode::UnknownTaskType,
        ),
    ] {
        u.send_raw(Message::text(raw)).await.unwrap();
        let got = expect(&mut u, "error", error_code).await;
        assert_eq!(got, code, "{raw}");
    }
    u.send_raw(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(
        expect(&mut u, "error", error_code).await,
        ErrorCode::WrongEncoding
    );
    let bad_ref =
        r#"{"type":"request","client_ref":"mine-7","task":"juggling","pickup":{"lat":1,"lng":1}}"#;
    u.send_raw(Message::text(bad_ref)).await.unwrap();
    // A frame refused at validation still echoes the reference it carried.
    let e = expect(&mut u, "error", |m| match m {
        ServerMessage::Error(e) => Some(e),
        _ => None,
    })
    .await;
    assert_eq!(
        (e.code, e.client_ref.as_deref()),
        (ErrorCode::UnknownTaskType, Some("mine-7"))
    );
    u.send(wire::TaskRequest {
        discount_code: Some("NOPE".into()),
        ..request()
    })
    .await
    .unwrap();
    let e = expect(&mut u, "error", |m| match m {
        ServerMessage::Error(e) => Some(e),
        _ => None,
    })
    .await;
    assert_eq!(
        (e.code, e.client_ref.as_deref()),
        (ErrorCode::BadDiscountCode, Some("r-1"))
    );
    // Still usable.
    u.send(wire::Heartbeat { nonce: Some(9) }).await.unwrap();
    let h = expect(&mut u, "heartbeat", |m| match m {
        ServerMessage::Heartbeat(h) => Some(h),
        _ => None,
    })
    .await;
    assert_eq!(h.nonce, Some(9));
}

#[tokio::test]
async fn binary_frames_work_end_to_end() {
    let s = TestServer::start(|_| {});
    let (_, token) = s.user("Bin").await;
    let mut c = s.connect_with(&token, Encoding::Binary).await;
    c.send(wire::Heartbeat { nonce: Some(3) }).await.unwrap();
    let h = expect(&mut c, "heartbeat", |m| match m {
        ServerMessage::Heartbeat(h) => Some(h),
        _ => None,
    })
    .await;
    assert_eq!(h.nonce, Some(3));
}

#[tokio::test]
async fn an_oversize_frame_closes_the_socket() {
    let s = TestServer::start(|_| {});
    let (_, token) = s.user("Big").await;
    let mut c = s.connect(&token).await;
    let big = format!(r#"{{"type":"heartbeat","pad":"{}"}}"#, "x".repeat(20_000));
    c.send_raw(Message::text(big)).await.unwrap();
    assert_eq!(
        expect(&mut c, "error", error_code).await,
        ErrorCode::FrameTooLarge
    );
    match c.recv_timeout(WAIT).await {
        Err(wire::client::ClientError::Closed(reason)) => {
            assert!(reason.starts_with("1009"), "{reason}")
        }
        other => panic!("expected a close, got {other:?}"),
    }
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped() {
    let s = TestServer::start(|c| {
        c.socket.outbound_queue = 16;
        c.socket.write_timeout_ms = 300;
        c.socket.send_buffer_bytes = 8 * 1024;
        // This test is about reading, not the rate limit.
        c.socket.frames_per_s = 1_000_000;
        c.socket.frames_burst = 1_000_000;
    });
    let (_, token) = s.user("Slow").await;
    // Small kernel buffers on both ends so "not reading" shows within kilobytes.
    let options = wire::client::ConnectOptions {
        url: s.ws_url(),
        token,
        encoding: Encoding::Json,
        local_ip: None,
        recv_buffer_bytes: Some(4 * 1024),
    };
    let c = wire::client::Client::connect_with(&options).await.unwrap();
    let (mut tx, rx) = c.split();
    // Ask for a stream of replies and never read them.
    let flood = async {
        for n in 0u64.. {
            if tx
                .send(ClientMessage::from(wire::Heartbeat { nonce: Some(n) }))
                .await
                .is_err()
            {
                return n;
            }
        }
        unreachable!("u64 frames")
    };
    let sent = tokio::time::timeout(Duration::from_secs(60), flood)
        .await
        .expect("the engine must drop the reader");
    assert!(sent > 16, "dropped after only {sent} frames");
    drop(rx);
    // The engine is fine: others connect and are served.
    let (_, token2) = s.user("Next").await;
    let mut c2 = s.connect(&token2).await;
    c2.send(wire::Heartbeat { nonce: Some(1) }).await.unwrap();
    expect(&mut c2, "heartbeat", |m| {
        matches!(m, ServerMessage::Heartbeat(_)).then_some(())
    })
    .await;
    let metrics = wire::client::http_api::request(s.addr, "GET", "/metrics", &[], None)
        .await
        .unwrap()
        .text;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("speedy_disconnects_total")
                && (l.contains("slow_reader") || l.contains("write_failed"))),
        "{metrics}"
    );
}

#[tokio::test]
async fn reconnecting_mid_offer_and_mid_order_restores_the_state() {
    let s = TestServer::start(|_| {});
    let (_, user_token) = s.user("Asha").await;
    let (_, associate_token) = s.associate("Ravi", &["companion"]).await;
    let mut a = s.connect(&associate_token).await;
    go_online(&mut a, at(12.9726, 77.5946)).await;
    let mut u = s.connect(&user_token).await;
    u.send(request()).await.unwrap();
    let offer = expect(&mut a, "offer", |m| match m {
        ServerMessage::Offer(o) => Some(o),
        _ => None,
    })
    .await;
    // The user reconnects mid-request: the open request is acknowledged again.
    drop(u);
    let mut u = s.connect(&user_token).await;
    let again = expect(&mut u, "request again", |m| match m {
        ServerMessage::RequestReceived(r) => Some(r),
        _ => None,
    })
    .await;
    assert_eq!(again.request_id, offer.request_id);
    // The associate's phone switches networks: a second connection while the first lingers.
    let mut a2 = s.connect(&associate_token).await;
    let again = expect(&mut a2, "offer again", |m| match m {
        ServerMessage::Offer(o) => Some(o),
        _ => None,
    })
    .await;
    assert_eq!(again, offer, "same offer, same expiry");
    assert!(
        matches!(
            a.recv_timeout(WAIT).await,
            Err(wire::client::ClientError::Closed(_))
        ),
        "the old connection closes"
    );
    a2.send(wire::Accept {
        request_id: offer.request_id,
    })
    .await
    .unwrap();
    let order = expect(&mut u, "allotted", |m| match m {
        ServerMessage::Allotted(x) => Some(x.order),
        _ => None,
    })
    .await;
    // The user drops and comes back: the order is re-sent, PIN included.
    drop(u);
    let mut u2 = s.connect(&user_token).await;
    let snapshot = expect(&mut u2, "order", |m| match m {
        ServerMessage::Order(o) => Some(o.order),
        _ => None,
    })
    .await;
    assert_eq!(
        (snapshot.order_id, snapshot.pin.as_deref()),
        (order.order_id, order.pin.as_deref())
    );
}

#[tokio::test]
async fn a_graceful_shutdown_tells_every_app_and_closes() {
    let s = TestServer::start(|_| {});
    let (_, token) = s.user("Asha").await;
    let mut c = s.connect(&token).await;
    let stopping = tokio::task::spawn_blocking(move || s.stop());
    let notice = expect(&mut c, "shutdown", |m| match m {
        ServerMessage::Shutdown(x) => Some(x),
        _ => None,
    })
    .await;
    assert!(notice.reconnect_after_ms > 0);
    match c.recv_timeout(WAIT).await {
        Err(wire::client::ClientError::Closed(reason)) => {
            assert!(reason.starts_with("1001"), "{reason}")
        }
        other => panic!("expected a close, got {other:?}"),
    }
    tokio::time::timeout(WAIT, stopping)
        .await
        .expect("the engine stops")
        .unwrap();
}

/// Opens a WebSocket by hand on a raw TCP stream, so nothing answers the engine's pings.
async fn silent_socket(s: &TestServer, token: &str) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let upgrade = format!(
        "GET /v1/ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Protocol: {}\r\nAuthorization: Bearer {token}\r\n\r\n",
        s.addr,
        Encoding::Json.subprotocol()
    );
    tcp.write_all(upgrade.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(WAIT, tcp.read(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 1, "connection closed during the upgrade");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    tcp
}

#[tokio::test]
async fn a_client_that_never_answers_pings_is_closed_and_one_that_does_stays() {
    let s = TestServer::start(|c| {
        c.socket.heartbeat_s = 1;
        c.socket.missed_pongs = 1;
    });
    let (_, silent_token) = s.user("Silent").await;
    let (_, live_token) = s.user("Live").await;
    let mut live = s.connect(&live_token).await;
    let mut silent = silent_socket(&s, &silent_token).await;

    // The silent side reads raw bytes (which answers nothing) until the engine hangs up;
    // the live side reads through tungstenite, which answers every ping, meanwhile.
    let hang_up = async {
        use tokio::io::AsyncReadExt;
        let mut bytes = Vec::new();
        tokio::time::timeout(WAIT, silent.read_to_end(&mut bytes))
            .await
            .expect("the engine must close a socket that never answers pings")
            .unwrap();
        bytes
    };
    let bytes = tokio::select! {
        bytes = hang_up => bytes,
        frame = live.recv_timeout(WAIT) => panic!("the live client got {frame:?} first"),
    };
    // Server frames are unmasked: a ping is 0x89, the close is 0x88 with code 1008.
    assert!(
        bytes.windows(2).any(|w| w == [0x89, 0x00]),
        "no ping before the close: {bytes:?}"
    );
    let close = bytes
        .windows(2)
        .position(|w| w[0] == 0x88)
        .expect("a close frame");
    let payload = &bytes[close + 2..];
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1008);
    assert!(
        String::from_utf8_lossy(payload).contains("missed_pongs"),
        "{bytes:?}"
    );

    // The live client saw the same pings, answered them and is still served.
    live.send(wire::Heartbeat { nonce: Some(7) }).await.unwrap();
    let h = expect(&mut live, "heartbeat", |m| match m {
        ServerMessage::Heartbeat(h) => Some(h),
        _ => None,
    })
    .await;
    assert_eq!(h.nonce, Some(7));
}
