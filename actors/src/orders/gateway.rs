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

/// The sandbox gateway: deterministic by instrument; its ledger in memory, or in a file
/// that survives restarts.
#[derive(Debug, Clone)]
pub struct SandboxGateway {
    ledger: Arc<Mutex<Ledger>>,
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
            ledger: Arc::new(Mutex::new(Ledger::default())),
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
            ledger: Arc::new(Mutex::new(ledger)),
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
        self.lock().captures.get(key).copied().unwrap_or(0)
    }

    /// Total captures across all keys.
    pub fn total_captures(&self) -> u32 {
        self.lock().captures.values().sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        // A panic while holding the lock cannot leave the ledger half-written: every
        // update appends one line, then inserts once.
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the sandbox already answered for `key`: a charge's status, or a refusal if
    /// the key was voided.
    fn known(&self, key: &str) -> Option<ChargeStatus> {
        match self.lock().entries.get(key)? {
            Entry::Charged(status) => Some(status.clone()),
            Entry::Voided => Some(voided()),
        }
    }

    /// Captures `key` unless it already has an outcome (then that outcome). The ledger
    /// is on disk before anyone hears of the capture.
    fn capture(&self, key: &str) -> Result<ChargeStatus, GatewayError> {
        let mut ledger = self.lock();
        match ledger.entries.get(key) {
            Some(Entry::Charged(status)) => return Ok(status.clone()),
            Some(Entry::Voided) => return Ok(voided()),
            None => {}
        }
        // Unique for good: a time-ordered id, never reused across restarts.
        let status = ChargeStatus::Captured {
            transaction_ref: format!("sbx_ch_{}", uuid::Uuid::now_v7().simple()),
        };
        ledger.record(key, Entry::Charged(status.clone()))?;
        Ok(status)
    }

    /// Declines `key` unless it already has an outcome.
    fn decline(&self, key: &str, reason: &str) -> Result<ChargeStatus, GatewayError> {
        let mut ledger = self.lock();
        match ledger.entries.get(key) {
            Some(Entry::Charged(status)) => return Ok(status.clone()),
            Some(Entry::Voided) => return Ok(voided()),
            None => {}
        }
        let status = ChargeStatus::Declined {
            reason: reason.into(),
        };
        ledger.record(key, Entry::Charged(status.clone()))?;
        Ok(status)
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
            if let Some(done) = this.known(&request.key) {
                tokio::time::sleep(this.latency).await;
                return Ok(done);
            }
            match this.decide(&request) {
                Decision::Capture => {
                    tokio::time::sleep(this.latency).await;
                    this.capture(&request.key)
                }
                Decision::Decline(reason) => {
                    tokio::time::sleep(this.latency).await;
                    this.decline(&request.key, reason)
                }
                Decision::Late { stall } => {
                    // The charge goes through; the caller hears of it only later.
                    this.capture(&request.key)?;
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
            Ok(match this.lock().entries.get(&key) {
                Some(Entry::Charged(status)) => Some(status.clone()),
                Some(Entry::Voided) | None => None,
            })
        })
    }

    fn void(&self, key: String) -> BoxFuture<'static, Result<Option<ChargeStatus>, GatewayError>> {
        let this = self.clone();
        Box::pin(async move {
            tokio::time::sleep(this.latency).await;
            let mut ledger = this.lock();
            match ledger.entries.get(&key) {
                Some(Entry::Charged(status)) => Ok(Some(status.clone())),
                Some(Entry::Voided) => Ok(None),
                None => {
                    ledger.record(&key, Entry::Voided)?;
                    Ok(None)
                }
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
