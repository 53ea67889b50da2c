//! The Speedy Cheers engine as a library: [`run`] serves HTTP and WebSocket on one
//! listener until the shutdown future resolves. `main.rs` parses flags and calls it.
//!
//! - [`Config`]: settings (file, environment, flags).
//! - [`auth`]: party tokens and keys.
//! - `http`: the HTTP routes and their OpenAPI document ([`openapi_json`]); `session`
//!   and `frames`: the WebSocket sessions.
//! - [`shutdown`]: the stop signal.

pub mod auth;
pub mod cluster;
mod config;
mod frames;
mod http;
pub mod ops;
mod session;
pub mod shutdown;
mod state;
pub mod telemetry;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use actix::Arbiter;
use thiserror::Error;
use tokio::net::TcpListener;

pub use config::{ClusterSettings, Config, ConfigError, MarketSettings, Overrides};
pub use http::openapi_json;
pub use state::AppState;

/// Why the engine could not start or stopped with an error.
#[derive(Debug, Error)]
pub enum EngineError {
    /// A setting is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store could not be opened.
    #[error("storage: {0}")]
    Storage(#[from] storage::StorageError),
    /// The secrets could not be loaded.
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    /// The actors could not start.
    #[error("actors: {0}")]
    Actors(#[from] actors::ActorError),
    /// Serving failed.
    #[error("server: {0}")]
    Io(#[from] std::io::Error),

    /// Cluster mode could not start.
    #[error("cluster: {0}")]
    Cluster(String),
}

/// The engine's secrets: from the config where given, else from the data directory.
pub fn secrets(config: &Config) -> Result<auth::Secrets, EngineError> {
    let (stored, created) = auth::Secrets::load_or_create(&config.data_dir)?;
    if created && config.admin_key.is_none() {
        tracing::info!(path = %config.data_dir.join("secrets.json").display(), "generated the admin key, token secret and feedback API key");
    }
    Ok(auth::Secrets {
        admin_key: config.admin_key.clone().unwrap_or(stored.admin_key),
        token_secret: config.token_secret.clone().unwrap_or(stored.token_secret),
        feedback_api_key: config
            .feedback_api_key
            .clone()
            .unwrap_or(stored.feedback_api_key),
    })
}

/// Opens the store the configuration names: Postgres when `database` is set, else the
/// embedded store in `<data_dir>/db`. Migrates either to this build's schema.
pub fn open_store(config: &Config) -> Result<storage::Store, storage::StorageError> {
    let group_commit_wait = Duration::from_micros(config.storage.group_commit_wait_us);
    match &config.database {
        Some(url) => storage::Store::postgres(&storage::pg::PgConfig {
            url: url.clone(),
            epoch: 1,
            group_commit_wait,
            queue_capacity: config.storage.commit_queue,
            commit_hook: None,
            writers: config.storage.pg_writers,
            readers: config.storage.pg_readers,
        }),
        None => storage::Store::open(&storage::StoreConfig {
            path: Some(config.data_dir.join("db")),
            cache_bytes: config.storage.cache_mib * 1024 * 1024,
            group_commit_wait,
            queue_capacity: config.storage.commit_queue,
            sync_hook: None,
        }),
    }
}

/// Serves until `shutdown` resolves, then tells connected apps, stops accepting, and
/// flushes storage. Must run inside an actix system (dispatch actors live on arbiters).
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), EngineError> {
    config.validate()?;
    let secrets = secrets(&config)?;
    // Installed first: storage, dispatch and sessions bind their series to it as they start.
    let metrics = telemetry::prometheus();
    telemetry::describe();
    telemetry::register();
    let recovery_started = std::time::Instant::now();
    let store = open_store(&config)?;
    tracing::info!(backend = store.kind(), "storage open");
    if store.pricing()?.is_none() {
        store.put_pricing(&config.pricing)?.durable().await?;
    }
    let catalog =
        wire::TaskCatalog::new(config.tasks.iter().cloned()).map_err(|e| ConfigError::Invalid {
            setting: "tasks",
            message: e.detail,
        })?;
    let workers = match config.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let arbiters: Vec<Arbiter> = (0..workers).map(|_| Arbiter::new()).collect();
    let handles = arbiters.iter().map(Arbiter::handle).collect();
    let dispatch_config = config.dispatch_config().map_err(|m| ConfigError::Invalid {
        setting: "dispatch",
        message: m,
    })?;
    let sessions = actors::Sessions::default();
    let dispatch = actors::Dispatch::new(
        dispatch_config,
        catalog.clone(),
        sessions.clone(),
        actors::Clock::system(),
        handles,
        store.clone(),
    )?;
    let (latency, stall) = (
        Duration::from_millis(config.payments.sandbox_latency_ms),
        Duration::from_millis(config.payments.gateway_timeout_ms * 3),
    );
    let gateway = Arc::new(match (&config.cluster, store.kind()) {
        // Cluster mode: one ledger every node reads and writes, in the shared database,
        // so a capture made by a node that then dies is what the cell's new owner finds.
        (Some(_), "postgres") => {
            actors::orders::gateway::SandboxGateway::shared(store.clone(), latency, stall)
        }
        _ => {
            let ledger = actors::orders::gateway::SandboxGateway::ledger_path(&config.data_dir);
            actors::orders::gateway::SandboxGateway::with_ledger(&ledger, latency, stall).map_err(
                |e| {
                    EngineError::Io(std::io::Error::new(
                        e.kind(),
                        format!("sandbox gateway ledger {}: {e}", ledger.display()),
                    ))
                },
            )?
        }
    });
    let joined = match &config.cluster {
        Some(settings) => {
            let joined = cluster::join(
                settings,
                listener.local_addr()?,
                config.dispatch.shard_resolution,
            )
            .await?;
            dispatch.join_cluster(joined.peers.clone());
            Some(joined)
        }
        None => None,
    };
    let (orders, recovered) = actors::Orders::start(
        store.clone(),
        dispatch.clone(),
        gateway,
        config.order_config(),
        config.payment_config(),
    )?;
    let (requests, expired) = match &joined {
        // Each node takes over the open orders and requests of the cells it gains.
        Some(joined) => {
            actors::peers::wire_up(joined.peers.clone(), &dispatch, &orders);
            (0, 0)
        }
        None => dispatch.recover_requests().await?,
    };
    tracing::info!(
        open_orders = recovered.open_orders,
        owing_fee = recovered.owing_fee,
        pending_payments = recovered.pending_payments,
        open_requests = requests,
        expired_requests = expired,
        schema = store.schema_version()?,
        took_ms = recovery_started.elapsed().as_millis() as u64,
        "recovered"
    );
    let mut validator = wire::Validator::new(catalog);
    validator.limits.max_frame_bytes = config.socket.max_frame_bytes;
    let (trigger, stop) = shutdown::channel();
    let config_ops_ttl = config.ops.session_ttl_s;
    let state = AppState {
        config: Arc::new(config),
        store: store.clone(),
        dispatch,
        orders,
        tokens: auth::Tokens::new(&secrets.token_secret),
        secrets: Arc::new(secrets),
        validator: Arc::new(validator),
        metrics,
        shutdown: stop.clone(),
        live_sessions: shutdown::Sessions::default(),
        openapi: Arc::new(http::openapi_json()),
        events: joined.as_ref().map(|j| j.events.clone()),
        lease: joined.as_ref().map(|j| j.lease.clone()),
        ops: ops::OpsSessions::new(Duration::from_secs(config_ops_ttl)),
    };
    let mirror = match &joined {
        Some(j) => Some(cluster::mirror_events(j.events.clone(), &state.orders)?),
        None => None,
    };
    let archive = archive_task(state.clone());
    let app = http::api().0.merge(ops::routes()).with_state(state.clone());
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "serving HTTP and WebSocket");
    let mut stopped = stop.clone();
    let send_buffer = state.config.socket.send_buffer_bytes;
    let listener =
        axum::serve::ListenerExt::tap_io(listener, move |tcp: &mut tokio::net::TcpStream| {
            let _ = tcp.set_nodelay(true);
            if send_buffer > 0 {
                let _ = socket2::SockRef::from(&*tcp).set_send_buffer_size(send_buffer);
            }
        });
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: closing connections");
            trigger.fire();
            stopped.wait().await;
        })
        .await;
    archive.abort();
    if let Some(mirror) = mirror {
        mirror.abort();
    }
    // Upgraded sessions are not the HTTP server's to wait for: each sends `shutdown`,
    // closes, and counts itself out (bounded by the write timeout).
    let patience =
        Duration::from_millis(state.config.socket.write_timeout_ms) + Duration::from_secs(1);
    if tokio::time::timeout(patience, state.live_sessions.drained())
        .await
        .is_err()
    {
        tracing::warn!(
            left = state.live_sessions.live(),
            "sessions still open at shutdown"
        );
    }
    // Hand the cells to the other nodes: this node's actors there stop (their work is in
    // the store), its claims are released and it leaves, so the others take the cells
    // at their next round instead of after the lease. Should that fail, dropping the
    // lease keeper stops the heartbeat and the lease runs out as after a crash.
    if let Some(joined) = joined {
        let lease_ms = state.config.cluster.as_ref().map_or(3_000, |c| c.lease_ms);
        let within = Duration::from_millis(lease_ms);
        match joined.hand_over(within).await {
            Ok(cells) => tracing::info!(cells, "cells handed over"),
            Err(e) => tracing::warn!(error = %e, "could not hand the cells over"),
        }
    }
    // Make every write durable.
    store.flush_blocking()?;
    for arbiter in arbiters {
        arbiter.stop();
    }
    tracing::info!("stopped");
    served.map_err(EngineError::Io)
}

/// Moves ended orders to the archive once they are older than the configured age.
fn archive_task(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let age_ms = u64::from(state.config.orders.archive_after_days) * 86_400_000;
            let cutoff = state.dispatch.now_ms().saturating_sub(age_ms);
            let store = state.store.clone();
            match tokio::task::spawn_blocking(move || store.archive_ended_before(cutoff)).await {
                Ok(Ok(n)) if n > 0 => tracing::info!(archived = n, "archived ended orders"),
                Ok(Err(e)) => tracing::error!(error = %e, "archiving failed"),
                _ => {}
            }
        }
    })
}
