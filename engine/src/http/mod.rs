//! The HTTP API (the API-gateway role): profiles, tokens, orders, pricing, discounts,
//! external feedback, health and metrics, and the WebSocket upgrade. Every route is
//! declared once, with its OpenAPI description beside its handler, so the document
//! served at `/v1/openapi.json` (and committed as docs/openapi.json) cannot drift from
//! the code. Every error is `{"error": {"code", "message"}}` with a stable code.

pub(crate) mod error;
pub(crate) mod extract;
mod feedback;
mod health;
mod money;
pub(crate) mod orders;
mod profiles;
mod requests;

use axum::Router;
use utoipa::openapi::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi as _};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::{ApiError, ErrorBody};
pub(crate) use orders::bearer;

use crate::state::AppState;

/// The document's frame: title, version, security schemes, tags.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Speedy Cheers engine",
        description = "The HTTP API of the Speedy Cheers dispatch engine. Apps talk to the engine over the WebSocket at /v1/ws (see docs/PROTOCOL.md and docs/asyncapi.yaml); this API is for the admin, ops and integrations. Errors are {\"error\": {\"code\", \"message\"}} with the stable codes of docs/PROTOCOL.md.",
        license(name = "MIT OR Apache-2.0")
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "profiles", description = "Users, associates and their tokens (admin key)"),
        (name = "orders", description = "Orders: lookup for parties, search and hand corrections for ops"),
        (name = "money", description = "Prices and discount codes (admin key)"),
        (name = "feedback", description = "Ratings gathered elsewhere (feedback API key)"),
        (name = "apps", description = "The WebSocket apps connect to"),
        (name = "ops", description = "Health, metrics, this document")
    )
)]
struct Frame;

/// The credentials the API knows.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut OpenApi) {
        let c = openapi.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "admin_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-admin-key",
                "The admin key: --admin-key, or admin_key in <data-dir>/secrets.json",
            ))),
        );
        c.add_security_scheme(
            "feedback_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-api-key",
                "The feedback API key: feedback_api_key in the config or in <data-dir>/secrets.json",
            ))),
        );
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("A party's token from POST /v1/tokens"))
                    .build(),
            ),
        );
    }
}

/// Every route with its description: the router and the OpenAPI document.
pub fn api() -> (Router<AppState>, OpenApi) {
    let (router, doc) = OpenApiRouter::with_openapi(Frame::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .routes(routes!(health::openapi))
        .routes(routes!(crate::session::upgrade))
        .routes(routes!(profiles::issue_token))
        .routes(routes!(profiles::create_user, profiles::list_users))
        .routes(routes!(profiles::get_user))
        .routes(routes!(
            profiles::create_associate,
            profiles::list_associates
        ))
        .routes(routes!(profiles::get_associate))
        .routes(routes!(orders::list_orders))
        .routes(routes!(orders::get_order))
        .routes(routes!(orders::order_events))
        .routes(routes!(orders::ops_cancel))
        .routes(routes!(orders::ops_complete))
        .routes(routes!(requests::request_offers))
        .routes(routes!(money::get_pricing, money::put_pricing))
        .routes(routes!(money::put_discount, money::list_discounts))
        .routes(routes!(feedback::post_feedback))
        .split_for_parts();
    let router = router
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::wrong_method);
    (router, doc)
}

/// The OpenAPI document as served at `/v1/openapi.json`.
pub fn openapi_json() -> String {
    // expect: the document is plain data, which always serialises.
    api()
        .1
        .to_pretty_json()
        .expect("the OpenAPI document serialises")
}
