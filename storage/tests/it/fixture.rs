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

pub const USER: UserId = UserId(uuid::Uuid::from_u128(
    0x0191_0000_0000_7000_8000_0000_0000_0001,
));
pub const ASSOCIATE: AssociateId = AssociateId(uuid::Uuid::from_u128(
    0x0191_0000_0000_7000_8000_0000_0000_0002,
));
/// Closed, paid by card, rated.
pub const CLOSED: OrderId = OrderId(uuid::Uuid::from_u128(
    0x0191_0000_0000_7000_8000_0000_0000_0010,
));
/// Started, open.
pub const STARTED: OrderId = OrderId(uuid::Uuid::from_u128(
    0x0191_0000_0000_7000_8000_0000_0000_0011,
));
/// Billed, with a card payment pending.
pub const BILLED: OrderId = OrderId(uuid::Uuid::from_u128(
    0x0191_0000_0000_7000_8000_0000_0000_0012,
));
pub const CLOSED_INVOICE: InvoiceId = InvoiceId(uuid::Uuid::from_u128(
    0x0191_0000_0000_7000_8000_0000_0000_0020,
));
pub const BILLED_INVOICE: InvoiceId = InvoiceId(uuid::Uuid::from_u128(
    0x0191_0000_0000_7000_8000_0000_0000_0021,
));
pub const PAID: PaymentId = PaymentId(uuid::Uuid::from_u128(
    0x0191_0000_0000_7000_8000_0000_0000_0030,
));
pub const PENDING: PaymentId = PaymentId(uuid::Uuid::from_u128(
    0x0191_0000_0000_7000_8000_0000_0000_0031,
));
pub const FEEDBACK: FeedbackId = FeedbackId(uuid::Uuid::from_u128(
    0x0191_0000_0000_7000_8000_0000_0000_0040,
));
/// Schema 2: cancelled with a fee not yet paid.
pub const OWES_FEE: OrderId = OrderId(uuid::Uuid::from_u128(
    0x0191_0000_0000_7000_8000_0000_0000_0013,
));
pub const FEE_INVOICE: InvoiceId = InvoiceId(uuid::Uuid::from_u128(
    0x0191_0000_0000_7000_8000_0000_0000_0022,
));
/// Schema 2: an open request.
pub const REQUEST: RequestId = RequestId(uuid::Uuid::from_u128(
    0x0191_0000_0000_7000_8000_0000_0000_0050,
));
/// Schema 2: external feedback.
pub const EXTERNAL: FeedbackId = FeedbackId(uuid::Uuid::from_u128(
    0x0191_0000_0000_7000_8000_0000_0000_0041,
));

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
    write_schema_2_records(&s);
    s.flush_blocking().unwrap();
}

/// What schema 2 added: an open request, presence, a cancelled order owing its fee, and
/// external feedback.
fn write_schema_2_records(s: &Store) {
    s.put_request(&open_request()).unwrap().wait().unwrap();
    s.put_presence(ASSOCIATE, &presence())
        .unwrap()
        .wait()
        .unwrap();
    s.create_order(&order_with(OWES_FEE))
        .unwrap()
        .ticket
        .wait()
        .unwrap();
    let fee = invoice(FEE_INVOICE, OWES_FEE, 5_000);
    walk(
        s,
        OWES_FEE,
        vec![(
            OrderEventKind::Cancelled {
                by: Role::User,
                reason: Some("changed plans".into()),
                fee_minor: 5_000,
                invoice_id: Some(FEE_INVOICE),
            },
            vec![
                SideWrite::Invoice(fee.clone()),
                SideWrite::TaxInvoice(tax(&fee)),
            ],
        )],
    );
    match s
        .add_feedback(&FeedbackRecord {
            id: EXTERNAL,
            order_id: CLOSED,
            about: Role::Associate,
            rating: 4,
            comment: None,
            source: FeedbackSource::External {
                source: "twitter".into(),
            },
            at_ms: T0 + 200,
        })
        .unwrap()
    {
        storage::FeedbackOutcome::Recorded(t) => t.wait().unwrap(),
        other => panic!("{other:?}"),
    }
}

pub fn open_request() -> storage::OpenRequest {
    storage::OpenRequest {
        request_id: REQUEST,
        user_id: USER,
        client_ref: "r-1".into(),
        task: "companion".into(),
        pickup: storage::LatLng::new(12.97, 77.59).unwrap(),
        note: Some("gate 2".into()),
        discount_code: None,
        created_at_ms: T0 + 300,
        deadline_at_ms: T0 + 300 + 300_000,
        refused: vec![ASSOCIATE],
    }
}

pub fn presence() -> storage::Presence {
    storage::Presence {
        online: true,
        skills: vec!["companion".into()],
        at_ms: T0 + 5,
    }
}

/// Opens a copy of the committed fixture of schema `version`.
fn open_fixture(version: u32) -> (tempfile::TempDir, Store) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/v{version}"));
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let store = Store::open(&StoreConfig {
        path: Some(dir.path().to_path_buf()),
        cache_bytes: 8 * 1024 * 1024,
        ..StoreConfig::default()
    })
    .unwrap_or_else(|e| panic!("fixture v{version}: {e}"));
    (dir, store)
}

/// What every fixture holds, read through this build.
fn check_schema_1_records(s: &Store) {
    use wire::model::OrderState;
    let user = s.user(USER).unwrap().unwrap();
    assert_eq!(
        (user.name.as_str(), user.email.as_deref()),
        ("Asha", Some("asha@example.com"))
    );
    let associate = s.associate(ASSOCIATE).unwrap().unwrap();
    assert_eq!(associate.skills, ["companion"]);
    assert_eq!(s.pricing().unwrap(), Some(pricing()));
    assert_eq!(s.discount("WELCOME10").unwrap(), Some(discount()));

    let closed = s.order(CLOSED).unwrap().unwrap();
    assert_eq!(closed.state, OrderState::Closed);
    assert_eq!(closed.payment_id, Some(PAID));
    let states: Vec<OrderState> = s.events(CLOSED).unwrap().iter().map(|e| e.state).collect();
    assert_eq!(
        states,
        [
            OrderState::Allotted,
            OrderState::EnRoute,
            OrderState::Arrived,
            OrderState::Started,
            OrderState::Completed,
            OrderState::Billed,
            OrderState::Paid,
            OrderState::Closed
        ]
    );
    assert_eq!(crate::replay(&closed, &s.events(CLOSED).unwrap()), closed);
    let paid_invoice = s.invoice(CLOSED_INVOICE).unwrap().unwrap();
    assert_eq!(
        paid_invoice.settlement.unwrap().transaction_ref,
        "sbx_ch_000001"
    );
    assert_eq!(s.tax_invoice(CLOSED_INVOICE).unwrap().unwrap().number, 1);
    assert_eq!(s.tax_invoice(BILLED_INVOICE).unwrap().unwrap().number, 2);

    // Payments through the indexes schema 2 builds from schema 1's records.
    let closed_payments = s.payments_for(CLOSED).unwrap();
    assert_eq!(closed_payments.len(), 1);
    assert_eq!(closed_payments[0].status, PaymentStatus::Succeeded);
    let pending = s.pending_payments().unwrap();
    assert_eq!(
        pending.iter().map(|p| p.payment_id).collect::<Vec<_>>(),
        [PENDING]
    );
    assert_eq!(s.payments_for(BILLED).unwrap()[0].payment_id, PENDING);
    assert_eq!(
        s.payment_by_key(USER, "closed-key")
            .unwrap()
            .unwrap()
            .payment_id,
        PAID
    );

    // The order indexes schema 2 builds: the user's three (or four) orders.
    let found = s
        .find_orders(&storage::OrderQuery {
            user: Some(USER),
            limit: 10,
            ..storage::OrderQuery::default()
        })
        .unwrap();
    let mut found: Vec<OrderId> = found.items.iter().map(|o| o.order_id).collect();
    found.retain(|o| *o != OWES_FEE);
    assert_eq!(found, [CLOSED, STARTED, BILLED]);
    let feedback = s.feedback_for(CLOSED).unwrap();
    assert!(feedback.iter().any(|f| f.id == FEEDBACK && f.rating == 5));
    let mut open: Vec<OrderId> = s
        .open_orders()
        .unwrap()
        .iter()
        .map(|o| o.order_id)
        .collect();
    open.retain(|o| *o != OWES_FEE);
    open.sort();
    assert_eq!(open, [STARTED, BILLED]);
}

/// What schema 2 added, read through this build.
fn check_schema_2_records(s: &Store) {
    assert_eq!(s.open_requests().unwrap(), [open_request()]);
    assert_eq!(s.presence(ASSOCIATE).unwrap(), Some(presence()));
    let owes = s.order(OWES_FEE).unwrap().unwrap();
    assert!(owes.owes_fee());
    assert_eq!(owes.invoice_id, Some(FEE_INVOICE));
    assert_eq!(s.invoice(FEE_INVOICE).unwrap().unwrap().total_minor, 5_000);
    assert!(
        s.open_orders()
            .unwrap()
            .iter()
            .any(|o| o.order_id == OWES_FEE)
    );
    let associate = s.associate(ASSOCIATE).unwrap().unwrap();
    assert_eq!((associate.rating_sum, associate.rating_count), (9, 2));
}

#[test]
fn every_committed_fixture_opens_with_this_build() {
    let (_dir, s) = open_fixture(1);
    check_schema_1_records(&s);
    assert_eq!(s.schema_version().unwrap(), storage::SCHEMA_VERSION);
    // Schema 1 held no open requests or presence.
    assert!(s.open_requests().unwrap().is_empty());

    let (_dir, s) = open_fixture(2);
    check_schema_1_records(&s);
    check_schema_2_records(&s);
}

/// Every read the seam offers, over every record of the fixture: equal on both stores.
fn assert_same_records(sled: &Store, pg: &Store) {
    assert_eq!(sled.users().unwrap(), pg.users().unwrap());
    assert_eq!(sled.associates().unwrap(), pg.associates().unwrap());
    assert_eq!(sled.discounts().unwrap(), pg.discounts().unwrap());
    assert_eq!(sled.pricing().unwrap(), pg.pricing().unwrap());
    assert_eq!(sled.open_requests().unwrap(), pg.open_requests().unwrap());
    assert_eq!(
        sled.presence(ASSOCIATE).unwrap(),
        pg.presence(ASSOCIATE).unwrap()
    );
    assert_eq!(sled.open_orders().unwrap(), pg.open_orders().unwrap());
    assert_eq!(
        sled.pending_payments().unwrap(),
        pg.pending_payments().unwrap()
    );
    assert_eq!(
        sled.events_since(0, 1_000).unwrap(),
        pg.events_since(0, 1_000).unwrap()
    );
    assert_eq!(sled.feed_next().unwrap(), pg.feed_next().unwrap());
    assert_eq!(
        sled.redeemed("WELCOME10", USER).unwrap(),
        pg.redeemed("WELCOME10", USER).unwrap()
    );
    for order in [CLOSED, STARTED, BILLED, OWES_FEE] {
        assert_eq!(sled.order(order).unwrap(), pg.order(order).unwrap());
        assert_eq!(sled.events(order).unwrap(), pg.events(order).unwrap());
        assert_eq!(
            sled.payments_for(order).unwrap(),
            pg.payments_for(order).unwrap()
        );
        assert_eq!(
            sled.feedback_for(order).unwrap(),
            pg.feedback_for(order).unwrap()
        );
    }
    for invoice in [CLOSED_INVOICE, BILLED_INVOICE, FEE_INVOICE] {
        assert_eq!(sled.invoice(invoice).unwrap(), pg.invoice(invoice).unwrap());
        assert_eq!(
            sled.tax_invoice(invoice).unwrap(),
            pg.tax_invoice(invoice).unwrap()
        );
    }
}

#[test]
fn copy_data_moves_every_fixture_into_postgres() {
    for version in [1, 2] {
        let (dir, sled) = open_fixture(version);
        drop(sled);
        let url = storage::pg::testing::fresh_database();
        let report = storage::pg::copy_sled_to_postgres(dir.path(), &url)
            .unwrap_or_else(|e| panic!("copying fixture v{version}: {e}"));
        assert_eq!((report.users, report.associates), (1, 1), "{report:?}");
        assert!(
            report.events >= 18 && report.tax_invoices >= 2,
            "{report:?}"
        );
        let pg = Store::postgres(&storage::pg::PgConfig::new(&url)).unwrap();
        check_schema_1_records(&pg);
        if version == 2 {
            check_schema_2_records(&pg);
        }
        let sled = Store::open(&StoreConfig {
            path: Some(dir.path().to_path_buf()),
            ..StoreConfig::default()
        })
        .unwrap();
        assert_same_records(&sled, &pg);

        // The copy goes on where the directory stopped: the feed, the tax numbers.
        let next_feed = pg.feed_next().unwrap();
        let next_tax = report.tax_invoices as u64 + 1;
        let fresh = order_with(OrderId::new());
        let created = pg.create_order(&fresh).unwrap();
        assert_eq!(created.feed_seq, next_feed);
        let bill = invoice(InvoiceId::new(), fresh.order_id, 1_000);
        let mut steps = vec![
            (OrderEventKind::EnRoute, vec![]),
            (OrderEventKind::Arrived, vec![]),
            (OrderEventKind::Started, vec![]),
            (OrderEventKind::Completed { minutes: 12 }, vec![]),
        ];
        steps.push((
            OrderEventKind::Billed {
                invoice_id: bill.invoice_id,
                total_minor: 1_000,
            },
            vec![
                SideWrite::Invoice(bill.clone()),
                SideWrite::TaxInvoice(tax(&bill)),
            ],
        ));
        walk(&pg, fresh.order_id, steps);
        assert_eq!(
            pg.tax_invoice(bill.invoice_id).unwrap().unwrap().number,
            next_tax
        );

        // A database that holds records already is refused, and keeps them.
        drop((pg, sled));
        let again = storage::pg::copy_sled_to_postgres(dir.path(), &url).unwrap_err();
        assert!(again.to_string().contains("empty"), "{again}");
    }
}

/// Where the Postgres fixture is: a plain `pg_dump` of the v2 directory fixture copied
/// into a database of Postgres schema 2.
fn pg_fixture(version: u32) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/pg-v{version}.sql"))
}

/// Writes the Postgres fixture (run by hand, with `--ignored`, when the format changes;
/// then commit `tests/fixtures/pg-v<N>.sql`): the v2 directory copied into Postgres by
/// this build, dumped with `pg_dump`.
#[test]
#[ignore = "writes a fixture file by hand"]
fn write_pg_fixture() {
    let Ok(version) = std::env::var("SPEEDY_WRITE_PG_FIXTURE") else {
        return;
    };
    let (dir, sled) = open_fixture(2);
    drop(sled);
    let url = storage::pg::testing::fresh_database();
    storage::pg::copy_sled_to_postgres(dir.path(), &url).unwrap();
    let dump = std::process::Command::new("runuser")
        .args([
            "-u",
            "postgres",
            "--",
            "pg_dump",
            "--no-owner",
            "--no-privileges",
        ])
        .arg("--inserts")
        .arg("--dbname")
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    // Plain SQL only: pg_dump's psql meta-commands (`\restrict`) are left out.
    let sql: String = String::from_utf8(dump.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('\\'))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(pg_fixture(version.parse().unwrap()), sql).unwrap();
}

/// A database written by an earlier build (the committed dump), opened by this one:
/// migrated, and every record reads as the directory fixture's.
#[test]
fn every_committed_postgres_fixture_opens_with_this_build() {
    let sql = std::fs::read_to_string(pg_fixture(2)).unwrap();
    let url = storage::pg::testing::fresh_database();
    storage::pg::testing::execute(&url, &sql);
    let pg = Store::postgres(&storage::pg::PgConfig::new(&url)).unwrap();
    check_schema_1_records(&pg);
    check_schema_2_records(&pg);
    let (_dir, sled) = open_fixture(2);
    assert_same_records(&sled, &pg);
}

#[test]
fn a_directory_from_an_unknown_version_is_refused_naming_both_versions() {
    for found in [0, storage::SCHEMA_VERSION + 1] {
        let (dir, s) = open_fixture(2);
        s.force_schema_version(found).unwrap();
        drop(s);
        let err = Store::open(&StoreConfig {
            path: Some(dir.path().to_path_buf()),
            ..StoreConfig::default()
        })
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&format!("schema version {found}"))
                && text.contains(&storage::SCHEMA_VERSION.to_string()),
            "{text}"
        );
    }
}
