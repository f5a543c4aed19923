//! JWT: HS256, RS256 and ES256, the exp / nbf / aud / iss rules, forgeries, and the `[auth]` table.

use super::*;

#[test]
fn jwt_hs256_valid() {
    let v = jwt(jwt_config(JwtAlgorithm::Hs256));
    let got = v.verify_at(&hs(&json!({"sub": "user-1", "exp": NOW_S + 60, "room": "lobby"})), NOW_MS).unwrap();
    assert_eq!(got.user_id, "user-1");
    assert_eq!(got.claims["room"], json!("lobby"));
    // A numeric sub, a float exp, an nbf in the past.
    let got = v.verify_at(&hs(&json!({"sub": 42, "exp": NOW_S as f64 + 0.5, "nbf": NOW_S - 10})), NOW_MS).unwrap();
    assert_eq!(got.user_id, "42");
    // verify() uses the real clock.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    assert_eq!(v.verify(&hs(&json!({"sub": "x", "exp": now + 60}))).unwrap().user_id, "x");
    assert_eq!(v.verify(&hs(&json!({"sub": "x", "exp": now - 60}))), Err(TokenError::Expired));
}

#[test]
fn jwt_exp_with_leeway() {
    let v = jwt(jwt_config(JwtAlgorithm::Hs256));
    let t = hs(&json!({"sub": "u", "exp": NOW_S}));
    assert!(v.verify_at(&t, NOW_MS + 4_999).is_ok(), "within the 5 s leeway");
    assert_eq!(v.verify_at(&t, NOW_MS + 5_000), Err(TokenError::Expired));
    let mut c = jwt_config(JwtAlgorithm::Hs256);
    if let AuthConfig::Jwt { leeway_s, .. } = &mut c {
        *leeway_s = 0;
    }
    let strict = jwt(c);
    assert!(strict.verify_at(&t, NOW_MS - 1).is_ok());
    assert_eq!(strict.verify_at(&t, NOW_MS), Err(TokenError::Expired));
    // exp missing, or not a number.
    assert_eq!(v.verify_at(&hs(&json!({"sub": "u"})), NOW_MS), Err(TokenError::Invalid));
    assert_eq!(v.verify_at(&hs(&json!({"sub": "u", "exp": "soon"})), NOW_MS), Err(TokenError::Invalid));
    let mut c = jwt_config(JwtAlgorithm::Hs256);
    if let AuthConfig::Jwt { require_exp, .. } = &mut c {
        *require_exp = false;
    }
    assert_eq!(jwt(c).verify_at(&hs(&json!({"sub": "u"})), NOW_MS).unwrap().user_id, "u");
}

#[test]
fn jwt_nbf_in_the_future() {
    let v = jwt(jwt_config(JwtAlgorithm::Hs256));
    let t = hs(&json!({"sub": "u", "exp": NOW_S + 600, "nbf": NOW_S + 60}));
    assert_eq!(v.verify_at(&t, NOW_MS), Err(TokenError::NotYetValid));
    assert!(v.verify_at(&hs(&json!({"sub": "u", "exp": NOW_S + 600, "nbf": NOW_S + 5})), NOW_MS).is_ok(), "within leeway");
    assert!(v.verify_at(&t, NOW_MS + 60_000).is_ok());
    assert_eq!(v.verify_at(&hs(&json!({"sub": "u", "exp": NOW_S + 600, "nbf": "x"})), NOW_MS), Err(TokenError::Invalid));
}

#[test]
fn jwt_audience_and_issuer() {
    let mut c = jwt_config(JwtAlgorithm::Hs256);
    if let AuthConfig::Jwt { audience, issuer, .. } = &mut c {
        *audience = Some(vec!["broker".into(), "other".into()]);
        *issuer = Some(vec!["https://auth.example.com".into()]);
    }
    let v = jwt(c);
    let ok = |aud: Value, iss: Value| v.verify_at(&hs(&json!({"sub": "u", "exp": NOW_S + 60, "aud": aud, "iss": iss})), NOW_MS);
    assert!(ok(json!("broker"), json!("https://auth.example.com")).is_ok());
    assert!(ok(json!(["x", "other"]), json!("https://auth.example.com")).is_ok());
    assert_eq!(ok(json!("elsewhere"), json!("https://auth.example.com")), Err(TokenError::Invalid));
    assert_eq!(ok(json!("broker"), json!("https://evil.example.com")), Err(TokenError::Invalid));
    assert_eq!(ok(json!(5), json!("https://auth.example.com")), Err(TokenError::Invalid));
    // Missing aud or iss when configured.
    assert_eq!(v.verify_at(&hs(&json!({"sub": "u", "exp": NOW_S + 60, "iss": "https://auth.example.com"})), NOW_MS), Err(TokenError::Invalid));
    assert_eq!(v.verify_at(&hs(&json!({"sub": "u", "exp": NOW_S + 60, "aud": "broker"})), NOW_MS), Err(TokenError::Invalid));
    // Not configured: not checked.
    let plain = jwt(jwt_config(JwtAlgorithm::Hs256));
    assert!(plain.verify_at(&hs(&json!({"sub": "u", "exp": NOW_S + 60, "aud": "whatever", "iss": "anyone"})), NOW_MS).is_ok());
}

#[test]
fn jwt_wrong_secret_and_tampering() {
    let v = jwt(jwt_config(JwtAlgorithm::Hs256));
    let other = encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "u", "exp": NOW_S + 60}),
        &EncodingKey::from_secret(b"another-secret-of-at-least-32-bytes!!").unwrap(),
    )
    .unwrap();
    assert_eq!(v.verify_at(&other, NOW_MS), Err(TokenError::Invalid));
    let t = hs(&json!({"sub": "u", "exp": NOW_S + 60}));
    let [h, p, s]: [&str; 3] = t.split('.').collect::<Vec<_>>().try_into().unwrap();
    let forged = URL_SAFE_NO_PAD.encode(br#"{"sub":"admin","exp":1900000000}"#);
    for bad in [format!("{h}.{forged}.{s}"), format!("{h}.{p}"), format!("{h}.{p}.{s}.{s}"), format!("{h}.{p}.{s}x"), "a.b.c".into(), "x".into()] {
        assert_eq!(v.verify_at(&bad, NOW_MS), Err(TokenError::Invalid), "{bad}");
    }
    // alg "none".
    let none = format!("{}.{}.", URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#), URL_SAFE_NO_PAD.encode(br#"{"sub":"u","exp":1900000000}"#));
    assert_eq!(v.verify_at(&none, NOW_MS), Err(TokenError::Invalid));
    // Claims that are not an object.
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(b"[1,2]");
    let sig = jsonwebtoken::crypto::sign(format!("{header}.{body}").as_bytes(), &EncodingKey::from_secret(HS_SECRET.as_bytes()).unwrap(), Algorithm::HS256).unwrap();
    assert_eq!(v.verify_at(&format!("{header}.{body}.{sig}"), NOW_MS), Err(TokenError::Invalid));
}

#[test]
fn jwt_user_id_claim() {
    let v = jwt(jwt_config(JwtAlgorithm::Hs256));
    assert_eq!(v.verify_at(&hs(&json!({"exp": NOW_S + 60})), NOW_MS), Err(TokenError::NoUserId));
    assert_eq!(v.verify_at(&hs(&json!({"sub": "", "exp": NOW_S + 60})), NOW_MS), Err(TokenError::NoUserId));
    // jsonwebtoken refuses a `sub` that is not a string or number (RFC 7519: StringOrURI).
    assert!(v.verify_at(&hs(&json!({"sub": ["a"], "exp": NOW_S + 60})), NOW_MS).is_err());
    let mut c = jwt_config(JwtAlgorithm::Hs256);
    if let AuthConfig::Jwt { user_id_claim, .. } = &mut c {
        *user_id_claim = "uid".into();
    }
    let custom = jwt(c);
    assert_eq!(custom.verify_at(&hs(&json!({"sub": "s", "uid": 7, "exp": NOW_S + 60})), NOW_MS).unwrap().user_id, "7");
    assert_eq!(custom.verify_at(&hs(&json!({"sub": "s", "uid": ["a"], "exp": NOW_S + 60})), NOW_MS), Err(TokenError::NoUserId));
    assert_eq!(custom.verify_at(&hs(&json!({"sub": "s", "exp": NOW_S + 60})), NOW_MS), Err(TokenError::NoUserId));
}

#[test]
fn jwt_rs256_inline_and_from_file() {
    let claims = json!({"sub": "rs-user", "exp": NOW_S + 60});
    let inline = jwt(jwt_config(JwtAlgorithm::Rs256));
    assert_eq!(inline.verify_at(&rs(&claims), NOW_MS).unwrap().user_id, "rs-user");
    let mut c = jwt_config(JwtAlgorithm::Rs256);
    if let AuthConfig::Jwt { public_key_pem, public_key_file, .. } = &mut c {
        *public_key_pem = None;
        *public_key_file = Some(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt_rs256_public.pem").into());
    }
    let from_file = jwt(c);
    assert_eq!(from_file.verify_at(&rs(&claims), NOW_MS).unwrap().user_id, "rs-user");
    assert_eq!(from_file.verify_at(&rs(&json!({"sub": "u", "exp": NOW_S - 60})), NOW_MS), Err(TokenError::Expired));
    // Another algorithm's tokens.
    assert_eq!(inline.verify_at(&es(&claims), NOW_MS), Err(TokenError::Invalid));
    assert_eq!(inline.verify_at(&hs(&claims), NOW_MS), Err(TokenError::Invalid));
}

#[test]
fn jwt_alg_confusion_is_refused() {
    // The classic attack: HS256 "signed" with the RS256 public key as the HMAC secret.
    let claims = json!({"sub": "admin", "exp": NOW_S + 60});
    for secret in [RS_PUBLIC.as_bytes(), RS_PUBLIC.trim().as_bytes()] {
        let forged = encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret).unwrap()).unwrap();
        assert_eq!(jwt(jwt_config(JwtAlgorithm::Rs256)).verify_at(&forged, NOW_MS), Err(TokenError::Invalid));
    }
    let forged = encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(ES_PUBLIC.as_bytes()).unwrap()).unwrap();
    assert_eq!(jwt(jwt_config(JwtAlgorithm::Es256)).verify_at(&forged, NOW_MS), Err(TokenError::Invalid));
    // A header claiming RS256 over an HS256 signature, on an HS256 verifier.
    let t = hs(&claims);
    let rs_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let swapped = format!("{rs_header}.{}", t.split_once('.').unwrap().1);
    assert_eq!(jwt(jwt_config(JwtAlgorithm::Hs256)).verify_at(&swapped, NOW_MS), Err(TokenError::Invalid));
}

#[test]
fn jwt_es256() {
    let v = jwt(jwt_config(JwtAlgorithm::Es256));
    assert_eq!(v.verify_at(&es(&json!({"sub": "es-user", "exp": NOW_S + 60})), NOW_MS).unwrap().user_id, "es-user");
    assert_eq!(v.verify_at(&es(&json!({"sub": "es-user", "exp": NOW_S - 60})), NOW_MS), Err(TokenError::Expired));
    assert_eq!(v.verify_at(&rs(&json!({"sub": "u", "exp": NOW_S + 60})), NOW_MS), Err(TokenError::Invalid));
    // Tampered signature.
    let t = es(&json!({"sub": "es-user", "exp": NOW_S + 60}));
    let (body, sig) = t.rsplit_once('.').unwrap();
    let mut sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    sig[10] ^= 1;
    assert_eq!(v.verify_at(&format!("{body}.{}", URL_SAFE_NO_PAD.encode(sig)), NOW_MS), Err(TokenError::Invalid));
}

#[test]
fn jwt_config_from_toml() {
    #[derive(Deserialize)]
    struct Doc {
        auth: AuthConfig,
    }
    let doc: Doc = toml::from_str(&format!("[auth]\nkind = \"jwt\"\nalgorithm = \"hs256\"\nsecret = \"{HS_SECRET}\"\n")).unwrap();
    let AuthConfig::Jwt { leeway_s, user_id_claim, require_exp, audience, issuer, .. } = &doc.auth else { panic!() };
    assert_eq!((*leeway_s, user_id_claim.as_str(), *require_exp, audience, issuer), (5, "sub", true, &None, &None));
    assert!(!format!("{:?}", doc.auth).contains(HS_SECRET));
    let doc: Doc = toml::from_str(
        "[auth]\nkind = \"jwt\"\nalgorithm = \"RS256\"\npublic_key_file = \"/k.pem\"\naudience = [\"a\"]\nissuer = [\"i\"]\nleeway_s = 0\nuser_id_claim = \"uid\"\nrequire_exp = false\n",
    )
    .unwrap();
    assert!(matches!(doc.auth, AuthConfig::Jwt { algorithm: JwtAlgorithm::Rs256, leeway_s: 0, require_exp: false, .. }));
    assert!(toml::from_str::<Doc>("[auth]\nkind = \"jwt\"\nalgorithm = \"hs256\"\nsecrett = \"x\"\n").is_err());
    assert!(toml::from_str::<Doc>("[auth]\nkind = \"jwt\"\nalgorithm = \"none\"\n").is_err());
    assert!(toml::from_str::<Doc>("[auth]\nkind = \"jwt\"\nalgorithm = \"hs512\"\n").is_err());
}

#[test]
fn jwt_config_errors_name_the_key() {
    let err = |f: &dyn Fn(&mut AuthConfig), alg| {
        let mut c = jwt_config(alg);
        f(&mut c);
        Verifier::new(&c).unwrap_err()
    };
    let set = |c: &mut AuthConfig, s: Option<&str>, pem: Option<&str>, file: Option<&str>| {
        if let AuthConfig::Jwt { secret, public_key_pem, public_key_file, .. } = c {
            *secret = s.map(Into::into);
            *public_key_pem = pem.map(Into::into);
            *public_key_file = file.map(Into::into);
        }
    };
    let e = err(&|c| set(c, None, None, None), JwtAlgorithm::Hs256);
    assert!(e.starts_with("auth.secret is required"), "{e}");
    let e = err(&|c| set(c, Some("short"), None, None), JwtAlgorithm::Hs256);
    assert!(e.starts_with("auth.secret must be at least 32 bytes"), "{e}");
    let e = err(&|c| set(c, Some(HS_SECRET), Some(RS_PUBLIC), None), JwtAlgorithm::Hs256);
    assert!(e.starts_with("auth.public_key_pem"), "{e}");
    let e = err(&|c| set(c, None, None, None), JwtAlgorithm::Rs256);
    assert!(e.starts_with("auth.public_key_pem or auth.public_key_file is required"), "{e}");
    let e = err(&|c| set(c, Some(HS_SECRET), Some(RS_PUBLIC), None), JwtAlgorithm::Rs256);
    assert!(e.starts_with("auth.secret is only for hs256"), "{e}");
    let e = err(&|c| set(c, None, Some(RS_PUBLIC), Some("/x")), JwtAlgorithm::Rs256);
    assert!(e.starts_with("set only one of"), "{e}");
    let e = err(&|c| set(c, None, None, Some("/nonexistent/key.pem")), JwtAlgorithm::Rs256);
    assert!(e.starts_with("auth.public_key_file: /nonexistent/key.pem: "), "{e}");
    let e = err(&|c| set(c, None, Some(RS_PRIVATE), None), JwtAlgorithm::Rs256);
    assert!(e.starts_with("auth.public_key_pem: this is a private key"), "{e}");
    let e = err(&|c| set(c, None, Some("not a pem"), None), JwtAlgorithm::Rs256);
    assert!(e.starts_with("auth.public_key_pem: not an RSA public key"), "{e}");
    let e = err(&|c| set(c, None, Some(RS_PUBLIC), None), JwtAlgorithm::Es256);
    assert!(e.starts_with("auth.public_key_pem:"), "{e}");
    let e = err(
        &|c| {
            if let AuthConfig::Jwt { audience, .. } = c {
                *audience = Some(vec![]);
            }
        },
        JwtAlgorithm::Hs256,
    );
    assert!(e.starts_with("auth.audience"), "{e}");
    let e = err(
        &|c| {
            if let AuthConfig::Jwt { user_id_claim, .. } = c {
                *user_id_claim = String::new();
            }
        },
        JwtAlgorithm::Hs256,
    );
    assert!(e.starts_with("auth.user_id_claim"), "{e}");
}
