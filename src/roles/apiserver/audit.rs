//! The audit log: sign-ins (method, client IP, result), administrators' actions (disable,
//! enable, revoke sessions) and hosts' actions (mute, remove, lock, unlock, end), kept in the
//! `audit_log` table for `audit.retention`, shown to administrators and exported as JSON lines.
//!
//! ```text
//! GET /api/v1/admin/audit?limit=100&before=<id>&action=sign_in&q=<text>  → {entries, next_before}
//! GET /api/v1/admin/audit/export?since=<unix>&until=<unix>                → application/x-ndjson
//! ```
//! (the handlers are in `admin.rs`).
//!
//! Writing an entry never fails the action it records: a database error is logged. Failures
//! that anyone can cause without an account (wrong passwords, forged OIDC callbacks) are
//! recorded at most [`FAILURES_PER_MINUTE`] per client IP and minute, so nobody can grow the
//! table without bound by hammering a sign-in endpoint; the first entry after a pause says how
//! many were left out.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use std::collections::HashMap;
use std::sync::Mutex;

use super::ApiState;
use crate::config::AuthMethod;
use crate::db::entities::audit;
use crate::util::now;

impl ApiState {
    /// Writes an audit entry (see [`record`]).
    pub async fn audit(&self, e: Entry) {
        record(&self.db, &self.sso.audit, e).await;
    }
}

/// Failure entries written per client IP and minute; the rest are counted, not written.
pub const FAILURES_PER_MINUTE: u32 = 20;
/// Client IPs the limiter remembers at once (older ones are forgotten first).
const LIMITER_CAPACITY: usize = 10_000;

/// How an action ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Wrong credentials, a forged or replayed request, a provider's "no".
    Failed,
    /// Not allowed (a disabled account, a method that is off).
    Refused,
    /// Too many attempts: refused without checking.
    Throttled,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Refused => "refused",
            Outcome::Throttled => "throttled",
        }
    }
}

/// One entry to write.
#[derive(Clone, Debug)]
pub struct Entry {
    pub action: &'static str,
    pub outcome: Outcome,
    pub method: Option<AuthMethod>,
    pub ip: Option<String>,
    pub actor_id: Option<i64>,
    pub actor: String,
    pub target: String,
    pub meeting_id: Option<i64>,
    pub detail: String,
}

impl Entry {
    pub fn new(action: &'static str, outcome: Outcome) -> Entry {
        Entry {
            action,
            outcome,
            method: None,
            ip: None,
            actor_id: None,
            actor: String::new(),
            target: String::new(),
            meeting_id: None,
            detail: String::new(),
        }
    }
    pub fn method(mut self, m: AuthMethod) -> Self {
        self.method = Some(m);
        self
    }
    pub fn ip(mut self, ip: impl Into<String>) -> Self {
        self.ip = Some(ip.into());
        self
    }
    pub fn actor(mut self, id: Option<i64>, who: impl Into<String>) -> Self {
        self.actor_id = id;
        self.actor = who.into();
        self
    }
    pub fn target(mut self, t: impl Into<String>) -> Self {
        self.target = t.into();
        self
    }
    pub fn meeting(mut self, id: i64) -> Self {
        self.meeting_id = Some(id);
        self
    }
    pub fn detail(mut self, d: impl Into<String>) -> Self {
        self.detail = d.into();
        self
    }
}

/// Action names, so the admin page and the export can be filtered on stable strings.
pub mod action {
    pub const SIGN_IN: &str = "sign_in";
    pub const SIGN_OUT: &str = "sign_out";
    /// The identity provider no longer vouches for someone: their access ended.
    pub const SESSION_ENDED: &str = "session.ended_by_provider";
    pub const DISABLE_USER: &str = "admin.disable_user";
    pub const ENABLE_USER: &str = "admin.enable_user";
    pub const REVOKE_SESSIONS: &str = "admin.revoke_sessions";
    pub const EXPORT_AUDIT: &str = "admin.export_audit";
    pub const HOST_MUTE: &str = "host.mute";
    pub const HOST_REMOVE: &str = "host.remove";
    pub const HOST_LOCK: &str = "host.lock";
    pub const HOST_UNLOCK: &str = "host.unlock";
    pub const HOST_END: &str = "host.end";
    pub const HOST_MUTE_ALL: &str = "host.mute_all";
    pub const HOST_ASK_UNMUTE: &str = "host.ask_unmute";
    pub const HOST_LOWER_HANDS: &str = "host.lower_hands";
    pub const HOST_ADMIT: &str = "host.admit";
    pub const HOST_DENY: &str = "host.deny";
    pub const HOST_SET_ROLE: &str = "host.set_role";
    pub const HOST_PERMISSIONS: &str = "host.permissions";
    pub const MEETING_SETTINGS: &str = "meeting.settings";
}

/// Per client IP: failure entries written in the current minute, and those left out.
#[derive(Default)]
pub struct Limiter {
    by_ip: Mutex<HashMap<String, (i64, u32, u32)>>,
}

impl Limiter {
    /// `Some(n)` when this failure is to be written (`n` were left out before it), `None` when
    /// it is over the budget.
    fn admit(&self, ip: &str, t: i64) -> Option<u32> {
        let mut map = self
            .by_ip
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let minute = t / 60;
        if map.len() >= LIMITER_CAPACITY && !map.contains_key(ip) {
            map.retain(|_, (m, _, _)| *m == minute);
            if map.len() >= LIMITER_CAPACITY {
                map.clear();
            }
        }
        let e = map.entry(ip.to_string()).or_insert((minute, 0, 0));
        if e.0 != minute {
            e.0 = minute;
            e.1 = 0;
        }
        if e.1 >= FAILURES_PER_MINUTE {
            e.2 += 1;
            return None;
        }
        e.1 += 1;
        Some(std::mem::take(&mut e.2))
    }
}

/// Writes `e`; failures are limited per client IP (see the module doc). Never fails.
pub async fn record(db: &DatabaseConnection, limiter: &Limiter, mut e: Entry) {
    let t = now();
    if e.outcome != Outcome::Ok
        && let Some(ip) = e.ip.clone()
    {
        match limiter.admit(&ip, t) {
            None => return,
            Some(0) => {}
            Some(n) => {
                e.detail = format!(
                    "{} ({n} similar failures from this address were not recorded)",
                    e.detail
                );
            }
        }
    }
    let clip = |s: String, n: usize| -> String {
        if s.len() <= n {
            return s;
        }
        let mut end = n;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s[..end].to_string()
    };
    let row = audit::ActiveModel {
        at: Set(t),
        action: Set(e.action.to_string()),
        result: Set(e.outcome.name().to_string()),
        method: Set(e.method),
        ip: Set(e.ip.map(|s| clip(s, 64))),
        actor_id: Set(e.actor_id),
        actor: Set(clip(e.actor, 254)),
        target: Set(clip(e.target, 254)),
        meeting_id: Set(e.meeting_id),
        detail: Set(clip(e.detail, 1000)),
        ..Default::default()
    };
    if let Err(err) = row.insert(db).await {
        tracing::error!(error = %err, action = e.action, "writing the audit log failed");
    }
}

/// Records a host's action on their meeting (`POST /api/v1/meetings/{id}/control`) and how
/// the meeting's sfuserver answered.
pub async fn host_action(
    st: &ApiState,
    me: &super::auth::AuthUser,
    m: &crate::db::entities::meeting::Model,
    a: &crate::proto::RoomAction,
    result: &Result<Result<(), super::registry::ControlError>, actix::MailboxError>,
) {
    let (name, pid) = action_name(a);
    let target = match pid {
        Some(p) => {
            format!("{} ({})", display_name(&st.db, m.id, p).await, p.0)
        }
        None => format!("meeting {}", m.code),
    };
    let (outcome, detail) = match result {
        Ok(Ok(())) => (Outcome::Ok, String::new()),
        Ok(Err(super::registry::ControlError::Refused(why))) => (Outcome::Failed, why.to_string()),
        Ok(Err(super::registry::ControlError::Unreachable(why))) => {
            (Outcome::Failed, format!("sfuserver unreachable: {why}"))
        }
        Err(e) => (Outcome::Failed, format!("node registry: {e}")),
    };
    st.audit(
        Entry::new(name, outcome)
            .method(me.method)
            .actor(Some(me.user.id), me.user.email.clone())
            .target(target)
            .meeting(m.id)
            .detail(detail),
    )
    .await;
}

/// Deletes entries older than `retention_secs`.
pub async fn prune(db: &DatabaseConnection, retention_secs: i64) -> Result<u64, sea_orm::DbErr> {
    let r = audit::Entity::delete_many()
        .filter(audit::Column::At.lt(now() - retention_secs))
        .exec(db)
        .await?;
    Ok(r.rows_affected)
}

/// One entry as the admin page and the export show it: the row itself.
pub type View = audit::Model;

/// What the admin page asks for.
#[derive(Default)]
pub struct Filter {
    /// Entries with an id below this (paging back in time).
    pub before: Option<i64>,
    /// An action, or a prefix of one ending in '.' ("host.").
    pub action: Option<String>,
    /// Text in the actor, target, IP or detail.
    pub text: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
}

fn condition(f: &Filter) -> Condition {
    let mut c = Condition::all();
    if let Some(b) = f.before {
        c = c.add(audit::Column::Id.lt(b));
    }
    if let Some(a) = &f.action {
        c = if a.ends_with('.') {
            c.add(audit::Column::Action.starts_with(a.as_str()))
        } else {
            c.add(audit::Column::Action.eq(a.as_str()))
        };
    }
    if let Some(q) = &f.text {
        c = c.add(
            Condition::any()
                .add(audit::Column::Actor.contains(q.as_str()))
                .add(audit::Column::Target.contains(q.as_str()))
                .add(audit::Column::Ip.contains(q.as_str()))
                .add(audit::Column::Detail.contains(q.as_str())),
        );
    }
    if let Some(s) = f.since {
        c = c.add(audit::Column::At.gte(s));
    }
    if let Some(u) = f.until {
        c = c.add(audit::Column::At.lt(u));
    }
    c
}

/// The newest `limit` entries matching `f`, newest first.
pub async fn newest(
    db: &DatabaseConnection,
    f: &Filter,
    limit: u64,
) -> Result<Vec<View>, sea_orm::DbErr> {
    audit::Entity::find()
        .filter(condition(f))
        .order_by_desc(audit::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

/// Up to `limit` entries matching `f` with an id above `after`, oldest first (the export).
pub async fn page_after(
    db: &DatabaseConnection,
    f: &Filter,
    after: i64,
    limit: u64,
) -> Result<Vec<View>, sea_orm::DbErr> {
    audit::Entity::find()
        .filter(condition(f))
        .filter(audit::Column::Id.gt(after))
        .order_by_asc(audit::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

/// The name participant `p` joined meeting `meeting` with ("" when it cannot be read: the
/// audit entry is written anyway).
async fn display_name(
    db: &DatabaseConnection,
    meeting: i64,
    p: &crate::ids::ParticipantId,
) -> String {
    crate::db::models::participation::by_participant(db, meeting, &p.0)
        .await
        .ok()
        .flatten()
        .map(|r| r.display_name)
        .unwrap_or_default()
}

/// A host action taken in the meeting over signaling, as the sfuserver reported it: the
/// actor is the participant (a guest made host has no account).
pub async fn host_acted(db: &DatabaseConnection, limiter: &Limiter, h: &crate::proto::HostActed) {
    let (name, pid) = action_name(&h.action);
    let target = match pid {
        Some(p) => {
            format!("{} ({})", display_name(db, h.meeting.0, p).await, p.0)
        }
        None => format!("meeting {}", h.meeting.0),
    };
    let (outcome, detail) = match &h.refused {
        None => (Outcome::Ok, "in the meeting".to_string()),
        Some(why) => (Outcome::Failed, why.clone()),
    };
    record(
        db,
        limiter,
        Entry::new(name, outcome)
            .actor(None, format!("{} ({})", h.by_name, h.by.0))
            .target(target)
            .meeting(h.meeting.0)
            .detail(detail),
    )
    .await;
}

/// The audit action name of a host action, and whom it concerns.
fn action_name(a: &crate::proto::RoomAction) -> (&'static str, Option<&crate::ids::ParticipantId>) {
    use crate::proto::RoomAction;
    match a {
        RoomAction::Mute { participant_id } => (action::HOST_MUTE, Some(participant_id)),
        RoomAction::Remove { participant_id } => (action::HOST_REMOVE, Some(participant_id)),
        RoomAction::Lock => (action::HOST_LOCK, None),
        RoomAction::Unlock => (action::HOST_UNLOCK, None),
        RoomAction::End => (action::HOST_END, None),
        RoomAction::MuteAll => (action::HOST_MUTE_ALL, None),
        RoomAction::AskUnmute => (action::HOST_ASK_UNMUTE, None),
        RoomAction::LowerHands => (action::HOST_LOWER_HANDS, None),
        RoomAction::LowerHand { participant_id } => {
            (action::HOST_LOWER_HANDS, Some(participant_id))
        }
        RoomAction::Admit { participant_id } => (action::HOST_ADMIT, participant_id.as_ref()),
        RoomAction::Deny { participant_id, .. } => (action::HOST_DENY, participant_id.as_ref()),
        RoomAction::SetRole { participant_id, .. } => (action::HOST_SET_ROLE, Some(participant_id)),
        RoomAction::Permissions { .. } => (action::HOST_PERMISSIONS, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_limited_per_ip_and_minute() {
        let l = Limiter::default();
        let t = 6_000_000;
        for _ in 0..FAILURES_PER_MINUTE {
            assert_eq!(l.admit("10.0.0.1", t), Some(0));
        }
        assert_eq!(l.admit("10.0.0.1", t + 1), None);
        assert_eq!(l.admit("10.0.0.1", t + 2), None);
        // Another address is not affected.
        assert_eq!(l.admit("10.0.0.2", t), Some(0));
        // The next minute: written again, saying how many were left out.
        assert_eq!(l.admit("10.0.0.1", t + 60), Some(2));
        assert_eq!(l.admit("10.0.0.1", t + 61), Some(0));
    }

    #[test]
    fn the_limiter_stays_bounded() {
        let l = Limiter::default();
        for i in 0..(LIMITER_CAPACITY + 50) {
            let _ = l.admit(&format!("ip{i}"), 60);
        }
        let n = l.by_ip.lock().map(|m| m.len()).unwrap_or(0);
        assert!(n <= LIMITER_CAPACITY, "{n}");
    }
}
