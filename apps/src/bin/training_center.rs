//! Training center: trainers and participants in a training session.
//!
//! Users connect with a name and a role (socket params → typed assigns) and join
//! `training_session:<id>`. A participant's completed exercise is pushed back to them, and a
//! `status_updated` broadcast is intercepted so only trainers get it. A trainer starts the
//! session with a plain HTTP `POST /sessions/<id>/start`, which broadcasts from outside any
//! channel (a `BrokerHandle`), served by the same process on the same port.
//!
//! `cargo run -p apps --bin training_center` → <http://127.0.0.1:4102/>

use broker::mount::{self, Method, StatusCode};
use broker::{async_trait, Builder, Channel, ChannelContext, ConnectError, ConnectInfo, Continue, Join, Payload, Reply, Router, SocketHandler};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

const PAGE: &str = include_str!("../../static/training_center.html");
const EXERCISES: [&str; 3] = ["Warm-up: join a channel", "Push an event", "Track presence"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Role {
    Trainer,
    Participant,
}

/// Socket assigns (typed): who this socket is.
#[derive(Clone, Serialize, Deserialize)]
struct Member {
    name: String,
    role: Role,
}

/// Presence meta.
#[derive(Serialize, Deserialize)]
struct Seat {
    role: Role,
}

#[derive(Deserialize)]
struct Completed {
    exercise: usize,
}

struct Members;

#[async_trait]
impl SocketHandler for Members {
    async fn connect(&self, params: &Value, _info: &ConnectInfo) -> Result<Map<String, Value>, ConnectError> {
        let name = apps::param_str(params, "name", 32).ok_or(ConnectError::Forbidden)?;
        let role = match params.get("role").and_then(Value::as_str) {
            Some("trainer") => Role::Trainer,
            Some("participant") => Role::Participant,
            _ => return Err(ConnectError::Forbidden),
        };
        broker::assigns(&Member { name, role })
    }
}

struct SessionChannel {
    me: Option<Member>,
}

#[async_trait]
impl Channel for SessionChannel {
    fn intercepts(&self) -> Vec<String> {
        vec!["status_updated".into()]
    }

    async fn join(&mut self, _topic: &str, _params: Payload, ctx: &mut ChannelContext) -> Join {
        match ctx.assigns_as::<Member>() {
            Ok(m) => {
                self.me = Some(m);
                Join::ok_with(json!({"exercises": EXERCISES}))
            }
            Err(_) => Join::error(json!({"reason": "unauthorized"})),
        }
    }

    async fn after_join(&mut self, ctx: &mut ChannelContext) -> Continue {
        let me = self.me.clone().expect("joined");
        let _ = ctx.track_as(&me.name, &Seat { role: me.role }).await;
        let _ = ctx.push_presence_state().await;
        Continue::Continue
    }

    async fn handle_in(&mut self, event: &str, payload: Payload, ctx: &mut ChannelContext) -> Reply {
        let me = self.me.clone().expect("joined");
        match event {
            "exercise:complete" if me.role == Role::Participant => {
                let Ok(Completed { exercise }) = payload.decode() else { return Reply::error(json!({"reason": "bad payload"})) };
                let Some(title) = EXERCISES.get(exercise) else { return Reply::error(json!({"reason": "no such exercise"})) };
                // Back to this participant only...
                let _ = ctx.push("exercise:completed", Payload::json(&json!({"exercise": exercise, "title": title})));
                // ...and to the trainers (the intercept filters the broadcast per socket).
                let status = json!({"name": me.name, "exercise": exercise, "title": title});
                let _ = ctx.broadcast("status_updated", Payload::json(&status)).await;
                Reply::ok()
            }
            "exercise:complete" => Reply::error(json!({"reason": "trainers do not do exercises"})),
            _ => Reply::error(json!({"reason": "unknown event"})),
        }
    }

    /// `status_updated` reaches trainers only.
    async fn handle_out(&mut self, event: &str, payload: &Payload, ctx: &mut ChannelContext) -> Continue {
        if event == "status_updated" && self.me.as_ref().is_some_and(|m| m.role == Role::Trainer) {
            let _ = ctx.push(event, payload.clone());
        }
        Continue::Continue
    }
}

#[derive(Deserialize)]
struct Start {
    trainer: String,
}

fn main() {
    apps::init_logging();
    let opts = apps::Opts::parse("training_center", 4102);
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    rt.block_on(async move {
        let router = Router::new().channel("training_session:*", |_| SessionChannel { me: None });
        let builder = Builder::new(opts.config()).router(router).socket_handler(Members);
        // Phoenix's Endpoint.broadcast from a controller: the handle exists before bind.
        let endpoint = builder.handle();
        let pages = mount::service(move |req| {
            let endpoint = endpoint.clone();
            async move {
                let path = req.uri().path().to_owned();
                match (req.method().clone(), path.as_str()) {
                    (Method::GET, "/") => mount::html(PAGE),
                    (Method::POST, p) if p.starts_with("/sessions/") && p.ends_with("/start") => {
                        let id = &p["/sessions/".len()..p.len() - "/start".len()];
                        if id.is_empty() || id.contains('/') {
                            return mount::not_found();
                        }
                        let start: Start = match mount::read_json(req, 4096).await {
                            Ok(s) => s,
                            Err(resp) => return resp,
                        };
                        let payload = json!({"by": start.trainer, "exercises": EXERCISES});
                        match endpoint.broadcast_json(&format!("training_session:{id}"), "session:started", &payload).await {
                            Ok(()) => mount::json(StatusCode::OK, &json!({"started": id})),
                            Err(e) => mount::json(StatusCode::SERVICE_UNAVAILABLE, &json!({"error": e.to_string()})),
                        }
                    }
                    (Method::GET, p) => apps::static_file(p).unwrap_or_else(mount::not_found),
                    _ => mount::not_found(),
                }
            }
        });
        apps::serve("training_center", builder.http_service(pages)).await;
    });
}
