//! Prices and discount codes, for the admin.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use wire::model::{DiscountCode, PricingSettings};

use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::extract::{Admin, Body};
use crate::state::AppState;

/// The prices in force.
#[utoipa::path(
    get,
    path = "/v1/pricing",
    tag = "money",
    security(("admin_key" = [])),
    responses(
        (status = 200, description = "The pricing settings", body = PricingSettings),
        (status = 401, description = "No or wrong admin key", body = ErrorBody)
    )
)]
pub async fn get_pricing(
    State(state): State<AppState>,
    _: Admin,
) -> ApiResult<Json<PricingSettings>> {
    Ok(Json(actors::orders::pricing::settings_or_default(
        state.store.pricing_async().await,
    )))
}

/// Replaces the prices: every task type needs prices; orders billed from now on use them.
#[utoipa::path(
    put,
    path = "/v1/pricing",
    tag = "money",
    security(("admin_key" = [])),
    request_body = PricingSettings,
    responses(
        (status = 200, description = "Stored", body = PricingSettings),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No or wrong admin key", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "A setting is invalid, or a task type has no prices", body = ErrorBody)
    )
)]
pub async fn put_pricing(
    State(state): State<AppState>,
    _: Admin,
    Body(body): Body<PricingSettings>,
) -> ApiResult<Json<PricingSettings>> {
    actors::orders::pricing::validate(&body).map_err(|e| ApiError::bad(e.to_string()))?;
    if body.tasks.len() > 256 {
        return Err(ApiError::bad("tasks: at most 256"));
    }
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

/// Creates or replaces a discount code.
#[utoipa::path(
    post,
    path = "/v1/discounts",
    tag = "money",
    security(("admin_key" = [])),
    request_body = DiscountCode,
    responses(
        (status = 201, description = "Stored", body = DiscountCode),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No or wrong admin key", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "A field is invalid", body = ErrorBody)
    )
)]
pub async fn put_discount(
    State(state): State<AppState>,
    _: Admin,
    Body(body): Body<DiscountCode>,
) -> ApiResult<(StatusCode, Json<DiscountCode>)> {
    actors::orders::pricing::validate_discount(&body).map_err(|e| ApiError::bad(e.to_string()))?;
    state.store.put_discount(&body)?.durable().await?;
    Ok((StatusCode::CREATED, Json(body)))
}

/// Every discount code.
#[utoipa::path(
    get,
    path = "/v1/discounts",
    tag = "money",
    security(("admin_key" = [])),
    responses(
        (status = 200, description = "The codes", body = [DiscountCode]),
        (status = 401, description = "No or wrong admin key", body = ErrorBody)
    )
)]
pub async fn list_discounts(
    State(state): State<AppState>,
    _: Admin,
) -> ApiResult<Json<Vec<DiscountCode>>> {
    Ok(Json(state.store.discounts()?))
}
