//! meeting-appliance: self-hosted video meetings in one binary.
//!
//! ```text
//!  main.rs ─ cli ─ config ──► node ─────────────── starts this process's roles, each as
//!                             │  settings           start(settings, bound sockets, shutdown);
//!                             │  wiring             one Registrar: the registry here, or the
//!                             ▼                     bridge to the apiserver on another host
//!   roles/apiserver ◄── bridge (WebSocket, MAC'd hello) ──► roles/{sfuserver,turnserver,fsserver}
//!     auth/ notes/ meetings   any proto message, tagged;     sfuserver: core/ (sans-IO SFU,
//!     registry (nodes) mail   retries: client, remote        simulcast, lobby, chat),
//!     web (embedded web/dist)     │                            worker (sockets, timers),
//!          │                      │                            signal (WebSocket)
//!          ▼                      ▼                          turnserver: guard, relay
//!   roles/allocateserver      proto/ ─ the only types roles share: signaling (signal.rs),
//!     built in, or the seed's      room control, node registry, allocation, file grants
//!     HTTP protocol
//!
//!   db/        entities, models (one function per query or rule), migrations
//!   listen     sockets handed over (systemd socket activation)    shutdown  one stop signal
//!   tokens     keys from the deployment secret, signed tokens, the one MAC
//!   ws         the WebSocket session shape (limits, keepalive, close)
//!   ratelimit  keyed limits and the token bucket     tls/  certificates, ACME
//!   health, metrics, logging, load, backup, preflight, loadtest (the load generator)
//! ```
//!
//! Media packets never pass through an actor mailbox: the sfuserver's workers own their
//! sockets; actors carry control only. ARCHITECTURE.md has the contracts.

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
