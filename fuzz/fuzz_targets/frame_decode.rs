//! Feeds arbitrary bytes to the WebSocket frame decoder and every message decoder: any input
//! must yield events or an error, never a panic. Run (needs cargo-fuzz; on stable Rust set
//! RUSTC_BOOTSTRAP=1): `cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run frame_decode -- -max_total_time=60`
#![no_main]

use broker::protocol::ws::{Decoder, WsEvent};
use broker::protocol::{decode_binary, decode_text, Serializer};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The raw bytes as message bodies.
    let b = Bytes::copy_from_slice(data);
    for ser in [Serializer::V1, Serializer::V2] {
        let _ = decode_binary(ser, &b);
        if std::str::from_utf8(data).is_ok() {
            let _ = decode_text(ser, &b);
        }
    }
    // The raw bytes as a WebSocket stream, split in two reads.
    let mut d = Decoder::new(1 << 16);
    let split = data.first().map_or(0, |n| *n as usize % (data.len() + 1));
    for chunk in [&data[..split], &data[split..]] {
        d.buffer().extend_from_slice(chunk);
        loop {
            match d.next() {
                Ok(Some(WsEvent::Text(t))) => {
                    let _ = decode_text(Serializer::V2, &t);
                }
                Ok(Some(WsEvent::Binary(bin))) => {
                    let _ = decode_binary(Serializer::V2, &bin);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }
});
