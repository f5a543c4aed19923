//! Phoenix.Token: the §9.2 key and the §9.5 vectors, signing, the §9.3 age rules and payload
//! shapes, the §9.1 format, and where the user id comes from.

use super::*;

// ---- §9.2 / §9.5 --------------------------------------------------------------------

#[test]
fn pbkdf2_key_matches_the_spec_vector() {
    assert_eq!(hex(key()), "e18adee7806bc82063a16e63e5d3563488eb220b57c3fa5e656cabf753b34a5e");
}

#[test]
fn spec_vectors_verify() {
    let v = phoenix(None);
    let now = T + 1000;
    let a = v.verify_at(VECTOR_123, now).unwrap();
    assert_eq!((a.user_id.as_str(), &a.claims["data"]), ("123", &json!(123)));
    let b = v.verify_at(VECTOR_MAP, now).unwrap();
    assert_eq!(b.user_id, "42");
    assert_eq!(b.claims["data"], json!({"user_id": 42}));
    assert_eq!(b.claims["user_id"], json!(42));
    let c = v.verify_at(VECTOR_STRING, now).unwrap();
    assert_eq!((c.user_id.as_str(), &c.claims["data"]), ("user:42", &json!("user:42")));
    assert_eq!(c.claims.len(), 1);
    // With max_age infinity (here: a long override) they verify years later too.
    let years = phoenix(Some(100 * 365 * 86_400));
    assert_eq!(years.verify_at(VECTOR_123, T + 3 * 365 * DAY_MS).unwrap().user_id, "123");
}

#[test]
fn spec_vectors_are_what_the_beam_produces() {
    // The fixture's first lines were produced by OTP's term_to_binary + crypto.
    assert_eq!(beam("vector_123"), VECTOR_123);
    assert_eq!(beam("vector_map"), VECTOR_MAP);
    assert_eq!(beam("vector_string"), VECTOR_STRING);
}

#[test]
fn sign_reproduces_the_vectors_byte_for_byte() {
    assert_eq!(sign_phoenix_token(SECRET, SALT, &json!(123), T, Some(86_400)), VECTOR_123);
    assert_eq!(sign_phoenix_token(SECRET, SALT, &json!("user:42"), T, Some(86_400)), VECTOR_STRING);
    // Binary keys, not the vector's atom key: another token, the same JSON.
    let m = sign_phoenix_token(SECRET, SALT, &json!({"user_id": 42}), T, Some(86_400));
    assert_ne!(m, VECTOR_MAP);
    assert_eq!(phoenix(None).verify_at(&m, T).unwrap(), phoenix(None).verify_at(VECTOR_MAP, T).unwrap());
}

#[test]
fn spec_payload_bytes_for_123() {
    let token = sign_phoenix_token(SECRET, SALT, &json!(123), T, Some(86_400));
    let payload = URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap();
    assert_eq!(payload, VECTOR_PAYLOAD);
}

#[test]
fn sign_round_trips_through_verify() {
    let v = phoenix(None);
    let cases = [
        (json!(7), "7"),
        (json!(-300), "-300"),
        (json!(70_000), "70000"),
        (json!(5_000_000_000i64), "5000000000"),
        (json!(-5_000_000_000i64), "-5000000000"),
        (json!(u64::MAX), "18446744073709551615"),
        (json!(i64::MIN), "-9223372036854775808"),
        (json!("Zoë ✓"), "Zoë ✓"),
        (json!(2.5), "2.5"),
    ];
    for (data, id) in cases {
        let token = sign_phoenix_token(SECRET, SALT, &data, T, Some(60));
        let got = v.verify_at(&token, T + 60_000).unwrap_or_else(|e| panic!("{data}: {e}"));
        assert_eq!(got.user_id, id);
        assert_eq!(got.claims["data"], data);
    }
    let data = json!({"id": "u-1", "tags": ["a", 1, null, true, false, [], {}], "nested": {"x": [1.5, {"y": "z"}]}});
    let token = sign_phoenix_token(SECRET, SALT, &data, T, None);
    let got = v.verify_at(&token, T + 10 * 365 * DAY_MS).unwrap();
    assert_eq!(got.user_id, "u-1");
    assert_eq!(got.claims["data"], data);
    assert_eq!(got.claims["tags"], data["tags"]);
}

// ---- §9.3 age rules --------------------------------------------------------------------

#[test]
fn expires_after_max_age() {
    let v = phoenix(None);
    assert!(v.verify_at(VECTOR_123, T).is_ok());
    assert!(v.verify_at(VECTOR_123, T + DAY_MS).is_ok(), "signed + max_age == now is still valid (rule 4 is <)");
    assert_eq!(v.verify_at(VECTOR_123, T + DAY_MS + 1), Err(TokenError::Expired));
    assert_eq!(v.verify_at(VECTOR_123, u64::MAX), Err(TokenError::Expired));
}

#[test]
fn signed_in_the_future_is_invalid() {
    let v = phoenix(None);
    assert_eq!(v.verify_at(VECTOR_123, T - 1), Err(TokenError::Invalid));
    assert_eq!(v.verify_at(VECTOR_123, 0), Err(TokenError::Invalid));
    // Rule 1 comes first: :infinity is ok even when signed in the future.
    assert_eq!(v.verify_at(beam("infinity"), T - 1).unwrap().user_id, "123");
    assert_eq!(v.verify_at(beam("infinity"), u64::MAX).unwrap().user_id, "123");
}

#[test]
fn max_age_override_at_verify_time() {
    let short = phoenix(Some(10));
    assert!(short.verify_at(VECTOR_123, T + 10_000).is_ok());
    assert_eq!(short.verify_at(VECTOR_123, T + 10_001), Err(TokenError::Expired));
    let long = phoenix(Some(2 * 86_400));
    assert!(long.verify_at(VECTOR_123, T + DAY_MS + 1).is_ok());
    // The override also replaces an embedded :infinity.
    assert_eq!(short.verify_at(beam("infinity"), T + 10_001), Err(TokenError::Expired));
    // And still refuses a future signing time.
    assert_eq!(long.verify_at(VECTOR_123, T - 1), Err(TokenError::Invalid));
}

#[test]
fn max_age_zero_or_negative_is_expired() {
    assert_eq!(phoenix(Some(0)).verify_at(VECTOR_123, T), Err(TokenError::Expired));
    // Rule 2 comes before rule 3: even a future token is "expired".
    assert_eq!(phoenix(Some(0)).verify_at(VECTOR_123, T - 1), Err(TokenError::Expired));
    let v = phoenix(None);
    let max_ages: [&[u8]; 3] = [&[97, 0], &[98, 0xff, 0xff, 0xff, 0xfb], &[70, 0xbf, 0xf0, 0, 0, 0, 0, 0, 0]];
    for max_age in max_ages {
        let mut p = vec![131, 104, 3, 97, 1];
        etf::encode_int(i128::from(T), &mut p);
        p.extend(max_age);
        assert_eq!(v.verify_at(&signed_raw(&p), T), Err(TokenError::Expired), "{max_age:?}");
    }
}

#[test]
fn float_max_age_from_the_beam() {
    let v = phoenix(None);
    assert!(v.verify_at(beam("float_max_age"), T + 500).is_ok());
    assert_eq!(v.verify_at(beam("float_max_age"), T + 501), Err(TokenError::Expired));
}

#[test]
fn legacy_shapes() {
    let v = phoenix(None);
    let two = v.verify_at(beam("two_tuple"), T + DAY_MS).unwrap();
    assert_eq!(two.user_id, "user:7");
    assert_eq!(v.verify_at(beam("two_tuple"), T + DAY_MS + 1), Err(TokenError::Expired));
    let map = v.verify_at(beam("legacy_map"), T + 5).unwrap();
    assert_eq!(map.user_id, "99");
    assert_eq!(map.claims["data"], json!(99));
    assert_eq!(v.verify_at(beam("legacy_map"), T + DAY_MS + 1), Err(TokenError::Expired));
    // Hand-made: {data, signed} and %{signed:, data:, extra:} (order and extra keys do not matter).
    let mut p = vec![131, 104, 2, 109, 0, 0, 0, 1, b'x'];
    etf::encode_int(i128::from(T), &mut p);
    assert_eq!(v.verify_at(&signed_raw(&p), T).unwrap().user_id, "x");
    let mut p = vec![131, 116, 0, 0, 0, 3, 119, 6];
    p.extend(b"signed");
    etf::encode_int(i128::from(T), &mut p);
    p.extend([119, 5, b'e', b'x', b't', b'r', b'a', 106, 119, 4, b'd', b'a', b't', b'a', 97, 5]);
    assert_eq!(v.verify_at(&signed_raw(&p), T).unwrap().user_id, "5");
    // A map with binary keys is not the legacy shape; nor is a 4-tuple.
    let mut p = vec![131, 116, 0, 0, 0, 2, 109, 0, 0, 0, 4];
    p.extend(b"data");
    p.extend([97, 5, 109, 0, 0, 0, 6]);
    p.extend(b"signed");
    etf::encode_int(i128::from(T), &mut p);
    assert_eq!(v.verify_at(&signed_raw(&p), T), Err(TokenError::Invalid));
    let mut p = vec![131, 104, 4, 97, 1];
    etf::encode_int(i128::from(T), &mut p);
    p.extend([97, 1, 97, 1]);
    assert_eq!(v.verify_at(&signed_raw(&p), T), Err(TokenError::Invalid));
    // signed_at must be an integer.
    let p = [131, 104, 3, 97, 1, 109, 0, 0, 0, 0, 97, 10];
    assert_eq!(v.verify_at(&signed_raw(&p), T), Err(TokenError::Invalid));
}

// ---- §9.1 format --------------------------------------------------------------------

#[test]
fn other_digests_in_the_header() {
    let v = phoenix(None);
    assert_eq!(v.verify_at(beam("hs384"), T).unwrap().user_id, "123");
    assert_eq!(v.verify_at(beam("hs512"), T).unwrap().user_id, "123");
    // A header naming another digest than the MAC's.
    let swapped = beam("hs384").replacen("SFMzODQ", "SFM1MTI", 1);
    assert_eq!(v.verify_at(&swapped, T), Err(TokenError::Invalid));
    let downgraded = VECTOR_123.replacen("SFMyNTY", "SFMzODQ", 1);
    assert_eq!(v.verify_at(&downgraded, T), Err(TokenError::Invalid));
}

#[test]
fn tampering_is_invalid() {
    let v = phoenix(None);
    let parts: Vec<&str> = VECTOR_123.split('.').collect();
    // Payload `{124, …}` instead of `{123, …}` with the original MAC.
    let mut payload = URL_SAFE_NO_PAD.decode(parts[1]).unwrap();
    payload[4] = 124;
    let t = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(&payload), parts[2]);
    assert_eq!(v.verify_at(&t, T), Err(TokenError::Invalid));
    // Any one character changed, anywhere.
    for i in 0..VECTOR_123.len() {
        let mut b = VECTOR_123.as_bytes().to_vec();
        if b[i] == b'.' {
            continue;
        }
        b[i] = if b[i] == b'A' { b'B' } else { b'A' };
        let t = String::from_utf8(b).unwrap();
        assert_eq!(v.verify_at(&t, T), Err(TokenError::Invalid), "char {i}");
    }
    // A truncated MAC, an empty MAC, a MAC of another length.
    let short = &VECTOR_123[..VECTOR_123.len() - 1];
    assert_eq!(v.verify_at(short, T), Err(TokenError::Invalid));
    assert_eq!(v.verify_at(&format!("{}.{}.", parts[0], parts[1]), T), Err(TokenError::Invalid));
    assert_eq!(v.verify_at(&format!("{}.{}.AAAA", parts[0], parts[1]), T), Err(TokenError::Invalid));
}

#[test]
fn wrong_secret_or_salt_is_invalid() {
    let mut c = phoenix_config(None);
    if let AuthConfig::PhoenixToken { secret_key_base, .. } = &mut c {
        *secret_key_base = SECRET.replace('0', "1");
    }
    assert_eq!(Verifier::new(&c).unwrap().verify_at(VECTOR_123, T), Err(TokenError::Invalid));
    let mut c = phoenix_config(None);
    if let AuthConfig::PhoenixToken { salt, .. } = &mut c {
        *salt = "user sockets".into();
    }
    assert_eq!(Verifier::new(&c).unwrap().verify_at(VECTOR_123, T), Err(TokenError::Invalid));
    // Other key options than the signer's.
    for (iterations, length, digest) in [(1001, 32, Digest::Sha256), (1000, 64, Digest::Sha256), (1000, 32, Digest::Sha512)] {
        let c = AuthConfig::PhoenixToken {
            secret_key_base: SECRET.into(),
            salt: SALT.into(),
            max_age_s: None,
            key_iterations: iterations,
            key_length: length,
            key_digest: digest,
            user_id_field: None,
        };
        assert_eq!(Verifier::new(&c).unwrap().verify_at(VECTOR_123, T), Err(TokenError::Invalid));
    }
}

#[test]
fn key_options_from_the_beam() {
    let c = AuthConfig::PhoenixToken {
        secret_key_base: SECRET.into(),
        salt: "other salt".into(),
        max_age_s: None,
        key_iterations: 2000,
        key_length: 64,
        key_digest: Digest::Sha512,
        user_id_field: None,
    };
    let v = Verifier::new(&c).unwrap();
    assert_eq!(v.verify_at(beam("sha512_iter2000_len64_salt_other"), T).unwrap().user_id, "alt");
    assert_eq!(v.verify_at(VECTOR_123, T), Err(TokenError::Invalid));
}

#[test]
fn malformed_tokens_are_invalid() {
    let v = phoenix(None);
    let [h, p, m]: [&str; 3] = VECTOR_123.split('.').collect::<Vec<_>>().try_into().unwrap();
    let cases = [
        format!("{p}.{m}"),
        format!("{h}.{p}.{m}.{m}"),
        format!("{h}.{p}.{m}."),
        format!("{h}.{p}"),
        h.to_string(),
        ".".into(),
        "..".into(),
        "...".into(),
        // Headers that are not one of the three.
        format!("SFMyNTZ.{p}.{m}"),
        format!("eyJhbGciOiJIUzI1NiJ9.{p}.{m}"),
        format!("SFMyNTY=.{p}.{m}"),
        format!("sfmynty.{p}.{m}"),
        format!(".{p}.{m}"),
        // Not unpadded base64url.
        format!("{h}.{p}=.{m}"),
        format!("{h}.{p}.{m}="),
        format!("{h}.{}.{m}", p.replace('A', "+")),
        format!("{h}.{p}./{}", &m[1..]),
        format!("{h}.{p}.{}", m.replace('a', "%")),
        format!("{h}.{p}*.{m}"),
        format!("{h}.{p}.{m} "),
        format!(" {h}.{p}.{m}"),
        format!("{h}.{p}.\u{e9}{m}"),
    ];
    for t in cases {
        assert_eq!(v.verify_at(&t, T), Err(TokenError::Invalid), "{t:?}");
    }
    assert_eq!(v.verify_at("", T), Err(TokenError::Missing));
    let huge = "A".repeat(MAX_TOKEN_BYTES + 1);
    assert_eq!(v.verify_at(&huge, T), Err(TokenError::Invalid));
}

#[test]
fn user_id_rules() {
    let v = phoenix(None);
    let id = |v: &Verifier, data: Value| v.verify_at(&sign_phoenix_token(SECRET, SALT, &data, T, None), T).map(|i| i.user_id);
    assert_eq!(id(&v, json!({"user_id": "a", "id": "b"})), Ok("a".into()));
    assert_eq!(id(&v, json!({"id": 9})), Ok("9".into()));
    assert_eq!(id(&v, json!({"user_id": null, "id": 9})), Ok("9".into()));
    assert_eq!(id(&v, json!({"name": "x"})), Err(TokenError::NoUserId));
    assert_eq!(id(&v, json!("")), Err(TokenError::NoUserId));
    assert_eq!(id(&v, json!(true)), Err(TokenError::NoUserId));
    assert_eq!(id(&v, json!(null)), Err(TokenError::NoUserId));
    assert_eq!(id(&v, json!([1])), Err(TokenError::NoUserId));
    assert_eq!(id(&v, json!({"user_id": {"x": 1}})), Err(TokenError::NoUserId));
    let mut c = phoenix_config(None);
    if let AuthConfig::PhoenixToken { user_id_field, .. } = &mut c {
        *user_id_field = Some("uid".into());
    }
    let custom = Verifier::new(&c).unwrap();
    assert_eq!(id(&custom, json!({"uid": "u", "user_id": "a"})), Ok("u".into()));
    assert_eq!(id(&custom, json!({"user_id": "a"})), Err(TokenError::NoUserId));
    assert_eq!(id(&custom, json!(5)), Ok("5".into()));
    // "data" in the claims is always the whole data.
    let got = v.verify_at(&sign_phoenix_token(SECRET, SALT, &json!({"id": 1, "data": "inner"}), T, None), T).unwrap();
    assert_eq!(got.claims["data"], json!({"id": 1, "data": "inner"}));
    assert_eq!(got.claims["id"], json!(1));
}
