//! What each app frame does: the session calls dispatch or orders as its own party.

use actors::ActorError;
use actors::orders::messages::Action;
use wire::ClientMessage as M;
use wire::{PartyId, ServerHeartbeat};

use crate::session::Session;

impl Session {
    /// Acts on a decoded, validated frame the party's role may send.
    pub(crate) async fn act(&mut self, frame: M) -> Result<(), ActorError> {
        let dispatch = self.state.dispatch.clone();
        let orders = self.state.orders.clone();
        let party = self.party;
        match frame {
            M::Location(l) => {
                let point = l
                    .point
                    .to_latlng()
                    .map_err(|e| ActorError::Internal(e.to_string()))?;
                // A user's position matters only to the associate of their open order:
                // it is relayed, never kept.
                if let PartyId::Associate(a) = party {
                    dispatch.associate_location(a, point);
                }
                orders.relay_location(party, point);
            }
            M::GoOnline(g) => {
                let catalog = dispatch.catalog();
                let skills = (!g.skills.is_empty()).then(|| {
                    g.skills
                        .iter()
                        .filter_map(|s| catalog.get(s))
                        .collect::<geo::Skills>()
                });
                dispatch.go_online(associate(party)?, skills).await?;
            }
            M::GoOffline(_) => {
                dispatch.go_offline(associate(party)?).await?;
            }
            M::SetZone(z) => {
                let a = associate(party)?;
                let filter = z.zone.as_ref().and_then(actors::ZoneFilter::from_wire);
                dispatch.set_zone(a, filter).await?;
                if let Some(mut profile) = self.state.store.associate_async(a).await? {
                    profile.home_zone = z.zone;
                    self.state.store.put_associate(&profile)?.durable().await?;
                }
            }
            M::Request(r) => {
                let PartyId::User(user) = party else {
                    return Err(ActorError::UnknownRequest);
                };
                if let Some(order) = orders.find_open_order(party)? {
                    return Err(ActorError::AlreadyActive(format!(
                        "order {order} is still open; a new request can follow once it closes"
                    )));
                }
                if let Some(code) = &r.discount_code {
                    self.check_discount(code, user).await?;
                }
                // The frame was validated with the rest of the message.
                let ask = actors::NewRequest::new(r)
                    .map_err(|e| ActorError::InvalidState(format!("pickup: {e}")))?;
                dispatch.request_on_actor_thread(user, ask).await?;
            }
            M::CancelRequest(c) => {
                let PartyId::User(user) = party else {
                    return Err(ActorError::UnknownRequest);
                };
                dispatch.cancel_request(user, c.request_id).await?;
            }
            M::Accept(a) => {
                dispatch
                    .answer_offer(associate(party)?, a.request_id, true)
                    .await?;
            }
            M::Decline(d) => {
                dispatch
                    .answer_offer(associate(party)?, d.request_id, false)
                    .await?;
            }
            M::EnRoute(f) => orders.act(party, f.order_id, Action::EnRoute).await?,
            M::Arrived(f) => orders.act(party, f.order_id, Action::Arrived).await?,
            M::Start(f) => {
                orders
                    .act(party, f.order_id, Action::Start { pin: f.pin })
                    .await?
            }
            M::Complete(f) => orders.act(party, f.order_id, Action::Complete).await?,
            M::CancelOrder(f) => {
                orders
                    .act(party, f.order_id, Action::Cancel { reason: f.reason })
                    .await?
            }
            M::Pay(p) => orders.pay(party, p).await?,
            M::CashReceived(c) => orders.cash_received(party, c).await?,
            M::Feedback(f) => orders.rate(party, f).await?,
            M::Heartbeat(h) => self.push(ServerHeartbeat {
                server_time_ms: dispatch.now_ms(),
                nonce: h.nonce,
            }),
        }
        Ok(())
    }

    /// A discount code must exist, not have expired, and (if once per user) be unused.
    async fn check_discount(&self, code: &str, user: wire::UserId) -> Result<(), ActorError> {
        let store = &self.state.store;
        let Some(discount) = store.discount_async(code).await? else {
            return Err(ActorError::BadDiscountCode(format!(
                "{code} does not exist"
            )));
        };
        if discount
            .expires_at_ms
            .is_some_and(|exp| self.state.dispatch.now_ms() >= exp)
        {
            return Err(ActorError::BadDiscountCode(format!("{code} has expired")));
        }
        if discount.once_per_user && store.redeemed_async(code, user).await? {
            return Err(ActorError::BadDiscountCode(format!(
                "{code} was already used"
            )));
        }
        Ok(())
    }
}

/// The associate's id; the role check before acting makes this infallible in practice.
fn associate(party: PartyId) -> Result<wire::AssociateId, ActorError> {
    match party {
        PartyId::Associate(a) => Ok(a),
        PartyId::User(_) => Err(ActorError::NotYourOffer),
    }
}
