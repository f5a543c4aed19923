//! Topic patterns → channel factories (Phoenix's `channel "room:*", RoomChannel`).

use std::sync::Arc;

use crate::channel::Channel;
use crate::protocol::TopicPattern;

pub(crate) type Factory = Arc<dyn Fn(&str) -> Box<dyn Channel> + Send + Sync>;

/// Topic patterns → channel factories; first match wins, in declaration order.
#[derive(Clone, Default)]
pub struct Router {
    routes: Vec<(TopicPattern, Factory)>,
}

impl Router {
    pub fn new() -> Router {
        Router::default()
    }

    /// Routes `pattern` (`"room:*"`) to channels made by `factory`. Panics on an invalid
    /// pattern (a configuration error, found at startup).
    pub fn channel<C, F>(mut self, pattern: &str, factory: F) -> Router
    where
        C: Channel,
        F: Fn(&str) -> C + Send + Sync + 'static,
    {
        let pattern = TopicPattern::parse(pattern).unwrap_or_else(|e| panic!("{e}"));
        self.routes.push((pattern, Arc::new(move |topic: &str| Box::new(factory(topic)) as Box<dyn Channel>)));
        self
    }

    pub(crate) fn route(&self, topic: &str) -> Option<&Factory> {
        self.routes.iter().find(|(p, _)| p.matches(topic)).map(|(_, f)| f)
    }
}

