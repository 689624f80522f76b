//! What the built-in allocator remembers across restarts: reservations, owners' seats and the
//! servers it provisions. One serde document, saved whole after every change (by `store`), so
//! a restart resumes exactly where it stopped. All times are unix seconds.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The persisted document. `version` lets a later format migrate an older one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    /// Source of reservation ids and server names; never reused.
    pub seq: u64,
    /// Scheduled meetings' sfuservers: dedicated pool servers and on-demand ones.
    pub reservations: Vec<Reservation>,
    /// Instant meetings: which sfuserver each owner has (by email).
    pub seats: BTreeMap<String, Seat>,
    /// Servers made by the provisioning commands, by name.
    pub servers: BTreeMap<String, Server>,
    /// Server-hours per UTC day (days since the epoch) of records already pruned.
    pub archive: BTreeMap<i64, DayHours>,
}

pub const STATE_VERSION: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationKind {
    /// A pool server shared with other meetings (recorded to spread meetings and report).
    Shared,
    /// A pool server held for this meeting alone.
    Dedicated,
    /// A server created for this meeting (`server` names it).
    OnDemand,
}

/// One scheduled meeting's sfuserver, held for `[from, until)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reservation {
    pub id: u64,
    pub kind: ReservationKind,
    pub email: String,
    pub begin_at: i64,
    pub end_at: i64,
    /// `begin_at - lead` and `end_at + lag`.
    pub from: i64,
    pub until: i64,
    /// The address handed out.
    pub sfu: String,
    /// On demand: the provisioned server's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    pub made_at: i64,
}

impl Reservation {
    pub fn overlaps(&self, from: i64, until: i64) -> bool {
        self.from < until && from < self.until
    }
}

/// An instant-meeting owner's sfuserver.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Seat {
    /// Shared: the pool server's address. On demand: filled once the server is up.
    pub sfu: String,
    /// On demand: the owner's server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    pub since: i64,
    pub last_used: i64,
}

/// Where a provisioned server is in its life. Persisted: `Creating` and `Deleting` mean the
/// command was started and may not have finished, so after a restart it is run again (the
/// commands are idempotent by name).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Waiting for `create_at`.
    Planned,
    Creating,
    /// Created; not yet registered with the node registry nor answering `/healthz`.
    Starting,
    Up,
    Deleting,
    Deleted,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "for")]
pub enum Purpose {
    /// A scheduled meeting (reservation id); deleted at `delete_at`.
    Scheduled { reservation: u64 },
    /// An owner's instant meetings; deleted after `idle` without use.
    Instant { email: String },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Server {
    pub name: String,
    pub purpose: Purpose,
    pub phase: Phase,
    /// Known from `provision.address` at once, or from the create command's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    pub create_at: i64,
    /// Scheduled: end + lag. Instant: none (idle decides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_at: Option<i64>,
    pub last_used: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub up_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<i64>,
    /// Failed tries of the current command, and when the next one may run.
    pub attempts: u32,
    pub next_try: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Server-hours of one UTC day.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DayHours {
    /// On-demand servers that existed (created → deleted).
    pub on_demand: f64,
    /// Dedicated pool servers reserved for meetings (lead and lag included).
    pub reserved: f64,
}
