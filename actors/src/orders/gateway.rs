//! The payment gateway seam: a trait every adapter implements, and the sandbox adapter,
//! which behaves like a card processor (authorise then capture, idempotent by key,
//! declines for documented test instruments, timeouts and late confirmations) and keeps
//! its ledger on disk, as a real processor's survives the engine's restarts.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use thiserror::Error;
use wire::model::{Minor, PaymentMethod};

/// A charge the gateway is asked to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRequest {
    /// The gateway-side idempotency key (our payment id): the same key is one charge.
    pub key: String,
    /// Card, UPI or wallet.
    pub method: PaymentMethod,
    /// Card number or token, UPI address, wallet id.
    pub instrument: String,
    /// Amount in minor units.
    pub amount_minor: Minor,
    /// ISO 4217 currency.
    pub currency: String,
}

/// Where a charge stands at the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeStatus {
    /// Authorised and captured: the money moved.
    Captured {
        /// The gateway's reference.
        transaction_ref: String,
    },
    /// Refused.
    Declined {
        /// The gateway's reason.
        reason: String,
    },
    /// Accepted for processing; the outcome comes later (ask with `lookup`).
    Processing,
}

/// A gateway failure (the outcome is unknown, not a decline).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GatewayError {
    /// No answer in time.
    #[error("gateway timed out")]
    Timeout,
    /// The gateway could not be reached or failed.
    #[error("gateway unavailable: {0}")]
    Unavailable(String),
}

/// A payment gateway adapter.
pub trait PaymentGateway: Send + Sync + 'static {
    /// Authorises and captures `request`; idempotent by `request.key`.
    fn charge(
        &self,
        request: ChargeRequest,
    ) -> BoxFuture<'static, Result<ChargeStatus, GatewayError>>;
    /// The current status of the charge made with `key`; none if the gateway never saw it.
    fn lookup(&self, key: String)
    -> BoxFuture<'static, Result<Option<ChargeStatus>, GatewayError>>;
    /// Makes sure no charge with `key` ever happens: the charge's status if the gateway
    /// already has one, else none, and from then on a charge with `key` is refused.
    /// What lets an unknown outcome be settled as failed without risking a late capture.
    fn void(&self, key: String) -> BoxFuture<'static, Result<Option<ChargeStatus>, GatewayError>>;
}

/// Test instruments the sandbox knows (anything else succeeds).
pub mod test_instruments {
    /// Always declined: "card_declined".
    pub const CARD_DECLINED: &str = "4000000000000002";
    /// Declined: "insufficient_funds".
    pub const CARD_INSUFFICIENT_FUNDS: &str = "4000000000009995";
    /// Authorises, then capture fails: "capture_failed".
    pub const CARD_CAPTURE_FAILS: &str = "4000000000000119";
    /// Never answers in time; the charge is captured late (visible through lookup).
    pub const CARD_LATE_CONFIRMATION: &str = "4000000000000341";
    /// Never answers in time and never goes through.
    pub const CARD_TIMEOUT: &str = "4000000000000408";
    /// UPI address that is declined.
    pub const UPI_DECLINED: &str = "fail@upi";
    /// UPI address confirmed late (processing, then captured).
    pub const UPI_LATE: &str = "slow@upi";
    /// Wallet without balance.
    pub const WALLET_EMPTY: &str = "wallet-empty";
}

/// What the sandbox knows of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// Charged (captured or declined).
    Charged(ChargeStatus),
    /// Voided before any charge: a charge with this key is refused.
    Voided,
}

#[derive(Debug, Default)]
struct Ledger {
    entries: HashMap<String, Entry>,
    /// How many times each key was actually captured (must stay at most 1).
    captures: HashMap<String, u32>,
    /// The ledger file, appended and synced before each answer; none in memory only.
    file: Option<std::fs::File>,
}

impl Ledger {
    /// Records `entry` for `key`: on disk (synced) first, then in memory.
    fn record(&mut self, key: &str, entry: Entry) -> Result<(), GatewayError> {
        if let Some(file) = &mut self.file {
            let line = match &entry {
                Entry::Charged(ChargeStatus::Captured { transaction_ref }) => {
                    format!("captured\t{key}\t{transaction_ref}\n")
                }
                Entry::Charged(ChargeStatus::Declined { reason }) => {
                    format!("declined\t{key}\t{reason}\n")
                }
                Entry::Charged(ChargeStatus::Processing) => return Ok(()),
                Entry::Voided => format!("voided\t{key}\n"),
            };
            file.write_all(line.as_bytes())
                .and_then(|()| file.sync_data())
                .map_err(|e| GatewayError::Unavailable(format!("sandbox ledger: {e}")))?;
        }
        if matches!(entry, Entry::Charged(ChargeStatus::Captured { .. })) {
            *self.captures.entry(key.to_owned()).or_default() += 1;
        }
        self.entries.insert(key.to_owned(), entry);
        Ok(())
    }
}

/// One line of a sandbox ledger file, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerLine {
    /// A capture: the key and its transaction reference.
    Captured {
        /// The charge's key (our payment id).
        key: String,
        /// The reference the sandbox gave.
        transaction_ref: String,
    },
    /// A decline, with its reason.
    Declined {
        /// The charge's key.
        key: String,
        /// Why.
        reason: String,
    },
    /// A key voided before any charge.
    Voided {
        /// The key.
        key: String,
    },
}

/// Reads a sandbox ledger file (for audits and tests that count captures from outside
/// the engine). A torn last line (a crash mid-append) was never answered and is skipped.
pub fn read_ledger(path: &Path) -> std::io::Result<Vec<LedgerLine>> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for line in std::io::BufReader::new(file).split(b'\n') {
        let line = line?;
        let text = String::from_utf8_lossy(&line);
        let fields: Vec<&str> = text.split('\t').collect();
        let parsed = match fields.as_slice() {
            ["captured", key, r] => LedgerLine::Captured {
                key: (*key).to_owned(),
                transaction_ref: (*r).to_owned(),
            },
            ["declined", key, reason] => LedgerLine::Declined {
                key: (*key).to_owned(),
                reason: (*reason).to_owned(),
            },
            ["voided", key] => LedgerLine::Voided {
                key: (*key).to_owned(),
            },
            _ => continue,
        };
        out.push(parsed);
    }
    Ok(out)
}

/// Where the sandbox keeps its ledger.
#[derive(Debug, Clone)]
enum Book {
    /// In this process: in memory, or in a file that survives restarts.
    Local(Arc<Mutex<Ledger>>),
    /// In the store every node of a cluster shares (PostgreSQL), as a real gateway's
    /// records are one service all nodes call: a capture one node made is what any
    /// other node's lookup finds.
    Shared(storage::Store),
}

/// The sandbox gateway: deterministic by instrument; its ledger in memory, in a file
/// that survives restarts, or shared by every node in the cluster's database.
#[derive(Debug, Clone)]
pub struct SandboxGateway {
    book: Book,
    /// How long a "timeout" instrument makes the caller wait (longer than its timeout).
    stall: Duration,
    /// Round trip of a normal charge.
    latency: Duration,
}

impl Default for SandboxGateway {
    fn default() -> Self {
        Self::new(Duration::from_millis(5), Duration::from_secs(60))
    }
}

impl SandboxGateway {
    /// A sandbox with its ledger in memory, answering after `latency`, stalling `stall`
    /// on timeout instruments.
    pub fn new(latency: Duration, stall: Duration) -> Self {
        Self {
            book: Book::Local(Arc::new(Mutex::new(Ledger::default()))),
            stall,
            latency,
        }
    }

    /// A sandbox whose ledger is the shared one in `store` (cluster mode, PostgreSQL).
    pub fn shared(store: storage::Store, latency: Duration, stall: Duration) -> Self {
        Self {
            book: Book::Shared(store),
            stall,
            latency,
        }
    }

    /// A sandbox whose ledger lives in the file `path` (created if absent): what it
    /// captured, declined or voided before a restart stays so after it.
    pub fn with_ledger(path: &Path, latency: Duration, stall: Duration) -> std::io::Result<Self> {
        let mut ledger = Ledger::default();
        for line in read_ledger(path)? {
            let (key, entry) = match line {
                LedgerLine::Captured {
                    key,
                    transaction_ref,
                } => {
                    *ledger.captures.entry(key.clone()).or_default() += 1;
                    (
                        key,
                        Entry::Charged(ChargeStatus::Captured { transaction_ref }),
                    )
                }
                LedgerLine::Declined { key, reason } => {
                    (key, Entry::Charged(ChargeStatus::Declined { reason }))
                }
                LedgerLine::Voided { key } => (key, Entry::Voided),
            };
            ledger.entries.insert(key, entry);
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)?;
        // A torn last line would glue onto the next append: start on a fresh line.
        let len = file.metadata()?.len();
        if len > 0 {
            use std::io::{Read, Seek, SeekFrom};
            let mut last = [0u8; 1];
            file.seek(SeekFrom::Start(len - 1))?;
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                file.write_all(b"\n")?;
                file.sync_data()?;
            }
        }
        ledger.file = Some(file);
        Ok(Self {
            book: Book::Local(Arc::new(Mutex::new(ledger))),
            stall,
            latency,
        })
    }

    /// The ledger file of a data directory.
    pub fn ledger_path(data_dir: &Path) -> PathBuf {
        data_dir.join("sandbox-gateway.ledger")
    }

    /// How many times the charge with `key` was captured (0 or 1 if idempotency holds).
    pub fn captures(&self, key: &str) -> u32 {
        match &self.book {
            Book::Local(ledger) => lock(ledger).captures.get(key).copied().unwrap_or(0),
            Book::Shared(store) => shared_captures(store)
                .into_iter()
                .filter(|k| k == key)
                .count() as u32,
        }
    }

    /// Total captures across all keys.
    pub fn total_captures(&self) -> u32 {
        match &self.book {
            Book::Local(ledger) => lock(ledger).captures.values().sum(),
            Book::Shared(store) => shared_captures(store).len() as u32,
        }
    }

    /// What the sandbox already answered for `key`: a charge's status, or a refusal if
    /// the key was voided.
    async fn known(&self, key: &str) -> Result<Option<Entry>, GatewayError> {
        match &self.book {
            Book::Local(ledger) => Ok(lock(ledger).entries.get(key).cloned()),
            Book::Shared(store) => Ok(store
                .ledger_outcome_async(key)
                .await
                .map_err(unavailable)?
                .map(Entry::from)),
        }
    }

    /// Records `entry` for `key` unless the key already has an outcome, and answers the
    /// outcome it holds now (durable before anyone hears of it).
    async fn first(&self, key: &str, entry: Entry) -> Result<Entry, GatewayError> {
        match &self.book {
            Book::Local(ledger) => {
                let mut ledger = lock(ledger);
                if let Some(earlier) = ledger.entries.get(key) {
                    return Ok(earlier.clone());
                }
                ledger.record(key, entry.clone())?;
                Ok(entry)
            }
            Book::Shared(store) => {
                let Some(outcome) = entry.outcome() else {
                    return Ok(entry);
                };
                let held = store.ledger_record_async(key, &outcome).await;
                Ok(Entry::from(held.map_err(unavailable)?))
            }
        }
    }

    /// Captures `key` unless it already has an outcome (then that outcome).
    async fn capture(&self, key: &str) -> Result<ChargeStatus, GatewayError> {
        // Unique for good: a time-ordered id, never reused across restarts.
        let status = ChargeStatus::Captured {
            transaction_ref: format!("sbx_ch_{}", uuid::Uuid::now_v7().simple()),
        };
        Ok(self.first(key, Entry::Charged(status)).await?.status())
    }

    /// Declines `key` unless it already has an outcome.
    async fn decline(&self, key: &str, reason: &str) -> Result<ChargeStatus, GatewayError> {
        let status = ChargeStatus::Declined {
            reason: reason.into(),
        };
        Ok(self.first(key, Entry::Charged(status)).await?.status())
    }

    fn decide(&self, request: &ChargeRequest) -> Decision {
        use test_instruments::*;
        match (request.method, request.instrument.as_str()) {
            (_, CARD_DECLINED) => Decision::Decline("card_declined"),
            (_, CARD_INSUFFICIENT_FUNDS) => Decision::Decline("insufficient_funds"),
            (_, CARD_CAPTURE_FAILS) => Decision::Decline("capture_failed"),
            (_, CARD_LATE_CONFIRMATION) => Decision::Late { stall: true },
            (_, CARD_TIMEOUT) => Decision::Stall,
            (PaymentMethod::Upi, UPI_DECLINED) => Decision::Decline("upi_declined"),
            (PaymentMethod::Upi, UPI_LATE) => Decision::Late { stall: false },
            (PaymentMethod::Wallet, WALLET_EMPTY) => Decision::Decline("insufficient_balance"),
            _ if request.amount_minor <= 0 => Decision::Decline("invalid_amount"),
            _ => Decision::Capture,
        }
    }
}

/// The local ledger, locked. A panic while holding the lock cannot leave it
/// half-written: every update appends one line, then inserts once.
fn lock(ledger: &Mutex<Ledger>) -> std::sync::MutexGuard<'_, Ledger> {
    ledger.lock().unwrap_or_else(|e| e.into_inner())
}

/// The keys captured in a shared ledger, one per capture (audits; blocking).
fn shared_captures(store: &storage::Store) -> Vec<String> {
    match store.ledger() {
        Ok(lines) => lines
            .into_iter()
            .filter(|(_, o)| matches!(o, storage::LedgerOutcome::Captured { .. }))
            .map(|(key, _)| key)
            .collect(),
        Err(e) => {
            tracing::error!(error = %e, "could not read the shared gateway ledger");
            Vec::new()
        }
    }
}

fn unavailable(e: storage::StorageError) -> GatewayError {
    GatewayError::Unavailable(format!("sandbox ledger: {e}"))
}

impl Entry {
    /// What a charge with this key is answered.
    fn status(&self) -> ChargeStatus {
        match self {
            Entry::Charged(status) => status.clone(),
            Entry::Voided => voided(),
        }
    }

    /// The entry as a ledger outcome; none for one that is never recorded (processing).
    fn outcome(&self) -> Option<storage::LedgerOutcome> {
        match self {
            Entry::Charged(ChargeStatus::Captured { transaction_ref }) => {
                Some(storage::LedgerOutcome::Captured {
                    transaction_ref: transaction_ref.clone(),
                })
            }
            Entry::Charged(ChargeStatus::Declined { reason }) => {
                Some(storage::LedgerOutcome::Declined {
                    reason: reason.clone(),
                })
            }
            Entry::Charged(ChargeStatus::Processing) => None,
            Entry::Voided => Some(storage::LedgerOutcome::Voided),
        }
    }
}

impl From<storage::LedgerOutcome> for Entry {
    fn from(o: storage::LedgerOutcome) -> Self {
        match o {
            storage::LedgerOutcome::Captured { transaction_ref } => {
                Entry::Charged(ChargeStatus::Captured { transaction_ref })
            }
            storage::LedgerOutcome::Declined { reason } => {
                Entry::Charged(ChargeStatus::Declined { reason })
            }
            storage::LedgerOutcome::Voided => Entry::Voided,
        }
    }
}

/// How the sandbox refuses a charge whose key was voided.
fn voided() -> ChargeStatus {
    ChargeStatus::Declined {
        reason: "voided".into(),
    }
}

enum Decision {
    Capture,
    Decline(&'static str),
    /// Captured, but the answer comes late: after a stall, or as "processing".
    Late {
        stall: bool,
    },
    Stall,
}

impl PaymentGateway for SandboxGateway {
    fn charge(
        &self,
        request: ChargeRequest,
    ) -> BoxFuture<'static, Result<ChargeStatus, GatewayError>> {
        let this = self.clone();
        Box::pin(async move {
            if let Some(done) = this.known(&request.key).await? {
                tokio::time::sleep(this.latency).await;
                return Ok(done.status());
            }
            match this.decide(&request) {
                Decision::Capture => {
                    tokio::time::sleep(this.latency).await;
                    this.capture(&request.key).await
                }
                Decision::Decline(reason) => {
                    tokio::time::sleep(this.latency).await;
                    this.decline(&request.key, reason).await
                }
                Decision::Late { stall } => {
                    // The charge goes through; the caller hears of it only later.
                    this.capture(&request.key).await?;
                    if stall {
                        tokio::time::sleep(this.stall).await;
                        Err(GatewayError::Timeout)
                    } else {
                        tokio::time::sleep(this.latency).await;
                        Ok(ChargeStatus::Processing)
                    }
                }
                Decision::Stall => {
                    tokio::time::sleep(this.stall).await;
                    Err(GatewayError::Timeout)
                }
            }
        })
    }

    fn lookup(
        &self,
        key: String,
    ) -> BoxFuture<'static, Result<Option<ChargeStatus>, GatewayError>> {
        let this = self.clone();
        Box::pin(async move {
            tokio::time::sleep(this.latency).await;
            Ok(match this.known(&key).await? {
                Some(Entry::Charged(status)) => Some(status),
                Some(Entry::Voided) | None => None,
            })
        })
    }

    fn void(&self, key: String) -> BoxFuture<'static, Result<Option<ChargeStatus>, GatewayError>> {
        let this = self.clone();
        Box::pin(async move {
            tokio::time::sleep(this.latency).await;
            match this.first(&key, Entry::Voided).await? {
                Entry::Charged(status) => Ok(Some(status)),
                Entry::Voided => Ok(None),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(key: &str, instrument: &str) -> ChargeRequest {
        ChargeRequest {
            key: key.into(),
            method: PaymentMethod::Card,
            instrument: instrument.into(),
            amount_minor: 1_000,
            currency: "INR".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_sandbox_behaves_like_a_processor() {
        let g = SandboxGateway::default();
        let ok = g.charge(req("k1", "4242424242424242")).await.unwrap();
        assert!(matches!(ok, ChargeStatus::Captured { .. }));
        assert_eq!(
            g.charge(req("k1", "4242424242424242")).await.unwrap(),
            ok,
            "same key, same answer"
        );
        assert_eq!(g.captures("k1"), 1);
        assert_eq!(
            g.charge(req("k2", test_instruments::CARD_DECLINED))
                .await
                .unwrap(),
            ChargeStatus::Declined {
                reason: "card_declined".into()
            }
        );
        assert_eq!(
            g.charge(req("k3", test_instruments::CARD_TIMEOUT)).await,
            Err(GatewayError::Timeout)
        );
        assert_eq!(g.lookup("k3".into()).await.unwrap(), None);
        assert_eq!(
            g.charge(req("k4", test_instruments::CARD_LATE_CONFIRMATION))
                .await,
            Err(GatewayError::Timeout)
        );
        assert!(matches!(
            g.lookup("k4".into()).await.unwrap(),
            Some(ChargeStatus::Captured { .. })
        ));
        assert_eq!(g.total_captures(), 2);
        // A voided key never charges; voiding a captured key reports the capture.
        assert_eq!(g.void("k5".into()).await.unwrap(), None);
        assert_eq!(
            g.charge(req("k5", "4242424242424242")).await.unwrap(),
            voided()
        );
        assert!(matches!(
            g.void("k1".into()).await.unwrap(),
            Some(ChargeStatus::Captured { .. })
        ));
        assert_eq!(g.total_captures(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_ledger_file_outlives_the_sandbox_and_references_stay_unique() {
        let dir = tempfile::tempdir().unwrap();
        let path = SandboxGateway::ledger_path(dir.path());
        let g = SandboxGateway::with_ledger(&path, Duration::ZERO, Duration::from_secs(1)).unwrap();
        let first = g.charge(req("k1", "4242424242424242")).await.unwrap();
        // Captured, then the caller never heard (a crash between capture and answer).
        assert_eq!(
            g.charge(req("k2", test_instruments::CARD_LATE_CONFIRMATION))
                .await,
            Err(GatewayError::Timeout)
        );
        assert_eq!(g.void("k3".into()).await.unwrap(), None);
        drop(g);
        // A torn line from a crash mid-append is skipped, and the next append is clean.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"captured\tk9")
            .unwrap();
        let g = SandboxGateway::with_ledger(&path, Duration::ZERO, Duration::from_secs(1)).unwrap();
        assert_eq!(g.lookup("k1".into()).await.unwrap(), Some(first.clone()));
        assert!(matches!(
            g.lookup("k2".into()).await.unwrap(),
            Some(ChargeStatus::Captured { .. })
        ));
        assert_eq!(g.lookup("k9".into()).await.unwrap(), None);
        assert_eq!(
            g.charge(req("k3", "4242424242424242")).await.unwrap(),
            voided(),
            "voided for good"
        );
        let again = g.charge(req("k4", "4242424242424242")).await.unwrap();
        assert_ne!(again, first, "a new reference after the restart");
        let lines = read_ledger(&path).unwrap();
        let captured: Vec<_> = lines
            .iter()
            .filter_map(|l| match l {
                LedgerLine::Captured { key, .. } => Some(key.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(captured, ["k1", "k2", "k4"]);
    }
}
