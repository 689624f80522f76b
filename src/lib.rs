//! meeting-appliance: self-hosted video meetings in one binary.
//!
//! Layout (ARCHITECTURE.md section 7): `cli` and `config` turn flags, environment and file
//! into one typed `Config`; `node` starts the actix System and the roles of this process and
//! wires them (`node::wiring`, the single local-or-remote decision); `roles/*` are the five
//! roles, which share nothing but the messages in `proto`; `db` is the database; `tokens`
//! derives per-purpose keys from the deployment secret and makes and checks tokens.

pub mod backup;
pub mod bridge;
pub mod cli;
pub mod config;
pub mod db;
pub mod error;
pub mod health;
pub mod ids;
pub mod listen;
pub mod load;
pub mod loadtest;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod preflight;
pub mod proto;
pub mod ratelimit;
pub mod roles;
pub mod shutdown;
pub mod tls;
pub mod tokens;
pub mod util;
pub mod ws;
