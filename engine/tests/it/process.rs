//! The engine binary as its own process on a data directory: started, killed with
//! SIGKILL (no shutdown, no flush), restarted on the same directory.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use wire::client::{Client, http_api};
use wire::{AssociateId, ServerMessage, UserId};

use crate::harness::{WAIT, admin_call, new_associate, new_user, poll_order, token_from};

pub const ADMIN: &str = "crash-admin-key-0123456789";
pub const SECRET: &str = "crash-token-secret-0123456789";

/// The engine binary running on a data directory.
pub struct Engine {
    child: Child,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    /// The line the engine printed when it started listening.
    pub banner: String,
    /// Every line it logged since.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Engine {
    /// Starts the engine on `dir` (with `dir/speedy.toml` if the test wrote one) and
    /// waits until it listens.
    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, &["--admin-key", ADMIN])
    }

    /// Starts the engine with extra flags.
    pub fn start_with(dir: &Path, flags: &[&str]) -> Self {
        Self::spawn(dir, "127.0.0.1:0", flags, "warn")
    }

    /// Starts the engine logging at info level (see [`Engine::logged`]).
    pub fn start_logged(dir: &Path) -> Self {
        Self::spawn(dir, "127.0.0.1:0", &["--admin-key", ADMIN], "info")
    }

    /// Starts the engine listening on `listen`, logging at info level.
    pub fn start_on(dir: &Path, listen: &str, flags: &[&str]) -> Self {
        Self::spawn(dir, listen, flags, "info")
    }

    fn spawn(dir: &Path, listen: &str, flags: &[&str], log_level: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_engine"))
            .args(["--listen", listen, "--workers", "1"])
            .arg("--data-dir")
            .arg(dir)
            .args(flags)
            .args(["--token-secret", SECRET])
            .env("RUST_LOG", log_level)
            .env_remove("SPEEDY_CONFIG")
            .env_remove("SPEEDY_ADMIN_KEY")
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let (addr, banner) = loop {
            let line = lines
                .next()
                .expect("engine exited before listening")
                .unwrap();
            if let Some(rest) = line.strip_prefix("speedy engine on http://") {
                break (
                    rest.split_whitespace().next().unwrap().parse().unwrap(),
                    line,
                );
            }
        };
        let on_postgres = std::fs::read_to_string(dir.join("speedy.toml"))
            .is_ok_and(|t| t.lines().any(|l| l.starts_with("database = ")));
        assert_eq!(
            banner.contains("records in postgres"),
            on_postgres,
            "the engine runs on the store its directory names: {banner}"
        );
        // Keep draining stderr so the engine never blocks on a full pipe.
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                kept.lock().unwrap().push(line);
            }
        });
        Self {
            child,
            addr,
            dir: dir.to_path_buf(),
            banner,
            log,
        }
    }

    /// Waits for a logged line containing every one of `parts`.
    pub async fn logged(&self, parts: &[&str]) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(line) = self
                .log
                .lock()
                .unwrap()
                .iter()
                .find(|l| parts.iter().all(|p| l.contains(p)))
            {
                return line.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no log line with {parts:?} in {:#?}",
                self.log.lock().unwrap()
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Waits (up to `within`) for the engine to exit by itself (after SIGTERM); its exit
    /// status.
    pub async fn exited(mut self, within: std::time::Duration) -> std::process::ExitStatus {
        let started = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < within,
                "the engine did not exit within {within:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Sends a signal by name (`STOP`, `CONT`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    /// Every line logged so far containing `part`.
    pub fn lines_with(&self, part: &str) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(part))
            .cloned()
            .collect()
    }

    pub async fn admin(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> http_api::Response {
        admin_call(self.addr, ADMIN, method, path, body).await
    }

    pub async fn token(&self, sub: uuid::Uuid, role: &str) -> String {
        token_from(self.addr, ADMIN, sub, role).await
    }

    /// Creates a user; returns the id and a token.
    pub async fn user(&self, name: &str) -> (UserId, String) {
        new_user(self.addr, ADMIN, name).await
    }

    /// Creates an associate doing `skills`; returns the id and a token.
    pub async fn associate(&self, name: &str, skills: &[&str]) -> (AssociateId, String) {
        new_associate(self.addr, ADMIN, name, skills).await
    }

    /// Connects and reads the welcome.
    pub async fn connect(&self, token: &str) -> Client {
        let mut c = Client::connect(&format!("ws://{}/v1/ws", self.addr), token)
            .await
            .unwrap();
        assert!(matches!(
            c.recv_timeout(WAIT).await.unwrap(),
            ServerMessage::Welcome(_)
        ));
        c
    }

    /// An order as `GET /v1/orders/{id}` shows it.
    pub async fn order(&self, id: wire::OrderId) -> serde_json::Value {
        poll_order(self.addr, ADMIN, id, "readable", |_| true).await
    }

    /// Polls the order until `done` holds for it.
    pub async fn until(
        &self,
        id: wire::OrderId,
        what: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        poll_order(self.addr, ADMIN, id, what, done).await
    }

    /// What the sandbox gateway's ledger file says, as an auditor would read it.
    pub fn ledger(&self) -> Vec<actors::orders::gateway::LedgerLine> {
        actors::orders::gateway::read_ledger(&actors::orders::gateway::SandboxGateway::ledger_path(
            &self.dir,
        ))
        .unwrap()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `dir/speedy.toml` for the engines started on `dir`.
pub fn write_config(dir: &Path, toml: &str) {
    let path = dir.join("speedy.toml");
    // Keeps the database a Postgres test's directory names (a top-level key: first).
    let database = std::fs::read_to_string(&path)
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("database = "))
        .map(|l| format!("{l}\n"))
        .unwrap_or_default();
    std::fs::write(path, format!("{database}{toml}")).unwrap();
}
