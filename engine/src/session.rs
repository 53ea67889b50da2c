//! One app's WebSocket session: authenticated at upgrade, then a loop that reads frames,
//! writes what the actors queue for this party, pings, and closes on shutdown, on a slow
//! reader, on missed pongs or on an oversize frame.

use std::sync::Arc;
use std::time::Duration;

use actors::{AssociateProfileInfo, Outbound, Outbox};
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::time::{Instant, MissedTickBehavior};
use wire::{Encoding, ErrorCode, ErrorFrame, PartyId, ServerMessage, Welcome};

use crate::http::extract::QueryParams;
use crate::http::{ApiError, bearer};
use crate::state::AppState;
use crate::telemetry;

/// Close codes (RFC 6455).
mod close {
    pub const GOING_AWAY: u16 = 1001;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
}

/// Why reading from the socket failed.
enum ReadFailure {
    /// A text frame that is not UTF-8: RFC 6455 requires closing (1007).
    InvalidUtf8,
    /// A message over the WebSocket layer's own limit.
    TooBig,
    /// The peer went away or broke the protocol.
    Gone,
}

fn read_failure(e: axum::Error) -> ReadFailure {
    use tungstenite::Error as Ws;
    match e.into_inner().downcast_ref::<Ws>() {
        Some(Ws::Utf8(_)) => ReadFailure::InvalidUtf8,
        Some(Ws::Capacity(_)) => ReadFailure::TooBig,
        _ => ReadFailure::Gone,
    }
}

/// A party's token in the query (for browsers, which cannot set headers).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct UpgradeQuery {
    /// The party's token, instead of `Authorization: Bearer`.
    token: Option<String>,
}

/// The WebSocket every app holds: frames as docs/PROTOCOL.md and docs/asyncapi.yaml
/// describe them. Offer `Sec-WebSocket-Protocol: speedy.v1.json` (the default) or
/// `speedy.v1.bin`.
#[utoipa::path(
    get,
    path = "/v1/ws",
    tag = "apps",
    security(("bearer" = [])),
    params(UpgradeQuery),
    responses(
        (status = 101, description = "Switched to the WebSocket protocol"),
        (status = 400, description = "Not a valid WebSocket upgrade, or only unknown subprotocols offered", body = crate::http::ErrorBody),
        (status = 401, description = "No, invalid or expired token", body = crate::http::ErrorBody),
        (status = 403, description = "The token's party has no profile", body = crate::http::ErrorBody),
        (status = 405, description = "Not a GET", body = crate::http::ErrorBody),
        (status = 426, description = "The connection cannot be upgraded", body = crate::http::ErrorBody),
        (status = 503, description = "Shutting down", body = crate::http::ErrorBody)
    )
)]
pub(crate) async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    QueryParams(q): QueryParams<UpgradeQuery>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => {
            return ApiError::new(
                rejection.status(),
                ErrorCode::BadFrame,
                rejection.body_text(),
            )
            .into_response();
        }
    };
    if state.shutdown.is_stopping() {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ShuttingDown,
            "shutting down",
        )
        .into_response();
    }
    let Some(token) = bearer(&headers, q.token.as_deref()) else {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "a bearer token is required",
        )
        .into_response();
    };
    let claims = match state.tokens.verify(token) {
        Ok(c) => c,
        Err(e) => {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                e.to_string(),
            )
            .into_response();
        }
    };
    let party = claims.party();
    let profile = match party {
        PartyId::User(u) => state.store.user_async(u).await.map(|p| p.map(|_| None)),
        PartyId::Associate(a) => state
            .store
            .associate_async(a)
            .await
            .map(|p| p.map(|p| Some(actors::profile_info(&p, &state.validator.catalog)))),
    };
    let info = match profile {
        Ok(Some(info)) => info,
        Ok(None) => {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::UnknownParty,
                "no profile for this party",
            )
            .into_response();
        }
        Err(e) => return ApiError::from(e).into_response(),
    };
    // Offered subprotocols, none of them ours: refuse rather than speak something else.
    let offered: Vec<&str> = headers
        .get_all(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if !offered.is_empty()
        && !offered
            .iter()
            .any(|p| Encoding::from_subprotocol(p).is_some())
    {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadField,
            format!(
                "unsupported subprotocol {offered:?}: offer {} or {}, or none for JSON",
                Encoding::Json.subprotocol(),
                Encoding::Binary.subprotocol()
            ),
        )
        .into_response();
    }
    let socket = &state.config.socket;
    let ws = ws
        .protocols([Encoding::Json.subprotocol(), Encoding::Binary.subprotocol()])
        .read_buffer_size(socket.read_buffer_bytes)
        .write_buffer_size(0)
        .max_write_buffer_size(socket.max_frame_bytes * 64)
        // The engine enforces the frame limit itself, on the whole message (with an error
        // frame and 1009, reading on until the client's close). This is the backstop, so
        // wide that ordinary oversized messages (200 fragments of 1 KiB, say) reach the
        // engine's check: past it the WebSocket stream ends at once and the close frame
        // may be lost to a reset.
        .max_message_size(socket.max_frame_bytes * BACKSTOP_FACTOR)
        .max_frame_size(socket.max_frame_bytes * BACKSTOP_FACTOR);
    let encoding = ws
        .selected_protocol()
        .and_then(|p| p.to_str().ok())
        .and_then(Encoding::from_subprotocol)
        .unwrap_or(Encoding::Json);
    ws.on_upgrade(move |socket| async move {
        Session::new(state, party, encoding, info.unwrap_or_default())
            .run(socket)
            .await;
    })
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    ClientClosed,
    Shutdown,
    SlowReader,
    MissedPongs,
    TooBig,
    InvalidUtf8,
    Flooding,
    Replaced,
    WriteFailed,
}

impl End {
    fn label(self) -> &'static str {
        match self {
            End::ClientClosed => "client",
            End::Shutdown => "shutdown",
            End::SlowReader => "slow_reader",
            End::MissedPongs => "missed_pongs",
            End::TooBig => "frame_too_large",
            End::InvalidUtf8 => "invalid_utf8",
            End::Flooding => "flooding",
            End::Replaced => "replaced",
            End::WriteFailed => "write_failed",
        }
    }
}

/// A per-connection token bucket.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
    /// Frames refused in the current second, to tell flooding from eagerness.
    refused: u32,
    refused_since: Instant,
    told: Option<Instant>,
}

impl Bucket {
    fn new(rate: u32, burst: u32) -> Self {
        let now = Instant::now();
        Self {
            tokens: f64::from(burst),
            rate: f64::from(rate),
            burst: f64::from(burst),
            last: now,
            refused: 0,
            refused_since: now,
            told: None,
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return true;
        }
        if now.duration_since(self.refused_since) >= Duration::from_secs(1) {
            self.refused = 0;
            self.refused_since = now;
        }
        self.refused += 1;
        false
    }

    /// Refusing at ten times the allowed rate is flooding.
    fn flooding(&self) -> bool {
        f64::from(self.refused) > 10.0 * self.rate.max(1.0)
    }

    /// Whether to send a rate-limit error now (at most one a second).
    fn tell(&mut self) -> bool {
        let now = Instant::now();
        if self
            .told
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return false;
        }
        self.told = Some(now);
        true
    }
}

/// One connected app.
pub(crate) struct Session {
    pub(crate) state: AppState,
    pub(crate) party: PartyId,
    encoding: Encoding,
    profile: AssociateProfileInfo,
    pub(crate) outbox: Outbox,
    locations: Bucket,
    /// Every other frame, valid or not.
    frames: Bucket,
}

impl Session {
    fn new(
        state: AppState,
        party: PartyId,
        encoding: Encoding,
        profile: AssociateProfileInfo,
    ) -> Self {
        let socket = &state.config.socket;
        let locations = Bucket::new(socket.location_per_s, socket.location_burst);
        let frames = Bucket::new(socket.frames_per_s, socket.frames_burst);
        // Replaced in `run` by the real queue; a placeholder keeps the struct simple.
        let (outbox, _) = Outbox::channel(1);
        Self {
            state,
            party,
            encoding,
            profile,
            outbox,
            locations,
            frames,
        }
    }

    /// Queues a frame for this connection.
    pub(crate) fn push(&self, frame: impl Into<ServerMessage>) {
        let _ = self.outbox.push(Arc::new(frame.into()));
    }

    /// Queues an error frame.
    pub(crate) fn refuse(
        &self,
        code: ErrorCode,
        message: impl Into<String>,
        client_ref: Option<String>,
    ) {
        metrics::counter!(telemetry::FRAMES_REFUSED, "code" => code.as_str()).increment(1);
        self.push(ErrorFrame {
            code,
            message: message.into(),
            client_ref,
        });
    }

    fn encode(&self, frame: &ServerMessage) -> Message {
        let bytes = wire::encode(self.encoding, frame);
        match self.encoding {
            // expect: the JSON encoder writes only UTF-8.
            Encoding::Json => Message::Text(Utf8Bytes::from(
                String::from_utf8(bytes).expect("JSON is UTF-8"),
            )),
            Encoding::Binary => Message::Binary(bytes.into()),
        }
    }

    async fn run(mut self, socket: WebSocket) {
        let _live = self.state.live_sessions.enter();
        let config = self.state.config.socket.clone();
        let (outbox, mut outbound) = Outbox::channel(config.outbound_queue);
        let signals = outbox.signals();
        self.outbox = outbox.clone();
        let connection = outbox.connection;
        let sessions = self.state.dispatch.sessions().clone();
        // In cluster mode an older connection may be on another node: it goes first.
        self.state.dispatch.take_over(self.party);
        if let Some(old) = sessions.attach(self.party, outbox) {
            // A newer connection of the same party replaces the old one, which closes.
            old.replace();
        }
        let role = self.party.role().as_str();
        metrics::gauge!(telemetry::CONNECTIONS, "role" => role).increment(1.0);

        self.push(Welcome {
            id: self.party.uuid(),
            role: self.party.role(),
            protocol: wire::PROTOCOL_VERSION.into(),
            heartbeat_s: u32::try_from(config.heartbeat_s).unwrap_or(u32::MAX),
            server_time_ms: self.state.dispatch.now_ms(),
        });
        self.restore().await;

        let (mut tx, mut rx) = socket.split();
        let mut shutdown = self.state.shutdown.clone();
        let mut ping = tokio::time::interval_at(
            Instant::now() + Duration::from_secs(config.heartbeat_s),
            Duration::from_secs(config.heartbeat_s),
        );
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut unanswered = 0u32;
        let write_timeout = Duration::from_millis(config.write_timeout_ms);
        // What ends a session from outside, made once: re-made on every turn of the loop
        // these futures would register and unregister their wakers per frame.
        let interrupted = async {
            tokio::select! {
                _ = shutdown.wait() => End::Shutdown,
                _ = signals.overflow.notified() => End::SlowReader,
                _ = signals.replaced.notified() => End::Replaced,
            }
        };
        tokio::pin!(interrupted);
        let end = loop {
            tokio::select! {
                biased;
                end = &mut interrupted => {
                    if end == End::Shutdown {
                        let bye = self.encode(&wire::Shutdown { reconnect_after_ms: 2_000 }.into());
                        let _ = tokio::time::timeout(write_timeout, tx.send(bye)).await;
                    }
                    break end;
                }
                frame = outbound.recv() => {
                    // The sender half lives in `self.outbox`, so the queue never closes here.
                    let Some(frame) = frame else { break End::WriteFailed };
                    if !self.write(&mut tx, &frame, write_timeout).await {
                        break End::WriteFailed;
                    }
                }
                incoming = rx.next() => {
                    let message = match incoming {
                        Some(Ok(m)) => m,
                        Some(Err(e)) => match read_failure(e) {
                            ReadFailure::InvalidUtf8 => {
                                self.refuse(ErrorCode::InvalidUtf8, "a text frame must be UTF-8; the connection closes (RFC 6455)", None);
                                break End::InvalidUtf8;
                            }
                            ReadFailure::TooBig => {
                                self.refuse(ErrorCode::FrameTooLarge, format!("over the limit of {} bytes", config.max_frame_bytes), None);
                                break End::TooBig;
                            }
                            ReadFailure::Gone => break End::ClientClosed,
                        },
                        None => break End::ClientClosed,
                    };
                    let (bytes, binary) = match &message {
                        Message::Text(t) => (t.as_bytes(), false),
                        Message::Binary(b) => (b.as_ref(), true),
                        Message::Pong(_) => { unanswered = 0; continue; }
                        Message::Ping(_) => continue,
                        Message::Close(_) => break End::ClientClosed,
                    };
                    if bytes.len() > config.max_frame_bytes {
                        self.refuse(ErrorCode::FrameTooLarge, format!("{} bytes is over the limit of {}", bytes.len(), config.max_frame_bytes), None);
                        break End::TooBig;
                    }
                    if let Err(end) = self.handle(bytes, binary).await {
                        break end;
                    }
                }
                _ = ping.tick() => {
                    if unanswered >= config.missed_pongs {
                        break End::MissedPongs;
                    }
                    unanswered += 1;
                    if tokio::time::timeout(write_timeout, tx.send(Message::Ping(Default::default()))).await.map_or(true, |r| r.is_err()) {
                        break End::WriteFailed;
                    }
                }
            }
        };

        // Flush what is queued (errors explaining the close come first), then close.
        while let Ok(frame) = outbound.try_recv() {
            if end == End::SlowReader || !self.write(&mut tx, &frame, write_timeout).await {
                break;
            }
        }
        let code = match end {
            End::Shutdown => Some(close::GOING_AWAY),
            End::TooBig => Some(close::TOO_BIG),
            End::InvalidUtf8 => Some(close::INVALID_PAYLOAD),
            End::SlowReader | End::MissedPongs | End::Flooding | End::Replaced => {
                Some(close::POLICY)
            }
            End::ClientClosed | End::WriteFailed => None,
        };
        if end != End::ClientClosed {
            metrics::counter!(telemetry::DISCONNECTS, "reason" => end.label()).increment(1);
        }
        let mut close_sent = false;
        if let Some(code) = code {
            let frame = CloseFrame {
                code,
                reason: Utf8Bytes::from_static(end.label()),
            };
            close_sent = tokio::time::timeout(write_timeout, tx.send(Message::Close(Some(frame))))
                .await
                .is_ok_and(|r| r.is_ok());
        }
        metrics::gauge!(telemetry::CONNECTIONS, "role" => role).decrement(1.0);
        if sessions.detach(self.party, connection)
            && let PartyId::Associate(a) = self.party
        {
            self.state.dispatch.associate_disconnected(a);
        }
        // The party is gone from the engine already; only the socket waits.
        if close_sent && end != End::Shutdown {
            linger(&mut rx).await;
        }
        let _ = tokio::time::timeout(write_timeout, tx.close()).await;
    }

    async fn write(
        &self,
        tx: &mut futures_util::stream::SplitSink<WebSocket, Message>,
        frame: &Outbound,
        limit: Duration,
    ) -> bool {
        let message = self.encode(frame);
        matches!(
            tokio::time::timeout(limit, tx.send(message)).await,
            Ok(Ok(()))
        )
    }

    /// Re-sends what the party should see after (re)connecting.
    async fn restore(&mut self) {
        match self.party {
            PartyId::Associate(a) => {
                match self
                    .state
                    .dispatch
                    .associate_connected(a, self.profile.clone())
                    .await
                {
                    Ok(view) => {
                        let catalog = &self.state.validator.catalog;
                        self.push(wire::Status {
                            availability: view.availability,
                            skills: view
                                .skills
                                .iter()
                                .filter_map(|t| catalog.name(t).map(str::to_owned))
                                .collect(),
                        });
                        if let Some(offer) = view.offer {
                            self.push(offer);
                        }
                    }
                    Err(e) => self.refuse(e.code(), e.to_string(), None),
                }
            }
            PartyId::User(u) => {
                if let Some(open) = self.state.dispatch.open_request_frame(u) {
                    self.push(open);
                }
            }
        }
        if let Ok(Some(order)) = self.state.orders.find_open_order(self.party)
            && let Ok(snapshot) = self.state.orders.resync_view(self.party, order).await
        {
            self.push(wire::OrderFrame {
                order: Box::new(snapshot),
            });
        }
    }

    /// Decodes, checks and acts on one frame. An error frame keeps the session; an
    /// `Err` ends it. Every frame counts against a rate limit: location frames against
    /// their own, every other frame (and anything that is not a frame) against the
    /// general one.
    async fn handle(&mut self, bytes: &[u8], binary: bool) -> Result<(), End> {
        let arrived = std::time::Instant::now();
        let expected_binary = self.encoding == Encoding::Binary;
        let decoded = if binary != expected_binary {
            Err(wire::WireError::new(
                ErrorCode::WrongEncoding,
                format!("this session speaks {}", self.encoding.subprotocol()),
            ))
        } else {
            wire::decode::<wire::ClientMessage>(self.encoding, bytes, &self.state.validator)
        };
        let is_location = matches!(decoded, Ok(wire::ClientMessage::Location(_)));
        let (bucket, what) = if is_location {
            (&mut self.locations, "location frames")
        } else {
            (&mut self.frames, "frames")
        };
        if !bucket.take() {
            if bucket.flooding() {
                return Err(End::Flooding);
            }
            if bucket.tell() {
                let message = format!("{what} arrive faster than allowed");
                self.refuse(ErrorCode::RateLimited, message, None);
            }
            return Ok(());
        }
        let frame = match decoded {
            Ok(f) => f,
            Err(e) => {
                let echo = wire::echo_ref(self.encoding, bytes);
                self.refuse(e.code, e.detail, echo);
                return Ok(());
            }
        };
        telemetry::frame_received(&frame);
        let client_ref = frame.client_ref().map(str::to_owned);
        if !frame.allowed_for(self.party.role()) {
            let role = self.party.role().as_str();
            self.refuse(
                ErrorCode::WrongRole,
                format!("a {role} may not send {}", frame.type_name()),
                client_ref,
            );
            return Ok(());
        }
        let name = frame.type_name();
        if let Err(e) = self.act(frame).await {
            self.refuse(e.code(), e.to_string(), client_ref);
        }
        telemetry::frame_handled(name, arrived.elapsed());
        Ok(())
    }
}

/// The WebSocket layer's own message limit, as a multiple of the engine's frame limit.
const BACKSTOP_FACTOR: usize = 16;

/// How long a refused client has to answer the engine's close before the socket goes.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// Reads and drops what the client still sends after the engine's close, until its close
/// answer, its end, or [`CLOSE_LINGER`]: closing with unread data would reset the
/// connection, and a client still writing (the rest of an oversized message, say) would
/// lose the close frame that explains why (RFC 6455 §7.1.1).
async fn linger(rx: &mut futures_util::stream::SplitStream<WebSocket>) {
    let _ = tokio::time::timeout(CLOSE_LINGER, async {
        while let Some(read) = rx.next().await {
            match read {
                Ok(Message::Close(_)) => break,
                Ok(_) => {}
                Err(e) => match read_failure(e) {
                    // The rest of a message over the limit: each fragment is refused again.
                    ReadFailure::TooBig => {}
                    ReadFailure::InvalidUtf8 | ReadFailure::Gone => break,
                },
            }
        }
    })
    .await;
}
