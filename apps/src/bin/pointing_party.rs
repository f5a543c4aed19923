//! Pointing party: estimate tickets together.
//!
//! Log in with a name; the room shows who is present. "Start pointing" shows the first card to
//! everyone and makes the clicker the driver. Votes live in presence metas (everyone sees who
//! has voted); when the last present user has voted, everyone sees the winning points or the
//! tie. The driver's "Next card" is a `new_card` broadcast that every channel intercepts in
//! `handle_out` to clear its own user's vote before pushing the card on.
//!
//! `cargo run -p apps --bin pointing_party` → <http://127.0.0.1:4101/>

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use broker::mount::{self, Method};
use broker::{async_trait, Builder, Channel, ChannelContext, ConnectError, ConnectInfo, Continue, Join, Payload, Reply, Router, SocketHandler};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

const PAGE: &str = include_str!("../../static/pointing_party.html");
/// The points a card can get.
const POINTS: [u32; 6] = [1, 2, 3, 5, 8, 13];

/// The tickets to estimate, in order.
fn cards() -> Vec<Card> {
    [
        ("PP-1", "Log in with a name", "A user enters a name and sees who else is in the room."),
        ("PP-2", "Vote with presence", "Votes are presence metas: everyone sees who has voted."),
        ("PP-3", "Show the winner", "When the last user votes, everyone sees the winner or the tie."),
    ]
    .into_iter()
    .map(|(id, title, description)| Card { id: id.into(), title: title.into(), description: description.into() })
    .collect()
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Card {
    id: String,
    title: String,
    description: String,
}

/// Socket assigns (typed).
#[derive(Serialize, Deserialize)]
struct User {
    username: String,
}

/// A presence meta: this user's vote on the current card.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Vote {
    points: Option<u32>,
    /// The card the vote is for (a vote for an earlier card never counts).
    card: Option<String>,
}

/// `new_card`'s payload.
#[derive(Serialize, Deserialize)]
struct NewCard {
    card: Card,
    driver: String,
}

#[derive(Deserialize)]
struct Estimate {
    points: u32,
}

/// One room's game.
#[derive(Default)]
struct Room {
    current: Option<usize>,
    driver: Option<String>,
}

type Rooms = Arc<Mutex<HashMap<String, Room>>>;

struct Users;

#[async_trait]
impl SocketHandler for Users {
    async fn connect(&self, params: &Value, _info: &ConnectInfo) -> Result<Map<String, Value>, ConnectError> {
        let username = apps::param_str(params, "username", 32).ok_or(ConnectError::Forbidden)?;
        broker::assigns(&User { username })
    }
}

struct PointingChannel {
    rooms: Rooms,
    username: String,
}

impl PointingChannel {
    fn current(&self, topic: &str) -> Option<(Card, String)> {
        let rooms = self.rooms.lock().unwrap();
        let room = rooms.get(topic)?;
        Some((cards().get(room.current?)?.clone(), room.driver.clone()?))
    }

    /// When every present user has voted on the current card: the winner or the tie.
    async fn check_votes(&self, ctx: &ChannelContext) {
        let Some((card, _)) = self.current(ctx.topic()) else { return };
        let Ok(list) = ctx.presence_list_as::<Vote>().await else { return };
        let mut tally: BTreeMap<u32, usize> = BTreeMap::new();
        for metas in list.values() {
            // A user with several tabs votes once: any of their metas with a vote counts.
            match metas.iter().find_map(|v| v.points.filter(|_| v.card.as_deref() == Some(&card.id))) {
                Some(p) => *tally.entry(p).or_default() += 1,
                None => return, // someone has not voted yet
            }
        }
        let Some(best) = tally.values().copied().max() else { return };
        let top: Vec<u32> = tally.iter().filter(|(_, n)| **n == best).map(|(p, _)| *p).collect();
        let msg = if top.len() == 1 { ("winner", json!({"points": top[0], "card": card.id})) } else { ("tie", json!({"points": top, "card": card.id})) };
        let _ = ctx.broadcast(msg.0, Payload::json(&msg.1)).await;
    }
}

#[async_trait]
impl Channel for PointingChannel {
    fn intercepts(&self) -> Vec<String> {
        vec!["new_card".into()]
    }

    async fn join(&mut self, topic: &str, _params: Payload, ctx: &mut ChannelContext) -> Join {
        let Ok(user) = ctx.assigns_as::<User>() else { return Join::error(json!({"reason": "unauthorized"})) };
        self.username = user.username;
        match self.current(topic) {
            Some((card, driver)) => Join::ok_with(json!({"card": card, "driver": driver})),
            None => Join::ok_with(json!({"card": null, "driver": null})),
        }
    }

    async fn after_join(&mut self, ctx: &mut ChannelContext) -> Continue {
        let _ = ctx.track_as(&self.username.clone(), &Vote::default()).await;
        let _ = ctx.push_presence_state().await;
        Continue::Continue
    }

    async fn handle_in(&mut self, event: &str, payload: Payload, ctx: &mut ChannelContext) -> Reply {
        match event {
            "start_pointing" | "next_card" => {
                let next = {
                    let mut rooms = self.rooms.lock().unwrap();
                    let room = rooms.entry(ctx.topic().to_owned()).or_default();
                    if event == "next_card" && room.driver.as_deref() != Some(&self.username) {
                        return Reply::error(json!({"reason": "only the driver deals the next card"}));
                    }
                    let next = match (event, room.current) {
                        ("next_card", Some(i)) => i + 1,
                        _ => 0,
                    };
                    room.current = Some(next);
                    room.driver = Some(self.username.clone());
                    cards().get(next).cloned()
                };
                match next {
                    Some(card) => {
                        let _ = ctx.broadcast("new_card", Payload::encode(&NewCard { card, driver: self.username.clone() })).await;
                    }
                    None => {
                        let _ = ctx.broadcast("finished", Payload::empty_object()).await;
                    }
                }
                Reply::ok()
            }
            "user_estimated" => {
                let Ok(Estimate { points }) = payload.decode() else { return Reply::error(json!({"reason": "points must be a number"})) };
                if !POINTS.contains(&points) {
                    return Reply::error(json!({"reason": "not a card value"}));
                }
                let Some((card, _)) = self.current(ctx.topic()) else { return Reply::error(json!({"reason": "no card"})) };
                let key = self.username.clone();
                if let Err(e) = ctx.update_presence_with(&key, |v: &mut Vote| *v = Vote { points: Some(points), card: Some(card.id) }).await {
                    return Reply::error(json!({"reason": e.reason()}));
                }
                self.check_votes(ctx).await;
                Reply::ok()
            }
            _ => Reply::error(json!({"reason": "unknown event"})),
        }
    }

    /// Every subscriber's channel sees `new_card` first: it clears its own user's vote, then
    /// pushes the card on.
    async fn handle_out(&mut self, event: &str, payload: &Payload, ctx: &mut ChannelContext) -> Continue {
        if event == "new_card" {
            let key = self.username.clone();
            let _ = ctx.update_presence_with(&key, |v: &mut Vote| *v = Vote::default()).await;
        }
        let _ = ctx.push(event, payload.clone());
        Continue::Continue
    }
}

fn main() {
    apps::init_logging();
    let opts = apps::Opts::parse("pointing_party", 4101);
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    rt.block_on(async move {
        let rooms: Rooms = Arc::default();
        let router = Router::new().channel("room:*", move |_topic| PointingChannel { rooms: rooms.clone(), username: String::new() });
        let pages = mount::service(|req| async move {
            match (req.method(), req.uri().path()) {
                (&Method::GET, "/") => mount::html(PAGE),
                (&Method::GET, path) => apps::static_file(path).unwrap_or_else(mount::not_found),
                _ => mount::not_found(),
            }
        });
        let builder = Builder::new(opts.config()).router(router).socket_handler(Users).http_service(pages);
        apps::serve("pointing_party", builder).await;
    });
}
