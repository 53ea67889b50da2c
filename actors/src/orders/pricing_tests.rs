use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

use super::*;

fn input<'a>(task: &'a str, minutes: u32, discount: Option<&'a DiscountCode>) -> BillInput<'a> {
    BillInput {
        invoice_id: InvoiceId(uuid::Uuid::nil()),
        order_id: OrderId(uuid::Uuid::nil()),
        task,
        minutes,
        // 12:00 IST.
        started_at_ms: 1_764_000_000_000 - (1_764_000_000_000 % 86_400_000)
            + 6 * 3_600_000
            + 30 * 60_000,
        issued_at_ms: 1_764_000_000_000,
        discount,
    }
}

fn sum(inv: &Invoice) -> Minor {
    inv.lines.iter().map(|l| l.amount_minor).sum()
}

#[test]
fn rounding_is_half_up() {
    assert_eq!(apply_bp(5, 1_000), Ok(1)); // 0.5 -> 1
    assert_eq!(apply_bp(4, 1_000), Ok(0)); // 0.4 -> 0
    assert_eq!(apply_bp(15, 1_000), Ok(2)); // 1.5 -> 2
    assert_eq!(apply_bp(-15, 1_000), Ok(-2));
    assert_eq!(apply_bp(56_000, 1_800), Ok(10_080));
}

#[test]
fn a_worked_example() {
    let s = sample_settings();
    let code = DiscountCode {
        code: "WELCOME50".into(),
        kind: DiscountKind::Percent {
            rate_bp: 5_000,
            cap_minor: 10_000,
        },
        expires_at_ms: None,
        min_order_minor: 0,
        once_per_user: true,
    };
    let inv = price(&s, &input("companion", 45, Some(&code))).unwrap();
    // 300.00 base + 45 x 8.00 = 660.00; 50 % capped at 100.00; 560.00 taxable; 18 % = 100.80.
    assert_eq!(
        inv.tax,
        TaxLine {
            base_minor: 56_000,
            rate_bp: 1_800,
            amount_minor: 10_080
        }
    );
    assert_eq!(inv.total_minor, 66_080);
    assert_eq!(inv.commission_minor, 11_200);
    assert_eq!(inv.payout_minor, 44_800);
    assert_eq!(sum(&inv), inv.total_minor);
    let tipped = with_tip(&inv, 5_000).unwrap();
    assert_eq!((tipped.total_minor, tipped.payout_minor), (71_080, 49_800));
    assert_eq!(sum(&tipped), tipped.total_minor);
}

#[test]
fn minimum_fare_night_and_expired_codes() {
    let s = sample_settings();
    let short = price(&s, &input("errand", 2, None)).unwrap();
    assert!(
        short
            .lines
            .iter()
            .any(|l| l.kind == LineKind::MinimumFareTopUp)
    );
    assert_eq!(short.tax.base_minor, 15_000);
    let mut night = input("helper", 10, None);
    // 23:30 IST.
    night.started_at_ms = night.started_at_ms - 6 * 3_600_000 - 30 * 60_000 + 18 * 3_600_000;
    let inv = price(&s, &night).unwrap();
    assert_eq!(
        inv.lines
            .iter()
            .find(|l| l.kind == LineKind::Surcharge)
            .unwrap()
            .amount_minor,
        5_200
    );
    let expired = DiscountCode {
        code: "OLD".into(),
        kind: DiscountKind::Flat {
            amount_minor: 1_000,
        },
        expires_at_ms: Some(1),
        min_order_minor: 0,
        once_per_user: false,
    };
    let inv = price(&s, &input("helper", 10, Some(&expired))).unwrap();
    assert!(inv.lines.iter().all(|l| l.kind != LineKind::Discount));
    assert_eq!(
        price(&s, &input("juggling", 10, None)),
        Err(PricingError::UnknownTask("juggling".into()))
    );
}

#[test]
fn settings_are_validated() {
    assert_eq!(validate(&sample_settings()), Ok(()));
    let mut s = sample_settings();
    s.tax_bp = 10_001;
    assert!(
        matches!(validate(&s), Err(PricingError::InvalidSettings(m)) if m.starts_with("tax_bp"))
    );
    let mut s = sample_settings();
    s.tasks[0].base_minor = -1;
    assert!(validate(&s).is_err());
    let mut s = sample_settings();
    s.tasks.push(s.tasks[0].clone());
    assert!(validate(&s).is_err());
}

fn settings() -> impl Strategy<Value = PricingSettings> {
    (
        (0i64..1_000_000, 0i64..10_000, 0i64..2_000_000),
        proptest::option::of((0u16..1_440, 0u16..1_440, 0u32..=10_000)),
        0u32..=10_000,
        0u32..=10_000,
        -840i16..=840,
    )
        .prop_filter("distinct night bounds", |(_, night, ..)| {
            night.is_none_or(|(a, b, _)| a != b)
        })
        .prop_map(
            |((base, per_minute, minimum), night, commission_bp, tax_bp, utc_offset_minutes)| {
                PricingSettings {
                    currency: "INR".into(),
                    utc_offset_minutes,
                    tasks: vec![TaskPricing {
                        task: "t".into(),
                        base_minor: base,
                        per_minute_minor: per_minute,
                        minimum_minor: minimum,
                    }],
                    night: night.map(|(start_minute, end_minute, rate_bp)| NightSurcharge {
                        start_minute,
                        end_minute,
                        rate_bp,
                    }),
                    commission_bp,
                    tax_bp,
                    cancellation: CancellationPolicy {
                        free_minutes: 5,
                        fee_minor: 100,
                    },
                }
            },
        )
}

fn discount() -> impl Strategy<Value = Option<DiscountCode>> {
    proptest::option::of(
        (
            prop_oneof![
                (0u32..=10_000, 0i64..1_000_000)
                    .prop_map(|(rate_bp, cap_minor)| DiscountKind::Percent { rate_bp, cap_minor }),
                (0i64..5_000_000).prop_map(|amount_minor| DiscountKind::Flat { amount_minor }),
            ],
            proptest::option::of(0u64..3_000_000_000_000),
            0i64..1_000_000,
        )
            .prop_map(|(kind, expires_at_ms, min_order_minor)| DiscountCode {
                code: "C".into(),
                kind,
                expires_at_ms,
                min_order_minor,
                once_per_user: true,
            }),
    )
}

proptest! {
    #![proptest_config(Config { cases: 2_000, rng_seed: RngSeed::Fixed(11), failure_persistence: None, ..Config::default() })]

    #[test]
    fn invoices_add_up(
        s in settings(),
        code in discount(),
        minutes in 0u32..10_000,
        started in 0u64..3_000_000_000_000,
        tip in 0i64..1_000_000,
    ) {
        prop_assert_eq!(validate(&s), Ok(()));
        let mut inp = input("t", minutes, code.as_ref());
        inp.started_at_ms = started;
        let inv = price(&s, &inp).unwrap();
        let inv = with_tip(&inv, tip).unwrap();
        // The lines sum to the total.
        prop_assert_eq!(sum(&inv), inv.total_minor);
        // Nothing is negative but the discount line.
        prop_assert!(inv.total_minor >= 0 && inv.payout_minor >= 0 && inv.commission_minor >= 0);
        prop_assert!(inv.lines.iter().all(|l| l.amount_minor >= 0 || l.kind == LineKind::Discount));
        // The discount never exceeds what it discounts.
        let discount: Minor = -inv.lines.iter().filter(|l| l.kind == LineKind::Discount).map(|l| l.amount_minor).sum::<Minor>();
        let before: Minor = inv.lines.iter()
            .filter(|l| matches!(l.kind, LineKind::BaseFare | LineKind::Time | LineKind::Surcharge | LineKind::MinimumFareTopUp))
            .map(|l| l.amount_minor).sum();
        prop_assert!(discount >= 0 && discount <= before);
        // Commission, payout and tax share the total exactly.
        prop_assert_eq!(inv.commission_minor + inv.payout_minor + inv.tax.amount_minor, inv.total_minor);
        prop_assert_eq!(inv.tax.base_minor, before - discount);
        // The same input gives the same invoice.
        let again = with_tip(&price(&s, &inp).unwrap(), tip).unwrap();
        prop_assert_eq!(again, inv);
    }

    #[test]
    fn cancellation_fee_invoices_add_up(s in settings(), fee in 0i64..100_000_000, at in 0u64..3_000_000_000_000) {
        let inv = cancellation_invoice(&s, wire::InvoiceId::new(), wire::OrderId::new(), fee, at).unwrap();
        prop_assert_eq!(sum(&inv), inv.total_minor);
        prop_assert_eq!(inv.commission_minor + inv.payout_minor + inv.tax.amount_minor, inv.total_minor);
        prop_assert_eq!(inv.tax.base_minor, fee);
        prop_assert!(inv.payout_minor >= 0 && inv.commission_minor >= 0);
        prop_assert_eq!(inv.lines[0].kind, LineKind::CancellationFee);
    }
}
