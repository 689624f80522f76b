//! Logs to stderr: human-readable lines, or one JSON object per line (`log.json`).
//! `RUST_LOG`, when set, wins over `log.level`.

use crate::config::Log;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

pub fn init(cfg: &Log) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(quiet_turn_crate(&f)).ok())
        .or_else(|| EnvFilter::try_new(quiet_turn_crate(&cfg.level)).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if cfg.json {
        b.json().try_init()
    } else {
        b.with_ansi(std::io::stderr().is_terminal()).try_init()
    };
}

/// The `turn` crate logs a line for every datagram it refuses (anyone can send some to a
/// relay port); the turnserver counts those on `/metrics` instead. Its logs stay off unless
/// the filter names it (e.g. `info,turn=debug`).
fn quiet_turn_crate(filter: &str) -> String {
    let named = filter
        .split(',')
        .any(|d| d.trim().starts_with("turn=") || d.trim().starts_with("turn::"));
    if named {
        filter.to_string()
    } else {
        format!("{filter},turn=off")
    }
}
