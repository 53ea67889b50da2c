//! Console sessions: a random token in an HttpOnly, SameSite=Strict cookie, a CSRF token
//! per session, an expiry, and the `Origin` check.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use dashmap::DashMap;

/// The session cookie's name.
pub const COOKIE: &str = "speedy_ops";
/// Sessions kept at most (older ones go first): logins need the admin key, but nothing
/// kept per login may grow without bound.
const MAX_SESSIONS: usize = 1_024;

/// A logged-in console.
#[derive(Debug, Clone)]
pub struct OpsSession {
    /// The cookie's token.
    pub token: String,
    /// The token state-changing requests must carry.
    pub csrf: String,
    expires: Instant,
    created: Instant,
}

/// Console sessions; cheap to clone.
#[derive(Debug, Clone)]
pub struct OpsSessions {
    inner: Arc<DashMap<String, OpsSession>>,
    ttl: Duration,
}

impl OpsSessions {
    /// Sessions that last `ttl` after login.
    pub fn new(ttl: Duration) -> Self {
        Self {
            inner: Arc::new(DashMap::new()),
            ttl,
        }
    }

    /// Starts a session; its cookie token.
    pub fn create(&self) -> String {
        let now = Instant::now();
        self.inner.retain(|_, s| s.expires > now);
        if self.inner.len() >= MAX_SESSIONS
            && let Some(oldest) = self
                .inner
                .iter()
                .min_by_key(|s| s.created)
                .map(|s| s.key().clone())
        {
            self.inner.remove(&oldest);
        }
        let token = crate::auth::random_hex(32);
        self.inner.insert(
            token.clone(),
            OpsSession {
                token: token.clone(),
                csrf: crate::auth::random_hex(32),
                expires: now + self.ttl,
                created: now,
            },
        );
        token
    }

    /// The live session the request's cookie names, if any.
    pub fn session(&self, headers: &HeaderMap) -> Option<OpsSession> {
        let token = cookie(headers, COOKIE)?;
        let session = self.inner.get(token)?.clone();
        if session.expires <= Instant::now() {
            self.inner.remove(token);
            return None;
        }
        Some(session)
    }

    /// Ends a session.
    pub fn end(&self, token: &str) {
        self.inner.remove(token);
    }
}

/// The value of cookie `name` in the request.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// Whether the request comes from the engine's own origin (`http(s)://<Host>`) or one of
/// `allowed`. Browsers send `Origin` with every WebSocket upgrade and form post, and send
/// the session cookie even when another site makes them: a request without it, or from
/// elsewhere, is refused.
pub fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let own = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|host| {
            origin == format!("http://{host}") || origin == format!("https://{host}")
        });
    own || allowed.iter().any(|a| a == origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let h = headers(&[("cookie", "a=1; speedy_ops=abc; b=2")]);
        assert_eq!(cookie(&h, COOKIE), Some("abc"));
        assert_eq!(cookie(&headers(&[("cookie", "x=1")]), COOKIE), None);
    }

    #[test]
    fn only_the_own_or_an_allowed_origin_passes() {
        let own = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
        ]);
        assert!(origin_allowed(&own, &[]));
        let other = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://evil.example"),
        ]);
        assert!(!origin_allowed(&other, &[]));
        assert!(origin_allowed(&other, &["http://evil.example".into()]));
        let none = headers(&[("host", "127.0.0.1:8080")]);
        assert!(!origin_allowed(&none, &[]));
    }

    #[test]
    fn a_session_expires_and_ends() {
        let sessions = OpsSessions::new(Duration::ZERO);
        let token = sessions.create();
        let h = headers(&[("cookie", &format!("{COOKIE}={token}"))]);
        assert!(sessions.session(&h).is_none(), "expired at once");
        let sessions = OpsSessions::new(Duration::from_secs(60));
        let token = sessions.create();
        let h = headers(&[("cookie", &format!("{COOKIE}={token}"))]);
        assert!(sessions.session(&h).is_some());
        sessions.end(&token);
        assert!(sessions.session(&h).is_none());
    }

    #[test]
    fn sessions_are_bounded() {
        let sessions = OpsSessions::new(Duration::from_secs(60));
        for _ in 0..MAX_SESSIONS + 10 {
            sessions.create();
        }
        assert_eq!(sessions.inner.len(), MAX_SESSIONS);
    }
}
