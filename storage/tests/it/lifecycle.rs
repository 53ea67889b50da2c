//! Order lifecycle, recovery, archive, feed and schema version.

use storage::StorageError;
use wire::model::{OrderEventKind, OrderState, Role};
use wire::{AssociateId, UserId};

use crate::{Kind, both, new_order, replay};

async fn full_lifecycle_is_logged_and_replays(kind: Kind) {
    let s = kind.store();
    let o = new_order(UserId::new(), AssociateId::new(), 1_000);
    let c = s.create_order(&o).unwrap();
    c.ticket.durable().await.unwrap();
    assert_eq!(c.order.state, OrderState::Allotted);
    let steps = [
        OrderEventKind::EnRoute,
        OrderEventKind::Arrived,
        OrderEventKind::Started,
        OrderEventKind::Completed { minutes: 30 },
        OrderEventKind::Billed {
            invoice_id: wire::InvoiceId::new(),
            total_minor: 100,
        },
        OrderEventKind::Paid {
            payment_id: wire::PaymentId::new(),
            method: wire::model::PaymentMethod::Cash,
            amount_minor: 100,
        },
        OrderEventKind::Closed,
    ];
    for (i, kind) in steps.into_iter().enumerate() {
        let c = s
            .transition(o.order_id, 2_000 + i as u64, kind.clone(), &[])
            .unwrap();
        c.ticket.durable().await.unwrap();
        assert_eq!(c.order.state, kind.state());
        assert_eq!(c.event.seq, i as u32 + 1);
    }
    let stored = s.order(o.order_id).unwrap().unwrap();
    let events = s.events(o.order_id).unwrap();
    assert_eq!(events.len(), 8);
    assert_eq!(replay(&stored, &events), stored);
    assert_eq!(stored.started_at_ms, Some(2_002));
    assert_eq!(stored.ended_at_ms, Some(2_006));
    assert!(s.open_orders().unwrap().is_empty());
}
both!(async full_lifecycle_is_logged_and_replays);

fn backwards_skipping_and_late_cancel_are_refused(kind: Kind) {
    let s = kind.store();
    let o = new_order(UserId::new(), AssociateId::new(), 0);
    let _ = s.create_order(&o).unwrap();
    assert!(matches!(
        s.create_order(&o),
        Err(StorageError::AlreadyExists { what: "order" })
    ));
    let err = s
        .transition(o.order_id, 1, OrderEventKind::Started, &[])
        .unwrap_err();
    assert!(matches!(
        err,
        StorageError::InvalidTransition {
            from: OrderState::Allotted,
            to: OrderState::Started
        }
    ));
    let _ = s
        .transition(o.order_id, 1, OrderEventKind::Arrived, &[])
        .unwrap();
    let _ = s
        .transition(o.order_id, 2, OrderEventKind::Started, &[])
        .unwrap();
    let cancel = OrderEventKind::Cancelled {
        by: Role::User,
        reason: None,
        fee_minor: 0,
        invoice_id: None,
    };
    assert!(matches!(
        s.transition(o.order_id, 3, cancel, &[]),
        Err(StorageError::InvalidTransition {
            to: OrderState::Cancelled,
            ..
        })
    ));
    assert!(matches!(
        s.transition(wire::OrderId::new(), 3, OrderEventKind::Arrived, &[]),
        Err(StorageError::NotFound { what: "order" })
    ));
    // Refused transitions wrote nothing.
    assert_eq!(s.events(o.order_id).unwrap().len(), 3);
}
both!(backwards_skipping_and_late_cancel_are_refused);

fn recovery_lists_open_orders_and_archive_keeps_lookups(kind: Kind) {
    let place = kind.place();
    let (open_id, cancelled_id);
    {
        let s = place.open().unwrap();
        let a = new_order(UserId::new(), AssociateId::new(), 10);
        let b = new_order(UserId::new(), AssociateId::new(), 20);
        s.create_order(&a).unwrap().ticket.wait().unwrap();
        s.create_order(&b).unwrap().ticket.wait().unwrap();
        let cancel = OrderEventKind::Cancelled {
            by: Role::Associate,
            reason: Some("flat tyre".into()),
            fee_minor: 0,
            invoice_id: None,
        };
        s.transition(b.order_id, 30, cancel, &[])
            .unwrap()
            .ticket
            .wait()
            .unwrap();
        open_id = a.order_id;
        cancelled_id = b.order_id;
    }
    let s = place.open().unwrap();
    let open: Vec<_> = s
        .open_orders()
        .unwrap()
        .into_iter()
        .map(|o| o.order_id)
        .collect();
    assert_eq!(open, vec![open_id]);
    assert_eq!(
        s.archive_ended_before(30).unwrap(),
        0,
        "cut-off is exclusive"
    );
    assert_eq!(s.archive_ended_before(31).unwrap(), 1);
    let archived = s.order(cancelled_id).unwrap().unwrap();
    assert_eq!(archived.state, OrderState::Cancelled);
    assert_eq!(
        archived.cancellation.unwrap().reason.as_deref(),
        Some("flat tyre")
    );
    assert_eq!(s.open_orders().unwrap().len(), 1);
}
both!(recovery_lists_open_orders_and_archive_keeps_lookups);

fn a_partys_open_orders_are_found_by_party(kind: Kind) {
    let place = kind.place();
    let s = place.open().unwrap();
    let (user, associate) = (UserId::new(), AssociateId::new());
    let first = new_order(user, associate, 10);
    let second = new_order(user, associate, 20);
    let someone_elses = new_order(UserId::new(), AssociateId::new(), 30);
    for o in [&first, &second, &someone_elses] {
        s.create_order(o).unwrap().ticket.wait().unwrap();
    }
    let cancel = OrderEventKind::Cancelled {
        by: Role::User,
        reason: None,
        fee_minor: 0,
        invoice_id: None,
    };
    s.transition(first.order_id, 40, cancel, &[])
        .unwrap()
        .ticket
        .wait()
        .unwrap();
    let ids = |party| -> Vec<_> {
        s.open_orders_of(party)
            .unwrap()
            .into_iter()
            .map(|o| o.order_id)
            .collect()
    };
    assert_eq!(ids(wire::PartyId::User(user)), [second.order_id]);
    assert_eq!(ids(wire::PartyId::Associate(associate)), [second.order_id]);
    assert!(ids(wire::PartyId::User(UserId::new())).is_empty());
}
both!(a_partys_open_orders_are_found_by_party);

fn feed_resumes_from_a_position(kind: Kind) {
    let s = kind.store();
    let o = new_order(UserId::new(), AssociateId::new(), 0);
    let first = s.create_order(&o).unwrap().feed_seq;
    let second = s
        .transition(o.order_id, 1, OrderEventKind::EnRoute, &[])
        .unwrap()
        .feed_seq;
    let third = s
        .transition(o.order_id, 2, OrderEventKind::Arrived, &[])
        .unwrap()
        .feed_seq;
    assert!(first < second && second < third);
    let all = s.events_since(0, 100).unwrap();
    assert_eq!(
        all.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        vec![first, second, third]
    );
    let rest = s.events_since(second, 100).unwrap();
    assert_eq!(rest.len(), 2);
    assert_eq!(rest[0].1.state, OrderState::EnRoute);
    assert_eq!(s.events_since(second, 1).unwrap().len(), 1);
}
both!(feed_resumes_from_a_position);

fn a_newer_schema_is_refused(kind: Kind) {
    let place = kind.place();
    let store = place.open().unwrap();
    let newer = store.schema_version().unwrap() + 1;
    store.force_schema_version(newer).unwrap();
    drop(store);
    let err = place.open().unwrap_err();
    assert!(
        matches!(err, StorageError::SchemaTooNew { found, supported } if found == supported + 1)
    );
    assert!(err.to_string().contains("upgrade"), "{err}");
}
both!(a_newer_schema_is_refused);

async fn committer_writes_run_in_order_and_a_refused_one_spares_its_batch(kind: Kind) {
    let s = kind.store();
    let a = new_order(UserId::new(), AssociateId::new(), 10);
    let b = new_order(UserId::new(), AssociateId::new(), 11);
    // Submitted back to back without waiting, so they are likely to share a batch:
    // writes to one order see the writes queued before them.
    let writes = vec![
        s.create_order_durable(a.clone()),
        s.create_order_durable(b.clone()),
        s.transition_durable(a.order_id, 12, OrderEventKind::EnRoute, Vec::new()),
        // Refused: b is allotted and cannot start.
        s.transition_durable(b.order_id, 13, OrderEventKind::Started, Vec::new()),
        // Refused: a exists already.
        s.create_order_durable(a.clone()),
        s.transition_durable(a.order_id, 14, OrderEventKind::Arrived, Vec::new()),
        s.transition_durable(b.order_id, 15, OrderEventKind::EnRoute, Vec::new()),
    ];
    let mut outcomes = Vec::new();
    for w in writes {
        outcomes.push(w.await);
    }
    let states: Vec<_> = outcomes
        .iter()
        .map(|o| {
            o.as_ref()
                .map(|c| (c.order.order_id, c.order.state, c.event.seq))
        })
        .collect();
    assert_eq!(
        states[0].as_ref().unwrap(),
        &(a.order_id, OrderState::Allotted, 0)
    );
    assert_eq!(
        states[1].as_ref().unwrap(),
        &(b.order_id, OrderState::Allotted, 0)
    );
    assert_eq!(
        states[2].as_ref().unwrap(),
        &(a.order_id, OrderState::EnRoute, 1)
    );
    assert!(matches!(
        outcomes[3],
        Err(StorageError::InvalidTransition {
            from: OrderState::Allotted,
            to: OrderState::Started
        })
    ));
    assert!(matches!(
        outcomes[4],
        Err(StorageError::AlreadyExists { what: "order" })
    ));
    assert_eq!(
        states[5].as_ref().unwrap(),
        &(a.order_id, OrderState::Arrived, 2)
    );
    assert_eq!(
        states[6].as_ref().unwrap(),
        &(b.order_id, OrderState::EnRoute, 1)
    );
    // What was acknowledged is what is stored, and each log replays to its order.
    for (o, events) in [(a.order_id, 3), (b.order_id, 2)] {
        let stored = s.order(o).unwrap().unwrap();
        let log = s.events(o).unwrap();
        assert_eq!(log.len(), events);
        assert_eq!(replay(&stored, &log), stored);
    }
    let feed: Vec<_> = s
        .events_since(0, 100)
        .unwrap()
        .into_iter()
        .map(|(_, e)| (e.order_id, e.seq))
        .collect();
    assert_eq!(feed.len(), 5, "{feed:?}");
}
both!(async committer_writes_run_in_order_and_a_refused_one_spares_its_batch);

fn a_committer_write_after_the_store_is_gone_reports_closed_not_a_hang(kind: Kind) {
    let s = kind.store();
    let o = new_order(UserId::new(), AssociateId::new(), 1);
    let pending = s.create_order_durable(o);
    drop(s);
    // Either the flusher ran it before it stopped, or the write reports the store closed.
    match pending.wait() {
        Ok(c) => assert_eq!(c.order.state, OrderState::Allotted),
        Err(e) => assert!(matches!(e, StorageError::Closed), "{e}"),
    }
}
both!(a_committer_write_after_the_store_is_gone_reports_closed_not_a_hang);

fn an_open_request_survives_until_cancelled_or_its_order_is_created(kind: Kind) {
    let s = kind.store();
    let mut o = new_order(UserId::new(), AssociateId::new(), 1);
    let request = storage::OpenRequest {
        request_id: o.request_id,
        user_id: o.user_id,
        client_ref: "c1".into(),
        task: "companion".into(),
        pickup: o.pickup,
        note: None,
        discount_code: None,
        created_at_ms: 1,
        deadline_at_ms: 300_001,
        refused: vec![],
    };
    s.put_request(&request).unwrap().wait().unwrap();
    let mut declined = request.clone();
    declined.refused.push(AssociateId::new());
    s.put_request(&declined).unwrap().wait().unwrap();
    assert_eq!(s.open_requests().unwrap(), [declined.clone()]);
    // Creating the order removes the request in the same transaction.
    s.create_order_durable(o.clone()).wait().unwrap();
    assert!(s.open_requests().unwrap().is_empty());
    assert_eq!(s.request(o.request_id).unwrap(), None);
    // A cancelled one is removed by hand.
    o.request_id = wire::RequestId::new();
    let other = storage::OpenRequest {
        request_id: o.request_id,
        ..request
    };
    s.put_request(&other).unwrap().wait().unwrap();
    s.remove_request(other.request_id).unwrap().wait().unwrap();
    assert!(s.open_requests().unwrap().is_empty());
}
both!(an_open_request_survives_until_cancelled_or_its_order_is_created);

async fn a_cancellation_fee_keeps_the_order_open_until_paid(kind: Kind) {
    let s = kind.store();
    let o = new_order(UserId::new(), AssociateId::new(), 1);
    s.create_order_durable(o.clone()).await.unwrap();
    let fee = OrderEventKind::Cancelled {
        by: wire::model::Role::User,
        reason: None,
        fee_minor: 5_000,
        invoice_id: None,
    };
    let c = s
        .transition_durable(o.order_id, 2, fee, Vec::new())
        .await
        .unwrap();
    assert!(c.order.owes_fee());
    assert_eq!(
        s.open_orders().unwrap().len(),
        1,
        "recovered until the fee is paid"
    );
    // Only a fee payment may follow, once.
    assert!(matches!(
        s.transition_durable(o.order_id, 3, OrderEventKind::Closed, Vec::new())
            .await,
        Err(StorageError::InvalidTransition { .. })
    ));
    let paid = OrderEventKind::FeePaid {
        payment_id: wire::PaymentId::new(),
        method: wire::model::PaymentMethod::Card,
        amount_minor: 5_000,
    };
    let c = s
        .transition_durable(o.order_id, 4, paid.clone(), Vec::new())
        .await
        .unwrap();
    assert_eq!(c.order.state, OrderState::Cancelled);
    assert!(!c.order.owes_fee());
    assert!(s.open_orders().unwrap().is_empty());
    assert!(matches!(
        s.transition_durable(o.order_id, 5, paid, Vec::new()).await,
        Err(StorageError::NothingOwed)
    ));
    // Without a fee a cancellation ends the order at once; ops may cancel any open order.
    let free = new_order(UserId::new(), AssociateId::new(), 1);
    s.create_order_durable(free.clone()).await.unwrap();
    for kind in [
        OrderEventKind::Arrived,
        OrderEventKind::Started,
        OrderEventKind::OpsCancelled {
            reason: "associate unreachable".into(),
        },
    ] {
        s.transition_durable(free.order_id, 6, kind, Vec::new())
            .await
            .unwrap();
    }
    let ended = s.order(free.order_id).unwrap().unwrap();
    assert_eq!(
        ended.cancellation.as_ref().unwrap().by,
        wire::model::CancelledBy::Ops
    );
    assert!(s.open_orders().unwrap().is_empty());
    assert_eq!(replay(&ended, &s.events(free.order_id).unwrap()), ended);
}
both!(async a_cancellation_fee_keeps_the_order_open_until_paid);
