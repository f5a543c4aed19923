//! Pair programming rooms: `challenges:<id>`.
//!
//! The join reply carries the challenge (its prompt and the current response); typing updates
//! the stored response and broadcasts `response:updated` to the others (`broadcast_from`);
//! presence shows the participants with a typing indicator, set while typing and cleared on
//! blur (`update_presence_with`, Phoenix's `Presence.update(socket, key, fn)`).
//!
//! `cargo run -p apps --bin pair_programming` → <http://127.0.0.1:4103/>

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use broker::mount::{self, Method};
use broker::{async_trait, Builder, Channel, ChannelContext, ConnectError, ConnectInfo, Continue, Join, Payload, Reply, Router, SocketHandler};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

const PAGE: &str = include_str!("../../static/pair_programming.html");
/// Largest response kept (bytes).
const MAX_RESPONSE: usize = 16 * 1024;

fn prompt(id: &str) -> String {
    match id {
        "1" => "Write a function that reverses a string.".into(),
        "2" => "Write FizzBuzz for 1..=15.".into(),
        other => format!("Challenge {other}: write a function that adds two numbers."),
    }
}

#[derive(Clone, Serialize)]
struct Challenge {
    id: String,
    prompt: String,
    response: String,
}

type Challenges = Arc<Mutex<HashMap<String, Challenge>>>;

#[derive(Serialize, Deserialize)]
struct User {
    name: String,
}

/// Presence meta.
#[derive(Default, Serialize, Deserialize)]
struct Participant {
    typing: bool,
}

#[derive(Deserialize)]
struct Update {
    response: String,
}

struct Names;

#[async_trait]
impl SocketHandler for Names {
    async fn connect(&self, params: &Value, _info: &ConnectInfo) -> Result<Map<String, Value>, ConnectError> {
        let name = apps::param_str(params, "name", 32).ok_or(ConnectError::Forbidden)?;
        broker::assigns(&User { name })
    }
}

struct ChallengeChannel {
    challenges: Challenges,
    id: String,
    name: String,
    typing: bool,
}

impl ChallengeChannel {
    async fn set_typing(&mut self, ctx: &mut ChannelContext, typing: bool) {
        if self.typing != typing {
            self.typing = typing;
            let key = self.name.clone();
            let _ = ctx.update_presence_with(&key, |p: &mut Participant| p.typing = typing).await;
        }
    }
}

#[async_trait]
impl Channel for ChallengeChannel {
    async fn join(&mut self, topic: &str, _params: Payload, ctx: &mut ChannelContext) -> Join {
        let Ok(user) = ctx.assigns_as::<User>() else { return Join::error(json!({"reason": "unauthorized"})) };
        self.name = user.name;
        self.id = topic.trim_start_matches("challenges:").to_owned();
        let challenge = self
            .challenges
            .lock()
            .unwrap()
            .entry(self.id.clone())
            .or_insert_with(|| Challenge { id: self.id.clone(), prompt: prompt(&self.id), response: String::new() })
            .clone();
        Join::ok_with(json!({"challenge": challenge}))
    }

    async fn after_join(&mut self, ctx: &mut ChannelContext) -> Continue {
        let _ = ctx.track_as(&self.name.clone(), &Participant::default()).await;
        let _ = ctx.push_presence_state().await;
        Continue::Continue
    }

    async fn handle_in(&mut self, event: &str, payload: Payload, ctx: &mut ChannelContext) -> Reply {
        match event {
            "response:update" => {
                let Ok(Update { response }) = payload.decode() else { return Reply::error(json!({"reason": "bad payload"})) };
                if response.len() > MAX_RESPONSE {
                    return Reply::error(json!({"reason": "response too long"}));
                }
                if let Some(c) = self.challenges.lock().unwrap().get_mut(&self.id) {
                    c.response = response.clone();
                }
                let _ = ctx.broadcast_from("response:updated", Payload::json(&json!({"response": response, "by": self.name}))).await;
                self.set_typing(ctx, true).await;
                Reply::NoReply
            }
            "typing:stop" => {
                self.set_typing(ctx, false).await;
                Reply::NoReply
            }
            _ => Reply::error(json!({"reason": "unknown event"})),
        }
    }
}

fn main() {
    apps::init_logging();
    let opts = apps::Opts::parse("pair_programming", 4103);
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    rt.block_on(async move {
        let challenges: Challenges = Arc::default();
        let router = Router::new().channel("challenges:*", move |_| ChallengeChannel {
            challenges: challenges.clone(),
            id: String::new(),
            name: String::new(),
            typing: false,
        });
        let pages = mount::service(|req| async move {
            match (req.method(), req.uri().path()) {
                (&Method::GET, "/") => mount::html(PAGE),
                (&Method::GET, path) => apps::static_file(path).unwrap_or_else(mount::not_found),
                _ => mount::not_found(),
            }
        });
        apps::serve("pair_programming", Builder::new(opts.config()).router(router).socket_handler(Names).http_service(pages)).await;
    });
}
