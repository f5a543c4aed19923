//! The `[auth]` table for Phoenix.Token (the JWT ones are with the JWT tests), and `TokenError`.

use super::*;

#[test]
fn phoenix_config_from_toml_with_defaults() {
    #[derive(Deserialize)]
    struct Doc {
        auth: AuthConfig,
    }
    let doc: Doc = toml::from_str(&format!("[auth]\nkind = \"phoenix_token\"\nsecret_key_base = \"{SECRET}\"\nsalt = \"user socket\"\n")).unwrap();
    let AuthConfig::PhoenixToken { max_age_s, key_iterations, key_length, key_digest, user_id_field, .. } = &doc.auth else { panic!() };
    assert_eq!((*max_age_s, *key_iterations, *key_length, *key_digest, user_id_field.clone()), (None, 1000, 32, Digest::Sha256, None));
    assert_eq!(Verifier::new(&doc.auth).unwrap().verify_at(VECTOR_123, T).unwrap().user_id, "123");
    let doc: Doc = toml::from_str(&format!(
        "[auth]\nkind = \"phoenix_token\"\nsecret_key_base = \"{SECRET}\"\nsalt = \"s\"\nmax_age_s = 60\nkey_iterations = 5\nkey_length = 64\nkey_digest = \"sha384\"\nuser_id_field = \"uid\"\n"
    ))
    .unwrap();
    let AuthConfig::PhoenixToken { max_age_s, key_iterations, key_length, key_digest, user_id_field, .. } = &doc.auth else { panic!() };
    assert_eq!((*max_age_s, *key_iterations, *key_length, *key_digest, user_id_field.as_deref()), (Some(60), 5, 64, Digest::Sha384, Some("uid")));
    // Unknown keys, unknown kinds, unknown digests are errors.
    assert!(toml::from_str::<Doc>(&format!("[auth]\nkind = \"phoenix_token\"\nsecret_key_base = \"{SECRET}\"\nsalt = \"s\"\nmax_age = 5\n")).is_err());
    assert!(toml::from_str::<Doc>("[auth]\nkind = \"magic\"\n").is_err());
    assert!(toml::from_str::<Doc>(&format!("[auth]\nkind = \"phoenix_token\"\nsecret_key_base = \"{SECRET}\"\nsalt = \"s\"\nkey_digest = \"md5\"\n")).is_err());
    assert!(toml::from_str::<Doc>("[auth]\nkind = \"phoenix_token\"\nsalt = \"s\"\n").is_err());
    // Debug does not print the secret.
    assert!(!format!("{:?}", doc.auth).contains(SECRET));
}

#[test]
fn phoenix_config_errors_name_the_key() {
    let with = |f: &dyn Fn(&mut AuthConfig)| {
        let mut c = phoenix_config(None);
        f(&mut c);
        Verifier::new(&c).unwrap_err()
    };
    let e = with(&|c| {
        if let AuthConfig::PhoenixToken { secret_key_base, .. } = c {
            *secret_key_base = "0123456789012345678".into();
        }
    });
    assert_eq!(e, "auth.secret_key_base must be at least 20 bytes (Phoenix's minimum)");
    let e = with(&|c| {
        if let AuthConfig::PhoenixToken { key_iterations, .. } = c {
            *key_iterations = 0;
        }
    });
    assert!(e.starts_with("auth.key_iterations"), "{e}");
    for bad in [0, 4096] {
        let e = with(&|c| {
            if let AuthConfig::PhoenixToken { key_length, .. } = c {
                *key_length = bad;
            }
        });
        assert!(e.starts_with("auth.key_length"), "{e}");
    }
    let mut c = phoenix_config(None);
    if let AuthConfig::PhoenixToken { secret_key_base, .. } = &mut c {
        *secret_key_base = "01234567890123456789".into();
    }
    assert!(Verifier::new(&c).is_ok());
}

#[test]
fn token_error_display_is_short() {
    assert_eq!(TokenError::Invalid.to_string(), "invalid token");
    assert_eq!(TokenError::Expired.to_string(), "expired token");
    assert_eq!(TokenError::Missing.to_string(), "missing token");
    assert_eq!(TokenError::NotYetValid.to_string(), "token not yet valid");
    assert_eq!(TokenError::NoUserId.to_string(), "token has no user id");
    let _: &dyn std::error::Error = &TokenError::Invalid;
}
