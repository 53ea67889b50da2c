//! The ops console: a live view of the market for the people who run it, served by the
//! engine itself behind the admin key, with nothing from a CDN.
//!
//! - [`sessions`]: console sessions (an HttpOnly, SameSite=Strict cookie after logging in
//!   with the admin key), their CSRF tokens, and the `Origin` check every state-changing
//!   route and the ops socket make.
//! - [`stream`]: the ops WebSocket, a snapshot of the market every second per viewer.
//! - `assets/`: the login and console pages, embedded in the binary.

mod actions;
mod sessions;
mod stream;

use axum::Form;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::auth::keys_match;
use crate::state::AppState;
pub use sessions::OpsSessions;

const LOGIN_PAGE: &str = include_str!("assets/login.html");
const CONSOLE_PAGE: &str = include_str!("assets/console.html");

/// The console's routes (HTML and the ops socket; not part of the JSON API's document).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ops", get(page))
        .route("/ops/login", post(login))
        .route("/ops/logout", post(logout))
        .route("/v1/ops/ws", get(stream::upgrade))
        .route("/ops/api/orders/{id}", get(actions::order))
        .route("/ops/api/orders/{id}/track", get(actions::track))
        .route("/ops/api/orders/{id}/{action}", post(actions::end_order))
        .route(
            "/ops/api/associates/{id}/offline",
            post(actions::associate_offline),
        )
}

/// The console for a logged-in session, else the login form.
async fn page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match state.ops.session(&headers) {
        Some(session) => html(
            StatusCode::OK,
            CONSOLE_PAGE.replace("{{csrf}}", &session.csrf),
        ),
        None => login_page(StatusCode::OK, ""),
    }
}

fn login_page(status: StatusCode, message: &str) -> Response {
    html(status, LOGIN_PAGE.replace("{{message}}", message))
}

fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, Html(body)).into_response();
    let h = response.headers_mut();
    // The pages are never framed by another site, and are not cached.
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    response
}

/// The login form's fields.
#[derive(Debug, Deserialize)]
struct LoginForm {
    key: String,
}

/// Logs in with the admin key: a session cookie and back to the console; a wrong key gets
/// the form again with 401.
async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if !sessions::origin_allowed(&headers, &state.config.ops.allowed_origins) {
        return login_page(
            StatusCode::FORBIDDEN,
            "This page may only be used from the engine's own origin.",
        );
    }
    if !keys_match(form.key.trim(), &state.secrets.admin_key) {
        return login_page(StatusCode::UNAUTHORIZED, "Wrong key.");
    }
    let token = state.ops.create();
    let ttl = state.config.ops.session_ttl_s;
    let cookie = format!(
        "{}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={ttl}",
        sessions::COOKIE
    );
    see_console(Some(cookie))
}

/// The logout form's fields.
#[derive(Debug, Deserialize)]
struct LogoutForm {
    csrf: String,
}

/// Ends the session (with its CSRF token, from the engine's own origin).
async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<LogoutForm>,
) -> Response {
    let Some(session) = state.ops.session(&headers) else {
        return login_page(StatusCode::UNAUTHORIZED, "Not logged in.");
    };
    if !sessions::origin_allowed(&headers, &state.config.ops.allowed_origins)
        || !keys_match(&form.csrf, &session.csrf)
    {
        return (StatusCode::FORBIDDEN, "refused: wrong origin or CSRF token").into_response();
    }
    state.ops.end(&session.token);
    see_console(Some(format!(
        "{}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
        sessions::COOKIE
    )))
}

/// 303 to the console, setting `cookie`.
fn see_console(cookie: Option<String>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let h = response.headers_mut();
    h.insert(header::LOCATION, HeaderValue::from_static("/ops"));
    if let Some(value) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::SET_COOKIE, value);
    }
    response
}
