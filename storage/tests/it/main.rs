//! Integration tests of the store.

mod crash;
mod durability;
mod fixture;
mod lifecycle;
mod lists;
mod money;
mod postgres;
mod power_cut;

use storage::pg::PgConfig;
use storage::{OrderRecord, StorageError, Store, StoreConfig};
use wire::model::{OrderState, PartySummary};
use wire::{AssociateId, OrderId, RequestId, UserId};

/// A user profile, its `created_at_ms` set to `n`.
pub fn new_user(n: u64) -> storage::UserProfile {
    storage::UserProfile {
        id: UserId::new(),
        name: format!("u{n}"),
        phone: "1".into(),
        email: None,
        addresses: vec![],
        date_of_birth: None,
        life_events: vec![],
        rating_sum: 0,
        rating_count: 0,
        created_at_ms: n,
    }
}

/// A fresh order in state allotted, as the order actor would build it.
pub fn new_order(user: UserId, associate: AssociateId, at_ms: u64) -> OrderRecord {
    let party = |id: uuid::Uuid, name: &str| PartySummary {
        id,
        name: name.into(),
        phone: "+91-90000-00000".into(),
        rating_centi: None,
        rating_count: 0,
    };
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
        user: party(user.0, "Asha"),
        associate: party(associate.0, "Ravi"),
        pin: "1234".into(),
        allotted_at_ms: at_ms,
        started_at_ms: None,
        completed_at_ms: None,
        ended_at_ms: None,
        invoice_id: None,
        payment_id: None,
        cancellation: None,
        next_seq: 0,
    }
}

/// The order as its event log says it must be: `stored` with every event-derived field
/// recomputed from scratch.
pub fn replay(stored: &OrderRecord, events: &[wire::model::OrderEvent]) -> OrderRecord {
    let mut o = stored.clone();
    o.state = OrderState::Allotted;
    o.next_seq = 0;
    o.started_at_ms = None;
    o.completed_at_ms = None;
    o.ended_at_ms = None;
    o.invoice_id = None;
    o.payment_id = None;
    o.cancellation = None;
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq as usize, i, "event log has a gap");
        storage::apply_event(&mut o, e);
    }
    o
}

/// Which backend a shared test runs on: every behavioural test runs on both.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// Embedded sled.
    Sled,
    /// PostgreSQL (a private server per test process, a database per test).
    Postgres,
}

/// Where one test's store lives: opening it again is a restart.
pub enum Place {
    /// A sled data directory (removed with the temporary directory, if one is held).
    Sled(std::path::PathBuf, Option<tempfile::TempDir>),
    /// A Postgres database.
    Postgres(String),
}

impl Kind {
    /// A fresh, empty place for a store.
    pub fn place(self) -> Place {
        match self {
            Kind::Sled => {
                let dir = tempfile::tempdir().unwrap();
                Place::Sled(dir.path().join("db"), Some(dir))
            }
            Kind::Postgres => Place::Postgres(storage::pg::testing::fresh_database()),
        }
    }

    /// A fresh, empty store (removed with the test's temporary directory or database).
    pub fn store(self) -> Store {
        match self {
            Kind::Sled => Store::temporary().unwrap(),
            Kind::Postgres => self.place().open().unwrap(),
        }
    }
}

impl Place {
    /// Where the store is, as text another process can open ([`Self::at`]).
    pub fn locator(&self) -> String {
        match self {
            Place::Sled(dir, _) => dir.display().to_string(),
            Place::Postgres(url) => url.clone(),
        }
    }

    /// The place a [`Self::locator`] names (a sled directory is not removed on drop).
    pub fn at(locator: &str) -> Place {
        if storage::pg::is_postgres_url(locator) {
            Place::Postgres(locator.to_string())
        } else {
            Place::Sled(locator.into(), None)
        }
    }

    /// Opens (or reopens) the store here.
    pub fn open(&self) -> Result<Store, StorageError> {
        match self {
            Place::Sled(dir, _) => Store::open(&StoreConfig {
                path: Some(dir.clone()),
                ..StoreConfig::default()
            }),
            Place::Postgres(url) => Store::postgres(&PgConfig::new(url)),
        }
    }
}

/// Runs a test on both backends: `both!(name)` for `fn name(kind: Kind)`, and
/// `both!(async name)` for `async fn name(kind: Kind)`.
#[macro_export]
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[test]
            fn sled() {
                super::$name($crate::Kind::Sled)
            }
            #[test]
            fn postgres() {
                super::$name($crate::Kind::Postgres)
            }
        }
    };
    (async $name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sled() {
                super::$name($crate::Kind::Sled).await
            }
            #[tokio::test]
            async fn postgres() {
                super::$name($crate::Kind::Postgres).await
            }
        }
    };
}
