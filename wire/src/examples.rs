//! One example of every frame, with fixed ids: the source of the protocol docs' examples,
//! the fuzzers' seeds and the tests' corpus.

use uuid::Uuid;

use crate::client_msg::*;
use crate::error::ErrorCode;
use crate::ids::*;
use crate::model::*;
use crate::server_msg::*;

const USER: Uuid = Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0001);
const ASSOCIATE: Uuid = Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0002);
const REQUEST: RequestId = RequestId(Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0003));
const ORDER: OrderId = OrderId(Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0004));
const INVOICE: InvoiceId = InvoiceId(Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0005));
const PAYMENT: PaymentId = PaymentId(Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0006));
const AT: UnixMs = 1_764_000_000_000;

fn pickup() -> Point {
    Point {
        lat: 12.9716,
        lng: 77.5946,
    }
}

/// One example of every client frame, in [`ClientMessage::TYPES`] order.
pub fn client_examples() -> Vec<ClientMessage> {
    vec![
        Location {
            point: pickup(),
            accuracy_m: Some(8),
        }
        .into(),
        GoOnline {
            skills: vec!["companion".into(), "errand".into()],
        }
        .into(),
        GoOffline {}.into(),
        SetZone {
            zone: Some(Zone::Circle {
                centre: pickup(),
                radius_m: 5_000,
            }),
        }
        .into(),
        TaskRequest {
            client_ref: "req-42".into(),
            task: "companion".into(),
            pickup: pickup(),
            note: Some("Gate 2, blue building".into()),
            discount_code: Some("WELCOME50".into()),
        }
        .into(),
        CancelRequest {
            request_id: REQUEST,
        }
        .into(),
        Accept {
            request_id: REQUEST,
        }
        .into(),
        Decline {
            request_id: REQUEST,
        }
        .into(),
        EnRoute { order_id: ORDER }.into(),
        Arrived { order_id: ORDER }.into(),
        Start {
            order_id: ORDER,
            pin: "4821".into(),
        }
        .into(),
        Complete { order_id: ORDER }.into(),
        CancelOrder {
            order_id: ORDER,
            reason: Some("plans changed".into()),
        }
        .into(),
        Pay {
            order_id: ORDER,
            method: PaymentMethod::Card,
            instrument: "4242424242424242".into(),
            idempotency_key: "pay-7f3a".into(),
            tip_minor: Some(5_000),
        }
        .into(),
        CashReceived {
            order_id: ORDER,
            amount_minor: 64_900,
        }
        .into(),
        Feedback {
            order_id: ORDER,
            rating: 5,
            comment: Some("Punctual and kind".into()),
        }
        .into(),
        Heartbeat { nonce: Some(17) }.into(),
    ]
}

fn party(id: Uuid, name: &str) -> PartySummary {
    PartySummary {
        id,
        name: name.into(),
        phone: "+91-90000-00000".into(),
        rating_centi: Some(475),
        rating_count: 12,
    }
}

/// An example invoice whose lines sum to its total.
pub fn example_invoice() -> Invoice {
    let line = |kind, label: &str, amount_minor| LineItem {
        kind,
        label: label.into(),
        amount_minor,
    };
    Invoice {
        invoice_id: INVOICE,
        order_id: ORDER,
        currency: "INR".into(),
        lines: vec![
            line(LineKind::BaseFare, "Companion base fare", 30_000),
            line(LineKind::Time, "45 min at 8.00/min", 36_000),
            line(LineKind::Discount, "WELCOME50 (50%, max 100.00)", -10_000),
            line(LineKind::Tax, "GST 18%", 10_080),
            line(LineKind::Tip, "Tip", 5_000),
        ],
        tax: TaxLine {
            base_minor: 56_000,
            rate_bp: 1_800,
            amount_minor: 10_080,
        },
        total_minor: 71_080,
        commission_minor: 11_200,
        payout_minor: 49_800,
        issued_at_ms: AT + 3_600_000,
        settlement: None,
    }
}

fn snapshot() -> OrderSnapshot {
    OrderSnapshot {
        order_id: ORDER,
        request_id: REQUEST,
        state: OrderState::Allotted,
        task: "companion".into(),
        pickup: pickup(),
        note: Some("Gate 2, blue building".into()),
        user: party(USER, "Asha"),
        associate: party(ASSOCIATE, "Ravi"),
        pin: Some("4821".into()),
        discount_code: Some("WELCOME50".into()),
        allotted_at_ms: AT,
        started_at_ms: None,
        completed_at_ms: None,
        invoice: None,
        cancellation: None,
    }
}

/// One example of every engine frame, in [`ServerMessage::TYPES`] order.
pub fn server_examples() -> Vec<ServerMessage> {
    let mut paid = example_invoice();
    paid.settlement = Some(Settlement {
        method: PaymentMethod::Card,
        transaction_ref: "sbx_ch_019ad1c4e6f07a5c8d3b2e1f0a9c8b7d".into(),
        paid_at_ms: AT + 3_700_000,
    });
    vec![
        Welcome {
            id: USER,
            role: Role::User,
            protocol: "speedy.v1".into(),
            heartbeat_s: 20,
            server_time_ms: AT,
        }
        .into(),
        Status {
            availability: Availability::Available,
            skills: vec!["companion".into()],
        }
        .into(),
        RequestReceived {
            client_ref: "req-42".into(),
            request_id: REQUEST,
            expires_at_ms: AT + 300_000,
        }
        .into(),
        Offer {
            request_id: REQUEST,
            task: "companion".into(),
            pickup: pickup(),
            distance_m: 850,
            note: Some("Gate 2, blue building".into()),
            expires_at_ms: AT + 45_000,
        }
        .into(),
        OfferEnded {
            request_id: REQUEST,
            reason: OfferEnd::Cancelled,
        }
        .into(),
        Allotted {
            client_ref: Some("req-42".into()),
            order: Box::new(snapshot()),
        }
        .into(),
        NoAssociate {
            client_ref: "req-42".into(),
            request_id: REQUEST,
        }
        .into(),
        RequestCancelled {
            client_ref: "req-42".into(),
            request_id: REQUEST,
        }
        .into(),
        OrderFrame {
            order: Box::new(snapshot()),
        }
        .into(),
        OrderUpdate {
            order_id: ORDER,
            state: OrderState::Arrived,
            at_ms: AT + 600_000,
            by: Some(Role::Associate),
        }
        .into(),
        PeerLocation {
            order_id: ORDER,
            point: pickup(),
            at_ms: AT + 1_000,
        }
        .into(),
        InvoiceFrame {
            invoice: Box::new(example_invoice()),
        }
        .into(),
        PaymentResult {
            payment: Box::new(PaymentOutcome {
                payment_id: PAYMENT,
                order_id: ORDER,
                idempotency_key: "pay-7f3a".into(),
                status: PaymentStatus::Succeeded,
                amount_minor: 71_080,
                transaction_ref: Some("sbx_ch_019ad1c4e6f07a5c8d3b2e1f0a9c8b7d".into()),
                failure: None,
            }),
        }
        .into(),
        OrderClosed {
            order_id: ORDER,
            invoice: Box::new(paid),
        }
        .into(),
        FeedbackRequest {
            order_id: ORDER,
            about: Box::new(party(ASSOCIATE, "Ravi")),
        }
        .into(),
        FeedbackRecorded { order_id: ORDER }.into(),
        ErrorFrame {
            code: ErrorCode::UnknownTaskType,
            message: "task: unknown task type \"juggling\"".into(),
            client_ref: Some("req-42".into()),
        }
        .into(),
        ServerHeartbeat {
            server_time_ms: AT,
            nonce: Some(17),
        }
        .into(),
        Shutdown {
            reconnect_after_ms: 2_000,
        }
        .into(),
    ]
}
