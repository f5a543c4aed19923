//! The identity tests: the fixtures shared by all of them here, the tests by subject below.
//! Phoenix tokens are the docs/PROTOCOL.md §9.5 vectors and tokens minted by a real BEAM
//! (`tests/fixtures/phoenix_tokens_beam.txt`); JWTs are minted here with `jsonwebtoken`.

mod config;
mod jwt;
mod payloads;
mod phoenix_token;

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde::Deserialize;
use serde_json::{json, Value};

use super::etf;
use super::phoenix_token::{decode_payload, derive_key, sign_with_key, MacDigest};
use super::{
    sign_phoenix_token, AuthConfig, Digest, JwtAlgorithm, TokenError, Verifier, DEFAULT_JWT_LEEWAY_S, DEFAULT_KEY_ITERATIONS, DEFAULT_KEY_LENGTH,
    MAX_DECOMPRESSED_BYTES, MAX_TERM_DEPTH, MAX_TOKEN_BYTES,
};

const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const SALT: &str = "user socket";
/// signed_at of the §9.5 vectors and of the BEAM fixtures.
const T: u64 = 1_700_000_000_000;
const DAY_MS: u64 = 86_400_000;

const VECTOR_123: &str = "SFMyNTY.g2gDYXtuBgAAaOXPiwFiAAFRgA.VcsHC2FSYarnfLbJburewkRzMmG4YMnLAZbYuo00Ycc";
const VECTOR_MAP: &str = "SFMyNTY.g2gDdAAAAAF3B3VzZXJfaWRhKm4GAABo5c-LAWIAAVGA.HaFkb3I_NdTnFxCE6DEtbArQp47d5nJE52MMonyZFhg";
const VECTOR_STRING: &str = "SFMyNTY.g2gDbQAAAAd1c2VyOjQybgYAAGjlz4sBYgABUYA.xcsK2JlqIc7WTRqT6AvSCH2IoS8E3sjekP6dBrxe4Ek";

const BEAM_TOKENS: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/phoenix_tokens_beam.txt"));
const RS_PRIVATE: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt_rs256_private.pem"));
const RS_PUBLIC: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt_rs256_public.pem"));
const ES_PRIVATE: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt_es256_private.pem"));
const ES_PUBLIC: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt_es256_public.pem"));
const HS_SECRET: &str = "a-shared-secret-of-at-least-32-bytes!!";

const VECTOR_PAYLOAD: [u8; 19] = [0x83, 0x68, 0x03, 0x61, 0x7B, 0x6E, 0x06, 0x00, 0x00, 0x68, 0xE5, 0xCF, 0x8B, 0x01, 0x62, 0x00, 0x01, 0x51, 0x80];

const NOW_S: u64 = 1_800_000_000;
const NOW_MS: u64 = NOW_S * 1000;

fn beam(name: &str) -> &'static str {
    BEAM_TOKENS
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("fixture {name} missing"))
}

fn phoenix_config(max_age_s: Option<u64>) -> AuthConfig {
    AuthConfig::PhoenixToken {
        secret_key_base: SECRET.into(),
        salt: SALT.into(),
        max_age_s,
        key_iterations: DEFAULT_KEY_ITERATIONS,
        key_length: DEFAULT_KEY_LENGTH,
        key_digest: Digest::Sha256,
        user_id_field: None,
    }
}

fn phoenix(max_age_s: Option<u64>) -> Verifier {
    Verifier::new(&phoenix_config(max_age_s)).unwrap()
}

fn key() -> &'static [u8] {
    static KEY: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    KEY.get_or_init(|| derive_key(SECRET.as_bytes(), SALT.as_bytes(), 1000, 32, Digest::Sha256))
}

/// A correctly MAC'd token around arbitrary payload bytes (to reach the decoder).
fn signed_raw(payload: &[u8]) -> String {
    sign_with_key(key(), MacDigest::Sha256, payload)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `131, {Data, T, 86400}` around raw data-term bytes.
fn payload_with(data_term: &[u8]) -> Vec<u8> {
    let mut p = vec![131, 104, 3];
    p.extend(data_term);
    etf::encode_int(i128::from(T), &mut p);
    etf::encode_int(86_400, &mut p);
    p
}

fn zlib(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn compressed_payload(term_without_version: &[u8], declared: u32) -> Vec<u8> {
    let mut p = vec![131, 80];
    p.extend(declared.to_be_bytes());
    p.extend(zlib(term_without_version));
    p
}

fn phoenix_verifier() -> &'static Verifier {
    static V: std::sync::OnceLock<Verifier> = std::sync::OnceLock::new();
    V.get_or_init(|| phoenix(None))
}

fn hs_verifier() -> &'static Verifier {
    static V: std::sync::OnceLock<Verifier> = std::sync::OnceLock::new();
    V.get_or_init(|| Verifier::new(&jwt_config(JwtAlgorithm::Hs256)).unwrap())
}

fn jwt_config(algorithm: JwtAlgorithm) -> AuthConfig {
    AuthConfig::Jwt {
        algorithm,
        secret: (algorithm == JwtAlgorithm::Hs256).then(|| HS_SECRET.to_string()),
        public_key_pem: match algorithm {
            JwtAlgorithm::Hs256 => None,
            JwtAlgorithm::Rs256 => Some(RS_PUBLIC.into()),
            JwtAlgorithm::Es256 => Some(ES_PUBLIC.into()),
        },
        public_key_file: None,
        audience: None,
        issuer: None,
        leeway_s: DEFAULT_JWT_LEEWAY_S,
        user_id_claim: "sub".into(),
        require_exp: true,
    }
}

fn jwt(config: AuthConfig) -> Verifier {
    Verifier::new(&config).unwrap()
}

fn hs(claims: &Value) -> String {
    encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(HS_SECRET.as_bytes()).unwrap()).unwrap()
}

fn rs(claims: &Value) -> String {
    encode(&Header::new(Algorithm::RS256), claims, &EncodingKey::from_rsa_pem(RS_PRIVATE.as_bytes()).unwrap()).unwrap()
}

fn es(claims: &Value) -> String {
    encode(&Header::new(Algorithm::ES256), claims, &EncodingKey::from_ec_pem(ES_PRIVATE.as_bytes()).unwrap()).unwrap()
}
