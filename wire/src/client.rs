//! A typed async WebSocket client: connect with a token, send and receive frames.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use http::header::{AUTHORIZATION, HeaderValue, SEC_WEBSOCKET_PROTOCOL};
use thiserror::Error;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::codec::{Encoding, decode, encode};
use crate::error::WireError;
use crate::validate::{Limits, Validator};
use crate::{ClientMessage, ServerMessage};

/// Why a client call failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The URL or token could not form an upgrade request.
    #[error("bad connect parameters: {0}")]
    BadRequest(String),
    /// TCP connect failed.
    #[error("connect: {0}")]
    Io(#[from] std::io::Error),
    /// The WebSocket failed (including an HTTP refusal of the upgrade).
    #[error("websocket: {0}")]
    Ws(#[from] tungstenite::Error),
    /// The engine sent a frame this client could not decode.
    #[error("undecodable frame from engine: {0}")]
    Decode(#[from] WireError),
    /// The connection closed; the engine's close reason if it gave one.
    #[error("connection closed: {0}")]
    Closed(String),
    /// No frame arrived in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

impl ClientError {
    /// The HTTP status of a refused upgrade, if that is what happened.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            ClientError::Ws(tungstenite::Error::Http(resp)) => Some(resp.status().as_u16()),
            _ => None,
        }
    }
}

/// How to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `ws://host:port/v1/ws`.
    pub url: String,
    /// The bearer token, sent in the `Authorization` header.
    pub token: String,
    /// JSON or binary frames.
    pub encoding: Encoding,
    /// Local address to connect from (spreads load tests over 127.0.0.x).
    pub local_ip: Option<IpAddr>,
    /// Kernel receive buffer in bytes (none: the OS default).
    pub recv_buffer_bytes: Option<u32>,
}

type Ws = WebSocketStream<TcpStream>;

/// The sending half of a client.
#[derive(Debug)]
pub struct ClientSender {
    sink: SplitSink<Ws, Message>,
    encoding: Encoding,
}

/// The receiving half of a client.
#[derive(Debug)]
pub struct ClientReceiver {
    stream: SplitStream<Ws>,
    encoding: Encoding,
    validator: Validator,
}

/// A connected app.
#[derive(Debug)]
pub struct Client {
    tx: ClientSender,
    rx: ClientReceiver,
}

impl Client {
    /// Connects to `url` with `token` using JSON frames.
    pub async fn connect(url: &str, token: &str) -> Result<Self, ClientError> {
        Self::connect_with(&ConnectOptions {
            url: url.into(),
            token: token.into(),
            encoding: Encoding::Json,
            local_ip: None,
            recv_buffer_bytes: None,
        })
        .await
    }

    /// Connects as `options` say.
    pub async fn connect_with(options: &ConnectOptions) -> Result<Self, ClientError> {
        let mut request = options
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| ClientError::BadRequest(e.to_string()))?;
        let bearer = HeaderValue::from_str(&format!("Bearer {}", options.token))
            .map_err(|e| ClientError::BadRequest(e.to_string()))?;
        let headers = request.headers_mut();
        headers.insert(AUTHORIZATION, bearer);
        headers.insert(
            SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(options.encoding.subprotocol()),
        );
        let uri = request.uri();
        let host = uri
            .host()
            .ok_or_else(|| ClientError::BadRequest("URL has no host".into()))?;
        let port = uri.port_u16().unwrap_or(80);
        let remote: SocketAddr = tokio::net::lookup_host((host, port))
            .await?
            .next()
            .ok_or_else(|| ClientError::BadRequest(format!("{host} does not resolve")))?;
        let socket = if remote.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(ip) = options.local_ip {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        if let Some(bytes) = options.recv_buffer_bytes {
            socket.set_recv_buffer_size(bytes)?;
        }
        let stream = socket.connect(remote).await?;
        stream.set_nodelay(true)?;
        let config = WebSocketConfig::default()
            .read_buffer_size(16 * 1024)
            .write_buffer_size(0)
            .max_message_size(Some(1 << 20))
            .max_frame_size(Some(1 << 20));
        let (ws, _response) =
            tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await?;
        let (sink, stream) = ws.split();
        Ok(Self {
            tx: ClientSender {
                sink,
                encoding: options.encoding,
            },
            rx: ClientReceiver {
                stream,
                encoding: options.encoding,
                validator: Validator {
                    limits: Limits {
                        max_frame_bytes: 1 << 20,
                        ..Limits::default()
                    },
                    ..Validator::default()
                },
            },
        })
    }

    /// Sends one frame.
    pub async fn send(&mut self, frame: impl Into<ClientMessage>) -> Result<(), ClientError> {
        self.tx.send(frame).await
    }

    /// Sends a raw WebSocket message (for tests of malformed input).
    pub async fn send_raw(&mut self, message: Message) -> Result<(), ClientError> {
        self.tx.send_raw(message).await
    }

    /// The next frame from the engine.
    pub async fn recv(&mut self) -> Result<ServerMessage, ClientError> {
        self.rx.recv().await
    }

    /// The next frame, or a timeout.
    pub async fn recv_timeout(&mut self, limit: Duration) -> Result<ServerMessage, ClientError> {
        self.rx.recv_timeout(limit).await
    }

    /// The first frame for which `pick` returns a value, skipping others, within `limit`.
    pub async fn recv_until<T>(
        &mut self,
        limit: Duration,
        pick: impl FnMut(ServerMessage) -> Option<T>,
    ) -> Result<T, ClientError> {
        self.rx.recv_until(limit, pick).await
    }

    /// Closes the connection politely.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.tx.sink.close().await?;
        Ok(())
    }

    /// Splits into independently usable halves.
    pub fn split(self) -> (ClientSender, ClientReceiver) {
        (self.tx, self.rx)
    }
}

impl ClientSender {
    /// Sends one frame.
    pub async fn send(&mut self, frame: impl Into<ClientMessage>) -> Result<(), ClientError> {
        let bytes = encode(self.encoding, &frame.into());
        let message = match self.encoding {
            // expect: the JSON encoder writes only UTF-8.
            Encoding::Json => Message::text(String::from_utf8(bytes).expect("JSON is UTF-8")),
            Encoding::Binary => Message::binary(bytes),
        };
        self.send_raw(message).await
    }

    /// Sends a raw WebSocket message.
    pub async fn send_raw(&mut self, message: Message) -> Result<(), ClientError> {
        self.sink.send(message).await?;
        Ok(())
    }

    /// Closes the connection politely.
    pub async fn close(&mut self) -> Result<(), ClientError> {
        self.sink.close().await?;
        Ok(())
    }
}

impl ClientReceiver {
    /// The next frame from the engine.
    pub async fn recv(&mut self) -> Result<ServerMessage, ClientError> {
        loop {
            let message = match self.stream.next().await {
                None => return Err(ClientError::Closed("stream ended".into())),
                Some(m) => m?,
            };
            let bytes = match &message {
                Message::Text(t) => t.as_bytes(),
                Message::Binary(b) => b.as_ref(),
                Message::Close(frame) => {
                    let reason = frame
                        .as_ref()
                        .map(|f| format!("{} {}", u16::from(f.code), f.reason))
                        .unwrap_or_default();
                    return Err(ClientError::Closed(reason));
                }
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            };
            return Ok(decode(self.encoding, bytes, &self.validator)?);
        }
    }

    /// The next frame, or a timeout.
    pub async fn recv_timeout(&mut self, limit: Duration) -> Result<ServerMessage, ClientError> {
        tokio::time::timeout(limit, self.recv())
            .await
            .map_err(|_| ClientError::Timeout(limit))?
    }

    /// The first frame for which `pick` returns a value, skipping others, within `limit`.
    pub async fn recv_until<T>(
        &mut self,
        limit: Duration,
        mut pick: impl FnMut(ServerMessage) -> Option<T>,
    ) -> Result<T, ClientError> {
        let wait = async {
            loop {
                if let Some(found) = pick(self.recv().await?) {
                    return Ok(found);
                }
            }
        };
        tokio::time::timeout(limit, wait)
            .await
            .map_err(|_| ClientError::Timeout(limit))?
    }
}

/// A minimal HTTP/1.1 JSON client for the engine's HTTP API (one request per connection),
/// enough for tests and the simulator to create profiles and tokens.
pub mod http_api {
    use std::net::SocketAddr;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::ClientError;

    /// A response: status and body parsed as JSON (null if empty or not JSON).
    #[derive(Debug, Clone, PartialEq)]
    pub struct Response {
        /// HTTP status.
        pub status: u16,
        /// The body as JSON.
        pub body: serde_json::Value,
        /// The raw body.
        pub text: String,
        /// The response headers, names in lower case, in order.
        pub headers: Vec<(String, String)>,
    }

    impl Response {
        /// The first value of header `name` (lower case).
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }
    }

    /// Sends `method path` with `headers` and an optional JSON body to `addr`.
    pub async fn request(
        addr: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&serde_json::Value>,
    ) -> Result<Response, ClientError> {
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let content_type = body.map(|_| "application/json");
        request_raw(
            addr,
            method,
            path,
            headers,
            content_type,
            payload.as_bytes(),
        )
        .await
    }

    /// One HTTP/1.1 request with a raw body (for malformed bodies and content types).
    pub async fn request_raw(
        addr: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        content_type: Option<&str>,
        payload: &[u8],
    ) -> Result<Response, ClientError> {
        let mut stream = TcpStream::connect(addr).await?;
        let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(content_type) = content_type {
            head.push_str(&format!("content-type: {content_type}\r\n"));
        }
        head.push_str(&format!("content-length: {}\r\n\r\n", payload.len()));
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(payload).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, rest) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| ClientError::BadRequest("malformed HTTP response".into()))?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ClientError::BadRequest("no HTTP status".into()))?;
        let chunked = head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        let body_text = if chunked {
            dechunk(rest)
        } else {
            rest.to_owned()
        };
        let body = serde_json::from_str(&body_text).unwrap_or(serde_json::Value::Null);
        let headers = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Ok(Response {
            status,
            body,
            text: body_text,
            headers,
        })
    }

    fn dechunk(mut s: &str) -> String {
        let mut out = String::new();
        while let Some((size, rest)) = s.split_once("\r\n") {
            let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
                break;
            };
            if n == 0 || rest.len() < n {
                break;
            }
            out.push_str(&rest[..n]);
            s = rest[n..].trim_start_matches("\r\n");
        }
        out
    }
}
