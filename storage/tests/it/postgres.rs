//! What only Postgres has: fenced writes (every order write carries its writer's epoch,
//! and the database refuses one older than the order's last writer), and reads that
//! block the calling thread, which must work from inside a busy async task.

use storage::pg::PgConfig;
use storage::{StorageError, Store};
use wire::model::{OrderEventKind, OrderState};
use wire::{AssociateId, UserId};

use crate::{new_order, new_user};

fn store_with_epoch(url: &str, epoch: u64) -> Store {
    Store::postgres(&PgConfig {
        epoch,
        ..PgConfig::new(url)
    })
    .unwrap()
}

#[test]
fn a_write_from_an_older_epoch_is_refused_by_the_database() {
    let url = storage::pg::testing::fresh_database();
    let old = store_with_epoch(&url, 1);
    let new = store_with_epoch(&url, 2);
    let o = new_order(UserId::new(), AssociateId::new(), 1);
    old.create_order(&o).unwrap();
    // The new owner takes the order over with its newer epoch.
    new.transition(o.order_id, 2, OrderEventKind::EnRoute, &[])
        .unwrap();
    // The old owner's next write is refused, and nothing of it is kept.
    let refused = old
        .transition(o.order_id, 3, OrderEventKind::Arrived, &[])
        .unwrap_err();
    assert!(matches!(refused, StorageError::Fenced(_)), "{refused}");
    assert!(refused.to_string().contains("epoch 2"), "{refused}");
    let stored = new.order(o.order_id).unwrap().unwrap();
    assert_eq!(stored.state, OrderState::EnRoute);
    assert_eq!(new.events(o.order_id).unwrap().len(), 2);
    // The refusal fails only that write: the old store still works for the rest.
    old.put_user(&new_user(1)).unwrap().wait().unwrap();
    // Writers of the same or a newer epoch go on.
    new.transition(o.order_id, 4, OrderEventKind::Arrived, &[])
        .unwrap();
    let newer = store_with_epoch(&url, 3);
    newer
        .transition(o.order_id, 5, OrderEventKind::Started, &[])
        .unwrap();
    assert_eq!(
        newer.order(o.order_id).unwrap().unwrap().state,
        OrderState::Started
    );
}

#[test]
fn a_fenced_write_in_a_batch_spares_the_others() {
    let url = storage::pg::testing::fresh_database();
    let old = store_with_epoch(&url, 1);
    let new = store_with_epoch(&url, 2);
    let taken = new_order(UserId::new(), AssociateId::new(), 1);
    let kept = new_order(UserId::new(), AssociateId::new(), 1);
    old.create_order(&taken).unwrap();
    old.create_order(&kept).unwrap();
    new.transition(taken.order_id, 2, OrderEventKind::EnRoute, &[])
        .unwrap();
    // Queued back to back, so they are likely to share a transaction.
    let writes = [
        old.transition_durable(kept.order_id, 3, OrderEventKind::EnRoute, Vec::new()),
        old.transition_durable(taken.order_id, 3, OrderEventKind::Arrived, Vec::new()),
        old.transition_durable(kept.order_id, 4, OrderEventKind::Arrived, Vec::new()),
    ];
    let outcomes: Vec<_> = writes.into_iter().map(|w| w.wait()).collect();
    assert!(outcomes[0].is_ok(), "{:?}", outcomes[0]);
    assert!(matches!(outcomes[1], Err(StorageError::Fenced(_))));
    assert!(outcomes[2].is_ok(), "{:?}", outcomes[2]);
    assert_eq!(
        old.order(kept.order_id).unwrap().unwrap().state,
        OrderState::Arrived
    );
}

#[test]
fn reads_from_inside_a_busy_async_task_wait_instead_of_spinning() {
    // A tokio task's cooperative budget runs out after ~128 operations; a blocking read
    // made from a task past that point must still wait for its answer and return.
    let store = crate::Kind::Postgres.store();
    let user = new_user(7);
    store.put_user(&user).unwrap().wait().unwrap();
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            for _ in 0..1_000 {
                assert_eq!(store.user(user.id).unwrap().as_ref(), Some(&user));
            }
        });
        done.send(()).unwrap();
    });
    finished
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("1 000 reads from one task finished");
}

#[test]
fn handles_of_one_store_fence_each_other_even_inside_one_batch() {
    // Cluster mode: one node, one connection, many cells, each cell's orders written with
    // the epoch of that cell's claim.
    let store = crate::Kind::Postgres.store();
    let (older, newer) = (store.fenced(5), store.fenced(6));
    let o = new_order(UserId::new(), AssociateId::new(), 1);
    older.create_order(&o).unwrap();
    // Queued back to back, so they share a transaction: the newer owner's write, then
    // the former owner's, which must be refused although the row is not written yet.
    let writes = [
        newer.transition_durable(o.order_id, 2, OrderEventKind::EnRoute, Vec::new()),
        older.transition_durable(o.order_id, 3, OrderEventKind::Arrived, Vec::new()),
        newer.transition_durable(o.order_id, 4, OrderEventKind::Arrived, Vec::new()),
    ];
    let outcomes: Vec<_> = writes.into_iter().map(|w| w.wait()).collect();
    assert!(outcomes[0].is_ok(), "{:?}", outcomes[0]);
    assert!(
        matches!(outcomes[1], Err(StorageError::Fenced(_))),
        "{:?}",
        outcomes[1]
    );
    assert!(outcomes[2].is_ok(), "{:?}", outcomes[2]);
    assert_eq!(store.events(o.order_id).unwrap().len(), 3);
    // The embedded store has no other writer: its fenced handle is the store.
    let sled = crate::Kind::Sled.store();
    assert_eq!(sled.fenced(9).kind(), "sled");
}

/// The rules the schema states hold in the database itself, whoever writes: raw SQL that
/// breaks one is refused.
#[test]
fn the_database_refuses_what_breaks_the_rules_whoever_writes() {
    let url = storage::pg::testing::fresh_database();
    drop(Store::postgres(&PgConfig::new(&url)).unwrap());
    let run = |sql: &str| storage::pg::testing::try_execute(&url, sql);
    let order = |id: u8, request: u8| {
        format!(
            "INSERT INTO orders (id, request_id, user_id, associate_id, state, allotted_at_ms,
                                 open, next_seq, epoch, body)
             VALUES ('00000000-0000-7000-8000-0000000000{id:02}',
                     '00000000-0000-7000-8000-0000000001{request:02}',
                     '00000000-0000-7000-8000-000000000201', '00000000-0000-7000-8000-000000000301',
                     'allotted', 1, true, 1, 1, '{{}}')"
        )
    };
    let event = |order: u8, seq: u32, feed: u32| {
        format!(
            "INSERT INTO order_events (order_id, seq, feed_seq, at_ms, state, body)
             VALUES ('00000000-0000-7000-8000-0000000000{order:02}', {seq}, {feed}, 1,
                     'allotted', '{{}}')"
        )
    };
    let payment = |id: u8, key: &str| {
        format!(
            "INSERT INTO payments (id, order_id, user_id, idempotency_key, method, amount_minor,
                                   tip_minor, status, created_at_ms, updated_at_ms, body)
             VALUES ('00000000-0000-7000-8000-0000000004{id:02}',
                     '00000000-0000-7000-8000-000000000001', '00000000-0000-7000-8000-000000000201',
                     '{key}', 'card', 100, 0, 'pending', 1, 1, '{{}}')"
        )
    };
    let rating = |id: u8, stars: u8| {
        format!(
            "INSERT INTO feedback (id, order_id, about, source, rating, at_ms, body)
             VALUES ('00000000-0000-7000-8000-0000000005{id:02}',
                     '00000000-0000-7000-8000-000000000001', 'associate', 'app', {stars}, 1, '{{}}')"
        )
    };
    let refused = |sql: String, why: &str| {
        let e = run(&sql).expect_err(&sql);
        assert!(e.contains(why), "{sql}\n→ {e}");
    };
    // One order per request.
    run(&order(1, 1)).unwrap();
    refused(order(2, 1), "orders_one_per_request");
    // An order's events are numbered 0, 1, 2… and never changed.
    refused(event(1, 1, 0), "expects event 0 next, not 1");
    run(&event(1, 0, 0)).unwrap();
    refused(event(1, 0, 1), "expects event 1 next, not 0");
    refused("UPDATE order_events SET at_ms = 2".into(), "append-only");
    refused("DELETE FROM order_events".into(), "append-only");
    // One payment per (user, idempotency key).
    run(&payment(1, "k1")).unwrap();
    refused(payment(2, "k1"), "payments_user_id_idempotency_key_key");
    // One rating per order, side and source, of 1 to 5 stars.
    refused(rating(1, 6), "feedback_rating_check");
    run(&rating(1, 5)).unwrap();
    refused(rating(2, 4), "feedback_order_id_about_source_key");
    // An older epoch may not overwrite a newer one's order.
    refused(
        "UPDATE orders SET epoch = 0".into(),
        "a write from epoch 0 is refused",
    );
    // Money is whole minor units in bigint, everywhere.
    run("DO $$ BEGIN
           IF EXISTS (SELECT 1 FROM information_schema.columns
                      WHERE table_schema = 'public' AND column_name LIKE '%\\_minor'
                        AND data_type <> 'bigint') THEN
             RAISE EXCEPTION 'a money column is not bigint';
           END IF;
           IF (SELECT count(*) FROM information_schema.columns
               WHERE table_schema = 'public' AND column_name LIKE '%\\_minor') < 8 THEN
             RAISE EXCEPTION 'the money columns are missing';
           END IF;
         END $$")
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_several_committers_a_read_sees_every_write_submitted_before_it() {
    let url = storage::pg::testing::fresh_database();
    let store = Store::postgres(&PgConfig {
        writers: 4,
        readers: 2,
        ..PgConfig::new(url)
    })
    .unwrap();
    let user = UserId::new();
    let orders: Vec<_> = (0..64)
        .map(|n| new_order(user, AssociateId::new(), n))
        .collect();
    let feed_before = store.feed_next().unwrap();
    // Submitted, not awaited: spread over the four committers by id.
    let created: Vec<_> = orders
        .iter()
        .map(|o| store.create_order_durable(o.clone()))
        .collect();
    // An order's own read, and reads across every committer, see them all at once.
    for o in &orders {
        assert!(store.order_async(o.order_id).await.unwrap().is_some());
    }
    let open = store.open_orders_of(wire::PartyId::User(user)).unwrap();
    assert_eq!(open.len(), orders.len());
    // The feed has no hole a reader could step over: every event is there, in order.
    let feed = store.events_since(feed_before, 1_000).unwrap();
    assert_eq!(feed.len(), orders.len());
    assert!(feed.windows(2).all(|w| w[0].0 < w[1].0));
    for write in created {
        write.await.unwrap();
    }
    // A transition submitted now is seen by the next read of its order and its events.
    let moved: Vec<_> = orders
        .iter()
        .map(|o| store.transition_durable(o.order_id, 100, OrderEventKind::EnRoute, vec![]))
        .collect();
    for o in &orders {
        let now = store.order_async(o.order_id).await.unwrap().unwrap();
        assert_eq!(now.state, OrderState::EnRoute);
        assert_eq!(store.events_async(o.order_id).await.unwrap().len(), 2);
    }
    for write in moved {
        write.await.unwrap();
    }
    // Everything written is durable once the store's commit ticket resolves.
    store.commit().durable().await.unwrap();
    assert_eq!(store.commit_queue().1, 4 * storage::DEFAULT_QUEUE_CAPACITY);
}
