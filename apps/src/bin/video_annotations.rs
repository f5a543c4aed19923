//! Video annotations: viewers of `videos:<id>` annotate the video at its current time.
//!
//! Sockets are authenticated by a Phoenix.Token issued at login. Annotations are kept in
//! SQLite with their user (the verified identity) and video time. The join reply carries the
//! annotations after the client's `last_seen_id`; phoenix.js re-evaluates the join params (a
//! closure) on every rejoin, so a reconnect after a restart of the app sends nothing twice.
//! The page plays the annotations against a timeline; presence lists the viewers with their
//! connection counts (the length of their metas).
//!
//! `cargo run -p apps --bin video_annotations [-- --db annotations.db]` → <http://127.0.0.1:4104/>

use std::sync::{Arc, Mutex};

use broker::{async_trait, Channel, ChannelContext, Continue, Join, Payload, Reply, Router};
use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};
use serde_json::json;

const PAGE: &str = include_str!("../../static/video_annotations.html");
/// The demo video's length (ms): annotations must fall inside it.
const VIDEO_MS: i64 = 60_000;

#[derive(Clone, Debug, Serialize)]
struct Annotation {
    id: i64,
    user: String,
    body: String,
    at: i64,
}

/// The annotations store: one SQLite connection, used off the async threads.
#[derive(Clone)]
struct Db(Arc<Mutex<Connection>>);

impl Db {
    fn open(path: &str) -> rusqlite::Result<Db> {
        let conn = Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE IF NOT EXISTS annotations (
               id INTEGER PRIMARY KEY AUTOINCREMENT,
               video_id TEXT NOT NULL,
               user_id TEXT NOT NULL,
               body TEXT NOT NULL,
               at_ms INTEGER NOT NULL,
               inserted_at INTEGER NOT NULL DEFAULT (strftime('%s','now'))
             );
             CREATE INDEX IF NOT EXISTS annotations_video ON annotations (video_id, id);",
        )?;
        Ok(Db(Arc::new(Mutex::new(conn))))
    }

    async fn run<T: Send + 'static>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static) -> rusqlite::Result<T> {
        let conn = self.0.clone();
        tokio::task::spawn_blocking(move || f(&conn.lock().unwrap_or_else(|e| e.into_inner()))).await.expect("db task")
    }

    async fn after(&self, video: String, last_seen_id: i64) -> rusqlite::Result<Vec<Annotation>> {
        self.run(move |c| {
            let mut q = c.prepare("SELECT id, user_id, body, at_ms FROM annotations WHERE video_id = ?1 AND id > ?2 ORDER BY id LIMIT 1000")?;
            let rows = q.query_map(params![video, last_seen_id], |r| Ok(Annotation { id: r.get(0)?, user: r.get(1)?, body: r.get(2)?, at: r.get(3)? }))?;
            rows.collect()
        })
        .await
    }

    async fn insert(&self, video: String, user: String, body: String, at: i64) -> rusqlite::Result<Annotation> {
        self.run(move |c| {
            c.execute("INSERT INTO annotations (video_id, user_id, body, at_ms) VALUES (?1, ?2, ?3, ?4)", params![video, user, body, at])?;
            Ok(Annotation { id: c.last_insert_rowid(), user, body, at })
        })
        .await
    }
}

#[derive(Deserialize, Default)]
struct JoinParams {
    #[serde(default)]
    last_seen_id: i64,
}

#[derive(Deserialize)]
struct NewAnnotation {
    body: String,
    at: i64,
}

/// Presence meta: one per connection.
#[derive(Serialize, Deserialize)]
struct Viewer {
    online_at: u64,
}

struct VideoChannel {
    db: Db,
    video: String,
    user: String,
}

#[async_trait]
impl Channel for VideoChannel {
    async fn join(&mut self, topic: &str, params: Payload, ctx: &mut ChannelContext) -> Join {
        let Ok(v) = ctx.assigns_as::<apps::Verified>() else { return Join::error(json!({"reason": "unauthorized"})) };
        self.user = v.user_id;
        self.video = topic.trim_start_matches("videos:").to_owned();
        let JoinParams { last_seen_id } = params.decode().unwrap_or_default();
        match self.db.after(self.video.clone(), last_seen_id).await {
            Ok(annotations) => Join::ok_with(json!({"annotations": annotations})),
            Err(e) => {
                tracing::error!("annotations of {}: {e}", self.video);
                Join::error(json!({"reason": "storage unavailable"}))
            }
        }
    }

    async fn after_join(&mut self, ctx: &mut ChannelContext) -> Continue {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let _ = ctx.track_as(&self.user.clone(), &Viewer { online_at: now }).await;
        let _ = ctx.push_presence_state().await;
        Continue::Continue
    }

    async fn handle_in(&mut self, event: &str, payload: Payload, ctx: &mut ChannelContext) -> Reply {
        match event {
            "new_annotation" => {
                let Ok(NewAnnotation { body, at }) = payload.decode() else { return Reply::error(json!({"reason": "bad payload"})) };
                let body = body.trim().to_owned();
                if body.is_empty() || body.len() > 500 || !(0..=VIDEO_MS).contains(&at) {
                    return Reply::error(json!({"reason": "an annotation needs a body (≤ 500 bytes) and a time inside the video"}));
                }
                match self.db.insert(self.video.clone(), self.user.clone(), body, at).await {
                    Ok(a) => {
                        let _ = ctx.broadcast("new_annotation", Payload::encode(&a)).await;
                        Reply::ok_with(json!({"id": a.id}))
                    }
                    Err(e) => {
                        tracing::error!("insert: {e}");
                        Reply::error(json!({"reason": "storage unavailable"}))
                    }
                }
            }
            _ => Reply::error(json!({"reason": "unknown event"})),
        }
    }
}

fn main() {
    apps::init_logging();
    let opts = apps::Opts::parse("video_annotations", 4104);
    let path = opts.db.clone().unwrap_or_else(|| "video_annotations.db".into());
    let db = Db::open(&path).unwrap_or_else(|e| {
        eprintln!("video_annotations: cannot open {path}: {e}");
        std::process::exit(1);
    });
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    rt.block_on(async move {
        let router = Router::new().channel("videos:*", move |_| VideoChannel { db: db.clone(), video: String::new(), user: String::new() });
        apps::serve_with_login("video_annotations", &opts, router, PAGE).await;
    });
}
