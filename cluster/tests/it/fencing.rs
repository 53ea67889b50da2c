//! A cell's claim epoch fences order writes in PostgreSQL: the node that took a dead
//! node's cell writes with its newer epoch, and the former owner's late write is refused.

use storage::pg::PgConfig;
use storage::{OrderRecord, StorageError, Store};
use wire::model::{OrderEventKind, OrderState, PartySummary};
use wire::{AssociateId, OrderId, RequestId, UserId};

use cluster::testing::NatsServer;
use cluster::{Cells, ClusterError};

fn order() -> OrderRecord {
    let party = |id: uuid::Uuid| PartySummary {
        id,
        name: "p".into(),
        phone: "0".into(),
        rating_centi: None,
        rating_count: 0,
    };
    let (user, associate) = (UserId::new(), AssociateId::new());
    OrderRecord {
        order_id: OrderId::new(),
        request_id: RequestId::new(),
        user_id: user,
        associate_id: associate,
        state: OrderState::Allotted,
        task: "companion".into(),
        pickup: storage::LatLng::new(12.97, 77.59).unwrap(),
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
    }
}

fn store(url: &str, epoch: u64) -> Store {
    Store::postgres(&PgConfig {
        epoch,
        ..PgConfig::new(url)
    })
    .unwrap()
}

#[tokio::test]
async fn the_claim_epoch_fences_the_former_owners_writes() {
    let nats = NatsServer::start();
    let js = cluster::connect(&nats.url).await.unwrap();
    let cells = Cells::open(&js).await.unwrap();
    let cell = 0x08a2_a107_2b59_ffff_u64;
    let url = storage::pg::testing::fresh_database();

    // node-c owns the cell and writes its order with the claim's epoch.
    let c_claim = cells.claim(cell, "node-c", &[]).await.unwrap();
    let on_c = store(&url, 1).fenced(c_claim.epoch);
    let o = order();
    on_c.create_order(&o).unwrap();

    // node-c is gone from the live set: node-a takes the cell at a higher epoch.
    let live = vec!["node-a".to_string()];
    let a_claim = cells.claim(cell, "node-a", &live).await.unwrap();
    assert!(a_claim.epoch > c_claim.epoch);
    let on_a = store(&url, 1).fenced(a_claim.epoch);
    on_a.transition(o.order_id, 2, OrderEventKind::EnRoute, &[])
        .unwrap();

    // node-c comes back: NATS refuses its claim, Postgres its write.
    assert!(matches!(
        cells.renew(c_claim, "node-c").await,
        Err(ClusterError::Lost { .. })
    ));
    let late = on_c
        .transition(o.order_id, 3, OrderEventKind::Arrived, &[])
        .unwrap_err();
    assert!(matches!(late, StorageError::Fenced(_)), "{late}");
    assert_eq!(
        on_a.order(o.order_id).unwrap().unwrap().state,
        OrderState::EnRoute
    );
}
