//! The standalone binary's side of the broker: what it offers an app whose backend is not
//! written in Rust. Verified identity ([`identity`]: Phoenix.Token, JWT) and the socket handler
//! that applies it ([`handler`]), webhooks to the app's backend ([`webhook`]), and the relay
//! channel with per-topic policies ([`relay`]), and the HTTP API for backends ([`api`]).

pub mod api;
pub mod handler;
pub mod identity;
pub mod relay;
pub mod webhook;

use crate::config::{Config, EventMode, JoinMode};
use crate::socket::Router;
use handler::StandaloneHandler;
use relay::RelayPolicy;
use webhook::Webhooks;

/// The router and socket handler of the standalone binary for `config`, sharing one webhook
/// client (one concurrency bound) when any webhook is configured.
pub fn build(config: &Config) -> Result<(Router, StandaloneHandler), String> {
    let uses_webhooks = config.identity.connect_url.is_some()
        || config.channels.policies.iter().any(|p| p.join == JoinMode::Webhook || p.events == EventMode::Webhook);
    let webhooks = if uses_webhooks { Some(Webhooks::new(&config.webhooks)?) } else { None };
    let router = RelayPolicy::from_config(config, webhooks.clone())?.router_with(config)?;
    let handler = StandaloneHandler::new(config, webhooks)?;
    Ok((router, handler))
}
