//! Chat with "who is typing": messages, and typing state in presence. Sockets are
//! authenticated by a Phoenix.Token issued at login; the sender of every message is the
//! verified identity, never a name from the payload.
//!
//! `cargo run -p apps --bin chat` → <http://127.0.0.1:4105/>

use broker::{async_trait, Channel, ChannelContext, Continue, Join, Payload, Reply, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

const PAGE: &str = include_str!("../../static/chat.html");
const MAX_BODY: usize = 2000;

/// Presence meta.
#[derive(Default, Serialize, Deserialize)]
struct Member {
    typing: bool,
}

#[derive(Deserialize)]
struct NewMsg {
    body: String,
}

#[derive(Deserialize)]
struct Typing {
    typing: bool,
}

struct ChatChannel {
    user: String,
}

#[async_trait]
impl Channel for ChatChannel {
    async fn join(&mut self, _topic: &str, _params: Payload, ctx: &mut ChannelContext) -> Join {
        match ctx.assigns_as::<apps::Verified>() {
            Ok(v) => {
                self.user = v.user_id;
                Join::ok_with(json!({"you": self.user}))
            }
            Err(_) => Join::error(json!({"reason": "unauthorized"})),
        }
    }

    async fn after_join(&mut self, ctx: &mut ChannelContext) -> Continue {
        let _ = ctx.track_as(&self.user.clone(), &Member::default()).await;
        let _ = ctx.push_presence_state().await;
        Continue::Continue
    }

    async fn handle_in(&mut self, event: &str, payload: Payload, ctx: &mut ChannelContext) -> Reply {
        let key = self.user.clone();
        match event {
            "new_msg" => {
                // Only the body is taken from the client; the sender is who the token says.
                let Ok(NewMsg { body }) = payload.decode() else { return Reply::error(json!({"reason": "bad payload"})) };
                let body = body.trim();
                if body.is_empty() || body.len() > MAX_BODY {
                    return Reply::error(json!({"reason": "empty or too long"}));
                }
                let _ = ctx.update_presence_with(&key, |m: &mut Member| m.typing = false).await;
                let _ = ctx.broadcast("new_msg", Payload::json(&json!({"user": self.user, "body": body}))).await;
                Reply::ok()
            }
            "typing" => {
                let Ok(Typing { typing }) = payload.decode() else { return Reply::error(json!({"reason": "bad payload"})) };
                let _ = ctx.update_presence_with(&key, |m: &mut Member| m.typing = typing).await;
                Reply::NoReply
            }
            _ => Reply::error(json!({"reason": "unknown event"})),
        }
    }
}

fn main() {
    apps::init_logging();
    let opts = apps::Opts::parse("chat", 4105);
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    rt.block_on(async move {
        let router = Router::new().channel("chat:*", |_| ChatChannel { user: String::new() });
        apps::serve_with_login("chat", &opts, router, PAGE).await;
    });
}
