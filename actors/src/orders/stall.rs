//! Orders that stop moving: how long each state may last before the order counts as
//! stalled, and what the engine then does on its own. Every stall is recorded in the
//! order's events and counted in metrics; ops can then cancel or complete the order by
//! hand.

use std::time::Duration;

use wire::model::OrderState;

/// How long an order may stay in each state before it counts as stalled.
#[derive(Debug, Clone, PartialEq)]
pub struct StallTimes {
    /// Allotted, the associate not yet on the way.
    pub allotted: Duration,
    /// The associate on the way.
    pub en_route: Duration,
    /// The associate at the pickup, work not started.
    pub arrived: Duration,
    /// Work under way.
    pub started: Duration,
    /// Work done, waiting for billing (automatic: a stall here is an engine fault).
    pub completed: Duration,
    /// Invoiced, waiting for payment.
    pub billed: Duration,
    /// Paid, waiting to close (automatic).
    pub paid: Duration,
    /// Cancelled with a fee that is not paid yet.
    pub fee_owed: Duration,
}

impl Default for StallTimes {
    fn default() -> Self {
        let min = |m: u64| Duration::from_secs(m * 60);
        Self {
            allotted: min(20),
            en_route: min(60),
            arrived: min(30),
            started: min(4 * 60),
            completed: min(2),
            billed: min(30),
            paid: min(2),
            fee_owed: min(7 * 24 * 60),
        }
    }
}

impl StallTimes {
    /// The stall time of an order in `state` (`owes_fee` for a cancelled order still
    /// open); none for an order that is over.
    pub fn of(&self, state: OrderState, owes_fee: bool) -> Option<Duration> {
        Some(match state {
            OrderState::Allotted => self.allotted,
            OrderState::EnRoute => self.en_route,
            OrderState::Arrived => self.arrived,
            OrderState::Started => self.started,
            OrderState::Completed => self.completed,
            OrderState::Billed => self.billed,
            OrderState::Paid => self.paid,
            OrderState::Cancelled if owes_fee => self.fee_owed,
            OrderState::Closed | OrderState::Cancelled => return None,
        })
    }

    /// Checks that every time is above zero.
    pub fn validate(&self) -> Result<(), String> {
        let all = [
            self.allotted,
            self.en_route,
            self.arrived,
            self.started,
            self.completed,
            self.billed,
            self.paid,
            self.fee_owed,
        ];
        if all.iter().any(Duration::is_zero) {
            return Err("stall times must be above zero".into());
        }
        Ok(())
    }
}

/// What the engine does about a stalled order, beyond recording and counting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StallAction {
    /// Nothing more: ops decide.
    Alert,
    /// Before work started, with the associate's app away: nobody can move it, so it is
    /// cancelled without a fee and both parties are free.
    CancelAssociateAway,
    /// Waiting for the user's payment: the associate, whose work is done, is freed; the
    /// order stays open for the payment.
    ReleaseAssociate,
}

impl StallAction {
    /// What it says in the order's events.
    pub(crate) fn describe(self) -> Option<&'static str> {
        match self {
            StallAction::Alert => None,
            StallAction::CancelAssociateAway => {
                Some("cancelled: no progress and the associate's app is away")
            }
            StallAction::ReleaseAssociate => {
                Some("associate released; the order waits for payment")
            }
        }
    }
}

/// The action for an order stalled in `state`.
pub(crate) fn action(state: OrderState, associate_connected: bool) -> StallAction {
    match state {
        OrderState::Allotted | OrderState::EnRoute | OrderState::Arrived
            if !associate_connected =>
        {
            StallAction::CancelAssociateAway
        }
        OrderState::Billed => StallAction::ReleaseAssociate,
        _ => StallAction::Alert,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_orders_nobody_can_move_are_acted_on() {
        assert_eq!(
            action(OrderState::Arrived, false),
            StallAction::CancelAssociateAway
        );
        assert_eq!(action(OrderState::Arrived, true), StallAction::Alert);
        assert_eq!(action(OrderState::Started, false), StallAction::Alert);
        assert_eq!(
            action(OrderState::Billed, true),
            StallAction::ReleaseAssociate
        );
        let t = StallTimes::default();
        assert_eq!(t.of(OrderState::Closed, false), None);
        assert_eq!(t.of(OrderState::Cancelled, false), None);
        assert_eq!(t.of(OrderState::Cancelled, true), Some(t.fee_owed));
        t.validate().unwrap();
    }
}
