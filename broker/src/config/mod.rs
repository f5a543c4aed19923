//! Configuration: one place for every limit, each with its reason.
//!
//! Precedence for the standalone binary: built-in defaults < TOML file (`--config`) <
//! environment (`BROKER_*`) < command-line flags. See `broker.example.toml`.
//!
//! Every key can come from the environment ([`Config::load`]): `BROKER_<KEY>` for a top-level
//! key, `BROKER_<SECTION>__<KEY>` for one in a table (`BROKER_LIMITS__MAX_FRAME_SIZE=2000000`),
//! the value read as TOML (`true`, `["room:*", "lobby"]`) or else as text. The whole merged
//! table is then deserialized at once, so an unknown key or a wrong type is an error naming the
//! key and the file or variable it came from.
//!
//! The files: `file` (the [`Config`] itself: defaults, TOML, validation), `limits`
//! ([`Limits`], [`SocketLimits`]), `sections` (the standalone sections' setting types) and
//! `env` (the `BROKER_*` overlay and [`KeyError`]).

mod env;
mod file;
mod limits;
mod sections;

pub use env::{env_key, env_value, KeyError, ENV_NESTING, ENV_NOT_CONFIG, ENV_PREFIX};
pub use file::{Config, REDACTED};
pub use limits::{Limits, SocketLimits};
pub use sections::{ApiConfig, ChannelsConfig, CheckOriginSetting, EventMode, IdentityConfig, JoinMode, PresenceConfig, TopicPolicy};
