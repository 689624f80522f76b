//! The administrators' view of the appliance (part of issue 10):
//!
//! ```text
//! GET /api/v1/admin/overview → {generated_at, nodes: [...], meetings: [...], mail: {queued, failed, latest_failures}}
//! ```
//!
//! Only for signed-in people whose email is in `auth.admin_emails` (401 without a session,
//! 403 for everyone else). It only reads: the node registry (`nodes`, kept by the registry),
//! the open participations (the sfuserver closes them as people leave) and the mail outbox.
//!
//! - `nodes`: every registered server as the registry last wrote it.
//! - `meetings`: meetings someone is in right now, with how many. A participation counts
//!   while it has no `left_at` and began within `meetings.max_duration`: a row left open by a
//!   crash of its sfuserver stops counting then, as it does for guests' access to notes.
//! - `mail`: `queued` = not delivered yet; `failed` = of those, the ones whose last attempt
//!   failed (they are retried with back-off); `latest_failures` = the most recent of them, with
//!   the server's error. Message bodies are not shown (sign-in codes are in them).

use actix_web::{HttpResponse, web};
use sea_orm::{
    ColumnTrait, Condition, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

use super::ApiState;
use super::auth::AuthUser;
use crate::db::entities::{mail, meeting, node, participation, user};
use crate::error::ApiError;
use crate::util::now;

/// How many of the latest delivery failures the overview lists.
const FAILURES_SHOWN: u64 = 20;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/overview", web::get().to(overview));
}

/// Whether `email` is one of the configured administrators (case does not matter).
pub fn is_admin(st: &ApiState, email: &str) -> bool {
    st.cfg
        .auth
        .admin_emails
        .iter()
        .any(|a| a.trim().eq_ignore_ascii_case(email))
}

#[derive(Serialize)]
struct NodeView {
    id: String,
    role: String,
    address: String,
    capacity: i64,
    version: String,
    /// "up" or "down", as the registry recorded it.
    state: String,
    /// Load and capacity are in `unit`: "pkt/s" (sfuserver: forwarded RTP packets per second,
    /// for the whole box), "sessions" (turnserver allocations), "" (fsserver).
    load: i64,
    unit: &'static str,
    last_seen: i64,
}

#[derive(Serialize)]
struct LiveMeeting {
    id: i64,
    code: String,
    title: String,
    kind: String,
    status: String,
    owner_email: String,
    /// People in the meeting now (open participations).
    participants: u64,
    /// When the earliest of them joined.
    since: i64,
    sfu: Option<String>,
    turn: Option<String>,
    fs: Option<String>,
}

#[derive(Serialize)]
struct MailFailure {
    id: i64,
    recipient: String,
    subject: String,
    status: String,
    attempts: i32,
    last_error: String,
    next_attempt_at: i64,
    created_at: i64,
}

#[derive(Serialize)]
struct MailView {
    queued: u64,
    failed: u64,
    latest_failures: Vec<MailFailure>,
}

/// `GET /api/v1/admin/overview`
pub async fn overview(st: web::Data<ApiState>, me: AuthUser) -> Result<HttpResponse, ApiError> {
    if !is_admin(&st, &me.user.email) {
        return Err(ApiError::forbidden(
            "not_admin",
            "Only the appliance's administrators (auth.admin_emails) see this.",
        ));
    }
    let t = now();
    let nodes = node::Entity::find()
        .order_by_asc(node::Column::Role)
        .order_by_asc(node::Column::Id)
        .all(&st.db)
        .await?
        .into_iter()
        .map(|n| NodeView {
            unit: match n.role.as_str() {
                "sfuserver" => "pkt/s",
                "turnserver" => "sessions",
                _ => "",
            },
            id: n.id,
            role: n.role,
            address: n.address,
            capacity: n.capacity,
            version: n.version,

            state: n.state,
            load: n.load,
            last_seen: n.last_seen,
        })
        .collect::<Vec<_>>();
    let meetings = live_meetings(&st, t).await?;
    let mail = mail_view(&st).await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(serde_json::json!({
            "generated_at": t,
            "nodes": nodes,
            "meetings": meetings,
            "mail": mail,
        })))
}

async fn live_meetings(st: &ApiState, t: i64) -> Result<Vec<LiveMeeting>, ApiError> {
    let oldest = t - st.cfg.meetings.max_duration.as_secs_i64();
    let open: Vec<(i64, i64)> = participation::Entity::find()
        .select_only()
        .column(participation::Column::MeetingId)
        .column(participation::Column::JoinedAt)
        .filter(participation::Column::LeftAt.is_null())
        .filter(participation::Column::JoinedAt.gte(oldest))
        .into_tuple()
        .all(&st.db)
        .await?;
    // meeting id → (participants, earliest join)
    let mut live: BTreeMap<i64, (u64, i64)> = BTreeMap::new();
    for (m, joined) in open {
        let e = live.entry(m).or_insert((0, joined));
        e.0 += 1;
        e.1 = e.1.min(joined);
    }
    if live.is_empty() {
        return Ok(Vec::new());
    }
    let rows = meeting::Entity::find()
        .filter(meeting::Column::Id.is_in(live.keys().copied()))
        .all(&st.db)
        .await?;
    let owners: HashMap<i64, String> = user::Entity::find()
        .filter(user::Column::Id.is_in(rows.iter().map(|m| m.owner_id)))
        .all(&st.db)
        .await?
        .into_iter()
        .map(|u| (u.id, u.email))
        .collect();
    let mut out: Vec<LiveMeeting> = rows
        .into_iter()
        .filter_map(|m| {
            let (participants, since) = *live.get(&m.id)?;
            Some(LiveMeeting {
                owner_email: owners.get(&m.owner_id).cloned().unwrap_or_default(),
                id: m.id,
                code: m.code,
                title: m.title,
                kind: m.kind,
                status: m.status,
                participants,
                since,
                sfu: m.sfu,
                turn: m.turn,
                fs: m.fs,
            })
        })
        .collect();
    // Busiest first, then the longest running.
    out.sort_by(|a, b| {
        b.participants
            .cmp(&a.participants)
            .then(a.since.cmp(&b.since))
    });
    Ok(out)
}

/// Not delivered yet: waiting for (another) attempt.
fn undelivered() -> Condition {
    Condition::any()
        .add(mail::Column::Status.eq("pending"))
        .add(mail::Column::Status.eq("failed"))
}

async fn mail_view(st: &ApiState) -> Result<MailView, ApiError> {
    let queued = mail::Entity::find()
        .filter(undelivered())
        .count(&st.db)
        .await?;
    let failing = || {
        mail::Entity::find()
            .filter(undelivered())
            .filter(mail::Column::LastError.is_not_null())
    };
    let failed = failing().count(&st.db).await?;
    let latest_failures = failing()
        .order_by_desc(mail::Column::NextAttemptAt)
        .order_by_desc(mail::Column::Id)
        .limit(FAILURES_SHOWN)
        .all(&st.db)
        .await?
        .into_iter()
        .map(|m| MailFailure {
            id: m.id,
            recipient: m.recipient,
            subject: m.subject,
            status: m.status,
            attempts: m.attempts,
            last_error: m.last_error.unwrap_or_default(),
            next_attempt_at: m.next_attempt_at,
            created_at: m.created_at,
        })
        .collect();
    Ok(MailView {
        queued,
        failed,
        latest_failures,
    })
}
