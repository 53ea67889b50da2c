//! Profiles (users, associates) and party tokens, for the admin.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use wire::model::{Role, Zone};
use wire::{AssociateId, ErrorCode, PartyId, UserId};

use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::extract::{Admin, Body, PathParams, QueryParams};
use crate::state::AppState;

/// What `POST /v1/tokens` signs.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The party's id.
    pub sub: uuid::Uuid,
    /// The party's role.
    pub role: Role,
    /// Lifetime in seconds, 1 s to a year (default a day).
    #[serde(default = "default_ttl")]
    #[schema(minimum = 1, maximum = 31_536_000)]
    pub ttl_s: u64,
}

fn default_ttl() -> u64 {
    24 * 3600
}

/// A signed party token.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// HS256 token for `Authorization: Bearer` (WebSocket upgrade, order lookups).
    pub token: String,
    /// Expiry, Unix seconds.
    pub expires_at: u64,
}

/// Signs a token for a party (the party needs a profile to connect).
#[utoipa::path(
    post,
    path = "/v1/tokens",
    tag = "profiles",
    security(("admin_key" = [])),
    request_body = TokenRequest,
    responses(
        (status = 200, description = "The token", body = TokenResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No or wrong admin key", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "A field is missing or invalid", body = ErrorBody)
    )
)]
pub async fn issue_token(
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

/// Refuses a string over `max` characters with `too_long`.
pub(crate) fn short(field: &str, s: &str, max: usize) -> ApiResult<()> {
    if s.chars().count() > max {
        return Err(ApiError::invalid(
            ErrorCode::TooLong,
            format!("{field}: over {max} characters"),
        ));
    }
    Ok(())
}

/// Refuses a list over `max` items with `too_long`.
fn few<T>(field: &str, list: &[T], max: usize) -> ApiResult<()> {
    if list.len() > max {
        return Err(ApiError::invalid(
            ErrorCode::TooLong,
            format!("{field}: over {max} items"),
        ));
    }
    Ok(())
}

/// A new user's profile.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// The id to use (default: a new one).
    #[serde(default)]
    pub id: Option<UserId>,
    /// Display name, 1–100 characters.
    pub name: String,
    /// Phone number, 1–32 characters.
    pub phone: String,
    /// Email address.
    #[serde(default)]
    pub email: Option<String>,
    /// Saved addresses, at most 20.
    #[serde(default)]
    pub addresses: Vec<storage::Address>,
    /// ISO date of birth, `YYYY-MM-DD`.
    #[serde(default)]
    pub date_of_birth: Option<String>,
    /// Birthdays, anniversaries, at most 50.
    #[serde(default)]
    pub life_events: Vec<storage::LifeEvent>,
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

fn name_and_phone(name: &str, phone: &str) -> ApiResult<()> {
    if name.trim().is_empty() || phone.trim().is_empty() {
        return Err(ApiError::bad("name and phone are required"));
    }
    short("name", name, 100)?;
    short("phone", phone, 32)
}

fn created(what: &'static str) -> impl FnOnce(storage::StorageError) -> ApiError {
    move |e| match e {
        storage::StorageError::AlreadyExists { .. } => ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::AlreadyExists,
            format!("{what} with this id exists"),
        ),
        other => other.into(),
    }
}

/// Creates a user profile.
#[utoipa::path(
    post,
    path = "/v1/users",
    tag = "profiles",
    security(("admin_key" = [])),
    request_body = NewUser,
    responses(
        (status = 201, description = "Created", body = storage::UserProfile),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No or wrong admin key", body = ErrorBody),
        (status = 409, description = "A user with this id exists", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "A field is missing or invalid", body = ErrorBody)
    )
)]
pub async fn create_user(
    State(state): State<AppState>,
    _: Admin,
    Body(body): Body<NewUser>,
) -> ApiResult<(StatusCode, Json<storage::UserProfile>)> {
    name_and_phone(&body.name, &body.phone)?;
    if let Some(email) = &body.email {
        short("email", email, 200)?;
    }
    few("addresses", &body.addresses, 20)?;
    few("life_events", &body.life_events, 50)?;
    if let Some(dob) = &body.date_of_birth {
        iso_date("date_of_birth", dob)?;
    }
    for e in &body.life_events {
        iso_date("life_events.date", &e.date)?;
        short("life_events.kind", &e.kind, 50)?;
        if let Some(label) = &e.label {
            short("life_events.label", label, 100)?;
        }
    }
    for a in &body.addresses {
        short("addresses.label", &a.label, 50)?;
        short("addresses.line", &a.line, 300)?;
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
        created_at_ms: state.dispatch.now_ms(),
    };
    state
        .store
        .create_user(&profile)
        .map_err(created("a user"))?
        .durable()
        .await?;
    Ok((StatusCode::CREATED, Json(profile)))
}

/// Which page of a list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// At most this many (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
    /// Start after this id (the `next` of the previous page).
    pub after: Option<uuid::Uuid>,
}

/// The default page size.
pub(crate) const DEFAULT_PAGE: usize = 100;

/// The page size asked for, checked.
pub(crate) fn page_size(limit: Option<usize>) -> ApiResult<usize> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=storage::MAX_PAGE).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad(format!(
            "limit: {n} is not 1 to {}",
            storage::MAX_PAGE
        ))),
    }
}

/// A page of users.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserPage {
    /// Oldest first.
    pub items: Vec<storage::UserProfile>,
    /// Pass as `after` for the next page; null on the last.
    pub next: Option<uuid::Uuid>,
}

/// Lists users, oldest first, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/users",
    tag = "profiles",
    security(("admin_key" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "A page", body = UserPage),
        (status = 401, description = "No or wrong admin key", body = ErrorBody),
        (status = 422, description = "A parameter is invalid", body = ErrorBody)
    )
)]
pub async fn list_users(
    State(state): State<AppState>,
    _: Admin,
    QueryParams(q): QueryParams<PageQuery>,
) -> ApiResult<Json<UserPage>> {
    let page = state
        .store
        .users_page(q.after.map(UserId), page_size(q.limit)?)?;
    Ok(Json(UserPage {
        items: page.items,
        next: page.next,
    }))
}

/// A user's profile.
#[utoipa::path(
    get,
    path = "/v1/users/{id}",
    tag = "profiles",
    security(("admin_key" = [])),
    params(("id" = uuid::Uuid, Path, description = "The user")),
    responses(
        (status = 200, description = "The profile", body = storage::UserProfile),
        (status = 401, description = "No or wrong admin key", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 422, description = "The id is not a UUID", body = ErrorBody)
    )
)]
pub async fn get_user(
    State(state): State<AppState>,
    _: Admin,
    PathParams(id): PathParams<UserId>,
) -> ApiResult<Json<storage::UserProfile>> {
    state
        .store
        .user(id)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("user"))
}

/// A new associate's profile.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAssociate {
    /// The id to use (default: a new one).
    #[serde(default)]
    pub id: Option<AssociateId>,
    /// Display name, 1–100 characters.
    pub name: String,
    /// Phone number, 1–32 characters.
    pub phone: String,
    /// Task types they do (at least one, from the engine's `tasks`).
    pub skills: Vec<String>,
    /// Where they are willing to work, if limited.
    #[serde(default)]
    pub home_zone: Option<Zone>,
}

/// Creates an associate profile.
#[utoipa::path(
    post,
    path = "/v1/associates",
    tag = "profiles",
    security(("admin_key" = [])),
    request_body = NewAssociate,
    responses(
        (status = 201, description = "Created", body = storage::AssociateProfile),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No or wrong admin key", body = ErrorBody),
        (status = 409, description = "An associate with this id exists", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "A field is missing or invalid (unknown_task_type for a skill)", body = ErrorBody)
    )
)]
pub async fn create_associate(
    State(state): State<AppState>,
    _: Admin,
    Body(body): Body<NewAssociate>,
) -> ApiResult<(StatusCode, Json<storage::AssociateProfile>)> {
    name_and_phone(&body.name, &body.phone)?;
    if body.skills.is_empty() {
        return Err(ApiError::bad("skills: at least one task type"));
    }
    few("skills", &body.skills, 64)?;
    for s in &body.skills {
        if state.validator.catalog.get(s).is_none() {
            return Err(ApiError::invalid(
                ErrorCode::UnknownTaskType,
                format!(
                    "skills: unknown task type {:?}",
                    s.chars().take(40).collect::<String>()
                ),
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
        created_at_ms: state.dispatch.now_ms(),
    };
    state
        .store
        .create_associate(&profile)
        .map_err(created("an associate"))?
        .durable()
        .await?;
    Ok((StatusCode::CREATED, Json(profile)))
}

/// A page of associates.
#[derive(Debug, Serialize, ToSchema)]
pub struct AssociatePage {
    /// Oldest first.
    pub items: Vec<storage::AssociateProfile>,
    /// Pass as `after` for the next page; null on the last.
    pub next: Option<uuid::Uuid>,
}

/// Lists associates, oldest first, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/associates",
    tag = "profiles",
    security(("admin_key" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "A page", body = AssociatePage),
        (status = 401, description = "No or wrong admin key", body = ErrorBody),
        (status = 422, description = "A parameter is invalid", body = ErrorBody)
    )
)]
pub async fn list_associates(
    State(state): State<AppState>,
    _: Admin,
    QueryParams(q): QueryParams<PageQuery>,
) -> ApiResult<Json<AssociatePage>> {
    let page = state
        .store
        .associates_page(q.after.map(AssociateId), page_size(q.limit)?)?;
    Ok(Json(AssociatePage {
        items: page.items,
        next: page.next,
    }))
}

/// An associate's profile.
#[utoipa::path(
    get,
    path = "/v1/associates/{id}",
    tag = "profiles",
    security(("admin_key" = [])),
    params(("id" = uuid::Uuid, Path, description = "The associate")),
    responses(
        (status = 200, description = "The profile", body = storage::AssociateProfile),
        (status = 401, description = "No or wrong admin key", body = ErrorBody),
        (status = 404, description = "No such associate", body = ErrorBody),
        (status = 422, description = "The id is not a UUID", body = ErrorBody)
    )
)]
pub async fn get_associate(
    State(state): State<AppState>,
    _: Admin,
    PathParams(id): PathParams<AssociateId>,
) -> ApiResult<Json<storage::AssociateProfile>> {
    state
        .store
        .associate(id)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("associate"))
}
