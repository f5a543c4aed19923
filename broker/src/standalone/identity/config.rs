//! The `[auth]` table of the config: which verifier ([`AuthConfig`]), with which key options
//! and claim rules, and the defaults of its optional keys. `Debug` redacts the secrets.

use std::fmt;

use serde::{Deserialize, Serialize};

/// `key_iterations` default (Phoenix.Token / Plug.Crypto).
pub const DEFAULT_KEY_ITERATIONS: u32 = 1000;
/// `key_length` default in bytes (Phoenix.Token / Plug.Crypto).
pub const DEFAULT_KEY_LENGTH: usize = 32;
/// Default JWT leeway: enough for ordinary clock skew between the issuer and this host (NTP
/// keeps it well under a second), small enough that a token's lifetime stays what the issuer
/// set. `jsonwebtoken`'s own default (60 s) is not used.
pub const DEFAULT_JWT_LEEWAY_S: u64 = 5;

/// The PBKDF2 PRF digest (`key_digest`, §9.2).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Digest {
    #[default]
    Sha256,
    Sha384,
    Sha512,
}

/// The JWT signature algorithm accepted (exactly one; a token with any other `alg` is invalid).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum JwtAlgorithm {
    #[serde(alias = "HS256")]
    Hs256,
    #[serde(alias = "RS256")]
    Rs256,
    #[serde(alias = "ES256")]
    Es256,
}

/// Which verifier, from the TOML `[auth]` table (`kind = "phoenix_token"` or `kind = "jwt"`).
/// `Debug` redacts the secrets.
#[derive(Clone, Deserialize, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    /// Tokens minted by `Phoenix.Token.sign/4` (docs/PROTOCOL.md §9).
    PhoenixToken {
        /// The app's `secret_key_base` (its endpoint config / `SECRET_KEY_BASE`), ≥ 20 bytes.
        secret_key_base: String,
        /// The salt the app signs with (the second argument of `Phoenix.Token.sign`, often
        /// `"user socket"`).
        salt: String,
        /// The `max_age` option of `Phoenix.Token.verify` in seconds: overrides the max_age
        /// embedded in the token (0: every token is expired). Unset: the embedded one (86 400
        /// unless the app signed with another `max_age`; `:infinity` never expires).
        #[serde(default)]
        max_age_s: Option<u64>,
        /// PBKDF2 iterations (`key_iterations`, default 1000); must match the app's.
        #[serde(default = "default_key_iterations")]
        key_iterations: u32,
        /// Derived key length in bytes (`key_length`, default 32); must match the app's.
        #[serde(default = "default_key_length")]
        key_length: usize,
        /// PBKDF2 digest (`key_digest`: sha256, sha384 or sha512; default sha256).
        #[serde(default)]
        key_digest: Digest,
        /// Where the user id is in `data` when `data` is a map. Unset: `data["user_id"]`, else
        /// `data["id"]`. When `data` itself is a string or a number it is the user id.
        #[serde(default)]
        user_id_field: Option<String>,
    },
    /// JSON Web Tokens (RFC 7519) signed with one algorithm.
    Jwt {
        /// `hs256`, `rs256` or `es256`.
        algorithm: JwtAlgorithm,
        /// The shared secret for hs256 (≥ 32 bytes, RFC 7518 §3.2). Only for hs256.
        #[serde(default)]
        secret: Option<String>,
        /// The issuer's public key as PEM text (`-----BEGIN PUBLIC KEY-----`, or PKCS#1
        /// `RSA PUBLIC KEY` for rs256). Only for rs256/es256; exclusive with `public_key_file`.
        #[serde(default)]
        public_key_pem: Option<String>,
        /// A file holding that PEM, read once at startup.
        #[serde(default)]
        public_key_file: Option<String>,
        /// Accepted audiences: when set, a token must carry an `aud` naming one of them. Unset:
        /// `aud` is not checked.
        #[serde(default)]
        audience: Option<Vec<String>>,
        /// Accepted issuers: when set, a token must carry an `iss` equal to one of them.
        #[serde(default)]
        issuer: Option<Vec<String>>,
        /// Clock skew tolerated on `exp` and `nbf`, in seconds (default 5).
        #[serde(default = "default_leeway_s")]
        leeway_s: u64,
        /// The claim holding the user id (a string or a number; default `"sub"`).
        #[serde(default = "default_user_id_claim")]
        user_id_claim: String,
        /// Refuse tokens without `exp` (default true: a token without one never expires).
        #[serde(default = "default_true")]
        require_exp: bool,
    },
}

fn default_key_iterations() -> u32 {
    DEFAULT_KEY_ITERATIONS
}
fn default_key_length() -> usize {
    DEFAULT_KEY_LENGTH
}
fn default_leeway_s() -> u64 {
    DEFAULT_JWT_LEEWAY_S
}
fn default_user_id_claim() -> String {
    "sub".into()
}
fn default_true() -> bool {
    true
}

fn redacted(s: &Option<String>) -> Option<&'static str> {
    s.as_ref().map(|_| "<redacted>")
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthConfig::PhoenixToken { secret_key_base: _, salt, max_age_s, key_iterations, key_length, key_digest, user_id_field } => f
                .debug_struct("PhoenixToken")
                .field("secret_key_base", &"<redacted>")
                .field("salt", salt)
                .field("max_age_s", max_age_s)
                .field("key_iterations", key_iterations)
                .field("key_length", key_length)
                .field("key_digest", key_digest)
                .field("user_id_field", user_id_field)
                .finish(),
            AuthConfig::Jwt { algorithm, secret, public_key_pem, public_key_file, audience, issuer, leeway_s, user_id_claim, require_exp } => f
                .debug_struct("Jwt")
                .field("algorithm", algorithm)
                .field("secret", &redacted(secret))
                .field("public_key_pem", &public_key_pem.as_ref().map(|_| "<pem>"))
                .field("public_key_file", public_key_file)
                .field("audience", audience)
                .field("issuer", issuer)
                .field("leeway_s", leeway_s)
                .field("user_id_claim", user_id_claim)
                .field("require_exp", require_exp)
                .finish(),
        }
    }
}
