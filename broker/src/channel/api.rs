//! What an app implements and returns: the [`Channel`] callbacks (spec §5) and their results.

use async_trait::async_trait;

use super::context::ChannelContext;
use super::mailbox::Info;
use super::stop::StopReason;
use crate::protocol::Payload;

/// Result of [`Channel::join`].
#[derive(Debug)]
pub enum Join {
    /// Joined; the reply's `response` (`{}` for a plain ok).
    Ok(Payload),
    /// Refused; the reply's `response`. The channel is discarded.
    Error(Payload),
}

impl Join {
    pub fn ok() -> Join {
        Join::Ok(Payload::empty_object())
    }
    pub fn ok_with(response: impl serde::Serialize) -> Join {
        Join::Ok(Payload::json(&response))
    }
    pub fn error(response: impl serde::Serialize) -> Join {
        Join::Error(Payload::json(&response))
    }
}

/// Result of [`Channel::handle_in`] (spec §5.3).
#[derive(Debug)]
pub enum Reply {
    /// `{:reply, {status, payload}}`.
    Reply { status: String, response: Payload },
    /// `{:noreply, socket}`: nothing now (the app may reply later through a [`crate::channel::SocketRef`]).
    NoReply,
    /// `{:stop, reason, [reply,] socket}`: the reply (if any) first, then `phx_close` or
    /// `phx_error` depending on the reason.
    Stop { reason: StopReason, reply: Option<(String, Payload)> },
}

impl Reply {
    pub fn ok() -> Reply {
        Reply::Reply { status: "ok".into(), response: Payload::empty_object() }
    }
    pub fn ok_with(response: impl serde::Serialize) -> Reply {
        Reply::Reply { status: "ok".into(), response: Payload::json(&response) }
    }
    pub fn error(response: impl serde::Serialize) -> Reply {
        Reply::Reply { status: "error".into(), response: Payload::json(&response) }
    }
    pub fn stop(reason: StopReason) -> Reply {
        Reply::Stop { reason, reply: None }
    }
}

/// Result of `handle_out` / `handle_info`.
#[derive(Debug)]
pub enum Continue {
    Continue,
    Stop(StopReason),
}

/// Channel callbacks (spec §5). One value per join; its fields are the per-join state.
///
/// Phoenix's `use Phoenix.Channel`: `join/3` → [`Channel::join`], `handle_in/3` →
/// [`Channel::handle_in`], `intercept [...]` → [`Channel::intercepts`], `handle_out/3` →
/// [`Channel::handle_out`], `handle_info/2` → [`Channel::handle_info`] (typed with
/// [`Info::downcast`]), `terminate/2` → [`Channel::terminate`]; `socket` is the
/// [`ChannelContext`] (`socket.assigns` → [`ChannelContext::assigns_as`]). Payloads decode
/// and encode with serde ([`Payload::decode`], [`Payload::encode`]).
///
/// ```
/// use broker::{async_trait, Channel, ChannelContext, Continue, Join, Payload, Reply};
/// use serde::{Deserialize, Serialize};
/// use serde_json::json;
///
/// #[derive(Deserialize)]
/// struct User { name: String }            // the socket assigns, set in SocketHandler::connect
/// #[derive(Deserialize)]
/// struct NewMsg { body: String }
/// #[derive(Serialize, Deserialize, Default)]
/// struct Meta { typing: bool }            // this user's presence meta
///
/// struct RoomChannel { name: String }
///
/// #[async_trait]
/// impl Channel for RoomChannel {
///     fn intercepts(&self) -> Vec<String> { vec!["secret".into()] }
///
///     async fn join(&mut self, _topic: &str, _params: Payload, ctx: &mut ChannelContext) -> Join {
///         match ctx.assigns_as::<User>() {
///             Ok(user) => { self.name = user.name; Join::ok() }
///             Err(_) => Join::error(json!({"reason": "unauthorized"})),
///         }
///     }
///
///     async fn after_join(&mut self, ctx: &mut ChannelContext) -> Continue {
///         let _ = ctx.track_as(&self.name.clone(), &Meta::default()).await;  // Presence.track
///         let _ = ctx.push_presence_state().await;
///         Continue::Continue
///     }
///
///     async fn handle_in(&mut self, event: &str, payload: Payload, ctx: &mut ChannelContext) -> Reply {
///         match (event, payload.decode::<NewMsg>()) {
///             ("new_msg", Ok(msg)) => {
///                 let _ = ctx.broadcast("new_msg", Payload::encode(&json!({"user": self.name, "body": msg.body}))).await;
///                 Reply::ok()
///             }
///             _ => Reply::error(json!({"reason": "bad message"})),
///         }
///     }
///
///     async fn handle_out(&mut self, event: &str, payload: &Payload, ctx: &mut ChannelContext) -> Continue {
///         if self.name == "admin" { let _ = ctx.push(event, payload.clone()); }   // only admins see it
///         Continue::Continue
///     }
/// }
/// ```
#[async_trait]
pub trait Channel: Send + 'static {
    /// Events this channel intercepts: broadcasts of these go through [`Channel::handle_out`]
    /// (per subscriber) instead of the shared fastlane frame. Read once, at join.
    fn intercepts(&self) -> Vec<String> {
        Vec::new()
    }

    /// `join(topic, params, socket)`. `ctx.push` is not allowed here (the client has not seen
    /// the join reply yet); push from [`Channel::after_join`].
    async fn join(&mut self, topic: &str, params: Payload, ctx: &mut ChannelContext) -> Join;

    /// Runs right after the join reply is queued: the place to `track` presence and push
    /// `presence_state` (Phoenix apps do this from a message sent to self after join).
    async fn after_join(&mut self, _ctx: &mut ChannelContext) -> Continue {
        Continue::Continue
    }

    /// `handle_in(event, payload, socket)`.
    async fn handle_in(&mut self, event: &str, payload: Payload, ctx: &mut ChannelContext) -> Reply;

    /// `handle_out(event, payload, socket)` for intercepted events. The default pushes the
    /// broadcast unchanged (a push: it carries the channel's join_ref).
    async fn handle_out(&mut self, event: &str, payload: &Payload, ctx: &mut ChannelContext) -> Continue {
        let _ = ctx.push(event, payload.clone());
        Continue::Continue
    }

    /// `handle_info(msg, socket)`. The default ignores the message.
    async fn handle_info(&mut self, _msg: Info, _ctx: &mut ChannelContext) -> Continue {
        Continue::Continue
    }

    /// `terminate(reason, socket)`: called on graceful stops, not after a crash.
    async fn terminate(&mut self, _reason: &StopReason, _ctx: &mut ChannelContext) {}
}

