//! Property tests standing in for the fuzzer in CI (`fuzz/` has the libFuzzer target):
//! arbitrary input never panics the frame or message decoders, and well-formed frames decode
//! to what was sent.

use broker::protocol::{decode_binary, decode_text, Serializer};
use broker::protocol::ws::{client_frame, Decoder, WsEvent};
use bytes::Bytes;
use proptest::prelude::*;

fn drain(d: &mut Decoder) -> Vec<WsEvent> {
    let mut out = vec![];
    while let Ok(Some(e)) = d.next() {
        out.push(e);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300), split in 0usize..300) {
        let b = Bytes::from(data.clone());
        for ser in [Serializer::V1, Serializer::V2] {
            let _ = decode_binary(ser, &b);
            if std::str::from_utf8(&data).is_ok() {
                let _ = decode_text(ser, &b);
            }
        }
        let mut d = Decoder::new(1 << 12);
        let split = split.min(data.len());
        d.buffer().extend_from_slice(&data[..split]);
        let _ = drain(&mut d);
        d.buffer().extend_from_slice(&data[split..]);
        let _ = drain(&mut d);
    }

    #[test]
    fn json_like_text_never_panics(s in r#"[\[\]{}",:0-9a-z nul]{0,80}"#) {
        let b = Bytes::from(s);
        let _ = decode_text(Serializer::V2, &b);
        let _ = decode_text(Serializer::V1, &b);
    }

}

proptest! {
    // Large payloads (over the 16- and 64-bit length thresholds) are costly to generate in a
    // debug build: fewer cases.
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn frames_round_trip_in_any_chunking(
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..70_000), 1..4),
        mask in any::<[u8; 4]>(),
        chunk in 7usize..5000,
    ) {
        let mut stream = vec![];
        for p in &payloads {
            stream.extend(client_frame(2, true, p, mask));
        }
        let mut d = Decoder::new(1 << 20);
        let mut got = vec![];
        for c in stream.chunks(chunk) {
            d.buffer().extend_from_slice(c);
            got.extend(drain(&mut d));
        }
        let expected: Vec<WsEvent> = payloads.into_iter().map(|p| WsEvent::Binary(Bytes::from(p))).collect();
        prop_assert_eq!(got, expected);
    }
}
