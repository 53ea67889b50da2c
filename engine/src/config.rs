//! Engine settings: defaults, then `speedy.toml`, then `SPEEDY_*` environment variables
//! and flags (see `engine --help`). Invalid settings fail at start, naming the setting.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use wire::model::PricingSettings;

/// A setting that is missing, unreadable or out of range.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is not valid TOML for these settings.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said (it names the setting).
        message: String,
    },
    /// A setting is out of range.
    #[error("setting `{setting}`: {message}")]
    Invalid {
        /// The setting's name as written in the config file.
        setting: &'static str,
        /// What is wrong.
        message: String,
    },
}

fn invalid(setting: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting,
        message: message.into(),
    }
}

/// Every engine setting. Durations are in milliseconds unless the name says otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address for HTTP and WebSocket.
    pub listen: SocketAddr,
    /// Directory for the embedded database and generated secrets.
    pub data_dir: PathBuf,
    /// Where the records live: unset for the embedded store in `<data_dir>/db`, or a
    /// PostgreSQL URL (`postgres://user:password@host:port/db`).
    pub database: Option<String>,
    /// Key for admin HTTP routes (`x-admin-key`); generated into the data dir if unset.
    pub admin_key: Option<String>,
    /// HS256 secret for party tokens; generated into the data dir if unset.
    pub token_secret: Option<String>,
    /// Key for `POST /v1/feedback` (`x-api-key`); generated into the data dir if unset.
    pub feedback_api_key: Option<String>,
    /// Actor threads (0: one per core).
    pub workers: usize,
    /// Task type names, in task-number order.
    pub tasks: Vec<String>,
    /// WebSocket connections.
    pub socket: SocketSettings,
    /// Dispatch.
    pub dispatch: DispatchSettings,
    /// Orders.
    pub orders: OrderSettings,
    /// Payments.
    pub payments: PaymentSettings,
    /// Storage.
    pub storage: StorageSettings,
    /// Initial pricing (used until changed over the admin API).
    pub pricing: PricingSettings,
    /// Cluster mode: unset for a single node (the default).
    pub cluster: Option<ClusterSettings>,
    /// The ops console.
    pub ops: OpsSettings,
}

/// The ops console (`/ops`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpsSettings {
    /// How long a console session lasts after login, in seconds.
    pub session_ttl_s: u64,
    /// Origins besides the engine's own (`http://<its Host>`) that may open the ops socket
    /// and post to the console, such as `https://ops.example.com` behind a proxy.
    pub allowed_origins: Vec<String>,
}

impl Default for OpsSettings {
    fn default() -> Self {
        Self {
            session_ttl_s: 8 * 3600,
            allowed_origins: Vec::new(),
        }
    }
}

/// Cluster mode: several nodes share the market's shard cells over NATS JetStream, with
/// the records in PostgreSQL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSettings {
    /// The NATS server (JetStream enabled), `nats://host:port`.
    pub nats: String,
    /// This node's id, unique in the cluster (default: `<hostname>-<listen port>`).
    pub node_id: Option<String>,
    /// A node silent this long is out and its cells move.
    pub lease_ms: u64,
    /// How long a call to another node may take before it counts as failed.
    pub call_timeout_ms: u64,
    /// The market the cluster shares: every shard cell within `radius_km` of the centre.
    /// Requests outside it are refused and associates outside it get no offers.
    pub market: MarketSettings,
}

/// The market area a cluster shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MarketSettings {
    /// Centre latitude.
    pub lat: f64,
    /// Centre longitude.
    pub lng: f64,
    /// Radius in kilometres.
    pub radius_km: f64,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            nats: "nats://127.0.0.1:4222".into(),
            node_id: None,
            lease_ms: 3_000,
            call_timeout_ms: 2_000,
            market: MarketSettings::default(),
        }
    }
}

impl Default for MarketSettings {
    fn default() -> Self {
        // The simulator's default city (Bengaluru), 40 km around.
        Self {
            lat: 12.9716,
            lng: 77.5946,
            radius_km: 40.0,
        }
    }
}

impl ClusterSettings {
    /// The market's shard cells at `resolution`.
    pub fn market_cells(&self, resolution: u8) -> Result<Vec<u64>, String> {
        let map = geo::ShardMap::new(resolution).map_err(|e| e.to_string())?;
        let centre = geo::LatLng::new(self.market.lat, self.market.lng)
            .map_err(|e| format!("market centre: {e}"))?;
        let shards = map
            .shards_touching(centre, self.market.radius_km * 1_000.0)
            .map_err(|e| format!("market: {e}"))?;
        Ok(shards.into_iter().map(|s| s.as_u64()).collect())
    }

    /// This node's id: as set, or `<hostname>-<port>`.
    pub fn node_id(&self, listen: SocketAddr) -> String {
        self.node_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "node".into());
            format!("{host}-{}-{}", listen.ip(), listen.port())
        })
    }
}

/// WebSocket session settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SocketSettings {
    /// Ping interval in seconds.
    pub heartbeat_s: u64,
    /// Pings without a pong before the connection is closed.
    pub missed_pongs: u32,
    /// Frames queued for one connection before it counts as too slow and is closed.
    pub outbound_queue: usize,
    /// How long one write may block before the connection is closed.
    pub write_timeout_ms: u64,
    /// Largest frame accepted, in bytes.
    pub max_frame_bytes: usize,
    /// Location frames per second per connection (sustained).
    pub location_per_s: u32,
    /// Location frames allowed in a burst.
    pub location_burst: u32,
    /// Every other frame (and anything that is not a frame) per second per connection.
    pub frames_per_s: u32,
    /// Other frames allowed in a burst.
    pub frames_burst: u32,
    /// Bytes of read buffer per connection.
    pub read_buffer_bytes: usize,
    /// Kernel send buffer per connection in bytes (0: the OS default).
    pub send_buffer_bytes: usize,
}

/// Dispatch settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DispatchSettings {
    /// H3 resolution of shard cells.
    pub shard_resolution: u8,
    /// Offer window.
    pub offer_window_ms: u64,
    /// Offer window per task type name.
    pub offer_window_by_task_ms: BTreeMap<String, u64>,
    /// Search radii in metres, smallest first.
    pub radius_steps_m: Vec<f64>,
    /// How long a request looks for an associate.
    pub request_timeout_ms: u64,
    /// Pause before searching again when nobody is in reach.
    pub retry_interval_ms: u64,
    /// Candidates per search.
    pub candidates_per_search: usize,
    /// A shard supervisor with nobody available and no request stops after this long.
    pub shard_idle_ms: u64,
    /// An away associate's actor (no offer, no order) stops after this long.
    pub associate_idle_ms: u64,
    /// How long reported moves gather before a shard applies them (a search applies
    /// them at once); 0 applies them on every wake-up.
    pub index_batch_ms: u64,
}

/// Order settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrderSettings {
    /// Wrong PINs before starting is locked.
    pub pin_attempts: u32,
    /// Lock after too many wrong PINs.
    pub pin_lock_ms: u64,
    /// At most one peer-location frame per party per this interval.
    pub tracking_interval_ms: u64,
    /// Ended orders move to the archive after this many days.
    pub archive_after_days: u32,
    /// How long an order may stay in each state before it counts as stalled.
    pub stall_after_ms: StallSettings,
}

/// Milliseconds an order may stay in each state before it counts as stalled (recorded,
/// counted; before work starts with the associate away it is cancelled, once billed the
/// associate is freed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StallSettings {
    /// Allotted.
    pub allotted: u64,
    /// En route.
    pub en_route: u64,
    /// Arrived.
    pub arrived: u64,
    /// Started.
    pub started: u64,
    /// Completed, before billing.
    pub completed: u64,
    /// Billed, before payment.
    pub billed: u64,
    /// Paid, before closing.
    pub paid: u64,
    /// Cancelled with its fee unpaid.
    pub fee_owed: u64,
}

impl Default for StallSettings {
    fn default() -> Self {
        let d = actors::orders::stall::StallTimes::default();
        let ms = |x: Duration| x.as_millis() as u64;
        Self {
            allotted: ms(d.allotted),
            en_route: ms(d.en_route),
            arrived: ms(d.arrived),
            started: ms(d.started),
            completed: ms(d.completed),
            billed: ms(d.billed),
            paid: ms(d.paid),
            fee_owed: ms(d.fee_owed),
        }
    }
}

impl StallSettings {
    /// The stall times as the actors take them.
    pub fn times(&self) -> actors::orders::stall::StallTimes {
        let d = Duration::from_millis;
        actors::orders::stall::StallTimes {
            allotted: d(self.allotted),
            en_route: d(self.en_route),
            arrived: d(self.arrived),
            started: d(self.started),
            completed: d(self.completed),
            billed: d(self.billed),
            paid: d(self.paid),
            fee_owed: d(self.fee_owed),
        }
    }
}

/// Payment settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PaymentSettings {
    /// Wait this long for the gateway before calling a payment pending.
    pub gateway_timeout_ms: u64,
    /// Look up pending payments this often.
    pub reconcile_every_ms: u64,
    /// Sandbox gateway round trip.
    pub sandbox_latency_ms: u64,
}

/// Storage settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSettings {
    /// Page cache in MiB.
    pub cache_mib: u64,
    /// Microseconds the group committer waits for more writers before flushing.
    pub group_commit_wait_us: u64,
    /// Writes that may wait for the group committer before writers wait for room.
    pub commit_queue: usize,
    /// PostgreSQL: committer connections (orders are spread over them by id).
    pub pg_writers: usize,
    /// PostgreSQL: read-only connections.
    pub pg_readers: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            database: None,
            admin_key: None,
            token_secret: None,
            feedback_api_key: None,
            workers: 0,
            tasks: vec!["companion".into(), "helper".into(), "errand".into()],
            socket: SocketSettings::default(),
            dispatch: DispatchSettings::default(),
            orders: OrderSettings::default(),
            payments: PaymentSettings::default(),
            storage: StorageSettings::default(),
            pricing: actors::orders::pricing::sample_settings(),
            cluster: None,
            ops: OpsSettings::default(),
        }
    }
}

impl Default for SocketSettings {
    fn default() -> Self {
        Self {
            heartbeat_s: 20,
            missed_pongs: 3,
            outbound_queue: 256,
            write_timeout_ms: 10_000,
            max_frame_bytes: 16 * 1024,
            location_per_s: 5,
            location_burst: 20,
            frames_per_s: 20,
            frames_burst: 40,
            read_buffer_bytes: 1024,
            send_buffer_bytes: 0,
        }
    }
}

impl Default for DispatchSettings {
    fn default() -> Self {
        let d = actors::DispatchConfig::default();
        Self {
            shard_resolution: d.shard_resolution,
            offer_window_ms: d.offer_window.as_millis() as u64,
            offer_window_by_task_ms: BTreeMap::new(),
            radius_steps_m: d.radius_steps_m,
            request_timeout_ms: d.request_timeout.as_millis() as u64,
            retry_interval_ms: d.retry_interval.as_millis() as u64,
            candidates_per_search: d.candidates_per_search,
            shard_idle_ms: d.shard_idle.as_millis() as u64,
            associate_idle_ms: d.associate_idle.as_millis() as u64,
            index_batch_ms: d.index_batch.as_millis() as u64,
        }
    }
}

impl Default for OrderSettings {
    fn default() -> Self {
        let d = actors::OrderConfig::default();
        Self {
            pin_attempts: d.pin_attempts,
            pin_lock_ms: d.pin_lock.as_millis() as u64,
            tracking_interval_ms: d.tracking_interval.as_millis() as u64,
            archive_after_days: 30,
            stall_after_ms: StallSettings::default(),
        }
    }
}

impl Default for PaymentSettings {
    fn default() -> Self {
        let d = actors::orders::payment::PaymentConfig::default();
        Self {
            gateway_timeout_ms: d.gateway_timeout.as_millis() as u64,
            reconcile_every_ms: d.reconcile_every.as_millis() as u64,
            sandbox_latency_ms: 20,
        }
    }
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self {
            cache_mib: 256,
            group_commit_wait_us: 0,
            commit_queue: storage::DEFAULT_QUEUE_CAPACITY,
            pg_writers: storage::pg::DEFAULT_WRITERS,
            pg_readers: storage::pg::DEFAULT_READERS,
        }
    }
}

/// Settings given on the command line or in the environment; they win over the file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// `--listen` / `SPEEDY_LISTEN`.
    pub listen: Option<SocketAddr>,
    /// `--data-dir` / `SPEEDY_DATA_DIR`.
    pub data_dir: Option<PathBuf>,
    /// `--database` / `SPEEDY_DATABASE_URL`.
    pub database: Option<String>,
    /// `--admin-key` / `SPEEDY_ADMIN_KEY`.
    pub admin_key: Option<String>,
    /// `--token-secret` / `SPEEDY_TOKEN_SECRET`.
    pub token_secret: Option<String>,
    /// `--feedback-api-key` / `SPEEDY_FEEDBACK_API_KEY`.
    pub feedback_api_key: Option<String>,
    /// `--workers` / `SPEEDY_WORKERS`.
    pub workers: Option<usize>,
    /// `--offer-window-ms` / `SPEEDY_OFFER_WINDOW_MS`.
    pub offer_window_ms: Option<u64>,
    /// `--request-timeout-ms` / `SPEEDY_REQUEST_TIMEOUT_MS`.
    pub request_timeout_ms: Option<u64>,
    /// `--cluster` / `SPEEDY_CLUSTER`: the NATS URL that turns on cluster mode.
    pub cluster: Option<String>,
    /// `--node-id` / `SPEEDY_NODE_ID`.
    pub node_id: Option<String>,
}

impl Config {
    /// Defaults, overlaid with `file` (if given, or `./speedy.toml` if present), then
    /// with `overrides`; validated.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let default_file = Path::new("speedy.toml");
        let path = match file {
            Some(p) => Some(p),
            None if default_file.exists() => Some(default_file),
            None => None,
        };
        let mut config = match path {
            Some(p) => Self::from_file(p)?,
            None => Self::default(),
        };
        let o = overrides.clone();
        config.listen = o.listen.unwrap_or(config.listen);
        config.data_dir = o.data_dir.unwrap_or(config.data_dir);
        config.database = o.database.or(config.database);
        config.admin_key = o.admin_key.or(config.admin_key);
        config.token_secret = o.token_secret.or(config.token_secret);
        config.feedback_api_key = o.feedback_api_key.or(config.feedback_api_key);
        config.workers = o.workers.unwrap_or(config.workers);
        config.dispatch.offer_window_ms =
            o.offer_window_ms.unwrap_or(config.dispatch.offer_window_ms);
        config.dispatch.request_timeout_ms = o
            .request_timeout_ms
            .unwrap_or(config.dispatch.request_timeout_ms);
        if let Some(nats) = o.cluster {
            config
                .cluster
                .get_or_insert_with(ClusterSettings::default)
                .nats = nats;
        }
        if let Some(id) = o.node_id {
            config
                .cluster
                .get_or_insert_with(ClusterSettings::default)
                .node_id = Some(id);
        }
        config.validate()?;
        Ok(config)
    }

    /// Settings from a TOML file over the defaults.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// Checks every setting, naming the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.database
            && !storage::pg::is_postgres_url(url)
        {
            return Err(invalid(
                "database",
                "must be a postgres:// or postgresql:// URL (leave it unset for the embedded store)",
            ));
        }
        if let Some(c) = &self.cluster {
            if self.database.is_none() {
                return Err(invalid(
                    "cluster",
                    "cluster mode keeps the records in PostgreSQL: set database as well",
                ));
            }
            if !c.nats.starts_with("nats://") {
                return Err(invalid("cluster.nats", "must be a nats:// URL"));
            }
            if c.lease_ms < 300 || c.call_timeout_ms == 0 {
                return Err(invalid(
                    "cluster.lease_ms",
                    "the lease must be at least 300 ms and the call timeout at least 1 ms",
                ));
            }
            if !(c.market.radius_km > 0.0 && c.market.radius_km <= 500.0) {
                return Err(invalid(
                    "cluster.market.radius_km",
                    "must be above 0 and at most 500",
                ));
            }
            c.market_cells(self.dispatch.shard_resolution)
                .map_err(|m| invalid("cluster.market", m))?;
        }
        if self.ops.session_ttl_s == 0 {
            return Err(invalid("ops.session_ttl_s", "must be at least 1"));
        }
        let s = &self.socket;
        if s.heartbeat_s == 0 {
            return Err(invalid("socket.heartbeat_s", "must be at least 1"));
        }
        if s.missed_pongs == 0 {
            return Err(invalid("socket.missed_pongs", "must be at least 1"));
        }
        if s.outbound_queue < 8 {
            return Err(invalid("socket.outbound_queue", "must be at least 8"));
        }
        if !(1_024..=1_048_576).contains(&s.max_frame_bytes) {
            return Err(invalid("socket.max_frame_bytes", "must be 1 KiB to 1 MiB"));
        }
        if s.location_per_s == 0 || s.location_burst == 0 {
            return Err(invalid(
                "socket.location_per_s",
                "rate and burst must be at least 1",
            ));
        }
        if s.frames_per_s == 0 || s.frames_burst == 0 {
            return Err(invalid(
                "socket.frames_per_s",
                "rate and burst must be at least 1",
            ));
        }
        if !(256..=1_048_576).contains(&s.read_buffer_bytes) {
            return Err(invalid(
                "socket.read_buffer_bytes",
                "must be 256 B to 1 MiB",
            ));
        }
        if self.tasks.is_empty() {
            return Err(invalid("tasks", "at least one task type"));
        }
        wire::TaskCatalog::new(self.tasks.iter().cloned())
            .map_err(|e| invalid("tasks", e.detail))?;
        for name in self.dispatch.offer_window_by_task_ms.keys() {
            if !self.tasks.contains(name) {
                return Err(invalid(
                    "dispatch.offer_window_by_task_ms",
                    format!("unknown task type {name:?}"),
                ));
            }
        }
        self.dispatch_config().map_err(|m| invalid("dispatch", m))?;
        actors::orders::pricing::validate(&self.pricing)
            .map_err(|e| invalid("pricing", e.to_string()))?;
        for task in &self.tasks {
            if !self.pricing.tasks.iter().any(|t| &t.task == task) {
                return Err(invalid(
                    "pricing.tasks",
                    format!("no prices for task type {task:?}"),
                ));
            }
        }
        if self.orders.pin_attempts == 0 {
            return Err(invalid("orders.pin_attempts", "must be at least 1"));
        }
        self.orders
            .stall_after_ms
            .times()
            .validate()
            .map_err(|m| invalid("orders.stall_after_ms", m))?;
        if self.orders.tracking_interval_ms == 0 {
            return Err(invalid("orders.tracking_interval_ms", "must be at least 1"));
        }
        if self.storage.commit_queue == 0 {
            return Err(invalid("storage.commit_queue", "must be at least 1"));
        }
        if self.payments.gateway_timeout_ms == 0 || self.payments.reconcile_every_ms == 0 {
            return Err(invalid("payments", "timeouts must be at least 1 ms"));
        }
        for (name, key) in [
            ("admin_key", &self.admin_key),
            ("token_secret", &self.token_secret),
            ("feedback_api_key", &self.feedback_api_key),
        ] {
            if let Some(k) = key
                && k.len() < 16
            {
                return Err(ConfigError::Invalid {
                    setting: name,
                    message: "must be at least 16 characters".into(),
                });
            }
        }
        Ok(())
    }

    /// The dispatch settings as the actors take them.
    pub fn dispatch_config(&self) -> Result<actors::DispatchConfig, String> {
        let d = &self.dispatch;
        let catalog = wire::TaskCatalog::new(self.tasks.iter().cloned()).map_err(|e| e.detail)?;
        let mut by_task = std::collections::HashMap::new();
        for (name, ms) in &d.offer_window_by_task_ms {
            let task = catalog
                .get(name)
                .ok_or_else(|| format!("offer_window_by_task_ms: unknown task {name:?}"))?;
            by_task.insert(task, Duration::from_millis(*ms));
        }
        let config = actors::DispatchConfig {
            shard_resolution: d.shard_resolution,
            offer_window: Duration::from_millis(d.offer_window_ms),
            offer_window_by_task: by_task,
            radius_steps_m: d.radius_steps_m.clone(),
            request_timeout: Duration::from_millis(d.request_timeout_ms),
            retry_interval: Duration::from_millis(d.retry_interval_ms),
            candidates_per_search: d.candidates_per_search,
            index_bucket_m: geo::IndexConfig::default().bucket_m,
            shard_idle: Duration::from_millis(d.shard_idle_ms),
            associate_idle: Duration::from_millis(d.associate_idle_ms),
            index_batch: Duration::from_millis(d.index_batch_ms),
        };
        config.validate()?;
        Ok(config)
    }

    /// The order settings as the actors take them.
    pub fn order_config(&self) -> actors::OrderConfig {
        actors::OrderConfig {
            pin_attempts: self.orders.pin_attempts,
            pin_lock: Duration::from_millis(self.orders.pin_lock_ms),
            tracking_interval: Duration::from_millis(self.orders.tracking_interval_ms),
            stall: self.orders.stall_after_ms.times(),
        }
    }

    /// The payment settings as the actors take them.
    pub fn payment_config(&self) -> actors::orders::payment::PaymentConfig {
        actors::orders::payment::PaymentConfig {
            gateway_timeout: Duration::from_millis(self.payments.gateway_timeout_ms),
            reconcile_every: Duration::from_millis(self.payments.reconcile_every_ms),
            ..actors::orders::payment::PaymentConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip_through_toml() {
        let c = Config::default();
        c.validate().unwrap();
        let text = toml::to_string(&c).unwrap();
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn errors_name_the_setting() {
        let bad: Result<Config, _> = toml::from_str("[socket]\nheartbeat_z = 3\n");
        assert!(bad.unwrap_err().to_string().contains("heartbeat_z"));
        let mut c = Config::default();
        c.socket.max_frame_bytes = 10;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("socket.max_frame_bytes")
        );
        let mut c = Config::default();
        c.dispatch.radius_steps_m = vec![5_000.0, 2_000.0];
        assert!(c.validate().unwrap_err().to_string().contains("radius"));
        let mut c = Config::default();
        c.tasks.push("juggling".into());
        assert!(c.validate().unwrap_err().to_string().contains("juggling"));
    }
}
