//! Dispatch settings: shard resolution, offer windows, search radii, deadlines.

use std::collections::HashMap;
use std::time::Duration;

use geo::TaskType;

/// The default offer window: how long one associate has to answer.
pub const DEFAULT_OFFER_WINDOW: Duration = Duration::from_secs(45);
/// The default request deadline: when the user is told nobody is available.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// The default search radii, widened in turn when candidates run out.
pub const DEFAULT_RADIUS_STEPS_M: [f64; 3] = [2_000.0, 5_000.0, 10_000.0];

/// How long an unused shard supervisor or an away associate's actor lives on.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(10 * 60);

/// How long moves gather on a shard's lane: a search applies them at once, so this only
/// spares the supervisor a wake-up per report.
pub const DEFAULT_INDEX_BATCH: Duration = Duration::from_millis(20);

/// How dispatch behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct DispatchConfig {
    /// H3 resolution of shard cells.
    pub shard_resolution: u8,
    /// Offer window for task types without their own.
    pub offer_window: Duration,
    /// Offer windows by task type (the design allows 45–60 s).
    pub offer_window_by_task: HashMap<TaskType, Duration>,
    /// Search radii in metres, smallest first.
    pub radius_steps_m: Vec<f64>,
    /// How long a request may look for an associate.
    pub request_timeout: Duration,
    /// How long to wait before searching again once every radius came up empty.
    pub retry_interval: Duration,
    /// Candidates fetched per search.
    pub candidates_per_search: usize,
    /// Edge of an availability-index bucket in metres.
    pub index_bucket_m: f64,
    /// A shard supervisor with nobody in its index and no request stops after this long
    /// without a message.
    pub shard_idle: Duration,
    /// An associate's actor stops after this long without a message once their app is
    /// away and they hold no offer or order (their presence is stored).
    pub associate_idle: Duration,
    /// How long reported moves gather on a shard's lane before the supervisor applies
    /// them (searches apply them at once); zero applies each wake-up's batch at once.
    pub index_batch: Duration,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            shard_resolution: 6,
            offer_window: DEFAULT_OFFER_WINDOW,
            offer_window_by_task: HashMap::new(),
            radius_steps_m: DEFAULT_RADIUS_STEPS_M.to_vec(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            retry_interval: Duration::from_secs(5),
            candidates_per_search: 10,
            index_bucket_m: 1_000.0,
            shard_idle: DEFAULT_IDLE,
            associate_idle: DEFAULT_IDLE,
            index_batch: DEFAULT_INDEX_BATCH,
        }
    }
}

impl DispatchConfig {
    /// The offer window for `task`.
    pub fn window_for(&self, task: TaskType) -> Duration {
        self.offer_window_by_task
            .get(&task)
            .copied()
            .unwrap_or(self.offer_window)
    }
}

impl DispatchConfig {
    /// Checks the settings, naming the first bad one.
    pub fn validate(&self) -> Result<(), String> {
        geo::ShardMap::new(self.shard_resolution).map_err(|e| format!("shard_resolution: {e}"))?;
        if self.radius_steps_m.is_empty() {
            return Err("radius_steps_m: at least one radius is needed".into());
        }
        if self
            .radius_steps_m
            .iter()
            .any(|r| !(r.is_finite() && *r > 0.0))
        {
            return Err("radius_steps_m: every radius must be a positive number of metres".into());
        }
        if self.radius_steps_m.windows(2).any(|w| w[0] >= w[1]) {
            return Err("radius_steps_m: radii must grow".into());
        }
        if self.offer_window.is_zero() || self.offer_window_by_task.values().any(|w| w.is_zero()) {
            return Err("offer_window: must be above zero".into());
        }
        if self.request_timeout.is_zero() {
            return Err("request_timeout: must be above zero".into());
        }
        if self.retry_interval.is_zero() {
            return Err("retry_interval: must be above zero".into());
        }
        if self.shard_idle.is_zero() || self.associate_idle.is_zero() {
            return Err("shard_idle and associate_idle: must be above zero".into());
        }
        if self.candidates_per_search == 0 {
            return Err("candidates_per_search: must be at least 1".into());
        }
        geo::AvailabilityIndex::<u64>::new(geo::IndexConfig {
            bucket_m: self.index_bucket_m,
        })
        .map_err(|e| format!("index_bucket_m: {e}"))?;
        Ok(())
    }
}
