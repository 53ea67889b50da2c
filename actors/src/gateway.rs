//! The payment gateway seam: a trait every adapter implements, and the sandbox adapter,
//! which behaves like a card processor (authorise then capture, idempotent by key,
//! declines for documented test instruments, timeouts and late confirmations).

use std::collections::HashMap;
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

#[derive(Debug, Default)]
struct Ledger {
    charges: HashMap<String, ChargeStatus>,
    /// How many times each key was actually charged (must stay at most 1).
    captures: HashMap<String, u32>,
    next_ref: u64,
}

/// The sandbox gateway: in memory, deterministic by instrument.
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
    /// A sandbox answering after `latency`, stalling `stall` on timeout instruments.
    pub fn new(latency: Duration, stall: Duration) -> Self {
        Self {
            ledger: Arc::new(Mutex::new(Ledger::default())),
            stall,
            latency,
        }
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
        // update is a single insert.
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn capture(&self, key: &str) -> ChargeStatus {
        let mut ledger = self.lock();
        ledger.next_ref += 1;
        let status = ChargeStatus::Captured {
            transaction_ref: format!("sbx_ch_{:06}", ledger.next_ref),
        };
        ledger.charges.insert(key.to_owned(), status.clone());
        *ledger.captures.entry(key.to_owned()).or_default() += 1;
        status
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
            let known = this.lock().charges.get(&request.key).cloned();
            if let Some(done) = known {
                tokio::time::sleep(this.latency).await;
                return Ok(done);
            }
            match this.decide(&request) {
                Decision::Capture => {
                    tokio::time::sleep(this.latency).await;
                    Ok(this.capture(&request.key))
                }
                Decision::Decline(reason) => {
                    tokio::time::sleep(this.latency).await;
                    let status = ChargeStatus::Declined {
                        reason: reason.into(),
                    };
                    this.lock()
                        .charges
                        .insert(request.key.clone(), status.clone());
                    Ok(status)
                }
                Decision::Late { stall } => {
                    // The charge goes through; the caller hears of it only later.
                    this.capture(&request.key);
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
            let found = this.lock().charges.get(&key).cloned();
            Ok(found)
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
    }
}
