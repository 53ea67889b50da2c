//! Payments across a restart, through the gateway seam: a payment left pending keeps
//! guarding its order until the gateway answers, and then settles once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actors::orders::gateway::{ChargeRequest, ChargeStatus, GatewayError, PaymentGateway};
use actors::orders::payment::PaymentConfig;
use actors::{ActorError, Clock, Dispatch, DispatchConfig, OrderConfig, Orders, Sessions};
use futures_util::future::BoxFuture;
use wire::model::{
    Invoice, LineItem, LineKind, OrderEventKind, OrderState, PartySummary, PaymentMethod,
    PaymentStatus, TaxLine,
};
use wire::{AssociateId, InvoiceId, OrderId, PartyId, PaymentId, RequestId, UserId};

use crate::harness::catalog;

/// A gateway that is down until told otherwise, then reports every key captured.
#[derive(Default)]
struct State {
    up: AtomicBool,
    asked: Mutex<Vec<String>>,
}

#[derive(Clone, Default)]
struct Flaky(Arc<State>);

impl std::ops::Deref for Flaky {
    type Target = State;

    fn deref(&self) -> &State {
        &self.0
    }
}

impl PaymentGateway for Flaky {
    fn charge(&self, _: ChargeRequest) -> BoxFuture<'static, Result<ChargeStatus, GatewayError>> {
        Box::pin(async { Err(GatewayError::Unavailable("down".into())) })
    }

    fn lookup(
        &self,
        key: String,
    ) -> BoxFuture<'static, Result<Option<ChargeStatus>, GatewayError>> {
        self.asked.lock().unwrap().push(key.clone());
        let up = self.up.load(Ordering::SeqCst);
        Box::pin(async move {
            if up {
                Ok(Some(ChargeStatus::Captured {
                    transaction_ref: format!("ref-{key}"),
                }))
            } else {
                Err(GatewayError::Unavailable("down".into()))
            }
        })
    }

    fn void(&self, _: String) -> BoxFuture<'static, Result<Option<ChargeStatus>, GatewayError>> {
        Box::pin(async { Err(GatewayError::Unavailable("down".into())) })
    }
}

fn party(id: uuid::Uuid) -> PartySummary {
    PartySummary {
        id,
        name: "p".into(),
        phone: "1".into(),
        rating_centi: None,
        rating_count: 0,
    }
}

/// A billed order of 400.00, waiting for its payment.
fn billed(store: &storage::Store) -> storage::OrderRecord {
    let (user, associate) = (UserId::new(), AssociateId::new());
    let order = storage::OrderRecord {
        order_id: OrderId::new(),
        request_id: RequestId::new(),
        user_id: user,
        associate_id: associate,
        state: OrderState::Allotted,
        task: "companion".into(),
        pickup: storage::LatLng::new(1.0, 1.0).unwrap(),
        note: None,
        discount_code: None,
        user: party(user.0),
        associate: party(associate.0),
        pin: "1234".into(),
        allotted_at_ms: 1,
        started_at_ms: None,
        completed_at_ms: None,
        ended_at_ms: None,
        invoice_id: None,
        payment_id: None,
        cancellation: None,
        next_seq: 0,
    };
    store.create_order_durable(order.clone()).wait().unwrap();
    let invoice = Invoice {
        invoice_id: InvoiceId::new(),
        order_id: order.order_id,
        currency: "INR".into(),
        lines: vec![LineItem {
            kind: LineKind::BaseFare,
            label: "fare".into(),
            amount_minor: 40_000,
        }],
        tax: TaxLine {
            base_minor: 40_000,
            rate_bp: 0,
            amount_minor: 0,
        },
        total_minor: 40_000,
        commission_minor: 8_000,
        payout_minor: 32_000,
        issued_at_ms: 5,
        settlement: None,
    };
    for kind in [
        OrderEventKind::Arrived,
        OrderEventKind::Started,
        OrderEventKind::Completed { minutes: 3 },
    ] {
        store
            .transition_durable(order.order_id, 2, kind, vec![])
            .wait()
            .unwrap();
    }
    store
        .transition_durable(
            order.order_id,
            5,
            OrderEventKind::Billed {
                invoice_id: invoice.invoice_id,
                total_minor: 40_000,
            },
            vec![storage::SideWrite::Invoice(invoice)],
        )
        .wait()
        .unwrap();
    order
}

/// A billed order with a card payment pending, as a killed engine leaves them.
fn billed_with_pending_payment(store: &storage::Store) -> (storage::OrderRecord, PaymentId) {
    let order = billed(store);
    let user = order.user_id;
    let payment = storage::PaymentRecord {
        payment_id: PaymentId::new(),
        order_id: order.order_id,
        user_id: user,
        idempotency_key: "k1".into(),
        method: PaymentMethod::Card,
        instrument_masked: "****4242".into(),
        amount_minor: 40_000,
        tip_minor: 0,
        status: PaymentStatus::Pending,
        transaction_ref: None,
        failure: None,
        created_at_ms: 6,
        updated_at_ms: 6,
    };
    match store.begin_payment(&payment).unwrap() {
        storage::PaymentStart::Created(_, ticket) => ticket.wait().unwrap(),
        other => panic!("{other:?}"),
    }
    (order, payment.payment_id)
}

/// Dispatch and the order actors over `store`, paying through `gateway`; what they
/// recovered from the store.
fn orders_over(
    store: &storage::Store,
    gateway: Arc<dyn PaymentGateway>,
    payments: PaymentConfig,
) -> (Orders, actors::Recovered) {
    let dispatch = Dispatch::new(
        DispatchConfig::default(),
        catalog(),
        Sessions::default(),
        Clock::system(),
        vec![],
        store.clone(),
    )
    .unwrap();
    Orders::start(
        store.clone(),
        dispatch,
        gateway,
        OrderConfig::default(),
        payments,
    )
    .unwrap()
}

#[actix_rt::test]
async fn a_payment_left_pending_by_a_restart_guards_its_order_until_it_settles() {
    let store = storage::Store::temporary().unwrap();
    let (order, pending) = billed_with_pending_payment(&store);
    let gateway = Flaky::default();
    let (orders, recovered) = orders_over(
        &store,
        Arc::new(gateway.clone()),
        PaymentConfig {
            reconcile_every: Duration::from_millis(20),
            ..PaymentConfig::default()
        },
    );
    assert_eq!((recovered.open_orders, recovered.pending_payments), (1, 1));
    let user = PartyId::User(order.user_id);
    // The gateway is down: the payment stays pending, and nothing else may charge.
    let second = wire::Pay {
        order_id: order.order_id,
        method: PaymentMethod::Card,
        instrument: "4242424242424242".into(),
        idempotency_key: "k2".into(),
        tip_minor: None,
    };
    assert_eq!(
        orders.pay(user, second.clone()).await,
        Err(ActorError::PaymentPending(pending))
    );
    let cash = wire::CashReceived {
        order_id: order.order_id,
        amount_minor: 40_000,
    };
    assert_eq!(
        orders
            .cash_received(PartyId::Associate(order.associate_id), cash)
            .await,
        Err(ActorError::PaymentPending(pending))
    );
    // Back up: the next look settles it as paid, and the order closes.
    gateway.up.store(true, Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stored = store.order(order.order_id).unwrap().unwrap();
        if stored.state == OrderState::Closed {
            assert_eq!(stored.payment_id, Some(pending));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never settled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let payments = store.payments_for(order.order_id).unwrap();
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0].status, PaymentStatus::Succeeded);
    assert!(store.pending_payments().unwrap().is_empty());
    assert!(gateway.asked.lock().unwrap().contains(&pending.to_string()));
}

/// A gateway that captures every charge, and says whether the charge's payment was
/// already stored when it was asked.
struct Witness {
    store: storage::Store,
    order: OrderId,
    charged: tokio::sync::mpsc::UnboundedSender<bool>,
}

impl PaymentGateway for Witness {
    fn charge(&self, r: ChargeRequest) -> BoxFuture<'static, Result<ChargeStatus, GatewayError>> {
        let stored = self.store.payments_for(self.order).is_ok_and(|payments| {
            payments
                .iter()
                .any(|p| p.payment_id.to_string() == r.key && p.status == PaymentStatus::Pending)
        });
        let _ = self.charged.send(stored);
        Box::pin(async move {
            Ok(ChargeStatus::Captured {
                transaction_ref: format!("ref-{}", r.key),
            })
        })
    }

    fn lookup(&self, _: String) -> BoxFuture<'static, Result<Option<ChargeStatus>, GatewayError>> {
        Box::pin(async { Ok(None) })
    }

    fn void(&self, _: String) -> BoxFuture<'static, Result<Option<ChargeStatus>, GatewayError>> {
        Box::pin(async { Ok(None) })
    }
}

#[actix_rt::test]
async fn a_card_is_charged_only_once_its_pending_payment_is_synced() {
    use std::sync::mpsc;
    let dir = tempfile::tempdir().unwrap();
    // A sync hook that, once armed, reports each sync and holds it until released.
    let armed = Arc::new(AtomicBool::new(false));
    let (entered_tx, entered) = mpsc::channel::<()>();
    let (release, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let hook_armed = armed.clone();
    let hook = storage::SyncHook(Arc::new(move || {
        if hook_armed.load(Ordering::SeqCst) {
            let _ = entered_tx.send(());
            let _ = release_rx.lock().unwrap().recv();
        }
    }));
    let store = storage::Store::open(&storage::StoreConfig {
        path: Some(dir.path().to_path_buf()),
        cache_bytes: 8 * 1024 * 1024,
        sync_hook: Some(hook),
        ..storage::StoreConfig::default()
    })
    .unwrap();
    let order = billed(&store);
    let (charged_tx, mut charged) = tokio::sync::mpsc::unbounded_channel();
    let witness = Witness {
        store: store.clone(),
        order: order.order_id,
        charged: charged_tx,
    };
    let (orders, _) = orders_over(&store, Arc::new(witness), PaymentConfig::default());
    // From now on every sync is held until released.
    armed.store(true, Ordering::SeqCst);
    let pay = wire::Pay {
        order_id: order.order_id,
        method: PaymentMethod::Card,
        instrument: "4242424242424242".into(),
        idempotency_key: "k1".into(),
        tip_minor: None,
    };
    let o = orders.clone();
    let user = PartyId::User(order.user_id);
    let paying = actix_rt::spawn(async move { o.pay(user, pay).await });
    let held = tokio::task::spawn_blocking(move || {
        entered
            .recv_timeout(Duration::from_secs(10))
            .map(|_| entered)
    })
    .await
    .unwrap()
    .expect("the payment's write reaches the sync");
    // Held in the sync: the gateway must not be asked yet.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), charged.recv())
            .await
            .is_err(),
        "the card was charged before its pending payment was synced"
    );
    armed.store(false, Ordering::SeqCst);
    release.send(()).unwrap();
    drop(held);
    let stored_first = tokio::time::timeout(Duration::from_secs(10), charged.recv())
        .await
        .expect("charged once the sync returned")
        .unwrap();
    assert!(
        stored_first,
        "the pending payment was on record when the gateway was asked"
    );
    assert_eq!(paying.await.unwrap(), Ok(()));
}
