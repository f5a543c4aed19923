//! Phoenix.Token (docs/PROTOCOL.md §9): the token format (§9.1), the key derivation (§9.2),
//! the payload shapes and the age rules (§9.3), and [`sign_phoenix_token`]. The MAC is checked
//! in constant time before the payload is looked at; the payload goes to the bounded decoder
//! of [`etf`].

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value};
use sha2::{Sha256, Sha384, Sha512};

use super::config::{Digest, DEFAULT_KEY_ITERATIONS, DEFAULT_KEY_LENGTH};
use super::etf::{self, Bad};
use super::outcome::{user_id_of, Identity, TokenError};

/// The max_age of the legacy payload shapes, which carry none (§9.3).
pub const LEGACY_MAX_AGE_S: u64 = 86_400;
/// Phoenix refuses a `secret_key_base` shorter than this.
pub const MIN_SECRET_KEY_BASE_BYTES: usize = 20;
/// Sanity bound on `key_length` (Phoenix uses 32; PBKDF2 output is computed at startup).
const MAX_KEY_LENGTH: usize = 1024;

/// The Phoenix.Token half of a `Verifier`: the derived key and the verify-time options.
#[derive(Clone)]
pub(super) struct PhoenixVerifier {
    key: Vec<u8>,
    max_age_s: Option<u64>,
    user_id_field: Option<String>,
}

/// The `Debug` of a `Verifier` of this kind (the key is not shown).
impl fmt::Debug for PhoenixVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier::PhoenixToken").field("max_age_s", &self.max_age_s).finish_non_exhaustive()
    }
}

impl PhoenixVerifier {
    /// Checks the `auth.*` options of `kind = "phoenix_token"` and derives the key (once).
    pub(super) fn new(
        secret_key_base: &str,
        salt: &str,
        max_age_s: Option<u64>,
        key_iterations: u32,
        key_length: usize,
        key_digest: Digest,
        user_id_field: Option<&str>,
    ) -> Result<PhoenixVerifier, String> {
        if secret_key_base.len() < MIN_SECRET_KEY_BASE_BYTES {
            return Err(format!("auth.secret_key_base must be at least {MIN_SECRET_KEY_BASE_BYTES} bytes (Phoenix's minimum)"));
        }
        if key_iterations == 0 {
            return Err("auth.key_iterations must be at least 1".into());
        }
        if key_length == 0 || key_length > MAX_KEY_LENGTH {
            return Err(format!("auth.key_length must be between 1 and {MAX_KEY_LENGTH} bytes"));
        }
        if user_id_field == Some("") {
            return Err("auth.user_id_field must not be empty (omit it for user_id, then id)".into());
        }
        let key = derive_key(secret_key_base.as_bytes(), salt.as_bytes(), key_iterations, key_length, key_digest);
        Ok(PhoenixVerifier { key, max_age_s, user_id_field: user_id_field.map(str::to_owned) })
    }

    pub(super) fn verify(&self, token: &str, now_ms: i128) -> Result<Identity, TokenError> {
        let mut parts = token.split('.');
        let (Some(protected), Some(payload_b64), Some(mac_b64), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(TokenError::Invalid);
        };
        let digest = MacDigest::from_header(protected).ok_or(TokenError::Invalid)?;
        let mac = URL_SAFE_NO_PAD.decode(mac_b64).map_err(|_| TokenError::Invalid)?;
        let signed_text = &token.as_bytes()[..protected.len() + 1 + payload_b64.len()];
        if !hmac_ok(digest, &self.key, signed_text, &mac) {
            return Err(TokenError::Invalid);
        }
        let payload = URL_SAFE_NO_PAD.decode(payload_b64).map_err(|_| TokenError::Invalid)?;
        let (data, signed_at_ms, embedded) = decode_payload(&payload).map_err(|_| TokenError::Invalid)?;
        let max_age = match self.max_age_s {
            Some(s) => MaxAge::Int(i128::from(s)),
            None => embedded,
        };
        check_age(signed_at_ms, max_age, now_ms)?;
        let data = etf::to_json(data).map_err(|_| TokenError::Invalid)?;
        let user_id = match &data {
            Value::String(_) | Value::Number(_) => user_id_of(&data),
            Value::Object(m) => match &self.user_id_field {
                Some(f) => m.get(f).and_then(user_id_of),
                None => m.get("user_id").and_then(user_id_of).or_else(|| m.get("id").and_then(user_id_of)),
            },
            _ => None,
        }
        .ok_or(TokenError::NoUserId)?;
        let mut claims = match &data {
            Value::Object(m) => m.clone(),
            _ => Map::new(),
        };
        claims.insert("data".into(), data);
        Ok(Identity { user_id, claims })
    }
}

/// The PBKDF2 key (§9.2), computed once per verifier.
pub(super) fn derive_key(secret_key_base: &[u8], salt: &[u8], iterations: u32, length: usize, digest: Digest) -> Vec<u8> {
    let mut key = vec![0u8; length];
    match digest {
        Digest::Sha256 => pbkdf2::pbkdf2_hmac::<Sha256>(secret_key_base, salt, iterations, &mut key),
        Digest::Sha384 => pbkdf2::pbkdf2_hmac::<Sha384>(secret_key_base, salt, iterations, &mut key),
        Digest::Sha512 => pbkdf2::pbkdf2_hmac::<Sha512>(secret_key_base, salt, iterations, &mut key),
    }
    key
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum MacDigest {
    Sha256,
    Sha384,
    Sha512,
}

impl MacDigest {
    /// The protected header (b64u of "HS256" etc., §9.1).
    fn from_header(h: &str) -> Option<MacDigest> {
        match h {
            "SFMyNTY" => Some(MacDigest::Sha256),
            "SFMzODQ" => Some(MacDigest::Sha384),
            "SFM1MTI" => Some(MacDigest::Sha512),
            _ => None,
        }
    }
    fn header(self) -> &'static str {
        match self {
            MacDigest::Sha256 => "SFMyNTY",
            MacDigest::Sha384 => "SFMzODQ",
            MacDigest::Sha512 => "SFM1MTI",
        }
    }
}

fn hmac_tag(digest: MacDigest, key: &[u8], msg: &[u8]) -> Vec<u8> {
    fn run<M: Mac + KeyInit>(key: &[u8], msg: &[u8]) -> Vec<u8> {
        // HMAC takes keys of any length, so this never fails.
        match <M as KeyInit>::new_from_slice(key) {
            Ok(mut m) => {
                m.update(msg);
                m.finalize().into_bytes().to_vec()
            }
            Err(_) => Vec::new(),
        }
    }
    match digest {
        MacDigest::Sha256 => run::<Hmac<Sha256>>(key, msg),
        MacDigest::Sha384 => run::<Hmac<Sha384>>(key, msg),
        MacDigest::Sha512 => run::<Hmac<Sha512>>(key, msg),
    }
}

/// Constant-time MAC check (via `Mac::verify_slice`).
fn hmac_ok(digest: MacDigest, key: &[u8], msg: &[u8], tag: &[u8]) -> bool {
    fn run<M: Mac + KeyInit>(key: &[u8], msg: &[u8], tag: &[u8]) -> bool {
        match <M as KeyInit>::new_from_slice(key) {
            Ok(mut m) => {
                m.update(msg);
                m.verify_slice(tag).is_ok()
            }
            Err(_) => false,
        }
    }
    match digest {
        MacDigest::Sha256 => run::<Hmac<Sha256>>(key, msg, tag),
        MacDigest::Sha384 => run::<Hmac<Sha384>>(key, msg, tag),
        MacDigest::Sha512 => run::<Hmac<Sha512>>(key, msg, tag),
    }
}

/// `protected "." b64u(payload) "." b64u(mac)` (§9.1).
pub(super) fn sign_with_key(key: &[u8], digest: MacDigest, payload: &[u8]) -> String {
    let mut token = String::with_capacity(payload.len() * 4 / 3 + 100);
    token.push_str(digest.header());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut token);
    let tag = hmac_tag(digest, key, token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(tag, &mut token);
    token
}

/// Mints a Phoenix.Token the way `Phoenix.Token.sign(secret_key_base, salt, data,
/// signed_at: …, max_age: …)` does with the default key options (PBKDF2-HMAC-SHA256, 1000
/// iterations, 32 bytes) and HS256: the payload is the ETF of `{data, signed_at_ms, max_age}`,
/// max_age `None` being `:infinity` (Phoenix's default is `Some(86_400)`).
///
/// `data` is encoded as an Elixir app would hold decoded JSON: integers as SMALL_INTEGER /
/// INTEGER / SMALL_BIG, other numbers as NEW_FLOAT, strings as binaries, `true`/`false`/`null`
/// as the atoms `true`/`false`/`nil`, arrays as lists and objects as maps with **binary** keys
/// (`%{"user_id" => 42}`, not `%{user_id: 42}`; both verify to the same JSON). For integers,
/// strings and atoms the bytes are those of `term_to_binary` (so the §9.5 vectors for `123`
/// and `"user:42"` come out byte for byte). The secret's length is not checked here. Meant for
/// tests, examples and tools; the broker itself only verifies.
pub fn sign_phoenix_token(secret_key_base: &str, salt: &str, data: &Value, signed_at_ms: u64, max_age_s: Option<u64>) -> String {
    let key = derive_key(secret_key_base.as_bytes(), salt.as_bytes(), DEFAULT_KEY_ITERATIONS, DEFAULT_KEY_LENGTH, Digest::Sha256);
    let mut payload = vec![etf::VERSION, etf::SMALL_TUPLE, 3];
    etf::encode_json(data, &mut payload);
    etf::encode_int(i128::from(signed_at_ms), &mut payload);
    match max_age_s {
        Some(s) => etf::encode_int(i128::from(s), &mut payload),
        None => etf::encode_atom("infinity", &mut payload),
    }
    sign_with_key(&key, MacDigest::Sha256, &payload)
}

/// The max_age in force for one token.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum MaxAge {
    Infinity,
    /// Seconds: `≤ 0` is expired, otherwise `trunc(s × 1000)` ms.
    Int(i128),
    Float(f64),
}

/// §9.3 rules 1–5, in the spec's order.
fn check_age(signed_at_ms: i128, max_age: MaxAge, now_ms: i128) -> Result<(), TokenError> {
    let max_age_ms = match max_age {
        MaxAge::Infinity => return Ok(()),
        MaxAge::Int(s) if s <= 0 => return Err(TokenError::Expired),
        MaxAge::Float(s) if s <= 0.0 => return Err(TokenError::Expired),
        MaxAge::Int(s) => s.saturating_mul(1000),
        // `as` truncates toward zero and saturates, like trunc/1 on any finite float.
        MaxAge::Float(s) => (s * 1000.0) as i128,
    };
    if signed_at_ms > now_ms {
        return Err(TokenError::Invalid);
    }
    if signed_at_ms.saturating_add(max_age_ms) < now_ms {
        return Err(TokenError::Expired);
    }
    Ok(())
}

/// The payload term → (data, signed_at_ms, max_age), accepting the three shapes of §9.3.
pub(super) fn decode_payload(bytes: &[u8]) -> Result<(etf::Term, i128, MaxAge), Bad> {
    use etf::Term;
    let term = etf::decode(bytes)?;
    let (data, signed, max_age) = match term {
        Term::Tuple(items) if items.len() == 3 => {
            let mut it = items.into_iter();
            let (Some(data), Some(signed), Some(max_age)) = (it.next(), it.next(), it.next()) else { return Err(Bad) };
            let max_age = match max_age {
                Term::Int(s) => MaxAge::Int(s),
                Term::Float(s) if s.is_finite() => MaxAge::Float(s),
                Term::Atom(a) if a == "infinity" => MaxAge::Infinity,
                _ => return Err(Bad),
            };
            (data, signed, max_age)
        }
        Term::Tuple(items) if items.len() == 2 => {
            let mut it = items.into_iter();
            let (Some(data), Some(signed)) = (it.next(), it.next()) else { return Err(Bad) };
            (data, signed, MaxAge::Int(i128::from(LEGACY_MAX_AGE_S)))
        }
        Term::Map(pairs) => {
            // %{data: d, signed: ms} (other keys may be present, as in an Elixir match).
            let (mut data, mut signed) = (None, None);
            for (k, v) in pairs {
                match k {
                    Term::Atom(a) if a == "data" => data = Some(v),
                    Term::Atom(a) if a == "signed" => signed = Some(v),
                    _ => {}
                }
            }
            (data.ok_or(Bad)?, signed.ok_or(Bad)?, MaxAge::Int(i128::from(LEGACY_MAX_AGE_S)))
        }
        _ => return Err(Bad),
    };
    let Term::Int(signed_at_ms) = signed else { return Err(Bad) };
    Ok((data, signed_at_ms, max_age))
}
