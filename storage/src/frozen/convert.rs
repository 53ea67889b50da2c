//! Conversions between the records callers see (the public records and the wire model)
//! and their on-disk layouts, and the one encoder and decoder of stored values.
//!
//! Every conversion names every field and matches every variant, so a change on either
//! side fails to compile here instead of silently changing what is on disk.

use serde::Serialize;
use serde::de::DeserializeOwned;
use wire::model as w;
use wire::{AssociateId, FeedbackId, InvoiceId, OrderId, PaymentId, RequestId, UserId};

use crate::error::StorageError;
use crate::frozen::layout as l;
use crate::records as r;

/// A value the store keeps, with the layout it is kept in.
pub(crate) trait Stored: Sized {
    /// The on-disk layout.
    type Layout: Serialize + DeserializeOwned + std::fmt::Debug + Send + Sync;
    /// The layout of this value.
    fn to_layout(&self) -> Self::Layout;
    /// The value a layout holds; an error if it holds what no value can (a point off
    /// the globe).
    fn from_layout(layout: Self::Layout) -> Result<Self, String>;
}

/// The bincode configuration of every stored value: varint integers, little endian.
fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes a value in its on-disk layout.
pub(crate) fn encode<T: Stored>(value: &T) -> Vec<u8> {
    encode_layout(&value.to_layout())
}

/// Encodes a layout.
pub(crate) fn encode_layout<L: Serialize>(layout: &L) -> Vec<u8> {
    // expect: layouts are plain sized structs and enums, which is all bincode needs.
    bincode::serde::encode_to_vec(layout, config()).expect("layouts serialise")
}

/// Decodes a value read from `tree`; trailing bytes are corruption.
pub(crate) fn decode<T: Stored>(tree: &'static str, bytes: &[u8]) -> Result<T, StorageError> {
    T::from_layout(decode_layout(tree, bytes)?)
        .map_err(|detail| StorageError::Corrupt { tree, detail })
}

/// Decodes a layout read from `tree`.
pub(crate) fn decode_layout<L: DeserializeOwned>(
    tree: &'static str,
    bytes: &[u8],
) -> Result<L, StorageError> {
    let corrupt = |detail: String| StorageError::Corrupt { tree, detail };
    let (layout, read) =
        bincode::serde::decode_from_slice(bytes, config()).map_err(|e| corrupt(e.to_string()))?;
    if read != bytes.len() {
        return Err(corrupt(format!(
            "{} trailing bytes after the record",
            bytes.len() - read
        )));
    }
    Ok(layout)
}

fn point(p: w::Point) -> l::Point {
    l::Point {
        lat: p.lat,
        lng: p.lng,
    }
}

/// A stored position, validated once, as it is read.
fn latlng(p: geo::LatLng) -> l::Point {
    l::Point {
        lat: p.lat(),
        lng: p.lng(),
    }
}

/// The validated position a layout holds.
fn latlng_back(p: l::Point) -> Result<geo::LatLng, String> {
    geo::LatLng::new(p.lat, p.lng).map_err(|e| format!("a stored position: {e}"))
}

fn point_back(p: l::Point) -> w::Point {
    w::Point {
        lat: p.lat,
        lng: p.lng,
    }
}

fn role(r: w::Role) -> l::Role {
    match r {
        w::Role::User => l::Role::User,
        w::Role::Associate => l::Role::Associate,
    }
}

fn role_back(r: l::Role) -> w::Role {
    match r {
        l::Role::User => w::Role::User,
        l::Role::Associate => w::Role::Associate,
    }
}

fn zone(z: &w::Zone) -> l::Zone {
    match z {
        w::Zone::Circle { centre, radius_m } => l::Zone::Circle {
            centre: point(*centre),
            radius_m: *radius_m,
        },
        w::Zone::Cells { cells } => l::Zone::Cells {
            cells: cells.clone(),
        },
    }
}

fn zone_back(z: l::Zone) -> w::Zone {
    match z {
        l::Zone::Circle { centre, radius_m } => w::Zone::Circle {
            centre: point_back(centre),
            radius_m,
        },
        l::Zone::Cells { cells } => w::Zone::Cells { cells },
    }
}

fn state(s: w::OrderState) -> l::OrderState {
    use w::OrderState as S;
    match s {
        S::Allotted => l::OrderState::Allotted,
        S::EnRoute => l::OrderState::EnRoute,
        S::Arrived => l::OrderState::Arrived,
        S::Started => l::OrderState::Started,
        S::Completed => l::OrderState::Completed,
        S::Billed => l::OrderState::Billed,
        S::Paid => l::OrderState::Paid,
        S::Closed => l::OrderState::Closed,
        S::Cancelled => l::OrderState::Cancelled,
    }
}

fn state_back(s: l::OrderState) -> w::OrderState {
    use l::OrderState as S;
    match s {
        S::Allotted => w::OrderState::Allotted,
        S::EnRoute => w::OrderState::EnRoute,
        S::Arrived => w::OrderState::Arrived,
        S::Started => w::OrderState::Started,
        S::Completed => w::OrderState::Completed,
        S::Billed => w::OrderState::Billed,
        S::Paid => w::OrderState::Paid,
        S::Closed => w::OrderState::Closed,
        S::Cancelled => w::OrderState::Cancelled,
    }
}

fn party(p: &w::PartySummary) -> l::PartySummary {
    l::PartySummary {
        id: p.id,
        name: p.name.clone(),
        phone: p.phone.clone(),
        rating_centi: p.rating_centi,
        rating_count: p.rating_count,
    }
}

fn party_back(p: l::PartySummary) -> w::PartySummary {
    w::PartySummary {
        id: p.id,
        name: p.name,
        phone: p.phone,
        rating_centi: p.rating_centi,
        rating_count: p.rating_count,
    }
}

fn cancellation(c: &w::Cancellation) -> l::Cancellation {
    l::Cancellation {
        by: match c.by {
            w::CancelledBy::User => l::CancelledBy::User,
            w::CancelledBy::Associate => l::CancelledBy::Associate,
            w::CancelledBy::Ops => l::CancelledBy::Ops,
        },
        reason: c.reason.clone(),
        fee_minor: c.fee_minor,
    }
}

fn cancellation_back(c: l::Cancellation) -> w::Cancellation {
    w::Cancellation {
        by: match c.by {
            l::CancelledBy::User => w::CancelledBy::User,
            l::CancelledBy::Associate => w::CancelledBy::Associate,
            l::CancelledBy::Ops => w::CancelledBy::Ops,
        },
        reason: c.reason,
        fee_minor: c.fee_minor,
    }
}

fn method(m: w::PaymentMethod) -> l::PaymentMethod {
    match m {
        w::PaymentMethod::Card => l::PaymentMethod::Card,
        w::PaymentMethod::Upi => l::PaymentMethod::Upi,
        w::PaymentMethod::Wallet => l::PaymentMethod::Wallet,
        w::PaymentMethod::Cash => l::PaymentMethod::Cash,
    }
}

fn method_back(m: l::PaymentMethod) -> w::PaymentMethod {
    match m {
        l::PaymentMethod::Card => w::PaymentMethod::Card,
        l::PaymentMethod::Upi => w::PaymentMethod::Upi,
        l::PaymentMethod::Wallet => w::PaymentMethod::Wallet,
        l::PaymentMethod::Cash => w::PaymentMethod::Cash,
    }
}

fn status(s: w::PaymentStatus) -> l::PaymentStatus {
    match s {
        w::PaymentStatus::Pending => l::PaymentStatus::Pending,
        w::PaymentStatus::Succeeded => l::PaymentStatus::Succeeded,
        w::PaymentStatus::Failed => l::PaymentStatus::Failed,
    }
}

fn status_back(s: l::PaymentStatus) -> w::PaymentStatus {
    match s {
        l::PaymentStatus::Pending => w::PaymentStatus::Pending,
        l::PaymentStatus::Succeeded => w::PaymentStatus::Succeeded,
        l::PaymentStatus::Failed => w::PaymentStatus::Failed,
    }
}

fn line_kind(k: w::LineKind) -> l::LineKind {
    use w::LineKind as K;
    match k {
        K::BaseFare => l::LineKind::BaseFare,
        K::Time => l::LineKind::Time,
        K::MinimumFareTopUp => l::LineKind::MinimumFareTopUp,
        K::Surcharge => l::LineKind::Surcharge,
        K::Discount => l::LineKind::Discount,
        K::Tax => l::LineKind::Tax,
        K::Tip => l::LineKind::Tip,
        K::CancellationFee => l::LineKind::CancellationFee,
    }
}

fn line_kind_back(k: l::LineKind) -> w::LineKind {
    use l::LineKind as K;
    match k {
        K::BaseFare => w::LineKind::BaseFare,
        K::Time => w::LineKind::Time,
        K::MinimumFareTopUp => w::LineKind::MinimumFareTopUp,
        K::Surcharge => w::LineKind::Surcharge,
        K::Discount => w::LineKind::Discount,
        K::Tax => w::LineKind::Tax,
        K::Tip => w::LineKind::Tip,
        K::CancellationFee => w::LineKind::CancellationFee,
    }
}

impl Stored for w::Invoice {
    type Layout = l::Invoice;

    fn to_layout(&self) -> l::Invoice {
        l::Invoice {
            invoice_id: self.invoice_id.0,
            order_id: self.order_id.0,
            currency: self.currency.clone(),
            lines: self
                .lines
                .iter()
                .map(|x| l::LineItem {
                    kind: line_kind(x.kind),
                    label: x.label.clone(),
                    amount_minor: x.amount_minor,
                })
                .collect(),
            tax: l::TaxLine {
                base_minor: self.tax.base_minor,
                rate_bp: self.tax.rate_bp,
                amount_minor: self.tax.amount_minor,
            },
            total_minor: self.total_minor,
            commission_minor: self.commission_minor,
            payout_minor: self.payout_minor,
            issued_at_ms: self.issued_at_ms,
            settlement: self.settlement.as_ref().map(|s| l::Settlement {
                method: method(s.method),
                transaction_ref: s.transaction_ref.clone(),
                paid_at_ms: s.paid_at_ms,
            }),
        }
    }

    fn from_layout(x: l::Invoice) -> Result<Self, String> {
        Ok(w::Invoice {
            invoice_id: InvoiceId(x.invoice_id),
            order_id: OrderId(x.order_id),
            currency: x.currency,
            lines: x
                .lines
                .into_iter()
                .map(|x| w::LineItem {
                    kind: line_kind_back(x.kind),
                    label: x.label,
                    amount_minor: x.amount_minor,
                })
                .collect(),
            tax: w::TaxLine {
                base_minor: x.tax.base_minor,
                rate_bp: x.tax.rate_bp,
                amount_minor: x.tax.amount_minor,
            },
            total_minor: x.total_minor,
            commission_minor: x.commission_minor,
            payout_minor: x.payout_minor,
            issued_at_ms: x.issued_at_ms,
            settlement: x.settlement.map(|s| w::Settlement {
                method: method_back(s.method),
                transaction_ref: s.transaction_ref,
                paid_at_ms: s.paid_at_ms,
            }),
        })
    }
}

fn event_kind(k: &w::OrderEventKind) -> l::OrderEventKind {
    use w::OrderEventKind as K;
    match k {
        K::Allotted {
            user_id,
            associate_id,
        } => l::OrderEventKind::Allotted {
            user_id: user_id.0,
            associate_id: associate_id.0,
        },
        K::EnRoute => l::OrderEventKind::EnRoute,
        K::Arrived => l::OrderEventKind::Arrived,
        K::Started => l::OrderEventKind::Started,
        K::Completed { minutes } => l::OrderEventKind::Completed { minutes: *minutes },
        K::Billed {
            invoice_id,
            total_minor,
        } => l::OrderEventKind::Billed {
            invoice_id: invoice_id.0,
            total_minor: *total_minor,
        },
        K::Paid {
            payment_id,
            method: m,
            amount_minor,
        } => l::OrderEventKind::Paid {
            payment_id: payment_id.0,
            method: method(*m),
            amount_minor: *amount_minor,
        },
        K::Closed => l::OrderEventKind::Closed,
        K::Cancelled {
            by,
            reason,
            fee_minor,
            invoice_id: None,
        } => l::OrderEventKind::Cancelled {
            by: role(*by),
            reason: reason.clone(),
            fee_minor: *fee_minor,
        },
        K::Cancelled {
            by,
            reason,
            fee_minor,
            invoice_id: Some(invoice),
        } => l::OrderEventKind::CancelledWithFee {
            by: role(*by),
            reason: reason.clone(),
            fee_minor: *fee_minor,
            invoice_id: invoice.0,
        },
        K::FeePaid {
            payment_id,
            method: m,
            amount_minor,
        } => l::OrderEventKind::FeePaid {
            payment_id: payment_id.0,
            method: method(*m),
            amount_minor: *amount_minor,
        },
        K::OpsCancelled { reason } => l::OrderEventKind::OpsCancelled {
            reason: reason.clone(),
        },
        K::OpsCompleted { minutes, reason } => l::OrderEventKind::OpsCompleted {
            minutes: *minutes,
            reason: reason.clone(),
        },
        K::Stalled {
            state: s,
            idle_ms,
            action,
        } => l::OrderEventKind::Stalled {
            state: state(*s),
            idle_ms: *idle_ms,
            action: action.clone(),
        },
    }
}

fn event_kind_back(k: l::OrderEventKind) -> w::OrderEventKind {
    use l::OrderEventKind as K;
    match k {
        K::Allotted {
            user_id,
            associate_id,
        } => w::OrderEventKind::Allotted {
            user_id: UserId(user_id),
            associate_id: AssociateId(associate_id),
        },
        K::EnRoute => w::OrderEventKind::EnRoute,
        K::Arrived => w::OrderEventKind::Arrived,
        K::Started => w::OrderEventKind::Started,
        K::Completed { minutes } => w::OrderEventKind::Completed { minutes },
        K::Billed {
            invoice_id,
            total_minor,
        } => w::OrderEventKind::Billed {
            invoice_id: InvoiceId(invoice_id),
            total_minor,
        },
        K::Paid {
            payment_id,
            method: m,
            amount_minor,
        } => w::OrderEventKind::Paid {
            payment_id: PaymentId(payment_id),
            method: method_back(m),
            amount_minor,
        },
        K::Closed => w::OrderEventKind::Closed,
        K::Cancelled {
            by,
            reason,
            fee_minor,
        } => w::OrderEventKind::Cancelled {
            by: role_back(by),
            reason,
            fee_minor,
            invoice_id: None,
        },
        K::CancelledWithFee {
            by,
            reason,
            fee_minor,
            invoice_id,
        } => w::OrderEventKind::Cancelled {
            by: role_back(by),
            reason,
            fee_minor,
            invoice_id: Some(InvoiceId(invoice_id)),
        },
        K::FeePaid {
            payment_id,
            method: m,
            amount_minor,
        } => w::OrderEventKind::FeePaid {
            payment_id: PaymentId(payment_id),
            method: method_back(m),
            amount_minor,
        },
        K::OpsCancelled { reason } => w::OrderEventKind::OpsCancelled { reason },
        K::OpsCompleted { minutes, reason } => w::OrderEventKind::OpsCompleted { minutes, reason },
        K::Stalled {
            state,
            idle_ms,
            action,
        } => w::OrderEventKind::Stalled {
            state: state_back(state),
            idle_ms,
            action,
        },
    }
}

impl Stored for w::OrderEvent {
    type Layout = l::OrderEvent;

    fn to_layout(&self) -> l::OrderEvent {
        l::OrderEvent {
            order_id: self.order_id.0,
            seq: self.seq,
            at_ms: self.at_ms,
            state: state(self.state),
            kind: event_kind(&self.kind),
        }
    }

    fn from_layout(x: l::OrderEvent) -> Result<Self, String> {
        Ok(w::OrderEvent {
            order_id: OrderId(x.order_id),
            seq: x.seq,
            at_ms: x.at_ms,
            state: state_back(x.state),
            kind: event_kind_back(x.kind),
        })
    }
}

impl Stored for w::PricingSettings {
    type Layout = l::PricingSettings;

    fn to_layout(&self) -> l::PricingSettings {
        l::PricingSettings {
            currency: self.currency.clone(),
            utc_offset_minutes: self.utc_offset_minutes,
            tasks: self
                .tasks
                .iter()
                .map(|t| l::TaskPricing {
                    task: t.task.clone(),
                    base_minor: t.base_minor,
                    per_minute_minor: t.per_minute_minor,
                    minimum_minor: t.minimum_minor,
                })
                .collect(),
            night: self.night.map(|n| l::NightSurcharge {
                start_minute: n.start_minute,
                end_minute: n.end_minute,
                rate_bp: n.rate_bp,
            }),
            commission_bp: self.commission_bp,
            tax_bp: self.tax_bp,
            cancellation: l::CancellationPolicy {
                free_minutes: self.cancellation.free_minutes,
                fee_minor: self.cancellation.fee_minor,
            },
        }
    }

    fn from_layout(x: l::PricingSettings) -> Result<Self, String> {
        Ok(w::PricingSettings {
            currency: x.currency,
            utc_offset_minutes: x.utc_offset_minutes,
            tasks: x
                .tasks
                .into_iter()
                .map(|t| w::TaskPricing {
                    task: t.task,
                    base_minor: t.base_minor,
                    per_minute_minor: t.per_minute_minor,
                    minimum_minor: t.minimum_minor,
                })
                .collect(),
            night: x.night.map(|n| w::NightSurcharge {
                start_minute: n.start_minute,
                end_minute: n.end_minute,
                rate_bp: n.rate_bp,
            }),
            commission_bp: x.commission_bp,
            tax_bp: x.tax_bp,
            cancellation: w::CancellationPolicy {
                free_minutes: x.cancellation.free_minutes,
                fee_minor: x.cancellation.fee_minor,
            },
        })
    }
}

impl Stored for w::DiscountCode {
    type Layout = l::DiscountCode;

    fn to_layout(&self) -> l::DiscountCode {
        l::DiscountCode {
            code: self.code.clone(),
            kind: match self.kind {
                w::DiscountKind::Percent { rate_bp, cap_minor } => {
                    l::DiscountKind::Percent { rate_bp, cap_minor }
                }
                w::DiscountKind::Flat { amount_minor } => l::DiscountKind::Flat { amount_minor },
            },
            expires_at_ms: self.expires_at_ms,
            min_order_minor: self.min_order_minor,
            once_per_user: self.once_per_user,
        }
    }

    fn from_layout(x: l::DiscountCode) -> Result<Self, String> {
        Ok(w::DiscountCode {
            code: x.code,
            kind: match x.kind {
                l::DiscountKind::Percent { rate_bp, cap_minor } => {
                    w::DiscountKind::Percent { rate_bp, cap_minor }
                }
                l::DiscountKind::Flat { amount_minor } => w::DiscountKind::Flat { amount_minor },
            },
            expires_at_ms: x.expires_at_ms,
            min_order_minor: x.min_order_minor,
            once_per_user: x.once_per_user,
        })
    }
}

impl Stored for r::UserProfile {
    type Layout = l::UserProfile;

    fn to_layout(&self) -> l::UserProfile {
        l::UserProfile {
            id: self.id.0,
            name: self.name.clone(),
            phone: self.phone.clone(),
            email: self.email.clone(),
            addresses: self
                .addresses
                .iter()
                .map(|a| l::Address {
                    label: a.label.clone(),
                    line: a.line.clone(),
                    point: a.point.map(point),
                })
                .collect(),
            date_of_birth: self.date_of_birth.clone(),
            life_events: self
                .life_events
                .iter()
                .map(|e| l::LifeEvent {
                    kind: e.kind.clone(),
                    date: e.date.clone(),
                    label: e.label.clone(),
                })
                .collect(),
            rating_sum: self.rating_sum,
            rating_count: self.rating_count,
            created_at_ms: self.created_at_ms,
        }
    }

    fn from_layout(x: l::UserProfile) -> Result<Self, String> {
        Ok(r::UserProfile {
            id: UserId(x.id),
            name: x.name,
            phone: x.phone,
            email: x.email,
            addresses: x
                .addresses
                .into_iter()
                .map(|a| r::Address {
                    label: a.label,
                    line: a.line,
                    point: a.point.map(point_back),
                })
                .collect(),
            date_of_birth: x.date_of_birth,
            life_events: x
                .life_events
                .into_iter()
                .map(|e| r::LifeEvent {
                    kind: e.kind,
                    date: e.date,
                    label: e.label,
                })
                .collect(),
            rating_sum: x.rating_sum,
            rating_count: x.rating_count,
            created_at_ms: x.created_at_ms,
        })
    }
}

impl Stored for r::AssociateProfile {
    type Layout = l::AssociateProfile;

    fn to_layout(&self) -> l::AssociateProfile {
        l::AssociateProfile {
            id: self.id.0,
            name: self.name.clone(),
            phone: self.phone.clone(),
            skills: self.skills.clone(),
            home_zone: self.home_zone.as_ref().map(zone),
            rating_sum: self.rating_sum,
            rating_count: self.rating_count,
            created_at_ms: self.created_at_ms,
        }
    }

    fn from_layout(x: l::AssociateProfile) -> Result<Self, String> {
        Ok(r::AssociateProfile {
            id: AssociateId(x.id),
            name: x.name,
            phone: x.phone,
            skills: x.skills,
            home_zone: x.home_zone.map(zone_back),
            rating_sum: x.rating_sum,
            rating_count: x.rating_count,
            created_at_ms: x.created_at_ms,
        })
    }
}

impl Stored for r::OrderRecord {
    type Layout = l::OrderRecord;

    fn to_layout(&self) -> l::OrderRecord {
        l::OrderRecord {
            order_id: self.order_id.0,
            request_id: self.request_id.0,
            user_id: self.user_id.0,
            associate_id: self.associate_id.0,
            state: state(self.state),
            task: self.task.clone(),
            pickup: latlng(self.pickup),
            note: self.note.clone(),
            discount_code: self.discount_code.clone(),
            user: party(&self.user),
            associate: party(&self.associate),
            pin: self.pin.clone(),
            allotted_at_ms: self.allotted_at_ms,
            started_at_ms: self.started_at_ms,
            completed_at_ms: self.completed_at_ms,
            ended_at_ms: self.ended_at_ms,
            invoice_id: self.invoice_id.map(|i| i.0),
            payment_id: self.payment_id.map(|p| p.0),
            cancellation: self.cancellation.as_ref().map(cancellation),
            next_seq: self.next_seq,
        }
    }

    fn from_layout(x: l::OrderRecord) -> Result<Self, String> {
        Ok(r::OrderRecord {
            order_id: OrderId(x.order_id),
            request_id: RequestId(x.request_id),
            user_id: UserId(x.user_id),
            associate_id: AssociateId(x.associate_id),
            state: state_back(x.state),
            task: x.task,
            pickup: latlng_back(x.pickup)?,
            note: x.note,
            discount_code: x.discount_code,
            user: party_back(x.user),
            associate: party_back(x.associate),
            pin: x.pin,
            allotted_at_ms: x.allotted_at_ms,
            started_at_ms: x.started_at_ms,
            completed_at_ms: x.completed_at_ms,
            ended_at_ms: x.ended_at_ms,
            invoice_id: x.invoice_id.map(InvoiceId),
            payment_id: x.payment_id.map(PaymentId),
            cancellation: x.cancellation.map(cancellation_back),
            next_seq: x.next_seq,
        })
    }
}

impl Stored for r::TaxInvoice {
    type Layout = l::TaxInvoice;

    fn to_layout(&self) -> l::TaxInvoice {
        l::TaxInvoice {
            number: self.number,
            invoice_id: self.invoice_id.0,
            order_id: self.order_id.0,
            buyer: self.buyer.clone(),
            supplier: self.supplier.clone(),
            taxable_minor: self.taxable_minor,
            rate_bp: self.rate_bp,
            tax_minor: self.tax_minor,
            total_minor: self.total_minor,
            issued_at_ms: self.issued_at_ms,
        }
    }

    fn from_layout(x: l::TaxInvoice) -> Result<Self, String> {
        Ok(r::TaxInvoice {
            number: x.number,
            invoice_id: InvoiceId(x.invoice_id),
            order_id: OrderId(x.order_id),
            buyer: x.buyer,
            supplier: x.supplier,
            taxable_minor: x.taxable_minor,
            rate_bp: x.rate_bp,
            tax_minor: x.tax_minor,
            total_minor: x.total_minor,
            issued_at_ms: x.issued_at_ms,
        })
    }
}

impl Stored for r::PaymentRecord {
    type Layout = l::PaymentRecord;

    fn to_layout(&self) -> l::PaymentRecord {
        l::PaymentRecord {
            payment_id: self.payment_id.0,
            order_id: self.order_id.0,
            user_id: self.user_id.0,
            idempotency_key: self.idempotency_key.clone(),
            method: method(self.method),
            instrument_masked: self.instrument_masked.clone(),
            amount_minor: self.amount_minor,
            tip_minor: self.tip_minor,
            status: status(self.status),
            transaction_ref: self.transaction_ref.clone(),
            failure: self.failure.clone(),
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
        }
    }

    fn from_layout(x: l::PaymentRecord) -> Result<Self, String> {
        Ok(r::PaymentRecord {
            payment_id: PaymentId(x.payment_id),
            order_id: OrderId(x.order_id),
            user_id: UserId(x.user_id),
            idempotency_key: x.idempotency_key,
            method: method_back(x.method),
            instrument_masked: x.instrument_masked,
            amount_minor: x.amount_minor,
            tip_minor: x.tip_minor,
            status: status_back(x.status),
            transaction_ref: x.transaction_ref,
            failure: x.failure,
            created_at_ms: x.created_at_ms,
            updated_at_ms: x.updated_at_ms,
        })
    }
}

impl Stored for r::FeedbackRecord {
    type Layout = l::FeedbackRecord;

    fn to_layout(&self) -> l::FeedbackRecord {
        l::FeedbackRecord {
            id: self.id.0,
            order_id: self.order_id.0,
            about: role(self.about),
            rating: self.rating,
            comment: self.comment.clone(),
            source: match &self.source {
                r::FeedbackSource::App => l::FeedbackSource::App,
                r::FeedbackSource::External { source } => l::FeedbackSource::External {
                    source: source.clone(),
                },
            },
            at_ms: self.at_ms,
        }
    }

    fn from_layout(x: l::FeedbackRecord) -> Result<Self, String> {
        Ok(r::FeedbackRecord {
            id: FeedbackId(x.id),
            order_id: OrderId(x.order_id),
            about: role_back(x.about),
            rating: x.rating,
            comment: x.comment,
            source: match x.source {
                l::FeedbackSource::App => r::FeedbackSource::App,
                l::FeedbackSource::External { source } => r::FeedbackSource::External { source },
            },
            at_ms: x.at_ms,
        })
    }
}

impl Stored for r::OpenRequest {
    type Layout = l::OpenRequest;

    fn to_layout(&self) -> l::OpenRequest {
        l::OpenRequest {
            request_id: self.request_id.0,
            user_id: self.user_id.0,
            client_ref: self.client_ref.clone(),
            task: self.task.clone(),
            pickup: latlng(self.pickup),
            note: self.note.clone(),
            discount_code: self.discount_code.clone(),
            created_at_ms: self.created_at_ms,
            deadline_at_ms: self.deadline_at_ms,
            refused: self.refused.iter().map(|a| a.0).collect(),
        }
    }

    fn from_layout(x: l::OpenRequest) -> Result<Self, String> {
        Ok(r::OpenRequest {
            request_id: RequestId(x.request_id),
            user_id: UserId(x.user_id),
            client_ref: x.client_ref,
            task: x.task,
            pickup: latlng_back(x.pickup)?,
            note: x.note,
            discount_code: x.discount_code,
            created_at_ms: x.created_at_ms,
            deadline_at_ms: x.deadline_at_ms,
            refused: x.refused.into_iter().map(AssociateId).collect(),
        })
    }
}

impl Stored for r::Presence {
    type Layout = l::Presence;

    fn to_layout(&self) -> l::Presence {
        l::Presence {
            online: self.online,
            skills: self.skills.clone(),
            at_ms: self.at_ms,
        }
    }

    fn from_layout(x: l::Presence) -> Result<Self, String> {
        Ok(r::Presence {
            online: x.online,
            skills: x.skills,
            at_ms: x.at_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape the wire model had when schema 1 was written (an event of a cancelled
    /// order), through serde as schema 1 encoded it.
    #[derive(serde::Serialize)]
    struct Schema1Event {
        order_id: uuid::Uuid,
        seq: u32,
        at_ms: u64,
        state: Schema1State,
        kind: Schema1Kind,
    }

    #[derive(serde::Serialize)]
    #[expect(dead_code, reason = "the variants before Cancelled set its index")]
    enum Schema1State {
        Allotted,
        EnRoute,
        Arrived,
        Started,
        Completed,
        Billed,
        Paid,
        Closed,
        Cancelled,
    }

    #[derive(serde::Serialize)]
    #[expect(dead_code, reason = "the variants before Cancelled set its index")]
    enum Schema1Kind {
        Allotted,
        EnRoute,
        Arrived,
        Started,
        Completed,
        Billed,
        Paid,
        Closed,
        Cancelled {
            by: Schema1Role,
            reason: Option<String>,
            fee_minor: i64,
        },
    }

    #[derive(serde::Serialize)]
    #[expect(dead_code, reason = "the variant before Associate sets its index")]
    enum Schema1Role {
        User,
        Associate,
    }

    /// The wire model has since gained a field on cancellations; what is stored for a
    /// cancellation without a fee is still byte for byte what schema 1 wrote.
    #[test]
    fn a_protocol_change_does_not_change_the_bytes_on_disk() {
        let order = OrderId::new();
        let event = w::OrderEvent {
            order_id: order,
            seq: 3,
            at_ms: 1_764_000_000_123,
            state: w::OrderState::Cancelled,
            kind: w::OrderEventKind::Cancelled {
                by: w::Role::Associate,
                reason: Some("flat tyre".into()),
                fee_minor: 0,
                invoice_id: None,
            },
        };
        let schema_1 = encode_layout(&Schema1Event {
            order_id: order.0,
            seq: 3,
            at_ms: 1_764_000_000_123,
            state: Schema1State::Cancelled,
            kind: Schema1Kind::Cancelled {
                by: Schema1Role::Associate,
                reason: Some("flat tyre".into()),
                fee_minor: 0,
            },
        });
        assert_eq!(encode(&event), schema_1);
        let read: w::OrderEvent = decode("order_events", &schema_1).unwrap();
        assert_eq!(read, event);
        assert_ne!(
            wire::encode_value(&event),
            schema_1,
            "the wire encoding did change"
        );
    }

    #[test]
    fn trailing_bytes_are_corruption() {
        let mut bytes = encode(&r::Presence {
            online: true,
            skills: vec!["helper".into()],
            at_ms: 1,
        });
        bytes.push(0);
        let err = decode::<r::Presence>("presence", &bytes).unwrap_err();
        assert!(err.to_string().contains("trailing"), "{err}");
    }
}
