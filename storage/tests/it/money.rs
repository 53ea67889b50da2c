//! Payments, invoices, feedback and discounts.

use std::sync::Arc;

use storage::{
    AssociateProfile, FeedbackOutcome, FeedbackRecord, FeedbackSource, PaymentRecord, PaymentStart,
    SideWrite, TaxInvoice, UserProfile,
};
use wire::model::{OrderEventKind, PaymentMethod, PaymentStatus, Role};
use wire::{AssociateId, FeedbackId, InvoiceId, OrderId, PaymentId, UserId};

use crate::new_order;
use crate::{Kind, both};

fn payment(user: UserId, order: OrderId, key: &str) -> PaymentRecord {
    PaymentRecord {
        payment_id: PaymentId::new(),
        order_id: order,
        user_id: user,
        idempotency_key: key.into(),
        method: PaymentMethod::Card,
        instrument_masked: "************4242".into(),
        amount_minor: 1_000,
        tip_minor: 0,
        status: PaymentStatus::Pending,
        transaction_ref: None,
        failure: None,
        created_at_ms: 0,
        updated_at_ms: 0,
    }
}

fn an_idempotency_key_names_one_payment_even_under_concurrency(kind: Kind) {
    let s = kind.store();
    let user = UserId::new();
    let order = OrderId::new();
    let created = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ids: Vec<PaymentId> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let s = s.clone();
                let created = created.clone();
                scope.spawn(
                    move || match s.begin_payment(&payment(user, order, "k1")).unwrap() {
                        PaymentStart::Created(p, t) => {
                            t.wait().unwrap();
                            created.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            p.payment_id
                        }
                        PaymentStart::Existing(p) => p.payment_id,
                    },
                )
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(created.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(ids.windows(2).all(|w| w[0] == w[1]));
    // Another user may reuse the same key string.
    assert!(matches!(
        s.begin_payment(&payment(UserId::new(), order, "k1"))
            .unwrap(),
        PaymentStart::Created(..)
    ));
}
both!(an_idempotency_key_names_one_payment_even_under_concurrency);

fn tax_invoices_are_numbered_without_gaps(kind: Kind) {
    let s = kind.store();
    let mut numbers = Vec::new();
    for _ in 0..3 {
        let o = new_order(UserId::new(), AssociateId::new(), 0);
        s.create_order(&o).unwrap();
        for kind in [
            OrderEventKind::Arrived,
            OrderEventKind::Started,
            OrderEventKind::Completed { minutes: 5 },
        ] {
            s.transition(o.order_id, 1, kind, &[]).unwrap();
        }
        let mut invoice = wire::examples::example_invoice();
        invoice.invoice_id = InvoiceId::new();
        invoice.order_id = o.order_id;
        let tax = TaxInvoice {
            number: 0,
            invoice_id: invoice.invoice_id,
            order_id: o.order_id,
            buyer: "Asha".into(),
            supplier: "Ravi".into(),
            taxable_minor: invoice.tax.base_minor,
            rate_bp: invoice.tax.rate_bp,
            tax_minor: invoice.tax.amount_minor,
            total_minor: invoice.total_minor,
            issued_at_ms: 2,
        };
        let billed = OrderEventKind::Billed {
            invoice_id: invoice.invoice_id,
            total_minor: invoice.total_minor,
        };
        s.transition(
            o.order_id,
            2,
            billed,
            &[
                SideWrite::Invoice(invoice.clone()),
                SideWrite::TaxInvoice(tax),
            ],
        )
        .unwrap();
        assert_eq!(s.invoice(invoice.invoice_id).unwrap().unwrap(), invoice);
        numbers.push(s.tax_invoice(invoice.invoice_id).unwrap().unwrap().number);
    }
    assert_eq!(numbers, vec![1, 2, 3]);
}
both!(tax_invoices_are_numbered_without_gaps);

fn app_feedback_is_once_per_party_and_updates_ratings(kind: Kind) {
    let s = kind.store();
    let user = UserProfile {
        id: UserId::new(),
        name: "Asha".into(),
        phone: "1".into(),
        email: None,
        addresses: vec![],
        date_of_birth: Some("1990-04-01".into()),
        life_events: vec![],
        rating_sum: 0,
        rating_count: 0,
        created_at_ms: 0,
    };
    let associate = AssociateProfile {
        id: AssociateId::new(),
        name: "Ravi".into(),
        phone: "2".into(),
        skills: vec!["companion".into()],
        home_zone: None,
        rating_sum: 8,
        rating_count: 2,
        created_at_ms: 0,
    };
    s.put_user(&user).unwrap().wait().unwrap();
    s.put_associate(&associate).unwrap().wait().unwrap();
    let o = new_order(user.id, associate.id, 0);
    s.create_order(&o).unwrap();
    let fb = |about, rating, source| FeedbackRecord {
        id: FeedbackId::new(),
        order_id: o.order_id,
        about,
        rating,
        comment: None,
        source,
        at_ms: 5,
    };
    assert!(matches!(
        s.add_feedback(&fb(Role::Associate, 5, FeedbackSource::App))
            .unwrap(),
        FeedbackOutcome::Recorded(_)
    ));
    match s
        .add_feedback(&fb(Role::Associate, 1, FeedbackSource::App))
        .unwrap()
    {
        FeedbackOutcome::AlreadyRated(first) => assert_eq!(first.rating, 5, "the first rating"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        s.add_feedback(&fb(Role::User, 4, FeedbackSource::App))
            .unwrap(),
        FeedbackOutcome::Recorded(_)
    ));
    let social = FeedbackSource::External {
        source: "twitter".into(),
    };
    assert!(matches!(
        s.add_feedback(&fb(Role::Associate, 2, social.clone()))
            .unwrap(),
        FeedbackOutcome::Recorded(_)
    ));
    // The same source about the same party of the same order: counted once.
    match s.add_feedback(&fb(Role::Associate, 4, social)).unwrap() {
        FeedbackOutcome::AlreadyRated(first) => assert_eq!(first.rating, 2),
        other => panic!("{other:?}"),
    }
    let instagram = FeedbackSource::External {
        source: "instagram".into(),
    };
    assert!(matches!(
        s.add_feedback(&fb(Role::Associate, 3, instagram)).unwrap(),
        FeedbackOutcome::Recorded(_)
    ));
    let a = s.associate(associate.id).unwrap().unwrap();
    assert_eq!((a.rating_sum, a.rating_count), (8 + 5 + 2 + 3, 5));
    assert_eq!(a.summary().rating_centi, Some(360));
    let u = s.user(user.id).unwrap().unwrap();
    assert_eq!((u.rating_sum, u.rating_count), (4, 1));
    assert_eq!(s.feedback_for(o.order_id).unwrap().len(), 4);
}
both!(app_feedback_is_once_per_party_and_updates_ratings);

fn a_discount_is_redeemed_once_per_user(kind: Kind) {
    let s = kind.store();
    let (u1, u2) = (UserId::new(), UserId::new());
    assert!(!s.redeemed("WELCOME50", u1).unwrap());
    let first = OrderId::new();
    assert!(s.redeem("WELCOME50", u1, first).unwrap());
    assert!(
        s.redeem("WELCOME50", u1, first).unwrap(),
        "the same order may redeem again"
    );
    assert!(!s.redeem("WELCOME50", u1, OrderId::new()).unwrap());
    assert!(s.redeemed("WELCOME50", u1).unwrap());
    assert!(s.redeem("WELCOME50", u2, OrderId::new()).unwrap());
    assert!(!s.redeemed("OTHER", u1).unwrap());
}
both!(a_discount_is_redeemed_once_per_user);
