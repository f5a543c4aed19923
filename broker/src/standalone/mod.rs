//! The standalone binary's side of the broker: what it offers an app that is not written in
//! Rust. Today the relay channel ([`relay`]); identity, webhooks and the HTTP API belong here.

pub mod relay;
