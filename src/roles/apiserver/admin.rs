//! The administrators' view of the appliance:
//!
//! ```text
//! GET /api/v1/admin/overview → {generated_at, nodes: [...], meetings: [...], mail: {queued, failed, given_up, latest_failures}}
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
//! - `mail`: `queued` = not delivered yet; `failed` = mail that failed: still retried after an
//!   error, or given up; `given_up` = of those, given up for good (a permanent refusal, or
//!   `mail.max_attempts` tries); `latest_failures` = the most recent failed, with the server's
//!   error and status (`pending` or `failed`). Bodies are never shown (and
//!   are purged once a mail is sent or given up).

use actix_web::{HttpResponse, web};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

use super::ApiState;
use super::auth::AuthUser;
use crate::db::entities::user;
use crate::db::models;
use crate::error::ApiError;
use crate::util::now;

/// How many of the latest delivery failures the overview lists.
const FAILURES_SHOWN: u64 = 20;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/overview", web::get().to(overview));
    users_routes(cfg);
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
    /// As the registry recorded it.
    state: crate::db::entities::node::State,
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
    kind: crate::db::entities::meeting::Kind,
    status: crate::db::entities::meeting::Status,
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
    status: crate::db::entities::mail::Status,
    attempts: i32,
    last_error: String,
    next_attempt_at: i64,
    created_at: i64,
}

#[derive(Serialize)]
struct MailView {
    queued: u64,
    failed: u64,
    given_up: u64,
    latest_failures: Vec<MailFailure>,
}

/// `GET /api/v1/admin/overview`
pub async fn overview(st: web::Data<ApiState>, me: AuthUser) -> Result<HttpResponse, ApiError> {
    require_admin(&me)?;
    let t = now();
    let nodes = models::node::all(&st.db)
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
    let open = models::participation::present_since(&st.db, oldest).await?;
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
    let rows = models::meeting::by_ids(&st.db, live.keys().copied()).await?;
    let owners = models::user::emails_of(&st.db, rows.iter().map(|m| m.owner_id)).await?;
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

async fn mail_view(st: &ApiState) -> Result<MailView, ApiError> {
    let counts = models::mail::counts(&st.db).await?;
    let latest_failures = models::mail::latest_troubled(&st.db, FAILURES_SHOWN)
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
        queued: counts.queued,
        failed: counts.troubled,
        given_up: counts.given_up,
        latest_failures,
    })
}

// ---- People and the audit log --------------------------------------------------------
//
// GET  /api/v1/admin/users?q=&limit=          → {users: [...]} (most recent sign-in first)
// POST /api/v1/admin/users/{id}/disable       → the account cannot sign in; every session is
//                                               revoked and their meeting connections closed
// POST /api/v1/admin/users/{id}/enable        → allowed again (also lifts a provider's block)
// POST /api/v1/admin/users/{id}/revoke        → every session revoked, connections closed;
//                                               they may sign in again
// GET  /api/v1/admin/audit?limit=&before=&action=&q=   → {entries, next_before}
// GET  /api/v1/admin/audit/export?since=&until=&action= → JSON lines, oldest first

use super::audit::{self, Entry, Outcome, action};
use super::client_ip;
use actix_web::HttpRequest;
use sea_orm::ActiveModelTrait;

fn users_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/users", web::get().to(users))
        .route("/admin/users/{id}/disable", web::post().to(disable_user))
        .route("/admin/users/{id}/enable", web::post().to(enable_user))
        .route("/admin/users/{id}/revoke", web::post().to(revoke_sessions))
        .route("/admin/audit", web::get().to(audit_view))
        .route("/admin/audit/export", web::get().to(audit_export));
}

/// 403 unless `me` is an administrator (`auth.admin_emails` or a provider's admin group).
fn require_admin(me: &AuthUser) -> Result<(), ApiError> {
    if me.admin {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "not_admin",
            "Only the appliance's administrators (auth.admin_emails) see this.",
        ))
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersQuery {
    q: Option<String>,
    limit: Option<u64>,
}

/// Per user: live sessions, their methods, and (created_at, ip) of the newest.
type LiveSessions = HashMap<
    i64,
    (
        u64,
        Vec<crate::config::AuthMethod>,
        Option<(i64, Option<String>)>,
    ),
>;

#[derive(Serialize)]
struct UserRow {
    id: i64,
    email: String,
    display_name: String,
    created_at: i64,
    last_login_at: i64,
    disabled_at: Option<i64>,
    idp_disabled_at: Option<i64>,
    /// Sessions that work now.
    sessions: u64,
    /// Their methods ("email_code", "oidc", "ldap"), and where the latest came from.
    methods: Vec<crate::config::AuthMethod>,
    last_ip: Option<String>,
}

/// `GET /api/v1/admin/users`
async fn users(
    st: web::Data<ApiState>,
    me: AuthUser,
    q: web::Query<UsersQuery>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&me)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let text = q.q.as_deref().map(str::trim).filter(|t| !t.is_empty());
    let people = models::user::search(&st.db, text, limit).await?;
    let t = now();
    let mut live: LiveSessions = HashMap::new();
    for s in models::session::live_of(&st.db, people.iter().map(|u| u.id), t).await? {
        let e = live.entry(s.user_id).or_default();
        e.0 += 1;
        if !e.1.contains(&s.method) {
            e.1.push(s.method);
        }
        if e.2.as_ref().is_none_or(|(at, _)| *at < s.created_at) {
            e.2 = Some((s.created_at, s.ip.clone()));
        }
    }
    let rows: Vec<UserRow> = people
        .into_iter()
        .map(|u| {
            let (sessions, methods, last) = live.remove(&u.id).unwrap_or_default();
            UserRow {
                id: u.id,
                email: u.email,
                display_name: u.display_name,
                created_at: u.created_at,
                last_login_at: u.last_login_at,
                disabled_at: u.disabled_at,
                idp_disabled_at: u.idp_disabled_at,
                sessions,
                methods,
                last_ip: last.and_then(|(_, ip)| ip),
            }
        })
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(serde_json::json!({ "users": rows })))
}

async fn target_user(st: &ApiState, id: i64) -> Result<user::Model, ApiError> {
    models::user::by_id(&st.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("No such user."))
}

/// Ends `u`'s access now: sessions revoked, meeting connections closed (and watched for a
/// join token's lifetime); writes the audit entry.
async fn end_access(
    st: &ApiState,
    req: &HttpRequest,
    me: &AuthUser,
    u: &user::Model,
    what: &'static str,
) -> serde_json::Value {
    let t = now();
    let (revoked, closed) = super::auth::lifecycle::end_access(st, u.id).await;
    if let Some(l) = st.sso.lifecycle.get() {
        l.do_send(super::auth::lifecycle::Watch {
            user_id: u.id,
            since: t,
        });
    }
    st.audit(
        Entry::new(what, Outcome::Ok)
            .method(me.method)
            .ip(client_ip(req))
            .actor(Some(me.user.id), me.user.email.clone())
            .target(u.email.clone())
            .detail(format!(
                "{revoked} session(s) revoked, {closed} meeting connection(s) closed"
            )),
    )
    .await;
    serde_json::json!({ "sessions_revoked": revoked, "connections_closed": closed })
}

/// `POST /api/v1/admin/users/{id}/disable`
async fn disable_user(
    st: web::Data<ApiState>,
    req: HttpRequest,
    me: AuthUser,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&me)?;
    let u = target_user(&st, id.into_inner()).await?;
    if u.id == me.user.id {
        return Err(ApiError::conflict(
            "cannot_disable_self",
            "You cannot disable your own account.",
        ));
    }
    let mut a: user::ActiveModel = u.clone().into();
    a.disabled_at = sea_orm::Set(Some(u.disabled_at.unwrap_or_else(now)));
    let u = a.update(&st.db).await?;
    let done = end_access(&st, &req, &me, &u, action::DISABLE_USER).await;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "id": u.id, "email": u.email, "disabled_at": u.disabled_at,
        "sessions_revoked": done["sessions_revoked"], "connections_closed": done["connections_closed"],
    })))
}

/// `POST /api/v1/admin/users/{id}/enable`
async fn enable_user(
    st: web::Data<ApiState>,
    req: HttpRequest,
    me: AuthUser,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&me)?;
    let u = target_user(&st, id.into_inner()).await?;
    let mut a: user::ActiveModel = u.clone().into();
    a.disabled_at = sea_orm::Set(None);
    a.idp_disabled_at = sea_orm::Set(None);
    let u = a.update(&st.db).await?;
    st.audit(
        Entry::new(action::ENABLE_USER, Outcome::Ok)
            .method(me.method)
            .ip(client_ip(&req))
            .actor(Some(me.user.id), me.user.email.clone())
            .target(u.email.clone()),
    )
    .await;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "id": u.id, "email": u.email, "disabled_at": null,
    })))
}

/// `POST /api/v1/admin/users/{id}/revoke`
async fn revoke_sessions(
    st: web::Data<ApiState>,
    req: HttpRequest,
    me: AuthUser,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&me)?;
    let u = target_user(&st, id.into_inner()).await?;
    let done = end_access(&st, &req, &me, &u, action::REVOKE_SESSIONS).await;
    Ok(HttpResponse::Ok().json(done))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    limit: Option<u64>,
    before: Option<i64>,
    action: Option<String>,
    q: Option<String>,
    since: Option<i64>,
    until: Option<i64>,
}

impl AuditQuery {
    fn filter(&self) -> audit::Filter {
        let clean = |s: &Option<String>| {
            s.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty() && s.len() <= 200)
                .map(String::from)
        };
        audit::Filter {
            before: self.before,
            action: clean(&self.action),
            text: clean(&self.q),
            since: self.since,
            until: self.until,
        }
    }
}

/// `GET /api/v1/admin/audit`
async fn audit_view(
    st: web::Data<ApiState>,
    me: AuthUser,
    q: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&me)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let entries = audit::newest(&st.db, &q.filter(), limit).await?;
    let next_before = (entries.len() as u64 == limit)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(serde_json::json!({ "entries": entries, "next_before": next_before })))
}

/// `GET /api/v1/admin/audit/export`: every matching entry as one JSON object per line,
/// oldest first, read from the database a page at a time while it is sent.
async fn audit_export(
    st: web::Data<ApiState>,
    me: AuthUser,
    q: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&me)?;
    const PAGE: u64 = 1000;
    let filter = q.filter();
    let db = st.db.clone();
    // Read the first page now, so a database error is a proper error response.
    let first = audit::page_after(&db, &filter, 0, PAGE).await?;
    let body =
        futures_util::stream::unfold((Some(first), db, filter), |(page, db, filter)| async move {
            let page = page?;
            if page.is_empty() {
                return None;
            }
            let last = page.last().map_or(0, |e| e.id);
            let mut out = Vec::new();
            for e in &page {
                if serde_json::to_writer(&mut out, e).is_ok() {
                    out.push(b'\n');
                }
            }
            let next = if (page.len() as u64) < PAGE {
                Some(Vec::new())
            } else {
                match audit::page_after(&db, &filter, last, PAGE).await {
                    Ok(p) => Some(p),
                    Err(e) => {
                        tracing::error!(error = %e, "audit export: reading the next page failed");
                        None
                    }
                }
            };
            Some((
                Ok::<_, actix_web::Error>(web::Bytes::from(out)),
                (next, db, filter),
            ))
        });
    let name = chrono::Utc::now().format("audit-%Y%m%d-%H%M%S.jsonl");
    st.audit(
        Entry::new(action::EXPORT_AUDIT, Outcome::Ok)
            .method(me.method)
            .actor(Some(me.user.id), me.user.email.clone()),
    )
    .await;
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"{name}\""),
        ))
        .streaming(body))
}
