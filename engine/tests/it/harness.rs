//! A real engine on 127.0.0.1:0 in its own thread (an actix system on a multi-thread
//! tokio runtime, as `main` runs it), plus helpers to create parties and connect apps.

use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::Duration;

use engine::Config;
use serde_json::json;
use tokio::sync::oneshot;
use wire::client::{Client, ClientError, ConnectOptions, http_api};
use wire::{AssociateId, Encoding, ServerMessage, UserId};

/// How long a test waits for an expected frame.
pub const WAIT: Duration = Duration::from_secs(10);

/// A running engine.
pub struct TestServer {
    pub addr: SocketAddr,
    pub admin_key: String,
    pub feedback_key: String,
    /// Kept so the directory lives as long as the engine.
    _data_dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

/// Settings for tests: fast heartbeats, one worker.
pub fn test_config() -> Config {
    let mut c = Config {
        workers: 1,
        admin_key: Some("test-admin-key-0123456789".into()),
        token_secret: Some("test-token-secret-0123456789".into()),
        feedback_api_key: Some("test-feedback-key-0123456789".into()),
        ..Config::default()
    };
    c.payments.sandbox_latency_ms = 1;
    c
}

/// Which storage backend a shared test runs the engine on: the behavioural tests of the
/// order lifecycle, payments, recovery and crashes run on both.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    /// The embedded store (the default).
    Sled,
    /// PostgreSQL: a private server per test process, a database per engine.
    Postgres,
}

impl Backend {
    /// The database URL an engine on this backend is given (none: embedded).
    pub fn database(self) -> Option<String> {
        match self {
            Backend::Sled => None,
            Backend::Postgres => Some(storage::pg::testing::fresh_database()),
        }
    }

    /// A fresh data directory for the engine binary; on Postgres its `speedy.toml` names
    /// a fresh database, so every restart on the directory finds the same records.
    pub fn data_dir(self) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        if let Some(url) = self.database() {
            std::fs::write(
                dir.path().join("speedy.toml"),
                format!("database = {url:?}\n"),
            )
            .unwrap();
        }
        dir
    }
}

/// Runs an async test on both backends: `both!(name)` for `async fn name(backend: Backend)`.
#[macro_export]
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sled() {
                super::$name($crate::harness::Backend::Sled).await
            }
            #[tokio::test]
            async fn postgres() {
                super::$name($crate::harness::Backend::Postgres).await
            }
        }
    };
}

impl TestServer {
    /// Starts an engine with `test_config()` changed by `tweak`, on a fresh data directory.
    pub fn start(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start_on(Backend::Sled, tweak)
    }

    /// Like [`Self::start`], with the records on `backend`.
    pub fn start_on(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        let mut config = test_config();
        config.data_dir = data_dir.path().to_path_buf();
        config.database = backend.database();
        tweak(&mut config);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let admin_key = config.admin_key.clone().unwrap();
        let feedback_key = config.feedback_api_key.clone().unwrap();
        let thread = std::thread::spawn(move || {
            let system = actix_rt::System::with_tokio_rt(|| {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .unwrap()
            });
            system.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                engine::run(listener, config, async move {
                    let _ = stopped.await;
                })
                .await
                .map_err(|e| e.to_string())
            })
        });
        Self {
            addr,
            admin_key,
            feedback_key,
            _data_dir: data_dir,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Stops the engine gracefully (blocking until it has stopped).
    pub fn stop(mut self) {
        self.shutdown();
    }

    /// Stops the engine gracefully and hands over its data directory.
    pub fn stop_keeping_data(mut self) -> tempfile::TempDir {
        self.shutdown();
        let empty = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self._data_dir, empty)
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap().unwrap();
        }
    }

    /// The engine's data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        self._data_dir.path()
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/ws", self.addr)
    }

    /// An HTTP call as the admin.
    pub async fn admin(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> http_api::Response {
        admin_call(self.addr, &self.admin_key, method, path, body).await
    }

    /// A token for a party, from `POST /v1/tokens`.
    pub async fn token(&self, sub: uuid::Uuid, role: &str) -> String {
        token_from(self.addr, &self.admin_key, sub, role).await
    }

    /// Creates a user profile; returns its id and a token.
    pub async fn user(&self, name: &str) -> (UserId, String) {
        new_user(self.addr, &self.admin_key, name).await
    }

    /// Creates an associate profile; returns its id and a token.
    pub async fn associate(&self, name: &str, skills: &[&str]) -> (AssociateId, String) {
        new_associate(self.addr, &self.admin_key, name, skills).await
    }

    /// Connects an app with JSON frames and reads its welcome.
    pub async fn connect(&self, token: &str) -> Client {
        self.connect_with(token, Encoding::Json).await
    }

    /// Connects an app with the given encoding and reads its welcome.
    pub async fn connect_with(&self, token: &str, encoding: Encoding) -> Client {
        let options = ConnectOptions {
            url: self.ws_url(),
            token: token.into(),
            encoding,
            local_ip: None,
            recv_buffer_bytes: None,
        };
        let mut c = Client::connect_with(&options).await.unwrap();
        match c.recv_timeout(WAIT).await.unwrap() {
            ServerMessage::Welcome(_) => c,
            other => panic!("expected welcome, got {other:?}"),
        }
    }

    /// Tries to connect, returning the failure.
    pub async fn try_connect(&self, url: &str, token: &str) -> Result<Client, ClientError> {
        Client::connect(url, token).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// An HTTP call as the admin of the engine at `addr`.
pub async fn admin_call(
    addr: SocketAddr,
    admin_key: &str,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> http_api::Response {
    http_api::request(
        addr,
        method,
        path,
        &[("x-admin-key", admin_key)],
        body.as_ref(),
    )
    .await
    .unwrap()
}

/// A token for a party, from `POST /v1/tokens`.
pub async fn token_from(addr: SocketAddr, admin_key: &str, sub: uuid::Uuid, role: &str) -> String {
    let r = admin_call(
        addr,
        admin_key,
        "POST",
        "/v1/tokens",
        Some(json!({ "sub": sub, "role": role })),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["token"].as_str().unwrap().to_owned()
}

/// Creates a user profile; returns its id and a token.
pub async fn new_user(addr: SocketAddr, admin_key: &str, name: &str) -> (UserId, String) {
    let body = json!({ "name": name, "phone": "+91-90000-00001" });
    let r = admin_call(addr, admin_key, "POST", "/v1/users", Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id: UserId = r.body["id"].as_str().unwrap().parse().unwrap();
    (id, token_from(addr, admin_key, id.0, "user").await)
}

/// Creates an associate profile doing `skills`; returns its id and a token.
pub async fn new_associate(
    addr: SocketAddr,
    admin_key: &str,
    name: &str,
    skills: &[&str],
) -> (AssociateId, String) {
    let body = json!({ "name": name, "phone": "+91-90000-00002", "skills": skills });
    let r = admin_call(addr, admin_key, "POST", "/v1/associates", Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id: AssociateId = r.body["id"].as_str().unwrap().parse().unwrap();
    (id, token_from(addr, admin_key, id.0, "associate").await)
}

/// Polls `GET /v1/orders/{order}` until `done` holds for it; the order as last seen.
pub async fn poll_order(
    addr: SocketAddr,
    admin_key: &str,
    order: wire::OrderId,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let r = admin_call(addr, admin_key, "GET", &format!("/v1/orders/{order}"), None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        if done(&r.body) {
            return r.body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "order {order} never became {what}: {:#}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What `GET /v1/orders/{order}/events?after=` gives a party's `token` at `addr`: where
/// the events came from, and their seqs.
pub async fn events_after(
    addr: SocketAddr,
    token: &str,
    order: wire::OrderId,
    after: u32,
) -> (String, Vec<u64>) {
    let auth = format!("Bearer {token}");
    let r = http_api::request(
        addr,
        "GET",
        &format!("/v1/orders/{order}/events?after={after}"),
        &[("authorization", &auth)],
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text);
    let seqs = r.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    (
        r.body["source"].as_str().unwrap_or_default().to_owned(),
        seqs,
    )
}

/// Waits for the first frame `pick` accepts, skipping others (named in the failure).
pub async fn expect<T>(
    c: &mut Client,
    what: &str,
    mut pick: impl FnMut(ServerMessage) -> Option<T>,
) -> T {
    let mut skipped = Vec::new();
    let found = c
        .recv_until(WAIT, |m| {
            let detail = format!("{m:?}");
            let got = pick(m);
            if got.is_none() {
                skipped.push(detail.chars().take(300).collect::<String>());
            }
            got
        })
        .await;
    found.unwrap_or_else(|e| panic!("waiting for {what}: {e}; skipped {skipped:#?}"))
}

/// A point.
pub fn at(lat: f64, lng: f64) -> wire::model::Point {
    wire::model::Point { lat, lng }
}

/// A user and an online associate connected, with ids.
pub struct Parties {
    pub u: Client,
    pub a: Client,
    pub user: wire::UserId,
    pub associate: wire::AssociateId,
}

/// Puts a connected associate at `point` and online with its profile's skills.
pub async fn go_online(a: &mut Client, point: wire::model::Point) {
    a.send(wire::Location {
        point,
        accuracy_m: None,
    })
    .await
    .unwrap();
    a.send(wire::GoOnline { skills: vec![] }).await.unwrap();
}

pub async fn parties(s: &TestServer) -> Parties {
    let (user, user_token) = s.user("Asha").await;
    let (associate, associate_token) = s.associate("Ravi", &["companion", "helper"]).await;
    let mut a = s.connect(&associate_token).await;
    go_online(&mut a, at(12.9726, 77.5946)).await;
    expect(&mut a, "available", |m| match m {
        ServerMessage::Status(st) if st.availability == wire::model::Availability::Available => {
            Some(())
        }
        _ => None,
    })
    .await;
    let mut u = s.connect(&user_token).await;
    u.send(wire::Location {
        point: at(12.9716, 77.5946),
        accuracy_m: None,
    })
    .await
    .unwrap();
    Parties {
        u,
        a,
        user,
        associate,
    }
}

/// The close code the engine ended the socket with.
pub async fn closed_with(c: &mut wire::client::Client) -> String {
    loop {
        match c.recv_timeout(WAIT).await {
            Ok(_) => continue,
            Err(wire::client::ClientError::Closed(reason)) => return reason,
            Err(other) => panic!("expected a close frame, got {other:?}"),
        }
    }
}
