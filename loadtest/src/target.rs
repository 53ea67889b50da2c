//! The engine under test, and creating the parties the simulation plays.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;

use anyhow::{Context as _, bail};
use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::oneshot;
use wire::client::http_api;
use wire::{AssociateId, UserId};

/// How to reach an engine.
#[derive(Debug, Clone)]
pub struct Target {
    /// HTTP address (admin calls go here).
    pub http: SocketAddr,
    /// The admin key.
    pub admin_key: String,
    /// Other nodes of a cluster apps also connect to (round robin with `http`).
    pub more_nodes: Vec<SocketAddr>,
}

impl Target {
    /// A target of one engine.
    pub fn one(http: SocketAddr, admin_key: String) -> Self {
        Self {
            http,
            admin_key,
            more_nodes: Vec::new(),
        }
    }

    /// The WebSocket URL.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/ws", self.http)
    }

    /// The node app number `index` uses: the nodes in turn.
    pub fn node_for(&self, index: usize) -> SocketAddr {
        let n = self.more_nodes.len() + 1;
        match index % n {
            0 => self.http,
            i => self.more_nodes[i - 1],
        }
    }

    /// The WebSocket URL app number `index` connects to: the nodes in turn.
    pub fn ws_url_for(&self, index: usize) -> String {
        format!("ws://{}/v1/ws", self.node_for(index))
    }

    /// An admin HTTP call.
    pub async fn admin(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<http_api::Response> {
        let r = http_api::request(
            self.http,
            method,
            path,
            &[("x-admin-key", &self.admin_key)],
            body.as_ref(),
        )
        .await?;
        Ok(r)
    }

    /// Creates a user and returns its id and token.
    pub async fn user(&self, n: usize) -> anyhow::Result<(UserId, String)> {
        let r = self
            .admin(
                "POST",
                "/v1/users",
                Some(json!({ "name": format!("user-{n}"), "phone": format!("+91-8{n:09}") })),
            )
            .await?;
        if r.status != 201 {
            bail!("creating user {n}: {} {}", r.status, r.text);
        }
        let id: UserId = r.body["id"].as_str().context("user id")?.parse()?;
        Ok((id, self.token(id.0, "user").await?))
    }

    /// Creates an associate with `skills` and returns its id and token.
    pub async fn associate(
        &self,
        n: usize,
        skills: &[String],
    ) -> anyhow::Result<(AssociateId, String)> {
        let body = json!({ "name": format!("associate-{n}"), "phone": format!("+91-9{n:09}"), "skills": skills });
        let r = self.admin("POST", "/v1/associates", Some(body)).await?;
        if r.status != 201 {
            bail!("creating associate {n}: {} {}", r.status, r.text);
        }
        let id: AssociateId = r.body["id"].as_str().context("associate id")?.parse()?;
        Ok((id, self.token(id.0, "associate").await?))
    }

    async fn token(&self, sub: uuid::Uuid, role: &str) -> anyhow::Result<String> {
        let r = self
            .admin(
                "POST",
                "/v1/tokens",
                Some(json!({ "sub": sub, "role": role, "ttl_s": 86_400 })),
            )
            .await?;
        if r.status != 200 {
            bail!("token: {} {}", r.status, r.text);
        }
        Ok(r.body["token"].as_str().context("token")?.to_owned())
    }

    /// Creates `n` parties with `make`, `concurrency` at a time, in order.
    pub async fn create_many<T, F, Fut>(
        &self,
        n: usize,
        concurrency: usize,
        make: F,
    ) -> anyhow::Result<Vec<T>>
    where
        F: Fn(usize) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<T>>,
    {
        futures_util::stream::iter((0..n).map(make))
            .buffered(concurrency.max(1))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect()
    }
}

/// The source address for connection `i`, spread over 127.0.0.2 .. 127.0.0.(1 + spread).
pub fn source_ip(i: usize, spread: usize) -> Option<IpAddr> {
    if spread == 0 {
        return None;
    }
    let last = 2 + (i % spread.min(250)) as u8;
    Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
}

/// An engine running in this process (its own actix system and threads).
pub struct InProcess {
    /// How to reach it.
    pub target: Target,
    _dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

impl InProcess {
    /// Starts an engine on 127.0.0.1:0 with `config` (its data dir replaced by a temporary one).
    pub fn start(mut config: engine::Config) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        config.data_dir = dir.path().to_path_buf();
        if config.admin_key.is_none() {
            config.admin_key = Some(format!("loadtest-admin-{}", uuid::Uuid::now_v7()));
        }
        let admin_key = config.admin_key.clone().unwrap_or_default();
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let http = listener.local_addr()?;
        let workers = config.workers.max(1);
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("engine".into())
            .spawn(move || {
                let system = actix_rt::System::with_tokio_rt(move || {
                    tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(workers)
                        .enable_all()
                        .build()
                        // expect: a runtime builds whenever threads can be made.
                        .expect("engine runtime")
                });
                system.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
                    engine::run(listener, config, async move {
                        let _ = stopped.await;
                    })
                    .await
                    .map_err(|e| e.to_string())
                })
            })?;
        Ok(Self {
            target: Target::one(http, admin_key),
            _dir: dir,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops the engine gracefully.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => bail!("engine stopped with an error: {e}"),
                Err(_) => bail!("engine thread panicked"),
            }
        }
        Ok(())
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// The engine binary running as a child process (for measuring its memory alone).
pub struct ChildEngine {
    /// How to reach it.
    pub target: Target,
    child: Child,
    _dir: tempfile::TempDir,
}

impl ChildEngine {
    /// Starts `binary` on 127.0.0.1:0 with a temporary data dir and `extra` arguments.
    pub fn start(binary: &Path, extra: &[String]) -> anyhow::Result<Self> {
        Self::start_pinned(binary, extra, None)
    }

    /// Like [`ChildEngine::start`], pinned to `cores` (a taskset list) if given.
    pub fn start_pinned(
        binary: &Path,
        extra: &[String],
        cores: Option<&str>,
    ) -> anyhow::Result<Self> {
        Self::start_command(crate::paced::pinned(binary, cores), binary, extra)
    }

    /// Like [`ChildEngine::start`], with `command` (a wrapper such as taskset or valgrind
    /// whose last argument is the engine `binary`) as the way to run it.
    pub fn start_command(
        mut command: Command,
        binary: &Path,
        extra: &[String],
    ) -> anyhow::Result<Self> {
        use std::io::{BufRead, BufReader};
        let dir = tempfile::tempdir()?;
        let admin_key = format!("loadtest-admin-{}", uuid::Uuid::now_v7());
        let mut child = command
            .args(["--listen", "127.0.0.1:0", "--admin-key", &admin_key])
            .arg("--data-dir")
            .arg(dir.path())
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stderr = child.stderr.take().context("engine stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let http = loop {
            let Some(line) = lines.next() else {
                bail!("the engine exited before listening")
            };
            let line = line?;
            if let Some(rest) = line.strip_prefix("speedy engine on http://") {
                break rest.split_whitespace().next().context("address")?.parse()?;
            }
        };
        std::thread::spawn(move || lines.for_each(drop));
        Ok(Self {
            target: Target::one(http, admin_key),
            child,
            _dir: dir,
        })
    }

    /// Starts `command` (whose last argument is the engine `binary`) with `settings`
    /// as its configuration file and tokens signed with `secret`.
    pub fn start_configured(
        command: Command,
        binary: &Path,
        settings: &engine::Config,
        secret: &str,
    ) -> anyhow::Result<Self> {
        // The engine reads its file before it listens, so the file may go once it does.
        let file = tempfile::NamedTempFile::new()?;
        std::fs::write(file.path(), toml::to_string(settings)?)?;
        let args = [
            "--config".to_owned(),
            file.path().display().to_string(),
            "--token-secret".to_owned(),
            secret.to_owned(),
        ];
        Self::start_command(command, binary, &args)
    }

    /// The child's resident memory in bytes.
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        rss_of(self.child.id())
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ChildEngine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory of process `pid` in bytes, from /proc.
pub fn rss_of(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS")?;
    Ok(kb * 1024)
}

/// The engine binary next to this one (target/release/engine when run from cargo), or,
/// for a test binary in target/<profile>/deps, the one in target/<profile>.
pub fn sibling_engine() -> PathBuf {
    let me = std::env::current_exe().unwrap_or_default();
    let beside = me.with_file_name("engine");
    match me.parent().and_then(|d| d.parent()) {
        Some(profile) if !beside.exists() && me.parent().is_some_and(|d| d.ends_with("deps")) => {
            profile.join("engine")
        }
        _ => beside,
    }
}
