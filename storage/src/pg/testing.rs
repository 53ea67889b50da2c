//! A private PostgreSQL server for tests, one per test process, with a fresh database
//! per test. Uses `SPEEDY_TEST_DATABASE_URL` when set (a server someone else runs);
//! otherwise Debian's `postgresql` binaries: `initdb` into a temporary directory (as the
//! `postgres` user when running as root, since initdb refuses root), listening only on
//! a Unix socket in that directory. A watchdog stops the server and removes the
//! directory when the test process exits.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Set to use an existing server instead of starting one (a URL whose user may create
/// databases).
pub const TEST_DATABASE_URL: &str = "SPEEDY_TEST_DATABASE_URL";

/// Where this process's server can be reached.
#[derive(Debug)]
struct Server {
    /// URL of the server's maintenance database, without the database name part.
    base: Base,
}

#[derive(Debug)]
enum Base {
    /// Our own server: the socket directory.
    Private { socket_dir: PathBuf },
    /// Someone else's server.
    External { url: String },
}

impl Server {
    fn url(&self, database: &str) -> String {
        match &self.base {
            Base::Private { socket_dir } => format!(
                "postgres://postgres@localhost/{database}?host={}&port=5432",
                socket_dir.display()
            ),
            Base::External { url } => replace_database(url, database),
        }
    }
}

/// `url` with its database name replaced.
fn replace_database(url: &str, database: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let scheme_end = head.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match head[scheme_end..].find('/') {
        Some(slash) => &head[..scheme_end + slash],
        None => head,
    };
    match query {
        Some(q) => format!("{base}/{database}?{q}"),
        None => format!("{base}/{database}"),
    }
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
static DATABASES: AtomicUsize = AtomicUsize::new(0);

/// A URL to a new, empty database on this process's test server (started on first
/// use). Panics with the reason when no server can be had.
pub fn fresh_database() -> String {
    let server = match SERVER.get_or_init(start) {
        Ok(server) => server,
        Err(e) => panic!("no PostgreSQL for tests: {e}"),
    };
    let name = format!(
        "speedy_test_{}_{}",
        std::process::id(),
        DATABASES.fetch_add(1, Ordering::Relaxed)
    );
    execute(&server.url("postgres"), &format!("CREATE DATABASE {name}"));
    server.url(&name)
}

/// Runs `sql` (any number of statements) on the database at `url`; panics on an error.
pub fn execute(url: &str, sql: &str) {
    if let Err(e) = try_execute(url, sql) {
        panic!("{}: {e}", sql.chars().take(200).collect::<String>());
    }
}

/// Runs `sql` (any number of statements) on the database at `url`: the database's
/// error message if it refuses.
pub fn try_execute(url: &str, sql: &str) -> Result<(), String> {
    let (url, sql) = (url.to_owned(), sql.to_owned());
    // On a thread of its own: the caller may be inside an async runtime.
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("connecting to the test server at {url}: {e}"));
            tokio::spawn(connection);
            client.batch_execute(&sql).await.map_err(|e| {
                e.as_db_error()
                    .map_or_else(|| e.to_string(), |d| d.message().to_owned())
            })
        })
    })
    .join()
    .expect("running SQL on the test server")
}

fn start() -> Result<Server, String> {
    if let Ok(url) = std::env::var(TEST_DATABASE_URL) {
        return Ok(Server {
            base: Base::External { url },
        });
    }
    let bin = bin_dir()?;
    let dir = tempfile::Builder::new()
        .prefix("speedy-pg-")
        .tempdir()
        .map_err(|e| format!("a temporary directory: {e}"))?
        .keep();
    let as_root = is_root();
    if as_root {
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status()
            .map_err(|e| format!("chown: {e}"))?;
        if !status.success() {
            return Err("chown of the test server's directory to postgres failed (is there a postgres user?)".into());
        }
    }
    let data = dir.join("data");
    run(
        as_root,
        &bin.join("initdb"),
        &[
            "-D",
            &data.display().to_string(),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
        ],
    )?;
    let options = format!(
        "-k {} -c listen_addresses='' -p 5432 -c fsync=on -c synchronous_commit=on -c max_connections=300",
        dir.display()
    );
    let log = dir.join("server.log");
    run(
        as_root,
        &bin.join("pg_ctl"),
        &[
            "-D",
            &data.display().to_string(),
            "-l",
            &log.display().to_string(),
            "-w",
            "-o",
            &options,
            "start",
        ],
    )
    .map_err(|e| {
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        format!("{e}\n{log}")
    })?;
    watchdog(as_root, &bin, &data, &dir)?;
    Ok(Server {
        base: Base::Private { socket_dir: dir },
    })
}

/// Stops the server and removes its directory once this process has exited.
fn watchdog(as_root: bool, bin: &Path, data: &Path, dir: &Path) -> Result<(), String> {
    let stop = format!(
        "{} -D '{}' -m immediate stop",
        bin.join("pg_ctl").display(),
        data.display()
    );
    let stop = if as_root {
        format!("runuser -u postgres -- {stop}")
    } else {
        stop
    };
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.2; done; {stop} >/dev/null 2>&1; rm -rf '{dir}'",
        pid = std::process::id(),
        dir = dir.display()
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(drop)
        .map_err(|e| format!("starting the test server's watchdog: {e}"))
}

fn run(as_root: bool, program: &Path, args: &[&str]) -> Result<(), String> {
    let mut command = if as_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    let out = command
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", program.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} failed: {}{}",
            program.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Where `initdb` and `pg_ctl` are: `SPEEDY_PG_BIN`, Debian's newest
/// `/usr/lib/postgresql/<version>/bin`, or `PATH`.
fn bin_dir() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("SPEEDY_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    let found = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match found {
        Some(path) => Ok(Path::new(&path)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()),
        None => Err(
            "PostgreSQL is not installed (apt-get install postgresql), and SPEEDY_TEST_DATABASE_URL is not set"
                .into(),
        ),
    }
}
