//! Identity: HS256 party tokens (subject, role, expiry) and the admin and API keys.

use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use wire::model::Role;
use wire::{AssociateId, PartyId, UserId};

/// Why a token was refused.
#[derive(Debug, Error)]
pub enum AuthError {
    /// Malformed, wrongly signed or expired.
    #[error("invalid token: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    /// The secrets file could not be read or written.
    #[error("secrets file {path}: {message}")]
    Secrets {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The party's id.
    pub sub: uuid::Uuid,
    /// Their role.
    pub role: Role,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Issued at, Unix seconds.
    pub iat: u64,
}

impl Claims {
    /// The party the token names.
    pub fn party(&self) -> PartyId {
        match self.role {
            Role::User => PartyId::User(UserId(self.sub)),
            Role::Associate => PartyId::Associate(AssociateId(self.sub)),
        }
    }
}

/// Issues and checks tokens.
#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens(..)")
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Tokens {
    /// Tokens signed with `secret`.
    pub fn new(secret: &str) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
        }
    }

    /// A token for `party`, valid for `ttl_s` seconds; with its expiry.
    pub fn issue(&self, party: PartyId, ttl_s: u64) -> (String, u64) {
        let now = unix_now();
        let claims = Claims {
            sub: party.uuid(),
            role: party.role(),
            iat: now,
            exp: now + ttl_s,
        };
        // expect: HS256 signing of a small JSON object cannot fail.
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing");
        (token, claims.exp)
    }

    /// The claims of a valid, unexpired token.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Ok(jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)?.claims)
    }
}

/// Compares two keys in time independent of where they differ.
pub fn keys_match(given: &str, expected: &str) -> bool {
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Secrets the engine keeps in its data directory when the config gives none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secrets {
    /// Admin key.
    pub admin_key: String,
    /// Token signing secret.
    pub token_secret: String,
    /// Feedback API key.
    pub feedback_api_key: String,
}

/// `bytes` random bytes as lower-case hex.
pub(crate) fn random_hex(bytes: usize) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes * 2);
    for _ in 0..bytes {
        let _ = write!(out, "{:02x}", rand::random::<u8>());
    }
    out
}

impl Secrets {
    /// The secrets in `dir/secrets.json`, created with fresh random values if absent.
    /// Returns whether they were just created.
    pub fn load_or_create(dir: &Path) -> Result<(Self, bool), AuthError> {
        let path = dir.join("secrets.json");
        let err = |message: String| AuthError::Secrets {
            path: path.display().to_string(),
            message,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok((
                serde_json::from_str(&text).map_err(|e| err(e.to_string()))?,
                false,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let secrets = Secrets {
                    admin_key: random_hex(24),
                    token_secret: random_hex(32),
                    feedback_api_key: random_hex(24),
                };
                std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
                let text =
                    serde_json::to_string_pretty(&secrets).map_err(|e| err(e.to_string()))?;
                write_private(&path, &text).map_err(|e| err(e.to_string()))?;
                Ok((secrets, true))
            }
            Err(e) => Err(err(e.to_string())),
        }
    }
}

/// Writes a file readable by its owner only.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_tampering() {
        let t = Tokens::new("a-secret-of-enough-length");
        let party = PartyId::Associate(AssociateId::new());
        let (token, _) = t.issue(party, 60);
        assert_eq!(t.verify(&token).unwrap().party(), party);
        let other = Tokens::new("another-secret-of-enough-length");
        assert!(other.verify(&token).is_err());
        let mut bad = token.clone();
        bad.push('x');
        assert!(t.verify(&bad).is_err());
        let (expired, _) = {
            let now = unix_now();
            let claims = Claims {
                sub: uuid::Uuid::nil(),
                role: Role::User,
                iat: now - 100,
                exp: now - 60,
            };
            (
                jsonwebtoken::encode(&Header::default(), &claims, &t.encoding).unwrap(),
                0,
            )
        };
        assert!(t.verify(&expired).is_err());
    }

    #[test]
    fn key_comparison() {
        assert!(keys_match("abc", "abc"));
        assert!(!keys_match("abc", "abd"));
        assert!(!keys_match("abc", "abcd"));
    }

    #[test]
    fn secrets_persist() {
        let dir = tempfile::tempdir().unwrap();
        let (a, created) = Secrets::load_or_create(dir.path()).unwrap();
        assert!(created);
        let (b, created) = Secrets::load_or_create(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(a, b);
    }
}
