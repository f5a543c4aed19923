//! What verifying a token yields: an [`Identity`] or a [`TokenError`] (shared by both verifiers).

use std::fmt;

use serde_json::{Map, Value};

/// Who the token says the client is.
#[derive(Clone, Debug, PartialEq)]
pub struct Identity {
    /// The user id as text (a numeric id in its decimal form). Never empty.
    pub user_id: String,
    /// JWT: the token's claims. Phoenix.Token: `{"data": data}`, plus data's own fields when
    /// `data` is an object (`"data"` always holds the whole of `data`).
    pub claims: Map<String, Value>,
}

/// Why a token was refused. `Display` is a short reason that is safe to send to the client
/// (it says nothing about keys or which check failed beyond expiry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// No token (an empty string; Phoenix's `nil` token).
    Missing,
    /// Malformed, wrongly signed, signed in the future (Phoenix.Token), wrong `alg`, `aud` or
    /// `iss`, a payload outside the accepted ETF subset, too long, ….
    Invalid,
    /// Past its max_age (Phoenix.Token) or `exp` (JWT).
    Expired,
    /// JWT whose `nbf` is still in the future (beyond the leeway).
    NotYetValid,
    /// Valid, but no usable user id in it.
    NoUserId,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenError::Missing => "missing token",
            TokenError::Invalid => "invalid token",
            TokenError::Expired => "expired token",
            TokenError::NotYetValid => "token not yet valid",
            TokenError::NoUserId => "token has no user id",
        })
    }
}

impl std::error::Error for TokenError {}

/// A user id claim: a non-empty string, or a number in its decimal form.
pub(super) fn user_id_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}
