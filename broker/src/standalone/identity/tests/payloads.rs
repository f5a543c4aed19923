//! Phoenix.Token payloads: the §9.4 ETF subset, hostile payloads (depth, size, term count,
//! zlib bombs), and fuzzing of both verifiers.

use proptest::prelude::*;

use super::*;

// ---- §9.4 ETF --------------------------------------------------------------------

#[test]
fn otp25_atom_ext_map() {
    let got = phoenix(None).verify_at(beam("atom_ext_map"), T).unwrap();
    assert_eq!(got.user_id, "42");
    assert_eq!(got.claims["data"], json!({"user_id": 42, "role": "admin"}));
    assert_eq!(got.claims["role"], json!("admin"));
}

#[test]
fn compressed_payloads() {
    let v = phoenix(None);
    let got = v.verify_at(beam("compressed"), T).unwrap();
    assert_eq!(got.user_id, "u-9");
    assert_eq!(got.claims["pad"], json!("ab".repeat(200)));
    // Hand-made, exact size: fine.
    let term = [104, 3, 97, 9, 98, 0, 0, 0, 1, 119, 8, b'i', b'n', b'f', b'i', b'n', b'i', b't', b'y'];
    assert_eq!(v.verify_at(&signed_raw(&compressed_payload(&term, term.len() as u32)), T).unwrap().user_id, "9");
    // Declared size wrong either way, over the bound, or claiming 4 GiB.
    for declared in [term.len() as u32 - 1, term.len() as u32 + 1, (MAX_DECOMPRESSED_BYTES + 1) as u32, u32::MAX] {
        assert_eq!(v.verify_at(&signed_raw(&compressed_payload(&term, declared)), T), Err(TokenError::Invalid), "{declared}");
    }
    // A zlib bomb: 16 MiB of zeros in a ~16 KiB stream, declared as 16 MiB or as 1 MiB.
    let zeros = vec![0u8; 16 * 1024 * 1024];
    for declared in [16 * 1024 * 1024, MAX_DECOMPRESSED_BYTES as u32] {
        assert_eq!(v.verify_at(&signed_raw(&compressed_payload(&zeros, declared)), T), Err(TokenError::Invalid));
    }
    // A corrupt or truncated stream; a COMPRESSED inside a term.
    let mut p = compressed_payload(&term, term.len() as u32);
    let last = p.len() - 1;
    p[last] ^= 0xff;
    assert_eq!(v.verify_at(&signed_raw(&p), T), Err(TokenError::Invalid));
    let p = compressed_payload(&term, term.len() as u32);
    assert_eq!(v.verify_at(&signed_raw(&p[..p.len() - 6]), T), Err(TokenError::Invalid));
    assert_eq!(v.verify_at(&signed_raw(&[131, 80, 0, 0, 0]), T), Err(TokenError::Invalid));
    let mut inner = vec![80];
    inner.extend((term.len() as u32).to_be_bytes());
    inner.extend(zlib(&term));
    assert_eq!(v.verify_at(&signed_raw(&payload_with(&inner)), T), Err(TokenError::Invalid));
}

#[test]
fn mixed_terms_from_the_beam() {
    let got = phoenix(None).verify_at(beam("mixed"), T).unwrap();
    assert_eq!(
        got.claims["data"],
        json!({
            "id": "u-1", "score": 1.5, "neg": -5, "i32": 70000,
            "big": 1u64 << 40, "neg_big": -(1i64 << 40), "u64": u64::MAX,
            "flags": [true, false, null], "chars": [97, 98, 99], "empty": [],
            "nested": {"k": [{}, "ok"]}, "7": "int key", "é": "latin1 atom", "text": "Zoë ✓",
        })
    );
    assert_eq!(got.user_id, "u-1");
}

#[test]
fn non_data_terms_are_invalid() {
    let v = phoenix(None);
    for name in ["pid", "ref", "fun", "bignum_70_bits", "non_utf8_binary", "improper_list", "bitstring"] {
        assert_eq!(v.verify_at(beam(name), T), Err(TokenError::Invalid), "{name}");
    }
    // Hand-made data terms: LOCAL_EXT, port, FLOAT_EXT (old), atom cache ref, unknown tag,
    // a map with a tuple key, a non-UTF-8 utf8 atom, a bignum with a bad sign byte.
    let bad: [&[u8]; 8] = [
        &[121, 0, 0, 0, 0],
        &[89, 119, 1, b'n', 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0],
        &[99; 32],
        &[82, 0],
        &[255],
        &[116, 0, 0, 0, 1, 104, 0, 97, 1],
        &[119, 1, 0xff],
        &[110, 1, 2, 5],
    ];
    for data in bad {
        assert_eq!(v.verify_at(&signed_raw(&payload_with(data)), T), Err(TokenError::Invalid), "{data:?}");
    }
    // Not the version byte; empty; the version byte alone; a term cut short.
    let cut: [&[u8]; 4] = [&[130, 97, 1], &[], &[131], &VECTOR_PAYLOAD[..VECTOR_PAYLOAD.len() - 1]];
    for p in cut {
        assert_eq!(v.verify_at(&signed_raw(p), T), Err(TokenError::Invalid), "{p:?}");
    }
}

#[test]
fn trailing_bytes_are_ignored_like_binary_to_term() {
    assert_eq!(phoenix(None).verify_at(beam("trailing_bytes"), T).unwrap().user_id, "123");
}

// ---- hostile payloads -------------------------------------------------------------

#[test]
fn deep_nesting_is_refused_without_recursing() {
    // 100 000 nested 1-tuples, decoded directly (the token would exceed MAX_TOKEN_BYTES)…
    let mut p = vec![131];
    for _ in 0..100_000 {
        p.extend([104, 1]);
    }
    p.push(106);
    assert!(decode_payload(&p).is_err());
    // …nested lists and maps the same…
    let mut l = vec![131];
    for _ in 0..100_000 {
        l.extend([108, 0, 0, 0, 1]);
    }
    assert!(decode_payload(&l).is_err());
    let mut m = vec![131];
    for _ in 0..100_000 {
        m.extend([116, 0, 0, 0, 1, 97, 1]);
    }
    assert!(decode_payload(&m).is_err());
    // …and through verify, compressed (a few hundred bytes of token).
    let v = phoenix(None);
    let token = signed_raw(&compressed_payload(&p[1..], (p.len() - 1) as u32));
    assert!(token.len() < 4096, "{}", token.len());
    assert_eq!(v.verify_at(&token, T), Err(TokenError::Invalid));
    // MAX_TERM_DEPTH levels are fine, one more is not.
    let nest = |levels: usize| {
        let mut d = Vec::new();
        for _ in 0..levels {
            d.extend([104, 1]);
        }
        d.extend([97, 1]);
        payload_with(&d)
    };
    assert!(decode_payload(&nest(MAX_TERM_DEPTH - 2)).is_ok());
    assert!(decode_payload(&nest(MAX_TERM_DEPTH - 1)).is_err());
}

#[test]
fn huge_length_claims_are_refused_before_allocating() {
    let v = phoenix(None);
    let huge: [&[u8]; 7] = [
        &[109, 0xff, 0xff, 0xff, 0xff, b'a'],        // BINARY_EXT of 4 GiB
        &[108, 0xff, 0xff, 0xff, 0xff, 97, 1, 106], // LIST_EXT of 4G elements
        &[105, 0xff, 0xff, 0xff, 0xff, 97, 1],      // LARGE_TUPLE_EXT
        &[116, 0xff, 0xff, 0xff, 0xff, 97, 1, 97, 1], // MAP_EXT
        &[111, 0xff, 0xff, 0xff, 0xff, 0, 1],       // LARGE_BIG_EXT
        &[107, 0xff, 0xff, b'a'],                   // STRING_EXT of 64 KiB
        &[118, 0xff, 0xff, b'a'],                   // ATOM_UTF8_EXT
    ];
    for data in huge {
        assert_eq!(v.verify_at(&signed_raw(&payload_with(data)), T), Err(TokenError::Invalid), "{data:?}");
    }
    // Too many terms, each small: 200 000 NILs in a list (compressed: a small token).
    let mut t = vec![108];
    t.extend(200_000u32.to_be_bytes());
    t.extend(std::iter::repeat_n(106, 200_001));
    let mut p = vec![104, 3];
    p.extend(&t);
    etf::encode_int(i128::from(T), &mut p);
    p.extend([97, 1]);
    assert_eq!(v.verify_at(&signed_raw(&compressed_payload(&p, p.len() as u32)), T), Err(TokenError::Invalid));
}

#[test]
fn big_integers() {
    let check = |term: &[u8]| decode_payload(&payload_with(term)).ok().map(|(d, _, _)| etf::to_json(d).ok());
    // n = 6 timestamp form, LE; zero high bytes are allowed; -0 is 0.
    assert_eq!(check(&[110, 6, 0, 0, 0x68, 0xE5, 0xCF, 0x8B, 0x01]), Some(Some(json!(T))));
    assert_eq!(check(&[110, 9, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0]), Some(Some(json!(-1))));
    assert_eq!(check(&[111, 0, 0, 0, 2, 0, 0x10, 0x27]), Some(Some(json!(10000))));
    assert_eq!(check(&[110, 0, 1]), Some(Some(json!(0))));
    assert_eq!(check(&[110, 8, 0, 255, 255, 255, 255, 255, 255, 255, 255]), Some(Some(json!(u64::MAX))));
    // Beyond u64 / i64: not JSON → the token is invalid.
    assert_eq!(check(&[110, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]), Some(None));
    assert_eq!(check(&[110, 8, 1, 255, 255, 255, 255, 255, 255, 255, 255]), Some(None));
    // Beyond 127 bits: refused while decoding.
    assert_eq!(check(&[110, 17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]), None);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_tokens_never_panic(s in "\\PC{0,300}") {
        let _ = phoenix_verifier().verify_at(&s, T);
        let _ = hs_verifier().verify_at(&s, T);
    }

    #[test]
    fn arbitrary_dotted_base64_never_panics(parts in proptest::collection::vec("[A-Za-z0-9_\\-]{0,60}", 0..5)) {
        let t = parts.join(".");
        let _ = phoenix_verifier().verify_at(&t, T);
        let _ = hs_verifier().verify_at(&t, T);
    }

    /// MAC'd arbitrary payloads reach the ETF decoder.
    #[test]
    fn signed_arbitrary_payloads_never_panic(body in proptest::collection::vec(any::<u8>(), 0..400), compressed in any::<bool>()) {
        let payload = if compressed {
            let mut p = vec![131, 80];
            p.extend((body.len() as u32).to_be_bytes());
            p.extend(zlib(&body));
            p
        } else {
            let mut p = vec![131];
            p.extend(&body);
            p
        };
        let _ = phoenix_verifier().verify_at(&sign_with_key(key(), MacDigest::Sha256, &payload), T);
    }

    /// Payloads made of valid-looking tags and small lengths, to get deeper into the decoder.
    #[test]
    fn signed_tag_soup_never_panics(body in proptest::collection::vec(any::<u8>(), 0..300)) {
        const SOUP: [u8; 20] = [97, 98, 70, 104, 105, 106, 107, 108, 109, 110, 111, 115, 116, 118, 119, 100, 0, 1, 2, 255];
        let mut p = vec![131, 104, 3];
        // Most bytes become a tag or a small length; the rest stay arbitrary.
        p.extend(body.iter().map(|&b| if b < 200 { SOUP[usize::from(b) % SOUP.len()] } else { b }));
        let _ = phoenix_verifier().verify_at(&sign_with_key(key(), MacDigest::Sha256, &p), T);
    }
}
