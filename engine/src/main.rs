//! `engine`: serve (the default), issue a token, or check the configuration.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use engine::{Config, Overrides};
use wire::{AssociateId, PartyId, UserId};

/// The Speedy Cheers dispatch engine: HTTP and WebSocket on one port, records in embedded
/// sled (the default) or PostgreSQL, optionally one node of a cluster over NATS.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Config file (default: ./speedy.toml if present).
    #[arg(long, env = "SPEEDY_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "SPEEDY_LISTEN", global = true)]
    listen: Option<SocketAddr>,
    /// Data directory for the database and generated secrets [default: ./data].
    #[arg(long, env = "SPEEDY_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// PostgreSQL URL for the records (default: the embedded store in <data-dir>/db).
    #[arg(
        long,
        env = "SPEEDY_DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    database: Option<String>,
    /// Admin key for admin HTTP routes, at least 16 characters; replaces the key in
    /// <data-dir>/secrets.json, which is then refused (default: that file's key,
    /// generated on first start).
    #[arg(long, env = "SPEEDY_ADMIN_KEY", global = true, hide_env_values = true)]
    admin_key: Option<String>,
    /// HS256 token secret, at least 16 characters (default: generated into the data
    /// directory).
    #[arg(
        long,
        env = "SPEEDY_TOKEN_SECRET",
        global = true,
        hide_env_values = true
    )]
    token_secret: Option<String>,
    /// API key for posting external feedback, at least 16 characters (default:
    /// generated into the data directory).
    #[arg(
        long,
        env = "SPEEDY_FEEDBACK_API_KEY",
        global = true,
        hide_env_values = true
    )]
    feedback_api_key: Option<String>,
    /// Actor threads (0: one per core).
    #[arg(long, env = "SPEEDY_WORKERS", global = true)]
    workers: Option<usize>,
    /// Offer window in milliseconds [default: 45000].
    #[arg(long, env = "SPEEDY_OFFER_WINDOW_MS", global = true)]
    offer_window_ms: Option<u64>,
    /// Request deadline in milliseconds [default: 300000].
    #[arg(long, env = "SPEEDY_REQUEST_TIMEOUT_MS", global = true)]
    request_timeout_ms: Option<u64>,
    /// Cluster mode: the NATS server (JetStream on) the nodes share, `nats://host:port`;
    /// needs --database (default: a single node).
    #[arg(long, env = "SPEEDY_CLUSTER", global = true)]
    cluster: Option<String>,
    /// This node's id in the cluster [default: <hostname>-<listen address>].
    #[arg(long, env = "SPEEDY_NODE_ID", global = true)]
    node_id: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve HTTP and WebSocket (the default).
    Serve,
    /// Print a signed token for a party.
    Token {
        /// The party's id (UUID).
        #[arg(long)]
        sub: uuid::Uuid,
        /// The party's role.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 86_400)]
        ttl_s: u64,
    },
    /// Check the configuration and print it as TOML.
    CheckConfig,
    /// Print the HTTP API's OpenAPI 3.1 document (docs/openapi.json).
    Openapi,
    /// Bring the configured store's schema up to date, then exit.
    Migrate,
    /// Copy an embedded data directory into an empty PostgreSQL database.
    CopyData {
        /// The data directory (or its `db` directory); the engine must not be running on it.
        #[arg(long)]
        from: PathBuf,
        /// The PostgreSQL URL to copy into.
        #[arg(long)]
        to: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RoleArg {
    User,
    Associate,
}

fn main() -> anyhow::Result<()> {
    // Logs go to stderr: stdout carries only what a subcommand prints (a token, a config).
    // Colours only on a terminal: a pipe or a log file gets plain text.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let overrides = Overrides {
        listen: cli.listen,
        data_dir: cli.data_dir.clone(),
        database: cli.database.clone(),
        admin_key: cli.admin_key.clone(),
        token_secret: cli.token_secret.clone(),
        feedback_api_key: cli.feedback_api_key.clone(),
        workers: cli.workers,
        offer_window_ms: cli.offer_window_ms,
        request_timeout_ms: cli.request_timeout_ms,
        cluster: cli.cluster.clone(),
        node_id: cli.node_id.clone(),
    };
    let config =
        Config::load(cli.config.as_deref(), &overrides).context("invalid configuration")?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config),
        Command::Token { sub, role, ttl_s } => {
            let secrets = engine::secrets(&config)?;
            let party = match role {
                RoleArg::User => PartyId::User(UserId(sub)),
                RoleArg::Associate => PartyId::Associate(AssociateId(sub)),
            };
            let (token, _) = engine::auth::Tokens::new(&secrets.token_secret).issue(party, ttl_s);
            println!("{token}");
            Ok(())
        }
        Command::Migrate => {
            match &config.database {
                Some(url) => {
                    let (before, now) = storage::pg::PgStore::migrate(url)
                        .context("migrating the postgres schema")?;
                    println!("postgres schema: version {before} -> {now}");
                }
                None => {
                    let store =
                        engine::open_store(&config).context("opening the embedded store")?;
                    println!(
                        "embedded store {}: schema version {}",
                        config.data_dir.join("db").display(),
                        store.schema_version()?
                    );
                }
            }
            Ok(())
        }
        Command::CopyData { from, to } => {
            let db = if from.join("db").is_dir() {
                from.join("db")
            } else {
                from
            };
            let report = storage::pg::copy_sled_to_postgres(&db, &to)
                .with_context(|| format!("copying {} into postgres", db.display()))?;
            println!("{report:#?}");
            Ok(())
        }
        Command::Openapi => {
            println!("{}", engine::openapi_json());
            Ok(())
        }
        Command::CheckConfig => {
            println!(
                "{}",
                toml::to_string_pretty(&config).context("printing the configuration")?
            );
            Ok(())
        }
    }
}

fn serve(config: Config) -> anyhow::Result<()> {
    let workers = match config.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let system = actix_rt::System::with_tokio_rt(move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
            // expect: building a runtime fails only without OS threads, which `main` cannot fix.
            .expect("tokio runtime")
    });
    system.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let secrets = engine::secrets(&config)?;
        let admin_key = match &config.admin_key {
            Some(_) => "admin key as given (the one in secrets.json is not accepted)".to_owned(),
            None => format!(
                "admin key in {}",
                config.data_dir.join("secrets.json").display()
            ),
        };
        let records = match (&config.database, &config.cluster) {
            (Some(_), Some(c)) => format!(
                "node {} of a cluster on {}, records in postgres, secrets in {}",
                c.node_id(config.listen),
                c.nats,
                config.data_dir.display()
            ),
            (Some(_), None) => format!(
                "records in postgres, secrets in {}",
                config.data_dir.display()
            ),
            (None, _) => format!("data in {}", config.data_dir.display()),
        };
        eprintln!(
            "speedy engine on http://{} ({records}; {admin_key})",
            listener.local_addr()?,
        );
        drop(secrets);
        engine::run(listener, config, shutdown_signal()).await?;
        anyhow::Ok(())
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
