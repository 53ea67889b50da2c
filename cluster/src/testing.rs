//! A private `nats-server -js` for tests: a free port on 127.0.0.1, its store in a
//! temporary directory, stopped when dropped. Uses `SPEEDY_TEST_NATS_URL` when set.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running NATS server (or the one `SPEEDY_TEST_NATS_URL` names).
#[derive(Debug)]
pub struct NatsServer {
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

impl NatsServer {
    /// Starts one and waits until it accepts connections; panics with the reason if it
    /// cannot (nats-server missing: `apt-get install nats-server`).
    pub fn start() -> Self {
        if let Ok(url) = std::env::var("SPEEDY_TEST_NATS_URL") {
            return Self {
                url,
                child: None,
                _dir: None,
            };
        }
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start nats-server ({e}): apt-get install nats-server, or set SPEEDY_TEST_NATS_URL")
            });
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            url: format!("nats://127.0.0.1:{port}"),
            child: Some(child),
            _dir: Some(dir),
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
