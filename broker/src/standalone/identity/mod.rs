//! Verified identity: who a connecting client is, from the token it presents.
//!
//! Two verifiers, chosen by the `[auth]` table of the config ([`AuthConfig`]):
//!
//! * **Phoenix.Token** (`kind = "phoenix_token"`): a token minted by a real Phoenix app with
//!   `Phoenix.Token.sign(endpoint, salt, data)` verifies here given the app's
//!   `secret_key_base` and the same salt (docs/PROTOCOL.md §9.1–§9.5). The key is derived once
//!   (PBKDF2, §9.2); the MAC is checked in constant time before the payload is looked at; the
//!   payload is decoded by a bounded decoder of the ETF subset of §9.4 (no panic, no allocation
//!   larger than the input or [`MAX_DECOMPRESSED_BYTES`], depth ≤ [`MAX_TERM_DEPTH`], at most
//!   [`MAX_TERMS`] terms); the age rules of §9.3 apply, in that order.
//! * **JWT** (`kind = "jwt"`): HS256, RS256 or ES256 through the `jsonwebtoken` crate;
//!   `exp` (required unless `require_exp = false`) and `nbf` are checked against the same clock
//!   as Phoenix tokens, with `leeway_s` (default [`DEFAULT_JWT_LEEWAY_S`] s); `aud` and `iss`
//!   are checked (and required) when configured.
//!
//! ```toml
//! [auth]
//! kind = "phoenix_token"
//! secret_key_base = "…the app's SECRET_KEY_BASE (at least 20 bytes)…"
//! salt = "user socket"
//! # max_age_s = 1209600          # override the token's embedded max_age (default: use it)
//! # user_id_field = "user_id"    # when data is a map
//! ```
//!
//! ```toml
//! [auth]
//! kind = "jwt"
//! algorithm = "rs256"                       # hs256 | rs256 | es256
//! public_key_file = "/etc/broker/issuer.pem" # or public_key_pem = "-----BEGIN PUBLIC KEY-----…"
//! audience = ["broker"]
//! issuer = ["https://auth.example.com"]
//! ```
//!
//! A round trip (what the app does with `Phoenix.Token.sign(MyAppWeb.Endpoint, "user socket",
//! 42)`, then what the broker does):
//!
//! ```
//! use broker::standalone::identity::{sign_phoenix_token, AuthConfig, Digest, Verifier};
//! let secret = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
//! let now_ms = 1_700_000_000_000;
//! let token = sign_phoenix_token(secret, "user socket", &serde_json::json!(42), now_ms, Some(86_400));
//! let verifier = Verifier::new(&AuthConfig::PhoenixToken {
//!     secret_key_base: secret.into(),
//!     salt: "user socket".into(),
//!     max_age_s: None,
//!     key_iterations: 1000,
//!     key_length: 32,
//!     key_digest: Digest::Sha256,
//!     user_id_field: None,
//! })
//! .unwrap();
//! assert_eq!(verifier.verify_at(&token, now_ms + 1000).unwrap().user_id, "42");
//! ```
//!
//! What `data` becomes ([`Identity::claims`]`["data"]`): integers → JSON numbers (an integer
//! outside the i64/u64 range makes the token invalid); floats → numbers; binaries → strings (not
//! UTF-8 → invalid); the atoms `true`/`false`/`nil` → `true`/`false`/`null`, other atoms →
//! strings; maps → objects whose keys are the atom's or binary's text, or an integer's decimal
//! form (other keys → invalid; when two keys give the same text the later one wins); lists and
//! tuples → arrays; charlists (`STRING_EXT`, and so any list of small integers) → arrays of
//! numbers. Pids, refs, ports, funs, `LOCAL_EXT`, bitstrings, improper lists and every other tag
//! make the token invalid. Bytes after the term are ignored, as `binary_to_term/1` does.

mod config;
mod etf;
mod jwt;
mod outcome;
mod phoenix_token;

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

pub use config::{AuthConfig, Digest, JwtAlgorithm, DEFAULT_JWT_LEEWAY_S, DEFAULT_KEY_ITERATIONS, DEFAULT_KEY_LENGTH};
pub use etf::{MAX_DECOMPRESSED_BYTES, MAX_TERMS, MAX_TERM_DEPTH};
pub use jwt::MIN_HS256_SECRET_BYTES;
pub use outcome::{Identity, TokenError};
pub use phoenix_token::{sign_phoenix_token, LEGACY_MAX_AGE_S, MIN_SECRET_KEY_BASE_BYTES};

use jwt::JwtVerifier;
use phoenix_token::PhoenixVerifier;

/// Longer tokens are invalid before any work is done. Phoenix tokens carrying a user id are
/// ~100 bytes, JWTs a few hundred to a few KiB; a token rides in a URL or a header.
pub const MAX_TOKEN_BYTES: usize = 64 * 1024;

/// A token verifier built once from an [`AuthConfig`] (the derived key, the JWT key and its
/// validation rules are computed here, not per token). Cheap to share behind an `Arc`.
#[derive(Clone)]
pub struct Verifier {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    Phoenix(PhoenixVerifier),
    Jwt(Box<JwtVerifier>),
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Inner::Phoenix(p) => fmt::Debug::fmt(p, f),
            Inner::Jwt(j) => fmt::Debug::fmt(j, f),
        }
    }
}

impl Verifier {
    /// Builds the verifier; a config error names its key (`auth.…`).
    pub fn new(config: &AuthConfig) -> Result<Verifier, String> {
        let inner = match config {
            AuthConfig::PhoenixToken { secret_key_base, salt, max_age_s, key_iterations, key_length, key_digest, user_id_field } => {
                let p = PhoenixVerifier::new(secret_key_base, salt, *max_age_s, *key_iterations, *key_length, *key_digest, user_id_field.as_deref())?;
                Inner::Phoenix(p)
            }
            AuthConfig::Jwt { algorithm, secret, public_key_pem, public_key_file, audience, issuer, leeway_s, user_id_claim, require_exp } => {
                let (key, alg) = jwt::decoding_key(*algorithm, secret.as_deref(), public_key_pem.as_deref(), public_key_file.as_deref())?;
                let j = JwtVerifier::new(key, alg, audience.as_deref(), issuer.as_deref(), *leeway_s, user_id_claim, *require_exp)?;
                Inner::Jwt(Box::new(j))
            }
        };
        Ok(Verifier { inner })
    }

    /// Verifies `token` now (system clock).
    pub fn verify(&self, token: &str) -> Result<Identity, TokenError> {
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        self.verify_at(token, u64::try_from(now_ms).unwrap_or(u64::MAX))
    }

    /// Verifies `token` as if the time were `now_ms` (milliseconds since the Unix epoch).
    /// An empty token is [`TokenError::Missing`].
    pub fn verify_at(&self, token: &str, now_ms: u64) -> Result<Identity, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Invalid);
        }
        match &self.inner {
            Inner::Phoenix(p) => p.verify(token, i128::from(now_ms)),
            Inner::Jwt(j) => j.verify(token, i128::from(now_ms)),
        }
    }
}

#[cfg(test)]
mod tests;
