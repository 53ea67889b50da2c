//! HTTP routes (the API-gateway role): profiles, orders, tokens, pricing, discounts,
//! external feedback, health and metrics. Errors are JSON with stable codes.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use wire::model::{DiscountCode, OrderEvent, OrderState, PricingSettings, Role, Zone};
use wire::{AssociateId, ErrorCode, OrderId, PartyId, UserId};

use crate::extract::{Admin, Body, FeedbackKey, is_admin};
use crate::state::AppState;

/// An HTTP error: status, stable code, message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
}

impl ApiError {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// A field with an impossible value: 422.
    fn bad(message: impl Into<String>) -> Self {
        Self::invalid(ErrorCode::BadField, message)
    }

    /// A well-formed body whose content is refused, with `code`: 422.
    fn invalid(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("{what} not found"),
        )
    }

    pub(crate) fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": { "code": self.code, "message": self.message } });
        (self.status, Json(body)).into_response()
    }
}

impl From<storage::StorageError> for ApiError {
    fn from(e: storage::StorageError) -> Self {
        tracing::error!(error = %e, "storage error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            e.to_string(),
        )
    }
}

impl From<actors::ActorError> for ApiError {
    fn from(e: actors::ActorError) -> Self {
        let status = match e.code() {
            ErrorCode::NotYourOrder => StatusCode::NOT_FOUND,
            ErrorCode::AlreadyRated
            | ErrorCode::InvalidState
            | ErrorCode::AlreadyActive
            | ErrorCode::PaymentPending => StatusCode::CONFLICT,
            ErrorCode::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        Self::new(status, e.code(), e.to_string())
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The HTTP routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/tokens", post(issue_token))
        .route("/v1/users", post(create_user).get(list_users))
        .route("/v1/users/{id}", get(get_user))
        .route(
            "/v1/associates",
            post(create_associate).get(list_associates),
        )
        .route("/v1/associates/{id}", get(get_associate))
        .route("/v1/orders/{id}", get(get_order))
        .route("/v1/orders/{id}/cancel", post(ops_cancel))
        .route("/v1/orders/{id}/complete", post(ops_complete))
        .route("/v1/pricing", get(get_pricing).put(put_pricing))
        .route("/v1/discounts", post(put_discount).get(list_discounts))
        .route("/v1/feedback", post(post_feedback))
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

async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    let status = if state.shutdown.is_stopping() {
        "stopping"
    } else {
        "ok"
    };
    Json(serde_json::json!({
        "status": status,
        "open_requests": state.dispatch.open_requests(),
        "open_orders": state.orders.open_orders(),
        "connections": state.dispatch.sessions().len(),
    }))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    sub: uuid::Uuid,
    role: Role,
    #[serde(default = "default_ttl")]
    ttl_s: u64,
}

fn default_ttl() -> u64 {
    24 * 3600
}

#[derive(Debug, Serialize)]
struct TokenResponse {
    token: String,
    expires_at: u64,
}

async fn issue_token(
    State(state): State<AppState>,
    _: Admin,
    Body(body): Body<TokenRequest>,
) -> ApiResult<Json<TokenResponse>> {
    if body.ttl_s == 0 || body.ttl_s > 365 * 24 * 3600 {
        return Err(ApiError::bad("ttl_s must be 1 s to 1 year"));
    }
    let party = match body.role {
        Role::User => PartyId::User(UserId(body.sub)),
        Role::Associate => PartyId::Associate(AssociateId(body.sub)),
    };
    let (token, expires_at) = state.tokens.issue(party, body.ttl_s);
    Ok(Json(TokenResponse { token, expires_at }))
}

fn now_ms(state: &AppState) -> u64 {
    state.dispatch.now_ms()
}

fn short(field: &str, s: &str, max: usize) -> ApiResult<()> {
    if s.chars().count() > max {
        return Err(ApiError::invalid(
            ErrorCode::TooLong,
            format!("{field}: over {max} characters"),
        ));
    }
    Ok(())
}

/// A new user's profile.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    #[serde(default)]
    id: Option<UserId>,
    name: String,
    phone: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    addresses: Vec<storage::Address>,
    #[serde(default)]
    date_of_birth: Option<String>,
    #[serde(default)]
    life_events: Vec<storage::LifeEvent>,
}

fn iso_date(field: &str, s: &str) -> ApiResult<()> {
    let b = s.as_bytes();
    let ok = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    let month = s.get(5..7).and_then(|m| m.parse::<u8>().ok()).unwrap_or(0);
    let day = s.get(8..10).and_then(|d| d.parse::<u8>().ok()).unwrap_or(0);
    if ok && (1..=12).contains(&month) && (1..=31).contains(&day) {
        Ok(())
    } else {
        Err(ApiError::bad(format!("{field}: expected YYYY-MM-DD")))
    }
}

async fn create_user(
    State(state): State<AppState>,
    _: Admin,
    Body(body): Body<NewUser>,
) -> ApiResult<(StatusCode, Json<storage::UserProfile>)> {
    if body.name.trim().is_empty() || body.phone.trim().is_empty() {
        return Err(ApiError::bad("name and phone are required"));
    }
    short("name", &body.name, 100)?;
    short("phone", &body.phone, 32)?;
    if let Some(dob) = &body.date_of_birth {
        iso_date("date_of_birth", dob)?;
    }
    for e in &body.life_events {
        iso_date("life_events.date", &e.date)?;
    }
    for a in &body.addresses {
        if let Some(p) = a.point {
            p.to_latlng()
                .map_err(|e| ApiError::invalid(ErrorCode::BadCoordinates, e.to_string()))?;
        }
    }
    let profile = storage::UserProfile {
        id: body.id.unwrap_or_default(),
        name: body.name,
        phone: body.phone,
        email: body.email,
        addresses: body.addresses,
        date_of_birth: body.date_of_birth,
        life_events: body.life_events,
        rating_sum: 0,
        rating_count: 0,
        created_at_ms: now_ms(&state),
    };
    if state.store.user(profile.id)?.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::AlreadyExists,
            "a user with this id exists",
        ));
    }
    state.store.put_user(&profile)?.durable().await?;
    Ok((StatusCode::CREATED, Json(profile)))
}

async fn list_users(
    State(state): State<AppState>,
    _: Admin,
) -> ApiResult<Json<Vec<storage::UserProfile>>> {
    Ok(Json(state.store.users()?))
}

async fn get_user(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<UserId>,
) -> ApiResult<Json<storage::UserProfile>> {
    state
        .store
        .user(id)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("user"))
}

/// A new associate's profile.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAssociate {
    #[serde(default)]
    id: Option<AssociateId>,
    name: String,
    phone: String,
    skills: Vec<String>,
    #[serde(default)]
    home_zone: Option<Zone>,
}

async fn create_associate(
    State(state): State<AppState>,
    _: Admin,
    Body(body): Body<NewAssociate>,
) -> ApiResult<(StatusCode, Json<storage::AssociateProfile>)> {
    if body.name.trim().is_empty() || body.phone.trim().is_empty() {
        return Err(ApiError::bad("name and phone are required"));
    }
    short("name", &body.name, 100)?;
    short("phone", &body.phone, 32)?;
    if body.skills.is_empty() {
        return Err(ApiError::bad("skills: at least one task type"));
    }
    for s in &body.skills {
        if state.validator.catalog.get(s).is_none() {
            return Err(ApiError::invalid(
                ErrorCode::UnknownTaskType,
                format!("skills: unknown task type {s:?}"),
            ));
        }
    }
    if let Some(zone) = &body.home_zone {
        let frame = wire::SetZone {
            zone: Some(zone.clone()),
        };
        wire::Validate::validate(&frame, &state.validator)
            .map_err(|e| ApiError::invalid(e.code, e.detail))?;
    }
    let profile = storage::AssociateProfile {
        id: body.id.unwrap_or_default(),
        name: body.name,
        phone: body.phone,
        skills: body.skills,
        home_zone: body.home_zone,
        rating_sum: 0,
        rating_count: 0,
        created_at_ms: now_ms(&state),
    };
    if state.store.associate(profile.id)?.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::AlreadyExists,
            "an associate with this id exists",
        ));
    }
    state.store.put_associate(&profile)?.durable().await?;
    Ok((StatusCode::CREATED, Json(profile)))
}

async fn list_associates(
    State(state): State<AppState>,
    _: Admin,
) -> ApiResult<Json<Vec<storage::AssociateProfile>>> {
    Ok(Json(state.store.associates()?))
}

async fn get_associate(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<AssociateId>,
) -> ApiResult<Json<storage::AssociateProfile>> {
    state
        .store
        .associate(id)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("associate"))
}

#[derive(Debug, Serialize)]
struct OrderView {
    order: storage::OrderRecord,
    events: Vec<OrderEvent>,
    invoice: Option<wire::model::Invoice>,
    payments: Vec<storage::PaymentRecord>,
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// An order's state and history: for the admin, or for a party to it (bearer token).
async fn get_order(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
    Path(id): Path<OrderId>,
) -> ApiResult<Json<OrderView>> {
    // Who asks comes first: an unauthenticated caller learns nothing about the order.
    let party = if is_admin(&headers, &state) {
        None
    } else {
        let token = bearer(&headers, q.token.as_deref())
            .ok_or_else(|| ApiError::unauthorized("token or admin key required"))?;
        let claims = state
            .tokens
            .verify(token)
            .map_err(|e| ApiError::unauthorized(e.to_string()))?;
        Some(claims)
    };
    let order = state
        .store
        .order(id)?
        .ok_or_else(|| ApiError::not_found("order"))?;
    let mut hide_pin = false;
    if let Some(claims) = party {
        let mine = match claims.party() {
            PartyId::User(u) => u == order.user_id,
            PartyId::Associate(a) => a == order.associate_id,
        };
        if !mine {
            return Err(ApiError::not_found("order"));
        }
        hide_pin = matches!(claims.party(), PartyId::Associate(_));
    }
    let mut view = order_view(&state, id, Some(order))?;
    if hide_pin {
        view.order.pin.clear();
    }
    Ok(Json(view))
}

/// An order with its events, invoice and payments (`order` if already read).
fn order_view(
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

/// Why ops end an order by hand.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OpsReason {
    reason: String,
}

/// Cancels an open order in any state, without a fee; the associate is freed.
async fn ops_cancel(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<OrderId>,
    Body(body): Body<OpsReason>,
) -> ApiResult<Json<OrderView>> {
    ops_end(state, id, actors::order::OpsAction::Cancel, body.reason).await
}

/// Marks started work done; billing and payment follow as usual.
async fn ops_complete(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<OrderId>,
    Body(body): Body<OpsReason>,
) -> ApiResult<Json<OrderView>> {
    ops_end(state, id, actors::order::OpsAction::Complete, body.reason).await
}

async fn ops_end(
    state: AppState,
    id: OrderId,
    action: actors::order::OpsAction,
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
            actors::ActorError::NotYourOrder => ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::InvalidState,
                format!(
                    "the order is {} and cannot be changed",
                    order.state.as_str()
                ),
            ),
            other => other.into(),
        });
    }
    Ok(Json(order_view(&state, id, None)?))
}

async fn get_pricing(State(state): State<AppState>, _: Admin) -> ApiResult<Json<PricingSettings>> {
    Ok(Json(actors::pricing::settings_or_default(&state.store)))
}

async fn put_pricing(
    State(state): State<AppState>,
    _: Admin,
    Body(body): Body<PricingSettings>,
) -> ApiResult<Json<PricingSettings>> {
    actors::pricing::validate(&body).map_err(|e| ApiError::bad(e.to_string()))?;
    for task in state.validator.catalog.names() {
        if !body.tasks.iter().any(|t| &t.task == task) {
            return Err(ApiError::bad(format!(
                "tasks: no prices for task type {task:?}"
            )));
        }
    }
    state.store.put_pricing(&body)?.durable().await?;
    Ok(Json(body))
}

async fn put_discount(
    State(state): State<AppState>,
    _: Admin,
    Body(body): Body<DiscountCode>,
) -> ApiResult<(StatusCode, Json<DiscountCode>)> {
    actors::pricing::validate_discount(&body).map_err(|e| ApiError::bad(e.to_string()))?;
    state.store.put_discount(&body)?.durable().await?;
    Ok((StatusCode::CREATED, Json(body)))
}

async fn list_discounts(
    State(state): State<AppState>,
    _: Admin,
) -> ApiResult<Json<Vec<DiscountCode>>> {
    Ok(Json(state.store.discounts()?))
}

/// Feedback gathered elsewhere about a party of a closed order.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExternalFeedback {
    order_id: OrderId,
    about: Role,
    rating: u8,
    #[serde(default)]
    comment: Option<String>,
    source: String,
}

/// Records feedback from elsewhere: 201 with the rating the first time, 200 with the
/// rating already on record when the same source rated the same party of the same order
/// before (never counted twice). The key is checked before the body is read.
async fn post_feedback(
    State(state): State<AppState>,
    _key: FeedbackKey,
    Body(body): Body<ExternalFeedback>,
) -> ApiResult<(StatusCode, Json<storage::FeedbackRecord>)> {
    if !(1..=5).contains(&body.rating) {
        return Err(ApiError::bad("rating: must be 1 to 5"));
    }
    if body.source.trim().is_empty() {
        return Err(ApiError::bad("source: required"));
    }
    short("source", &body.source, 64)?;
    if let Some(c) = &body.comment {
        short("comment", c, state.validator.limits.max_comment_chars)?;
    }
    let order = state
        .store
        .order(body.order_id)?
        .ok_or_else(|| ApiError::not_found("order"))?;
    if order.state != OrderState::Closed {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::InvalidState,
            "feedback opens when the order closes",
        ));
    }
    let outcome = state
        .orders
        .external_feedback(actors::feedback::External {
            order_id: body.order_id,
            about: body.about,
            rating: body.rating,
            comment: body.comment,
            source: body.source,
        })
        .await?;
    let status = if outcome.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(outcome.record)))
}
