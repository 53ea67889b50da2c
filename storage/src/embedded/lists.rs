//! Lists on sled: pages of profiles and orders in id order (ids are time-ordered
//! UUIDv7, so id order is creation order), each page ending with the cursor the next
//! one starts after. Orders are found through per-user and per-associate indexes, and
//! their time range is a key range.

use wire::model::UnixMs;
use wire::{AssociateId, OrderId, UserId};

use crate::embedded::store::SledStore;
use crate::embedded::table::Table;
use crate::error::StorageError;
use crate::frozen::convert::Stored;
use crate::query::{MAX_PAGE, OrderQuery, Page, SCAN_BUDGET};
use crate::records::{AssociateProfile, OrderRecord, UserProfile};

/// How much later than its allotment an order's id may have been made (the id is made
/// when the order is written, just after the associate accepted).
const ID_SLACK_MS: UnixMs = 60_000;

/// The smallest UUIDv7 created at `ms` (its random bits zero): the key where that
/// millisecond begins.
fn time_key(ms: UnixMs) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..6].copy_from_slice(&ms.min((1 << 48) - 1).to_be_bytes()[2..]);
    key
}

/// The key right after `id`: where a page that ends at `id` continues.
fn after_key(id: [u8; 16]) -> Vec<u8> {
    let mut key = id.to_vec();
    key.push(0);
    key
}

/// Up to `limit` values of `table` with keys in order, starting after `after`.
fn page_of<V: Stored>(
    table: &Table<V>,
    after: Option<[u8; 16]>,
    limit: usize,
    id: impl Fn(&V) -> uuid::Uuid,
) -> Result<Page<V>, StorageError> {
    let limit = limit.clamp(1, MAX_PAGE);
    let start = after.map(after_key).unwrap_or_default();
    let mut items = Vec::with_capacity(limit);
    for value in table.tree.range(start..).values().take(limit + 1) {
        items.push(table.decode(&value?)?);
    }
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(&id)
    } else {
        None
    };
    Ok(Page { items, next })
}

impl SledStore {
    /// A page of users, oldest first.
    pub fn users_page(
        &self,
        after: Option<UserId>,
        limit: usize,
    ) -> Result<Page<UserProfile>, StorageError> {
        page_of(&self.inner.users, after.map(|a| a.to_bytes()), limit, |u| {
            u.id.0
        })
    }

    /// A page of associates, oldest first.
    pub fn associates_page(
        &self,
        after: Option<AssociateId>,
        limit: usize,
    ) -> Result<Page<AssociateProfile>, StorageError> {
        page_of(
            &self.inner.associates,
            after.map(|a| a.to_bytes()),
            limit,
            |a| a.id.0,
        )
    }

    /// A page of the orders `query` asks for, oldest first: open, ended and archived.
    /// A page may end before `limit` with a cursor when it has looked at
    /// [`SCAN_BUDGET`] orders; the next page goes on from there.
    pub fn find_orders(&self, query: &OrderQuery) -> Result<Page<OrderRecord>, StorageError> {
        let limit = query.limit.clamp(1, MAX_PAGE);
        let low = {
            let from = time_key(query.from_ms.unwrap_or(0)).to_vec();
            let after = query.after.map(|a| after_key(a.to_bytes()));
            after.filter(|a| *a > from).unwrap_or(from)
        };
        // Ids are made at allotment or just after: the key range is a superset of the
        // time range, and `matches` keeps the exact one.
        let high = query.to_ms.map(|t| time_key(t.saturating_add(ID_SLACK_MS)));
        // Order ids in range, in order: from an index, or from both order trees.
        let ids: Box<dyn Iterator<Item = Result<[u8; 16], StorageError>>> =
            match (query.user, query.associate) {
                (Some(user), _) => Box::new(index_ids(
                    &self.inner.orders_by_user,
                    user.to_bytes(),
                    &low,
                    high,
                )),
                (None, Some(associate)) => Box::new(index_ids(
                    &self.inner.orders_by_associate,
                    associate.to_bytes(),
                    &low,
                    high,
                )),
                (None, None) => Box::new(merged_ids(
                    tree_ids(&self.inner.orders.tree, &low, high),
                    tree_ids(&self.inner.archive.tree, &low, high),
                )),
            };
        let mut items = Vec::with_capacity(limit);
        let mut last = None;
        for (scanned, id) in ids.enumerate() {
            let id = id?;
            if items.len() == limit || scanned == SCAN_BUDGET {
                // More may follow: the next page starts after the last one looked at.
                return Ok(Page {
                    items,
                    next: last.map(uuid::Uuid::from_bytes),
                });
            }
            last = Some(id);
            let Some(order) = self.order(OrderId::from_bytes(id))? else {
                return Err(StorageError::Corrupt {
                    tree: "orders_by_user",
                    detail: "an order index names a missing order".into(),
                });
            };
            if query.matches(&order) {
                items.push(order);
            }
        }
        Ok(Page { items, next: None })
    }
}

/// Order ids (16-byte keys) of `tree` from `low` up to `high`.
fn tree_ids<'a>(
    tree: &'a sled::Tree,
    low: &[u8],
    high: Option<[u8; 16]>,
) -> impl Iterator<Item = Result<[u8; 16], StorageError>> + 'a {
    let range = match high {
        Some(h) => tree.range(low.to_vec()..h.to_vec()),
        None => tree.range(low.to_vec()..),
    };
    range.keys().map(|k| {
        let k = k?;
        <[u8; 16]>::try_from(k.as_ref()).map_err(|_| StorageError::Corrupt {
            tree: "orders",
            detail: "an order key is not 16 bytes".into(),
        })
    })
}

/// Order ids of one party's index (`party` then order id) from `low` up to `high`.
fn index_ids<'a>(
    index: &'a sled::Tree,
    party: [u8; 16],
    low: &[u8],
    high: Option<[u8; 16]>,
) -> impl Iterator<Item = Result<[u8; 16], StorageError>> + 'a {
    let key = |suffix: &[u8]| [&party[..], suffix].concat();
    let start = key(low);
    let end = match high {
        Some(h) => key(&h),
        // Past every key with this party's prefix.
        None => key(&[0xff; 17]),
    };
    index.range(start..end).keys().map(|k| {
        let k = k?;
        k.get(16..32)
            .and_then(|id| <[u8; 16]>::try_from(id).ok())
            .ok_or(StorageError::Corrupt {
                tree: "orders_by_party",
                detail: "an index key is not 32 bytes".into(),
            })
    })
}

/// Two ascending id streams merged into one.
fn merged_ids<'a>(
    a: impl Iterator<Item = Result<[u8; 16], StorageError>> + 'a,
    b: impl Iterator<Item = Result<[u8; 16], StorageError>> + 'a,
) -> impl Iterator<Item = Result<[u8; 16], StorageError>> + 'a {
    let mut a = a.peekable();
    let mut b = b.peekable();
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(Ok(x)), Some(Ok(y))) => {
            if x <= y {
                a.next()
            } else {
                b.next()
            }
        }
        (Some(_), _) => a.next(),
        (None, _) => b.next(),
    })
}
