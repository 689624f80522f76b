//! Allocation messages (see the module doc of `proto`).

use actix::Message;
use serde::{Deserialize, Serialize};

/// Ask for an sfuserver and a turnserver for a meeting. `begin_at`/`end_at` are unix seconds;
/// both 0 for an instant meeting (the seed's `BeginAt=0&EndAt=0`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Message)]
#[rtype(result = "Result<ServerAssignment, AllocationError>")]
pub struct AllocateServers {
    pub email: String,
    pub begin_at: i64,
    pub end_at: i64,
}

/// The seed's answer body: `{"sfu": "host:port", "turn": "host:port"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerAssignment {
    pub sfu: String,
    pub turn: String,
}

/// Ask for a file server for someone's notes files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Message)]
#[rtype(result = "Result<FsAssignment, AllocationError>")]
pub struct AllocateFileServer {
    pub email: String,
}

/// The seed's answer body: `{"fs": "host:port"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsAssignment {
    pub fs: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AllocationError {
    /// No capacity right now (the seed's non-200); the user is asked to retry shortly.
    #[error("no server is free right now: {0}")]
    NotReady(String),
    /// The allocator could not be reached or answered garbage; also retryable for the user,
    /// but the admin must look at the log.
    #[error("the allocator failed: {0}")]
    Failed(String),
}
