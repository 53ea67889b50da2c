//! A data directory written by an earlier build must still open: the fixture under
//! `tests/fixtures/` was written by [`write_fixture`] in the named format version and is
//! committed; the test copies it to a temporary directory, opens it with this build and
//! checks every record it holds.

use std::path::Path;

use storage::{
    AssociateProfile, FeedbackRecord, FeedbackSource, PaymentRecord, PaymentStart, SideWrite,
    Store, StoreConfig, TaxInvoice, UserProfile,
};
use wire::model::{
    DiscountCode, DiscountKind, Invoice, LineItem, LineKind, OrderEventKind, PaymentMethod,
    PaymentStatus, PricingSettings, Role, TaskPricing, TaxLine,
};
use wire::{AssociateId, FeedbackId, InvoiceId, OrderId, PaymentId, RequestId, UserId};

use crate::new_order;

/// Where the fixture generator writes (it does nothing without it).
const FIXTURE_ENV: &str = "SPEEDY_WRITE_FIXTURE_DIR";

pub const USER: UserId = UserId(uuid::Uuid::from_u128(0x0191_0000_0000_7000_8000_0000_0000_0001));
pub const ASSOCIATE: AssociateId =
    AssociateId(uuid::Uuid::from_u128(0x0191_0000_0000_7000_8000_0000_0000_0002));
/// Closed, paid by card, rated.
pub const CLOSED: OrderId = OrderId(uuid::Uuid::from_u128(0x0191_0000_0000_7000_8000_0000_0000_0010));
/// Started, open.
pub const STARTED: OrderId =
    OrderId(uuid::Uuid::from_u128(0x0191_0000_0000_7000_8000_0000_0000_0011));
/// Billed, with a card payment pending.
pub const BILLED: OrderId = OrderId(uuid::Uuid::from_u128(0x0191_0000_0000_7000_8000_0000_0000_0012));
pub const CLOSED_INVOICE: InvoiceId =
    InvoiceId(uuid::Uuid::from_u128(0x0191_0000_0000_7000_8000_0000_0000_0020));
pub const BILLED_INVOICE: InvoiceId =
    InvoiceId(uuid::Uuid::from_u128(0x0191_0000_0000_7000_8000_0000_0000_0021));
pub const PAID: PaymentId =
    PaymentId(uuid::Uuid::from_u128(0x0191_0000_0000_7000_8000_0000_0000_0030));
pub const PENDING: PaymentId =
    PaymentId(uuid::Uuid::from_u128(0x0191_0000_0000_7000_8000_0000_0000_0031));
pub const FEEDBACK: FeedbackId =
    FeedbackId(uuid::Uuid::from_u128(0x0191_0000_0000_7000_8000_0000_0000_0040));

/// The fixed time every record of the fixture is stamped with.
pub const T0: u64 = 1_764_000_000_000;

pub fn invoice(id: InvoiceId, order: OrderId, total: i64) -> Invoice {
    Invoice {
        invoice_id: id,
        order_id: order,
        currency: "INR".into(),
        lines: vec![LineItem {
            kind: LineKind::BaseFare,
            label: "companion".into(),
            amount_minor: total,
        }],
        tax: TaxLine {
            base_minor: total,
            rate_bp: 0,
            amount_minor: 0,
        },
        total_minor: total,
        commission_minor: total / 5,
        payout_minor: total - total / 5,
        issued_at_ms: T0 + 40,
        settlement: None,
    }
}

fn tax(invoice: &Invoice) -> TaxInvoice {
    TaxInvoice {
        number: 0,
        invoice_id: invoice.invoice_id,
        order_id: invoice.order_id,
        buyer: "Asha".into(),
        supplier: "Ravi".into(),
        taxable_minor: invoice.tax.base_minor,
        rate_bp: invoice.tax.rate_bp,
        tax_minor: invoice.tax.amount_minor,
        total_minor: invoice.total_minor,
        issued_at_ms: T0 + 40,
    }
}

pub fn payment(id: PaymentId, order: OrderId, key: &str, status: PaymentStatus) -> PaymentRecord {
    PaymentRecord {
        payment_id: id,
        order_id: order,
        user_id: USER,
        idempotency_key: key.into(),
        method: PaymentMethod::Card,
        instrument_masked: "************4242".into(),
        amount_minor: 40_000,
        tip_minor: 0,
        status,
        transaction_ref: (status == PaymentStatus::Succeeded).then(|| "sbx_ch_000001".into()),
        failure: None,
        created_at_ms: T0 + 50,
        updated_at_ms: T0 + 60,
    }
}

pub fn pricing() -> PricingSettings {
    PricingSettings {
        currency: "INR".into(),
        utc_offset_minutes: 330,
        tasks: vec![TaskPricing {
            task: "companion".into(),
            base_minor: 30_000,
            per_minute_minor: 800,
            minimum_minor: 40_000,
        }],
        night: None,
        commission_bp: 2_000,
        tax_bp: 0,
        cancellation: wire::model::CancellationPolicy {
            free_minutes: 5,
            fee_minor: 5_000,
        },
    }
}

pub fn discount() -> DiscountCode {
    DiscountCode {
        code: "WELCOME10".into(),
        kind: DiscountKind::Percent {
            rate_bp: 1_000,
            cap_minor: 10_000,
        },
        expires_at_ms: None,
        min_order_minor: 0,
        once_per_user: true,
    }
}

fn order_with(id: OrderId) -> storage::OrderRecord {
    let mut o = new_order(USER, ASSOCIATE, T0);
    o.order_id = id;
    o.request_id = RequestId(uuid::Uuid::from_u128(id.0.as_u128() + 0x100));
    o
}

/// Walks `order` through `steps`, each one millisecond after the last.
fn walk(s: &Store, order: OrderId, steps: Vec<(OrderEventKind, Vec<SideWrite>)>) {
    for (i, (kind, side)) in steps.into_iter().enumerate() {
        s.transition(order, T0 + 1 + i as u64, kind, &side)
            .unwrap()
            .ticket
            .wait()
            .unwrap();
    }
}

/// Writes the fixture into `$SPEEDY_WRITE_FIXTURE_DIR` (run by hand, with `--ignored`,
/// when the format changes; then commit the directory as `tests/fixtures/v<N>`).
#[test]
#[ignore = "writes a fixture directory by hand"]
fn write_fixture() {
    let Ok(dir) = std::env::var(FIXTURE_ENV) else {
        return;
    };
    write_fixture_to(Path::new(&dir));
}

fn write_fixture_to(dir: &Path) {
    let s = Store::open(&StoreConfig {
        path: Some(dir.to_path_buf()),
        cache_bytes: 8 * 1024 * 1024,
        ..StoreConfig::default()
    })
    .unwrap();
    s.put_user(&UserProfile {
        id: USER,
        name: "Asha".into(),
        phone: "+91-90000-00001".into(),
        email: Some("asha@example.com".into()),
        addresses: vec![],
        date_of_birth: Some("1990-01-31".into()),
        life_events: vec![],
        rating_sum: 0,
        rating_count: 0,
        created_at_ms: T0,
    })
    .unwrap()
    .wait()
    .unwrap();
    s.put_associate(&AssociateProfile {
        id: ASSOCIATE,
        name: "Ravi".into(),
        phone: "+91-90000-00002".into(),
        skills: vec!["companion".into()],
        home_zone: None,
        rating_sum: 0,
        rating_count: 0,
        created_at_ms: T0,
    })
    .unwrap()
    .wait()
    .unwrap();
    s.put_pricing(&pricing()).unwrap().wait().unwrap();
    s.put_discount(&discount()).unwrap().wait().unwrap();

    for id in [CLOSED, STARTED, BILLED] {
        s.create_order(&order_with(id))
            .unwrap()
            .ticket
            .wait()
            .unwrap();
    }
    let to_completed = || {
        vec![
            (OrderEventKind::EnRoute, vec![]),
            (OrderEventKind::Arrived, vec![]),
            (OrderEventKind::Started, vec![]),
            (OrderEventKind::Completed { minutes: 12 }, vec![]),
        ]
    };
    walk(&s, STARTED, to_completed()[..3].to_vec());

    let closed_invoice = invoice(CLOSED_INVOICE, CLOSED, 40_000);
    let mut paid_invoice = closed_invoice.clone();
    paid_invoice.settlement = Some(wire::model::Settlement {
        method: PaymentMethod::Card,
        transaction_ref: "sbx_ch_000001".into(),
        paid_at_ms: T0 + 60,
    });
    let paid = payment(PAID, CLOSED, "closed-key", PaymentStatus::Succeeded);
    assert!(matches!(
        s.begin_payment(&payment(PAID, CLOSED, "closed-key", PaymentStatus::Pending))
            .unwrap(),
        PaymentStart::Created(..)
    ));
    let mut steps = to_completed();
    steps.push((
        OrderEventKind::Billed {
            invoice_id: CLOSED_INVOICE,
            total_minor: 40_000,
        },
        vec![
            SideWrite::Invoice(closed_invoice.clone()),
            SideWrite::TaxInvoice(tax(&closed_invoice)),
        ],
    ));
    steps.push((
        OrderEventKind::Paid {
            payment_id: PAID,
            method: PaymentMethod::Card,
            amount_minor: 40_000,
        },
        vec![SideWrite::Payment(paid), SideWrite::Invoice(paid_invoice)],
    ));
    steps.push((OrderEventKind::Closed, vec![]));
    walk(&s, CLOSED, steps);

    let billed_invoice = invoice(BILLED_INVOICE, BILLED, 40_000);
    let mut steps = to_completed();
    steps.push((
        OrderEventKind::Billed {
            invoice_id: BILLED_INVOICE,
            total_minor: 40_000,
        },
        vec![
            SideWrite::Invoice(billed_invoice.clone()),
            SideWrite::TaxInvoice(tax(&billed_invoice)),
        ],
    ));
    walk(&s, BILLED, steps);
    match s
        .begin_payment(&payment(
            PENDING,
            BILLED,
            "pending-key",
            PaymentStatus::Pending,
        ))
        .unwrap()
    {
        PaymentStart::Created(_, ticket) => ticket.wait().unwrap(),
        PaymentStart::Existing(_) => panic!("fresh key"),
    }

    match s
        .add_feedback(&FeedbackRecord {
            id: FEEDBACK,
            order_id: CLOSED,
            about: Role::Associate,
            rating: 5,
            comment: Some("on time".into()),
            source: FeedbackSource::App,
            at_ms: T0 + 100,
        })
        .unwrap()
    {
        storage::FeedbackOutcome::Recorded(t) => t.wait().unwrap(),
        other => panic!("{other:?}"),
    }
    s.flush_blocking().unwrap();
}
