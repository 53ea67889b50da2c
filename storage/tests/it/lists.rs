//! Pages of profiles and orders: id order, cursors, filters, and the scan budget.

use storage::OrderQuery;
use wire::model::{OrderEventKind, OrderState};
use wire::{AssociateId, UserId};

use crate::{Kind, both};
use crate::{new_order, new_user};

fn pages_of_profiles_follow_their_cursor_to_the_end(kind: Kind) {
    let s = kind.store();
    let mut ids = Vec::new();
    for n in 0..25 {
        let u = new_user(n);
        ids.push(u.id);
        s.put_user(&u).unwrap().wait().unwrap();
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = s.users_page(after, 10).unwrap();
        assert!(page.items.len() <= 10);
        seen.extend(page.items.iter().map(|u| u.id));
        match page.next {
            Some(next) => after = Some(UserId(next)),
            None => break,
        }
    }
    assert_eq!(seen, ids, "every user once, oldest first");
    // A limit of zero still gives a page of one; a huge one is capped.
    assert_eq!(s.users_page(None, 0).unwrap().items.len(), 1);
    assert_eq!(s.users_page(None, 10_000).unwrap().items.len(), 25);
}
both!(pages_of_profiles_follow_their_cursor_to_the_end);

fn orders_are_found_by_party_state_and_time(kind: Kind) {
    let s = kind.store();
    let (u1, u2) = (UserId::new(), UserId::new());
    let a = AssociateId::new();
    let mut mine = Vec::new();
    for n in 0..12u64 {
        let mut o = new_order(if n % 3 == 0 { u1 } else { u2 }, a, 1_000 + n);
        o.allotted_at_ms = 1_000 + n;
        s.create_order(&o).unwrap().ticket.wait().unwrap();
        if n % 2 == 0 {
            s.transition(o.order_id, 2_000, OrderEventKind::EnRoute, &[])
                .unwrap();
        }
        if n % 3 == 0 {
            mine.push(o.order_id);
        }
    }
    let all = |q: OrderQuery| {
        let mut out = Vec::new();
        let mut q = q;
        loop {
            let page = s.find_orders(&q).unwrap();
            out.extend(page.items.iter().map(|o| o.order_id));
            match page.next {
                Some(next) => q.after = Some(wire::OrderId(next)),
                None => return out,
            }
        }
    };
    let by_user = all(OrderQuery {
        user: Some(u1),
        limit: 2,
        ..OrderQuery::default()
    });
    assert_eq!(by_user, mine);
    assert_eq!(
        all(OrderQuery {
            associate: Some(a),
            limit: 5,
            ..OrderQuery::default()
        })
        .len(),
        12
    );
    let en_route = all(OrderQuery {
        state: Some(OrderState::EnRoute),
        limit: 3,
        ..OrderQuery::default()
    });
    assert_eq!(en_route.len(), 6);
    assert!(
        all(OrderQuery {
            user: Some(u2),
            state: Some(OrderState::EnRoute),
            limit: 100,
            ..OrderQuery::default()
        })
        .iter()
        .all(|id| !mine.contains(id))
    );
}
both!(orders_are_found_by_party_state_and_time);
