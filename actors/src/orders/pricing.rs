//! The pricing engine: a completed order and the pricing settings in, an invoice out.
//! Pure and deterministic; amounts are integer minor units; every percentage is rounded
//! half up (x.5 rounds away from zero) once, on the amount it applies to.

use thiserror::Error;
use wire::model::{
    CancellationPolicy, DiscountCode, DiscountKind, Invoice, LineItem, LineKind, Minor,
    NightSurcharge, PricingSettings, TaskPricing, TaxLine, UnixMs,
};
use wire::{InvoiceId, OrderId};

/// Basis points in a whole.
const BP: i128 = 10_000;

/// Why an invoice cannot be priced.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PricingError {
    /// No prices for the task type.
    #[error("no pricing for task type {0:?}")]
    UnknownTask(String),
    /// The settings break a rule (named).
    #[error("invalid pricing setting: {0}")]
    InvalidSettings(String),
    /// An amount overflowed.
    #[error("amount out of range")]
    Overflow,
}

/// What is being billed.
#[derive(Debug, Clone, PartialEq)]
pub struct BillInput<'a> {
    /// The invoice's id.
    pub invoice_id: InvoiceId,
    /// The order.
    pub order_id: OrderId,
    /// Task type name.
    pub task: &'a str,
    /// Billable minutes.
    pub minutes: u32,
    /// When work started (decides the night surcharge).
    pub started_at_ms: UnixMs,
    /// When the invoice is issued (decides whether the discount has expired).
    pub issued_at_ms: UnixMs,
    /// The discount code to apply, if the user gave one and may use it.
    pub discount: Option<&'a DiscountCode>,
}

/// `amount * bp / 10 000`, rounded half up.
pub fn apply_bp(amount: Minor, bp: u32) -> Result<Minor, PricingError> {
    let x = i128::from(amount) * i128::from(bp);
    let rounded = if x >= 0 {
        (x + BP / 2) / BP
    } else {
        -((-x + BP / 2) / BP)
    };
    Minor::try_from(rounded).map_err(|_| PricingError::Overflow)
}

fn add(a: Minor, b: Minor) -> Result<Minor, PricingError> {
    a.checked_add(b).ok_or(PricingError::Overflow)
}

/// Checks settings: non-negative prices, rates within 100 %, a sane night window.
pub fn validate(settings: &PricingSettings) -> Result<(), PricingError> {
    let bad = |what: String| Err(PricingError::InvalidSettings(what));
    if settings.currency.len() != 3 || !settings.currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return bad("currency: an ISO 4217 code like INR".into());
    }
    if settings.tasks.is_empty() {
        return bad("tasks: at least one task type needs prices".into());
    }
    for t in &settings.tasks {
        if t.base_minor < 0 || t.per_minute_minor < 0 || t.minimum_minor < 0 {
            return bad(format!("tasks.{}: prices must not be negative", t.task));
        }
        if t.base_minor > 100_000_000
            || t.per_minute_minor > 1_000_000
            || t.minimum_minor > 100_000_000
        {
            return bad(format!(
                "tasks.{}: prices above the allowed maximum",
                t.task
            ));
        }
    }
    let mut names: Vec<&str> = settings.tasks.iter().map(|t| t.task.as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return bad("tasks: a task type is priced twice".into());
    }
    if settings.commission_bp > 10_000 {
        return bad("commission_bp: at most 10000 (100 %)".into());
    }
    if settings.tax_bp > 10_000 {
        return bad("tax_bp: at most 10000 (100 %)".into());
    }
    if let Some(n) = settings.night {
        if n.start_minute >= 1_440 || n.end_minute >= 1_440 || n.start_minute == n.end_minute {
            return bad("night: start and end are distinct minutes of the day (0..1440)".into());
        }
        if n.rate_bp > 10_000 {
            return bad("night.rate_bp: at most 10000 (100 %)".into());
        }
    }
    if !(-14 * 60..=14 * 60).contains(&i32::from(settings.utc_offset_minutes)) {
        return bad("utc_offset_minutes: within ±14 hours".into());
    }
    if settings.cancellation.fee_minor < 0 {
        return bad("cancellation.fee_minor: must not be negative".into());
    }
    Ok(())
}

/// Checks a discount code's own rules (not its use by a particular order).
pub fn validate_discount(code: &DiscountCode) -> Result<(), PricingError> {
    let bad = |what: &str| {
        Err(PricingError::InvalidSettings(format!(
            "discount {}: {what}",
            code.code
        )))
    };
    if code.code.is_empty() || code.code.len() > 32 {
        return bad("code must be 1 to 32 bytes");
    }
    if code.min_order_minor < 0 {
        return bad("min_order_minor must not be negative");
    }
    match code.kind {
        DiscountKind::Percent { rate_bp, cap_minor } if rate_bp > 10_000 || cap_minor < 0 => {
            bad("percent at most 10000 bp and cap not negative")
        }
        DiscountKind::Flat { amount_minor } if amount_minor < 0 => {
            bad("amount must not be negative")
        }
        _ => Ok(()),
    }
}

/// Whether work starting at `at_ms` falls in the night window.
pub fn is_night(night: &NightSurcharge, utc_offset_minutes: i16, at_ms: UnixMs) -> bool {
    let minute = ((at_ms / 60_000) as i64 + i64::from(utc_offset_minutes)).rem_euclid(1_440) as u16;
    if night.start_minute < night.end_minute {
        (night.start_minute..night.end_minute).contains(&minute)
    } else {
        minute >= night.start_minute || minute < night.end_minute
    }
}

/// Whether `code` applies to a fare of `subtotal` at `at_ms` (expiry and minimum order).
pub fn discount_applies(code: &DiscountCode, subtotal: Minor, at_ms: UnixMs) -> bool {
    code.expires_at_ms.is_none_or(|exp| at_ms < exp) && subtotal >= code.min_order_minor
}

/// Prices a completed order. The tip is added at payment with [`with_tip`].
pub fn price(settings: &PricingSettings, input: &BillInput<'_>) -> Result<Invoice, PricingError> {
    let task: &TaskPricing = settings
        .tasks
        .iter()
        .find(|t| t.task == input.task)
        .ok_or_else(|| PricingError::UnknownTask(input.task.to_owned()))?;
    let mut lines = Vec::with_capacity(6);
    let mut line = |kind, label: String, amount_minor| {
        lines.push(LineItem {
            kind,
            label,
            amount_minor,
        })
    };

    let time = task
        .per_minute_minor
        .checked_mul(Minor::from(input.minutes))
        .ok_or(PricingError::Overflow)?;
    let fare = add(task.base_minor, time)?;
    line(
        LineKind::BaseFare,
        format!("{} base fare", input.task),
        task.base_minor,
    );
    line(
        LineKind::Time,
        format!("{} min at {}/min", input.minutes, task.per_minute_minor),
        time,
    );
    let surcharge = match &settings.night {
        Some(night) if is_night(night, settings.utc_offset_minutes, input.started_at_ms) => {
            apply_bp(fare, night.rate_bp)?
        }
        _ => 0,
    };
    if surcharge > 0 {
        line(LineKind::Surcharge, "Night surcharge".into(), surcharge);
    }
    let fare = add(fare, surcharge)?;
    let top_up = (task.minimum_minor - fare).max(0);
    if top_up > 0 {
        line(
            LineKind::MinimumFareTopUp,
            "Minimum fare top-up".into(),
            top_up,
        );
    }
    let subtotal = add(fare, top_up)?;
    let discount = match input.discount {
        Some(code) if discount_applies(code, subtotal, input.issued_at_ms) => {
            let off = match code.kind {
                DiscountKind::Percent { rate_bp, cap_minor } => {
                    apply_bp(subtotal, rate_bp)?.min(cap_minor)
                }
                DiscountKind::Flat { amount_minor } => amount_minor,
            };
            off.clamp(0, subtotal)
        }
        _ => 0,
    };
    if discount > 0 {
        // The code is there: a discount only applies when one was given and applies.
        let code = input.discount.map(|c| c.code.as_str()).unwrap_or_default();
        line(LineKind::Discount, format!("Discount {code}"), -discount);
    }
    let taxable = subtotal - discount;
    let tax = apply_bp(taxable, settings.tax_bp)?;
    line(
        LineKind::Tax,
        format!(
            "Tax {}.{:02}%",
            settings.tax_bp / 100,
            settings.tax_bp % 100
        ),
        tax,
    );
    let commission = apply_bp(taxable, settings.commission_bp)?;
    Ok(Invoice {
        invoice_id: input.invoice_id,
        order_id: input.order_id,
        currency: settings.currency.clone(),
        lines,
        tax: TaxLine {
            base_minor: taxable,
            rate_bp: settings.tax_bp,
            amount_minor: tax,
        },
        total_minor: add(taxable, tax)?,
        commission_minor: commission,
        payout_minor: taxable - commission,
        issued_at_ms: input.issued_at_ms,
        settlement: None,
    })
}

/// The invoice of a cancellation fee: the fee, tax on it, and the platform's commission
/// of it (the rest goes to the associate, who set out for nothing).
pub fn cancellation_invoice(
    settings: &PricingSettings,
    invoice_id: InvoiceId,
    order_id: OrderId,
    fee_minor: Minor,
    issued_at_ms: UnixMs,
) -> Result<Invoice, PricingError> {
    if fee_minor < 0 {
        return Err(PricingError::InvalidSettings(
            "cancellation fee must not be negative".into(),
        ));
    }
    let tax = apply_bp(fee_minor, settings.tax_bp)?;
    let commission = apply_bp(fee_minor, settings.commission_bp)?;
    Ok(Invoice {
        invoice_id,
        order_id,
        currency: settings.currency.clone(),
        lines: vec![
            LineItem {
                kind: LineKind::CancellationFee,
                label: "Cancellation fee".into(),
                amount_minor: fee_minor,
            },
            LineItem {
                kind: LineKind::Tax,
                label: format!(
                    "Tax {}.{:02}%",
                    settings.tax_bp / 100,
                    settings.tax_bp % 100
                ),
                amount_minor: tax,
            },
        ],
        tax: TaxLine {
            base_minor: fee_minor,
            rate_bp: settings.tax_bp,
            amount_minor: tax,
        },
        total_minor: add(fee_minor, tax)?,
        commission_minor: commission,
        payout_minor: fee_minor - commission,
        issued_at_ms,
        settlement: None,
    })
}

/// The invoice with a tip added: a tip line, and the tip on the total and the payout.
pub fn with_tip(invoice: &Invoice, tip_minor: Minor) -> Result<Invoice, PricingError> {
    let mut out = invoice.clone();
    if tip_minor <= 0 {
        return Ok(out);
    }
    out.lines.push(LineItem {
        kind: LineKind::Tip,
        label: "Tip".into(),
        amount_minor: tip_minor,
    });
    out.total_minor = add(out.total_minor, tip_minor)?;
    out.payout_minor = add(out.payout_minor, tip_minor)?;
    Ok(out)
}

/// Sample settings: three task types in INR, a night surcharge, 18 % tax, 20 % commission.
pub fn sample_settings() -> PricingSettings {
    let task = |name: &str, base, per_minute, minimum| TaskPricing {
        task: name.into(),
        base_minor: base,
        per_minute_minor: per_minute,
        minimum_minor: minimum,
    };
    PricingSettings {
        currency: "INR".into(),
        utc_offset_minutes: 330,
        tasks: vec![
            task("companion", 30_000, 800, 40_000),
            task("helper", 20_000, 600, 25_000),
            task("errand", 10_000, 400, 15_000),
        ],
        night: Some(NightSurcharge {
            start_minute: 22 * 60,
            end_minute: 6 * 60,
            rate_bp: 2_000,
        }),
        commission_bp: 2_000,
        tax_bp: 1_800,
        cancellation: CancellationPolicy {
            free_minutes: 5,
            fee_minor: 5_000,
        },
    }
}

/// The stored settings, or the sample settings when none were ever stored.
pub fn settings_or_default(
    stored: Result<Option<PricingSettings>, storage::StorageError>,
) -> PricingSettings {
    stored.ok().flatten().unwrap_or_else(sample_settings)
}

#[cfg(test)]
#[path = "pricing_tests.rs"]
mod tests;
