//! Lists that scale: what a page is, and which orders a search asks for.

use wire::model::{OrderState, UnixMs};
use wire::{AssociateId, OrderId, UserId};

use crate::records::OrderRecord;

/// Records a page may hold, at most.
pub const MAX_PAGE: usize = 500;
/// Orders one page of a filtered search may look at before it ends early (with a
/// cursor), so a page costs the same however rare the matches are.
pub const SCAN_BUDGET: usize = 10_000;

/// One page of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The records, in id order.
    pub items: Vec<T>,
    /// Where the next page starts (pass it as `after`); none when this was the last.
    pub next: Option<uuid::Uuid>,
}

/// Which orders to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OrderQuery {
    /// Only this user's.
    pub user: Option<UserId>,
    /// Only this associate's.
    pub associate: Option<AssociateId>,
    /// Only orders now in this state.
    pub state: Option<OrderState>,
    /// Allotted at or after this time.
    pub from_ms: Option<UnixMs>,
    /// Allotted before this time.
    pub to_ms: Option<UnixMs>,
    /// Start after this order.
    pub after: Option<OrderId>,
    /// At most this many (capped at [`MAX_PAGE`]).
    pub limit: usize,
}

impl OrderQuery {
    /// Whether `o` is one of the orders asked for (the cursor aside).
    pub(crate) fn matches(&self, o: &OrderRecord) -> bool {
        self.user.is_none_or(|u| o.user_id == u)
            && self.associate.is_none_or(|a| o.associate_id == a)
            && self.state.is_none_or(|s| o.state == s)
            && self.from_ms.is_none_or(|t| o.allotted_at_ms >= t)
            && self.to_ms.is_none_or(|t| o.allotted_at_ms < t)
    }
}
