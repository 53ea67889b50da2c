//! Orders over HTTP: one order's state and history (for the admin or a party to it), a
//! paginated search for ops, and cancelling or completing an order by hand.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use wire::model::{Invoice, OrderEvent, OrderState, UnixMs};
use wire::{AssociateId, OrderId, PartyId, UserId};

use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::extract::{Admin, Body, PathParams, QueryParams, is_admin};
use crate::http::profiles::{page_size, short};
use crate::state::AppState;

/// An order with everything that happened to it.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderView {
    /// The order now (the PIN is empty in an associate's copy).
    pub order: storage::OrderRecord,
    /// Its events, in order.
    pub events: Vec<OrderEvent>,
    /// The invoice, once billed (or the cancellation fee's).
    pub invoice: Option<Invoice>,
    /// Every payment attempt, oldest first.
    pub payments: Vec<storage::PaymentRecord>,
}

/// The bearer token from an `Authorization` header or a `token` query parameter.
pub fn bearer<'a>(headers: &'a HeaderMap, query_token: Option<&'a str>) -> Option<&'a str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .filter(|t| !t.is_empty())
        .or(query_token)
}

/// A party's token in the query (for browsers, which cannot set headers).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TokenQuery {
    /// The party's token, instead of `Authorization: Bearer`.
    pub token: Option<String>,
}

/// An order's state and history: for the admin, or for a party to it with their token.
#[utoipa::path(
    get,
    path = "/v1/orders/{id}",
    tag = "orders",
    security(("admin_key" = []), ("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The order"), TokenQuery),
    responses(
        (status = 200, description = "The order", body = OrderView),
        (status = 401, description = "Neither the admin key nor a valid token", body = ErrorBody),
        (status = 404, description = "No such order, or not the token's party's", body = ErrorBody),
        (status = 422, description = "The id is not a UUID", body = ErrorBody)
    )
)]
pub async fn get_order(
    State(state): State<AppState>,
    headers: HeaderMap,
    QueryParams(q): QueryParams<TokenQuery>,
    PathParams(id): PathParams<OrderId>,
) -> ApiResult<Json<OrderView>> {
    let (order, hide_pin) = readable_order(&state, &headers, q.token.as_deref(), id)?;
    let mut view = order_view(&state, id, Some(order))?;
    if hide_pin {
        view.order.pin.clear();
    }
    Ok(Json(view))
}

/// The order if the caller may read it (the admin, or a party to it with their token), and
/// whether its PIN must be hidden (the associate's copy). Who asks comes first: an
/// unauthenticated caller learns nothing about the order.
fn readable_order(
    state: &AppState,
    headers: &HeaderMap,
    token: Option<&str>,
    id: OrderId,
) -> ApiResult<(storage::OrderRecord, bool)> {
    let party = if is_admin(headers, state) {
        None
    } else {
        let token = bearer(headers, token)
            .ok_or_else(|| ApiError::unauthorized("token or admin key required"))?;
        let claims = state
            .tokens
            .verify(token)
            .map_err(|e| ApiError::unauthorized(e.to_string()))?;
        Some(claims.party())
    };
    let order = state
        .store
        .order(id)?
        .ok_or_else(|| ApiError::not_found("order"))?;
    let hide_pin = match party {
        None => false,
        Some(PartyId::User(u)) if u == order.user_id => false,
        Some(PartyId::Associate(a)) if a == order.associate_id => true,
        Some(_) => return Err(ApiError::not_found("order")),
    };
    Ok((order, hide_pin))
}

/// Which events to read back, and the caller's token.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only events after this one (its `seq`); omitted: from the first.
    pub after: Option<u32>,
    /// The party's token, instead of `Authorization: Bearer`.
    pub token: Option<String>,
}

/// Where events were read from.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventSource {
    /// The store (a single node).
    Store,
    /// The cluster's JetStream event log (appended once each event is durable).
    EventLog,
}

/// An order's events after a given one.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderEvents {
    /// The order.
    pub order_id: OrderId,
    /// Its events after `after`, in order.
    pub events: Vec<OrderEvent>,
    /// Where they were read from.
    pub source: EventSource,
}

/// An order's events after the last one an app saw: what a reconnecting app asks for.
#[utoipa::path(
    get,
    path = "/v1/orders/{id}/events",
    tag = "orders",
    security(("admin_key" = []), ("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The order"), EventsQuery),
    responses(
        (status = 200, description = "The events after `after`", body = OrderEvents),
        (status = 401, description = "Neither the admin key nor a valid token", body = ErrorBody),
        (status = 404, description = "No such order, or not the token's party's", body = ErrorBody),
        (status = 422, description = "The id is not a UUID, or `after` not a number", body = ErrorBody),
        (status = 503, description = "Cluster mode: the event log could not be read", body = ErrorBody)
    )
)]
pub async fn order_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    QueryParams(q): QueryParams<EventsQuery>,
    PathParams(id): PathParams<OrderId>,
) -> ApiResult<Json<OrderEvents>> {
    readable_order(&state, &headers, q.token.as_deref(), id)?;
    let (events, source) = match &state.events {
        Some(log) => (
            crate::cluster::logged_events(log, id).await?,
            EventSource::EventLog,
        ),
        None => (state.store.events(id)?, EventSource::Store),
    };
    let events = events
        .into_iter()
        .filter(|e| q.after.is_none_or(|after| e.seq > after))
        .collect();
    Ok(Json(OrderEvents {
        order_id: id,
        events,
        source,
    }))
}

/// An order with its events, invoice and payments (`order` if already read).
pub(crate) fn order_view(
    state: &AppState,
    id: OrderId,
    order: Option<storage::OrderRecord>,
) -> ApiResult<OrderView> {
    let order = match order {
        Some(o) => o,
        None => state
            .store
            .order(id)?
            .ok_or_else(|| ApiError::not_found("order"))?,
    };
    let events = state.store.events(id)?;
    let invoice = match order.invoice_id {
        Some(i) => state.store.invoice(i)?,
        None => None,
    };
    let payments = state.store.payments_for(id)?;
    Ok(OrderView {
        order,
        events,
        invoice,
        payments,
    })
}

/// Which orders to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrdersQuery {
    /// Only this user's.
    pub user_id: Option<uuid::Uuid>,
    /// Only this associate's.
    pub associate_id: Option<uuid::Uuid>,
    /// Only orders now in this state.
    pub state: Option<OrderState>,
    /// Allotted at or after this time (Unix ms).
    pub from_ms: Option<UnixMs>,
    /// Allotted before this time (Unix ms).
    pub to_ms: Option<UnixMs>,
    /// At most this many (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
    /// Start after this order (the `next` of the previous page).
    pub after: Option<uuid::Uuid>,
}

/// A page of orders.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderPage {
    /// Oldest first.
    pub items: Vec<storage::OrderRecord>,
    /// Pass as `after` for the next page; null on the last. A page may be short and
    /// still have a `next`: each page looks at a bounded number of orders.
    pub next: Option<uuid::Uuid>,
}

/// Finds orders by user, associate, state and allotment time, oldest first, a page at
/// a time.
#[utoipa::path(
    get,
    path = "/v1/orders",
    tag = "orders",
    security(("admin_key" = [])),
    params(OrdersQuery),
    responses(
        (status = 200, description = "A page", body = OrderPage),
        (status = 401, description = "No or wrong admin key", body = ErrorBody),
        (status = 422, description = "A parameter is invalid", body = ErrorBody)
    )
)]
pub async fn list_orders(
    State(state): State<AppState>,
    _: Admin,
    QueryParams(q): QueryParams<OrdersQuery>,
) -> ApiResult<Json<OrderPage>> {
    if let (Some(from), Some(to)) = (q.from_ms, q.to_ms)
        && from > to
    {
        return Err(ApiError::bad("from_ms is after to_ms"));
    }
    let query = storage::OrderQuery {
        user: q.user_id.map(UserId),
        associate: q.associate_id.map(AssociateId),
        state: q.state,
        from_ms: q.from_ms,
        to_ms: q.to_ms,
        after: q.after.map(OrderId),
        limit: page_size(q.limit)?,
    };
    let page = state.store.find_orders(&query)?;
    Ok(Json(OrderPage {
        items: page.items,
        next: page.next,
    }))
}

/// Why ops end an order by hand.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpsReason {
    /// Kept in the order's events; 1–200 characters.
    pub reason: String,
}

/// Cancels an open order in any state, without a fee; the associate is freed.
#[utoipa::path(
    post,
    path = "/v1/orders/{id}/cancel",
    tag = "orders",
    security(("admin_key" = [])),
    params(("id" = uuid::Uuid, Path, description = "The order")),
    request_body = OpsReason,
    responses(
        (status = 200, description = "Cancelled", body = OrderView),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No or wrong admin key", body = ErrorBody),
        (status = 404, description = "No such order", body = ErrorBody),
        (status = 409, description = "The order is over, or a payment is pending", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "No reason, or the id is not a UUID", body = ErrorBody)
    )
)]
pub async fn ops_cancel(
    State(state): State<AppState>,
    _: Admin,
    PathParams(id): PathParams<OrderId>,
    Body(body): Body<OpsReason>,
) -> ApiResult<Json<OrderView>> {
    ops_end(
        state,
        id,
        actors::orders::messages::OpsAction::Cancel,
        body.reason,
    )
    .await
}

/// Marks started work done; billing and payment follow as usual.
#[utoipa::path(
    post,
    path = "/v1/orders/{id}/complete",
    tag = "orders",
    security(("admin_key" = [])),
    params(("id" = uuid::Uuid, Path, description = "The order")),
    request_body = OpsReason,
    responses(
        (status = 200, description = "Completed; billing follows", body = OrderView),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No or wrong admin key", body = ErrorBody),
        (status = 404, description = "No such order", body = ErrorBody),
        (status = 409, description = "Work has not started, or the order is over", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "No reason, or the id is not a UUID", body = ErrorBody)
    )
)]
pub async fn ops_complete(
    State(state): State<AppState>,
    _: Admin,
    PathParams(id): PathParams<OrderId>,
    Body(body): Body<OpsReason>,
) -> ApiResult<Json<OrderView>> {
    ops_end(
        state,
        id,
        actors::orders::messages::OpsAction::Complete,
        body.reason,
    )
    .await
}

pub(crate) async fn ops_end(
    state: AppState,
    id: OrderId,
    action: actors::orders::messages::OpsAction,
    reason: String,
) -> ApiResult<Json<OrderView>> {
    if reason.trim().is_empty() {
        return Err(ApiError::bad(
            "reason: required (it is kept in the order's events)",
        ));
    }
    short("reason", &reason, 200)?;
    let Some(order) = state.store.order(id)? else {
        return Err(ApiError::not_found("order"));
    };
    if let Err(e) = state.orders.ops(id, action, reason).await {
        return Err(match e {
            // No actor: the order is over.
            actors::ActorError::NotYourOrder => ApiError::conflict(format!(
                "the order is {} and cannot be changed",
                order.state.as_str()
            )),
            other => other.into(),
        });
    }
    Ok(Json(order_view(&state, id, None)?))
}
