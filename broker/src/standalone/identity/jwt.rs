//! JSON Web Tokens (RFC 7519) through the `jsonwebtoken` crate: the issuer's key (HS256,
//! RS256 or ES256; exactly one algorithm is accepted), `aud` and `iss` when configured, and
//! `exp` / `nbf` checked here against the caller's clock with the configured leeway.

use std::collections::HashSet;
use std::fmt;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::config::JwtAlgorithm;
use super::outcome::{user_id_of, Identity, TokenError};

/// RFC 7518 §3.2: an HS256 key must be at least as long as the hash output.
pub const MIN_HS256_SECRET_BYTES: usize = 32;

/// The JWT half of a `Verifier`: the key, `jsonwebtoken`'s validation rules and ours.
#[derive(Clone)]
pub(super) struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
    leeway_ms: i128,
    require_exp: bool,
    user_id_claim: String,
}

/// The `Debug` of a `Verifier` of this kind (the key is not shown).
impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier::Jwt").field("algorithms", &self.validation.algorithms).finish_non_exhaustive()
    }
}

/// The issuer's key for `algorithm`, from `auth.secret` (hs256) or `auth.public_key_pem` /
/// `auth.public_key_file` (rs256, es256), checked for the algorithm; a config error names its key.
pub(super) fn decoding_key(
    algorithm: JwtAlgorithm,
    secret: Option<&str>,
    public_key_pem: Option<&str>,
    public_key_file: Option<&str>,
) -> Result<(DecodingKey, Algorithm), String> {
    if jsonwebtoken::crypto::CryptoProvider::try_get_default().is_none() {
        return Err("auth: jsonwebtoken has no crypto provider (check its cargo features)".into());
    }
    let name = match algorithm {
        JwtAlgorithm::Hs256 => "hs256",
        JwtAlgorithm::Rs256 => "rs256",
        JwtAlgorithm::Es256 => "es256",
    };
    match algorithm {
        JwtAlgorithm::Hs256 => {
            if public_key_pem.is_some() || public_key_file.is_some() {
                return Err("auth.public_key_pem / auth.public_key_file are for rs256 and es256; hs256 uses auth.secret".into());
            }
            let secret = secret.ok_or("auth.secret is required when auth.algorithm = \"hs256\"")?;
            if secret.len() < MIN_HS256_SECRET_BYTES {
                return Err(format!("auth.secret must be at least {MIN_HS256_SECRET_BYTES} bytes for hs256 (RFC 7518 §3.2)"));
            }
            let key = DecodingKey::from_secret(secret.as_bytes()).map_err(|e| format!("auth.secret: {e}"))?;
            Ok((key, Algorithm::HS256))
        }
        JwtAlgorithm::Rs256 | JwtAlgorithm::Es256 => {
            if secret.is_some() {
                return Err(format!("auth.secret is only for hs256; {name} uses auth.public_key_pem or auth.public_key_file"));
            }
            let (pem, which) = match (public_key_pem, public_key_file) {
                (Some(pem), None) => (pem.to_owned(), "auth.public_key_pem".to_string()),
                (None, Some(path)) => {
                    let pem = std::fs::read_to_string(path).map_err(|e| format!("auth.public_key_file: {path}: {e}"))?;
                    (pem, format!("auth.public_key_file: {path}"))
                }
                (Some(_), Some(_)) => return Err("set only one of auth.public_key_pem and auth.public_key_file".into()),
                (None, None) => {
                    return Err(format!("auth.public_key_pem or auth.public_key_file is required when auth.algorithm = \"{name}\""))
                }
            };
            if pem.contains("PRIVATE KEY") {
                return Err(format!("{which}: this is a private key; give the issuer's public key"));
            }
            if algorithm == JwtAlgorithm::Rs256 {
                let key = DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| format!("{which}: not an RSA public key in PEM: {e}"))?;
                Ok((key, Algorithm::RS256))
            } else {
                let key = DecodingKey::from_ec_pem(pem.as_bytes()).map_err(|e| format!("{which}: not an EC public key in PEM: {e}"))?;
                // An uncompressed P-256 point is 65 bytes; another curve could never verify.
                match key.try_get_as_bytes() {
                    Ok(point) if point.len() == 65 && point[0] == 4 => {}
                    _ => return Err(format!("{which}: es256 needs a P-256 (prime256v1) public key")),
                }
                Ok((key, Algorithm::ES256))
            }
        }
    }
}

impl JwtVerifier {
    /// The claim rules of `kind = "jwt"` around a key from [`decoding_key`]. exp/nbf are not
    /// left to `jsonwebtoken`: [`JwtVerifier::verify`] checks them against the caller's clock.
    pub(super) fn new(
        key: DecodingKey,
        alg: Algorithm,
        audience: Option<&[String]>,
        issuer: Option<&[String]>,
        leeway_s: u64,
        user_id_claim: &str,
        require_exp: bool,
    ) -> Result<JwtVerifier, String> {
        let mut validation = Validation::new(alg);
        // exp/nbf are checked here against the caller's clock (see verify_at).
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        validation.required_spec_claims = HashSet::new();
        match audience {
            Some(a) if a.is_empty() => return Err("auth.audience must not be empty (omit it to not check aud)".into()),
            Some(a) => {
                validation.set_audience(a);
                validation.required_spec_claims.insert("aud".into());
            }
            None => validation.validate_aud = false,
        }
        match issuer {
            Some(i) if i.is_empty() => return Err("auth.issuer must not be empty (omit it to not check iss)".into()),
            Some(i) => {
                validation.set_issuer(i);
                validation.required_spec_claims.insert("iss".into());
            }
            None => {}
        }
        if user_id_claim.is_empty() {
            return Err("auth.user_id_claim must not be empty".into());
        }
        let leeway_ms = i128::from(leeway_s) * 1000;
        Ok(JwtVerifier { key, validation, leeway_ms, require_exp, user_id_claim: user_id_claim.to_owned() })
    }

    pub(super) fn verify(&self, token: &str, now_ms: i128) -> Result<Identity, TokenError> {
        use jsonwebtoken::errors::ErrorKind;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &self.key, &self.validation).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::ImmatureSignature => TokenError::NotYetValid,
            _ => TokenError::Invalid,
        })?;
        let claims = data.claims;
        // RFC 7519 §4.1.4: valid only while now < exp (+ leeway).
        match numeric_date_ms(&claims, "exp")? {
            Some(exp) if now_ms >= exp.saturating_add(self.leeway_ms) => return Err(TokenError::Expired),
            Some(_) => {}
            None if self.require_exp => return Err(TokenError::Invalid),
            None => {}
        }
        // §4.1.5: valid from nbf (- leeway) on.
        if let Some(nbf) = numeric_date_ms(&claims, "nbf")? {
            if now_ms.saturating_add(self.leeway_ms) < nbf {
                return Err(TokenError::NotYetValid);
            }
        }
        let user_id = claims.get(&self.user_id_claim).and_then(user_id_of).ok_or(TokenError::NoUserId)?;
        Ok(Identity { user_id, claims })
    }
}

/// A NumericDate claim (seconds, integer or not) in ms; `None` when absent, `Err` when malformed.
fn numeric_date_ms(claims: &Map<String, Value>, name: &str) -> Result<Option<i128>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i128::from(i) * 1000))
            } else if let Some(u) = n.as_u64() {
                Ok(Some(i128::from(u) * 1000))
            } else {
                match n.as_f64() {
                    Some(f) if f.is_finite() => Ok(Some((f * 1000.0) as i128)),
                    _ => Err(TokenError::Invalid),
                }
            }
        }
        Some(_) => Err(TokenError::Invalid),
    }
}
