//! Phoenix.Token for apps built on the library: `Phoenix.Token.sign(endpoint, salt, data)` and
//! `Phoenix.Token.verify(endpoint, salt, token, max_age: …)`, the same format Phoenix apps use
//! (docs/PROTOCOL.md §9), on the standalone identity code ([`crate::standalone::identity`]).
//!
//! ```
//! let tokens = broker::token::PhoenixToken::new("a secret_key_base of 20+ bytes", "user socket").unwrap();
//! let token = tokens.sign_user("alice");
//! assert_eq!(tokens.verify(&token).unwrap().user_id, "alice");
//! assert!(tokens.verify("forged").is_err());
//! ```

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

pub use crate::standalone::identity::{Identity, TokenError};
use crate::standalone::identity::{sign_phoenix_token, AuthConfig, Verifier};

/// Signs and verifies Phoenix.Tokens with one `secret_key_base` and salt.
#[derive(Clone)]
pub struct PhoenixToken {
    secret_key_base: String,
    salt: String,
    max_age_s: u64,
    verifier: Verifier,
}

impl std::fmt::Debug for PhoenixToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PhoenixToken").field("salt", &self.salt).field("max_age_s", &self.max_age_s).finish_non_exhaustive()
    }
}

impl PhoenixToken {
    /// Tokens valid for a day (Phoenix's default `max_age`). `secret_key_base` must be at least
    /// 20 bytes.
    pub fn new(secret_key_base: &str, salt: &str) -> Result<PhoenixToken, String> {
        PhoenixToken::with_max_age(secret_key_base, salt, 86_400)
    }

    /// Tokens valid for `max_age_s` seconds.
    pub fn with_max_age(secret_key_base: &str, salt: &str, max_age_s: u64) -> Result<PhoenixToken, String> {
        let config: AuthConfig = serde_json::from_value(json!({
            "kind": "phoenix_token",
            "secret_key_base": secret_key_base,
            "salt": salt,
        }))
        .map_err(|e| e.to_string())?;
        let verifier = Verifier::new(&config)?;
        Ok(PhoenixToken { secret_key_base: secret_key_base.into(), salt: salt.into(), max_age_s, verifier })
    }

    /// `Phoenix.Token.sign(endpoint, salt, data)`, signed now.
    pub fn sign(&self, data: &Value) -> String {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        sign_phoenix_token(&self.secret_key_base, &self.salt, data, now, Some(self.max_age_s))
    }

    /// A token whose data is the user id (what [`PhoenixToken::verify`] gives back as
    /// `user_id`).
    pub fn sign_user(&self, user_id: &str) -> String {
        self.sign(&Value::String(user_id.into()))
    }

    /// `Phoenix.Token.verify`: the identity, or why not (forged, expired, malformed).
    pub fn verify(&self, token: &str) -> Result<Identity, TokenError> {
        self.verifier.verify(token)
    }
}
