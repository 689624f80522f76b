//! Meetings: each user's one instant room, scheduled meetings with emailed calendar
//! invitations (updates and cancellations keep the UID and raise SEQUENCE), and the join
//! answer a client needs to reach the meeting's sfuserver, turnserver and fsserver.

use actix_web::{HttpResponse, web};
use sea_orm::{ActiveModelTrait, ConnectionTrait, Set, TransactionTrait};
use serde::Serialize;

use super::ApiState;
use super::auth::{AuthUser, MaybeUser};
use super::registry::ControlError;
use crate::db::entities::meeting::{self, Kind, ScreenShare, Status};
use crate::db::entities::user;
use crate::db::models;
use crate::error::ApiError;
use crate::ids::{MeetingCode, MeetingId, ParticipantId};
use crate::metrics::Metrics;
use crate::proto::{
    AllocateFileServer, AllocateServers, AllocationError, ControlRoom, NodeRole, RoomAction,
    ServerAssignment,
};
use crate::tokens::JoinClaims;
use crate::util::now;

mod input;
mod invites;
mod view;

pub use input::{JoinRequest, MeetingBody};
use input::{check_times, clean_invitees, clean_title};
use invites::{Notice, send_invites};
pub use view::{MeetingView, Person};
use view::{view, views};

/// Asks the allocator; its "no" becomes 503 `servers_not_ready` with `Retry-After`.
async fn allocate(
    st: &ApiState,
    email: &str,
    begin: i64,
    end: i64,
) -> Result<ServerAssignment, ApiError> {
    let msg = AllocateServers {
        email: email.to_string(),
        begin_at: begin,
        end_at: end,
    };
    match st.allocator.send(msg).await {
        Ok(Ok(a)) => Ok(a),
        Ok(Err(e)) => {
            st.metrics.allocation_failures.inc();
            match &e {
                AllocationError::NotReady(why) => {
                    tracing::info!(%why, "allocator has no server free")
                }
                AllocationError::Failed(why) => tracing::error!(%why, "allocator failed"),
            }
            Err(ApiError::servers_not_ready(
                st.cfg.allocator.retry_after.as_secs(),
            ))
        }
        Err(e) => Err(ApiError::internal(format_args!(
            "allocator unreachable: {e}"
        ))),
    }
}

async fn owner_of(st: &ApiState, m: &meeting::Model) -> Result<user::Model, ApiError> {
    models::user::by_id(&st.db, m.owner_id)
        .await?
        .ok_or_else(|| ApiError::internal(format_args!("meeting {} has no owner row", m.id)))
}

/// `POST /api/v1/meetings`: without `begin_at`, my instant room; with it, a scheduled meeting.
pub async fn create(
    st: web::Data<ApiState>,
    me: AuthUser,
    body: web::Json<MeetingBody>,
) -> Result<HttpResponse, ApiError> {
    // `allowed_domains`, and the groups of the session's identity provider.
    if !me.can_create {
        return Err(ApiError::forbidden(
            "not_allowed_to_create",
            "You may join meetings but not create them; ask your administrator.",
        ));
    }
    let me = me.user;
    let body = body.into_inner();
    let settings = body.settings();
    let cohosts = match &settings.cohosts {
        Some(list) => Some(super::controls::clean_cohosts(&st, list, &me.email)?),
        None => None,
    };
    // Checked before anything is written (the values are applied again below).
    super::controls::apply(
        &st,
        &mut <meeting::ActiveModel as Default>::default(),
        &settings,
    )?;
    let begin = body.begin_at.unwrap_or(0);
    if begin == 0 {
        if body.end_at.unwrap_or(0) != 0 || body.invitees.as_ref().is_some_and(|v| !v.is_empty()) {
            return Err(ApiError::bad_request(
                "invalid_request",
                "An instant meeting has no end time or invitees; give begin_at to schedule one.",
            ));
        }
        let title = match &body.title {
            Some(t) => Some(clean_title(t)?),
            None => None,
        };
        let servers = allocate(&st, &me.email, 0, 0).await?;
        let t = now();
        let (m, status) = match models::meeting::instant_of(&st.db, me.id).await? {
            Some(m) => {
                let mut a: meeting::ActiveModel = m.into();
                if let Some(title) = title {
                    a.title = Set(title);
                }
                if let Some(g) = body.guests_allowed {
                    a.guests_allowed = Set(g);
                }
                super::controls::apply(&st, &mut a, &settings)?;
                a.sfu = Set(Some(servers.sfu));
                a.turn = Set(Some(servers.turn));
                a.updated_at = Set(t);
                (a.update(&st.db).await?, actix_web::http::StatusCode::OK)
            }
            None => {
                let title = title.unwrap_or_else(|| format!("{}'s meeting", me.display_name));
                let draft = new_meeting(&st, &me, &body, Kind::Instant, title, (0, 0), servers);
                let m = insert_meeting(&st, &st.db, draft, &settings).await?;
                count_created(&st, Kind::Instant);
                (m, actix_web::http::StatusCode::CREATED)
            }
        };
        if let Some(list) = &cohosts {
            models::meeting::set_cohosts(&st.db, m.id, list, now()).await?;
        }
        return Ok(HttpResponse::build(status).json(view(&st, &me, m).await?));
    }

    let end = body.end_at.unwrap_or(0);
    check_times(&st, begin, end)?;
    let title = clean_title(body.title.as_deref().unwrap_or("Meeting"))?;
    let invitees = clean_invitees(&st, body.invitees.as_deref().unwrap_or(&[]), &me.email)?;
    let servers = allocate(&st, &me.email, begin, end).await?;
    let draft = new_meeting(
        &st,
        &me,
        &body,
        Kind::Scheduled,
        title,
        (begin, end),
        servers,
    );
    let t = now();
    let txn = st.db.begin().await?;
    let m = insert_meeting(&st, &txn, draft, &settings).await?;
    if let Some(list) = &cohosts {
        models::meeting::set_cohosts(&txn, m.id, list, t).await?;
    }
    models::meeting::invite(&txn, m.id, &invitees, t).await?;
    send_invites(&txn, &st, &m, &me, &invitees, &invitees, Notice::Invite).await?;
    txn.commit().await?;
    st.kick_mail();
    count_created(&st, Kind::Scheduled);
    Ok(HttpResponse::Created().json(view(&st, &me, m).await?))
}

/// A new meeting of `me`'s, with the deployment's defaults where the body says nothing.
fn new_meeting(
    st: &ApiState,
    me: &user::Model,
    body: &MeetingBody,
    kind: Kind,
    title: String,
    (begin_at, end_at): (i64, i64),
    servers: ServerAssignment,
) -> models::meeting::Draft {
    models::meeting::Draft {
        code: MeetingCode::random().0,
        owner_id: me.id,
        title,
        kind,
        begin_at,
        end_at,
        guests_allowed: body
            .guests_allowed
            .unwrap_or(st.cfg.meetings.guests_allowed),
        lobby: st.cfg.meetings.lobby.into(),
        sfu: servers.sfu,
        turn: servers.turn,
        now: now(),
    }
}

/// Inserts `draft` with the owner's `settings` applied.
async fn insert_meeting<C: ConnectionTrait>(
    st: &ApiState,
    db: &C,
    draft: models::meeting::Draft,
    settings: &super::controls::Settings,
) -> Result<meeting::Model, ApiError> {
    let mut row = models::meeting::draft(draft);
    super::controls::apply(st, &mut row, settings)?;
    Ok(row.insert(db).await?)
}

/// Counts a meeting made (once it is stored for good).
fn count_created(st: &ApiState, kind: Kind) {
    st.metrics
        .meetings_created
        .get_or_create(&Metrics::label("kind", kind.as_str()))
        .inc();
}

/// `GET /api/v1/meetings`: mine and those I am invited to; my instant room first, then
/// upcoming meetings soonest first, then past ones latest first.
pub async fn list(st: web::Data<ApiState>, me: AuthUser) -> Result<HttpResponse, ApiError> {
    let me = me.user;
    let mut ms = models::meeting::listed_for(&st.db, me.id, &me.email).await?;
    let t = now();
    ms.sort_by_key(|m| {
        if m.kind == Kind::Instant {
            (0, 0)
        } else if m.end_at >= t {
            (1, m.begin_at)
        } else {
            (2, -m.begin_at)
        }
    });
    Ok(HttpResponse::Ok().json(views(&st, &me, ms).await?))
}

fn no_such_meeting() -> ApiError {
    ApiError::not_found("No such meeting.")
}

fn cancelled() -> ApiError {
    ApiError::new(
        actix_web::http::StatusCode::GONE,
        "meeting_cancelled",
        "This meeting was cancelled.",
    )
}

/// A meeting I own or am invited to; otherwise 404 (not 403: do not confirm it exists).
async fn visible(st: &ApiState, me: &user::Model, id: i64) -> Result<meeting::Model, ApiError> {
    let m = models::meeting::by_id(&st.db, id)
        .await?
        .ok_or_else(no_such_meeting)?;
    if m.owner_id == me.id
        || models::meeting::is_invited(&st.db, id, &me.email).await?
        || models::meeting::is_cohost(&st.db, id, &me.email).await?
    {
        Ok(m)
    } else {
        Err(no_such_meeting())
    }
}

/// A meeting I own or co-host (co-hosts may run it, not change or cancel it).
async fn visible_to_host(
    st: &ApiState,
    me: &user::Model,
    id: i64,
) -> Result<meeting::Model, ApiError> {
    let m = models::meeting::by_id(&st.db, id)
        .await?
        .ok_or_else(no_such_meeting)?;
    if super::controls::is_host(&st.db, &m, me).await? {
        if m.status == Status::Cancelled {
            return Err(cancelled());
        }
        return Ok(m);
    }
    // Invited people learn it exists but may not run it; others do not learn it exists.
    visible(st, me, id).await?;
    Err(ApiError::forbidden(
        "not_host",
        "Only the meeting's owner and co-hosts can do that.",
    ))
}

async fn owned(st: &ApiState, me: &user::Model, id: i64) -> Result<meeting::Model, ApiError> {
    let m = visible(st, me, id).await?;
    if m.owner_id != me.id {
        return Err(ApiError::forbidden(
            "not_owner",
            "Only the meeting's owner can change it.",
        ));
    }
    if m.status == Status::Cancelled {
        return Err(cancelled());
    }
    Ok(m)
}

/// `GET /api/v1/meetings/{id}`
pub async fn get(
    st: web::Data<ApiState>,
    me: AuthUser,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let m = visible(&st, &me.user, id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(view(&st, &me.user, m).await?))
}

/// `PATCH /api/v1/meetings/{id}`: reschedule, rename, change invitees. Invitees get an
/// updated invitation (same UID, SEQUENCE+1); removed invitees get a cancellation.
pub async fn patch(
    st: web::Data<ApiState>,
    me: AuthUser,
    id: web::Path<i64>,
    body: web::Json<MeetingBody>,
) -> Result<HttpResponse, ApiError> {
    let me = me.user;
    let m = owned(&st, &me, id.into_inner()).await?;
    let body = body.into_inner();
    let settings = body.settings();
    let cohosts = match &settings.cohosts {
        Some(list) => Some(super::controls::clean_cohosts(&st, list, &me.email)?),
        None => None,
    };
    let scheduled = m.kind == Kind::Scheduled;
    if !scheduled && (body.begin_at.is_some() || body.end_at.is_some() || body.invitees.is_some()) {
        return Err(ApiError::bad_request(
            "invalid_request",
            "An instant meeting has no times or invitees; schedule a meeting instead.",
        ));
    }
    let title = match &body.title {
        Some(t) => clean_title(t)?,
        None => m.title.clone(),
    };
    let (begin, end) = (
        body.begin_at.unwrap_or(m.begin_at),
        body.end_at.unwrap_or(m.end_at),
    );
    let times_changed = begin != m.begin_at || end != m.end_at;
    if times_changed {
        check_times(&st, begin, end)?;
    }
    let old_invitees = models::meeting::invitees(&st.db, m.id).await?;
    let new_invitees = match &body.invitees {
        Some(list) => clean_invitees(&st, list, &me.email)?,
        None => old_invitees.clone(),
    };
    // A new passcode reaches the invitees (their link carries it).
    let passcode_changed = settings.passcode.as_ref().is_some_and(|p| {
        let now = super::controls::passcode_of(&st, &m);
        now.as_deref() != Some(p.as_str()) && !(p.is_empty() && m.passcode_hash.is_none())
    });
    let details_changed = times_changed || title != m.title || passcode_changed;
    let added: Vec<String> = new_invitees
        .iter()
        .filter(|e| !old_invitees.contains(e))
        .cloned()
        .collect();
    let removed: Vec<String> = old_invitees
        .iter()
        .filter(|e| !new_invitees.contains(e))
        .cloned()
        .collect();
    let servers = if times_changed {
        Some(allocate(&st, &me.email, begin, end).await?)
    } else {
        None
    };
    let t = now();
    let txn = st.db.begin().await?;
    let mut a: meeting::ActiveModel = m.clone().into();
    a.title = Set(title);
    a.begin_at = Set(begin);
    a.end_at = Set(end);
    if let Some(g) = body.guests_allowed {
        a.guests_allowed = Set(g);
    }
    super::controls::apply(&st, &mut a, &settings)?;
    if let Some(s) = servers {
        a.sfu = Set(Some(s.sfu));
        a.turn = Set(Some(s.turn));
    }
    if details_changed || !added.is_empty() || !removed.is_empty() {
        a.sequence = Set(m.sequence + 1);
    }
    a.updated_at = Set(t);
    let m = a.update(&txn).await?;
    if let Some(list) = &cohosts {
        models::meeting::set_cohosts(&txn, m.id, list, t).await?;
    }
    models::meeting::uninvite(&txn, m.id, &removed).await?;
    models::meeting::invite(&txn, m.id, &added, t).await?;
    if scheduled {
        let recipients: Vec<String> = if details_changed {
            new_invitees.clone()
        } else {
            added.clone()
        };
        send_invites(
            &txn,
            &st,
            &m,
            &me,
            &new_invitees,
            &recipients,
            if details_changed {
                Notice::Update
            } else {
                Notice::Invite
            },
        )
        .await?;
        send_invites(&txn, &st, &m, &me, &removed, &removed, Notice::Cancel).await?;
    }
    txn.commit().await?;
    st.kick_mail();
    Ok(HttpResponse::Ok().json(view(&st, &me, m).await?))
}

/// `DELETE /api/v1/meetings/{id}`: cancels a scheduled meeting; invitees get METHOD:CANCEL.
pub async fn cancel(
    st: web::Data<ApiState>,
    me: AuthUser,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let me = me.user;
    let m = owned(&st, &me, id.into_inner()).await?;
    if m.kind == Kind::Instant {
        return Err(ApiError::bad_request(
            "instant_meeting",
            "Your instant meeting room is permanent; it cannot be cancelled.",
        ));
    }
    let invitees = models::meeting::invitees(&st.db, m.id).await?;
    let txn = st.db.begin().await?;
    let m = models::meeting::cancel(&txn, m, now()).await?;
    send_invites(&txn, &st, &m, &me, &invitees, &invitees, Notice::Cancel).await?;
    txn.commit().await?;
    st.kick_mail();
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Serialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// `POST /api/v1/join/{code} {display_name?}`: everything a client needs to enter the meeting.
pub async fn join(
    st: web::Data<ApiState>,
    req_http: actix_web::HttpRequest,
    who: MaybeUser,
    code: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let req: JoinRequest = if body.iter().all(u8::is_ascii_whitespace) {
        JoinRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request("invalid_json", format!("Invalid JSON: {e}")))?
    };
    let code = code.into_inner();
    if !MeetingCode::is_well_formed(&code) {
        return Err(ApiError::not_found("No meeting has that code."));
    }
    let m = models::meeting::by_code(&st.db, &code)
        .await?
        .ok_or_else(|| ApiError::not_found("No meeting has that code."))?;
    if m.status == Status::Cancelled {
        return Err(cancelled());
    }
    let name_given = match req.display_name.as_deref().map(str::trim) {
        Some(n) if !n.is_empty() => {
            if n.chars().count() > 64 || n.chars().any(char::is_control) {
                return Err(ApiError::bad_request(
                    "invalid_display_name",
                    "A name has 1 to 64 characters.",
                ));
            }
            Some(n.to_string())
        }
        _ => None,
    };
    let user = who.0.map(|u| u.user);
    // Every join answer carries TURN credentials and opens a participation: joins are
    // limited per signed-in person, and per client address for guests.
    let limited = match &user {
        Some(u) => st.limits.joins_per_user.check(&u.id),
        None => st.limits.joins_per_ip.check(&super::client_ip(&req_http)),
    };
    if let Err(wait) = limited {
        return Err(ApiError::rate_limited(
            Ord::max(wait.as_secs(), 1),
            "Too many joins in a short time; wait a moment.",
        ));
    }
    let (guest_cookie, new_guest_cookie) = match (&user, req_http.cookie(GUEST_COOKIE)) {
        (Some(_), _) => (None, false),
        (None, Some(c)) if (16..=64).contains(&c.value().len()) => {
            (Some(c.value().to_string()), false)
        }
        (None, _) => (Some(crate::ids::random_token(24)), true),
    };
    let guest_key = guest_cookie.as_deref().map(crate::tokens::sha256_hex);
    let (role, invited) = super::controls::role_of(&st.db, &m, user.as_ref()).await?;
    let host = role.is_host();
    let name = match &user {
        Some(u) => name_given.unwrap_or_else(|| u.display_name.clone()),
        None => {
            if !m.guests_allowed {
                return Err(ApiError::unauthorized(
                    "This meeting is for signed-in people only; sign in to join.",
                ));
            }
            name_given.ok_or_else(|| {
                ApiError::bad_request("display_name_required", "Guests need a name to join.")
            })?
        }
    };
    if !host {
        let who = match &user {
            Some(u) => format!("u{}", u.id),
            None => format!("ip{}", super::client_ip(&req_http)),
        };
        super::controls::check_passcode(&st, &m, &who, req.passcode.as_deref())?;
    }
    let lobby = super::controls::waits_in_lobby(&m, role, invited);
    check_may_enter(&st, &m, user.as_ref(), guest_key.as_deref(), host).await?;
    let owner = owner_of(&st, &m).await?;
    // The assignment may be missing (e.g. the allocator was asked again and forgot it).
    let assigned = match (&m.sfu, &m.turn) {
        (Some(s), Some(t)) => {
            // A server that went down since: ask the allocator again (it skips down nodes).
            let down = |role, address: &String| {
                st.registry.send(super::registry::IsDown {
                    role,
                    address: address.clone(),
                })
            };
            let sfu_down = down(NodeRole::Sfuserver, s).await.unwrap_or(false);
            let turn_down = down(NodeRole::Turnserver, t).await.unwrap_or(false);
            if sfu_down || turn_down {
                tracing::warn!(meeting = m.id, sfu = %s, sfu_down, turn = %t, turn_down, "the meeting's servers are down: allocating again");
                None
            } else {
                Some((s.clone(), t.clone()))
            }
        }
        _ => None,
    };
    let (sfu, turn) = match assigned {
        Some(x) => x,
        None => {
            // One join per meeting asks the allocator; those that waited take its answer.
            let _one = st.allocating.lock(m.id).await;
            let stored = models::meeting::by_id(&st.db, m.id)
                .await?
                .map(|x| (x.sfu, x.turn));
            match stored {
                Some((Some(s), Some(t)))
                    if (Some(&s), Some(&t)) != (m.sfu.as_ref(), m.turn.as_ref()) =>
                {
                    (s, t)
                }
                _ => {
                    let a = allocate(&st, &owner.email, m.begin_at, m.end_at).await?;
                    // Another apiserver on the same database may have raced us: the
                    // assignment stored first wins, and every join answers with it.
                    models::meeting::reassign_servers(
                        &st.db,
                        m.id,
                        (m.sfu.as_deref(), m.turn.as_deref()),
                        (a.sfu, a.turn),
                    )
                    .await?
                }
            }
        }
    };
    let fs = match &m.fs {
        Some(fs) => Some(fs.clone()),
        None => {
            let email = user
                .as_ref()
                .map(|u| u.email.clone())
                .unwrap_or_else(|| owner.email.clone());
            match st.fs_allocator.send(AllocateFileServer { email }).await {
                Ok(Ok(a)) => Some(models::meeting::assign_fs_once(&st.db, m.id, a.fs).await?),
                // Notes files are unavailable, but the meeting itself can go on.
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, meeting = m.id, "no file server for this meeting yet");
                    None
                }
                Err(e) => {
                    tracing::error!(error = %e, "file-server allocator unreachable");
                    None
                }
            }
        }
    };
    let t = now();
    let participant = ParticipantId::random();
    models::participation::open(
        &st.db,
        models::participation::Opened {
            meeting_id: m.id,
            participant_id: participant.0.clone(),
            user_id: user.as_ref().map(|u| u.id),
            display_name: name.clone(),
            guest_key,
            now: t,
        },
    )
    .await?;
    let claims = JoinClaims {
        meeting: MeetingId(m.id),
        participant: participant.clone(),
        sfu: sfu.clone(),
        name: name.clone(),
        host,
        exp: t + st.cfg.meetings.join_token_ttl.as_secs_i64(),
        role,
        lobby,
        screens_hosts_only: m.screen_share == ScreenShare::Hosts,
        may_claim_host: st.cfg.meetings.claim_host && invited && !host,
    };
    let token = st.keys.sign_join(&claims);
    let (username, credential) = st.keys.turn_credentials(
        MeetingId(m.id),
        &participant,
        t + st.cfg.meetings.turn_credential_ttl.as_secs_i64(),
    );
    let ice_servers = vec![
        IceServer {
            urls: vec![format!("stun:{turn}")],
            username: None,
            credential: None,
        },
        IceServer {
            urls: [
                Some(format!("turn:{turn}?transport=udp")),
                Some(format!("turn:{turn}?transport=tcp")),
                turns_url(&st),
            ]
            .into_iter()
            .flatten()
            .collect(),
            username: Some(username),
            credential: Some(credential),
        },
    ];
    st.metrics.joins.inc();
    let signal_url = format!(
        "{}{}",
        st.base_url(&sfu, true),
        crate::proto::signal::signal_path(MeetingId(m.id))
    );
    let mut resp = HttpResponse::Ok();
    if let (true, Some(c)) = (new_guest_cookie, guest_cookie) {
        resp.cookie(
            actix_web::cookie::Cookie::build(GUEST_COOKIE, c)
                .path("/api/v1/join")
                .http_only(true)
                .same_site(actix_web::cookie::SameSite::Lax)
                .secure(st.tls)
                .max_age(actix_web::cookie::time::Duration::days(365))
                .finish(),
        );
    }
    Ok(resp.json(serde_json::json!({
        "participant_id": participant,
        "token": token,
        "display_name": name,
        "host": host,
        "role": role,
        "lobby": lobby,
        "screens_hosts_only": m.screen_share == ScreenShare::Hosts,
        "may_claim_host": claims.may_claim_host,
        "meeting": { "id": m.id, "code": m.code, "title": m.title, "kind": m.kind,
                     "begin_at": m.begin_at, "end_at": m.end_at },
        "sfu": { "address": sfu, "signal_url": signal_url },
        "ice_servers": ice_servers,
        "fs": fs.map(|f| serde_json::json!({ "address": f, "url": st.base_url(&f, false) })),
    })))
}

/// A guest's browser key for this appliance: lets a host's "remove" keep that browser out.
pub const GUEST_COOKIE: &str = "meeting_guest";

/// Refuses people a host removed (same account, or same guest browser) and, in a locked
/// meeting, everyone but hosts. A lock outlives nobody: when no one is in the meeting any
/// more it is lifted (the sfuserver closes the empty room, and its lock with it).
async fn check_may_enter(
    st: &ApiState,
    m: &meeting::Model,
    user: Option<&user::Model>,
    guest_key: Option<&str>,
    host: bool,
) -> Result<(), ApiError> {
    use models::participation::Person;
    let who = match (user, guest_key) {
        (Some(u), _) => Person::User(u.id),
        (None, Some(k)) => Person::Guest(k),
        (None, None) => return Ok(()),
    };
    if !host && models::participation::was_removed(&st.db, m.id, m.access_since, who).await? {
        return Err(ApiError::forbidden(
            "removed",
            "The host removed you from this meeting; you cannot join it again.",
        ));
    }
    if m.locked && !host {
        if models::participation::present_count(&st.db, m.id).await? > 0 {
            return Err(ApiError::forbidden(
                "locked",
                "The host has locked this meeting: nobody new may join.",
            ));
        }
        models::meeting::set_locked(&st.db, m.id, false).await?;
    }
    Ok(())
}

/// `turns:` (TURN over TLS) when the meeting's turnserver is this box's own and it has a
/// certificate; the wiring decided that once (`ApiState::own_turns_url`).
fn turns_url(st: &ApiState) -> Option<String> {
    st.own_turns_url.clone()
}

/// `POST /api/v1/meetings/{id}/control {"action": "mute"|"remove"|"lock"|"unlock"|"end",
/// "participant_id"?}`: a host action, enforced by the meeting's sfuserver.
pub async fn control(
    st: web::Data<ApiState>,
    me: AuthUser,
    id: web::Path<i64>,
    body: web::Json<RoomAction>,
) -> Result<HttpResponse, ApiError> {
    let m = visible_to_host(&st, &me.user, id.into_inner()).await?;
    let Some(sfu) = m.sfu.clone() else {
        return Err(ApiError::conflict(
            "not_in_meeting",
            "Nobody has joined this meeting yet.",
        ));
    };
    let action = body.into_inner();
    action
        .check()
        .map_err(|e| ApiError::bad_request("invalid_action", e))?;
    let result = st
        .registry
        .send(super::registry::Control {
            sfu,
            control: ControlRoom {
                meeting: MeetingId(m.id),
                action: action.clone(),
                by: Some(me.user.display_name.clone()),
            },
        })
        .await;
    super::audit::host_action(&st, &me, &m, &action, &result).await;
    match result {
        Ok(Ok(())) => {
            remember_control(&st, m.id, &action).await?;
            Ok(HttpResponse::NoContent().finish())
        }
        Ok(Err(ControlError::Refused(why))) => {
            use crate::proto::ControlRefused;
            let status = match why {
                ControlRefused::BadAction(_) => actix_web::http::StatusCode::BAD_REQUEST,
                ControlRefused::WorkerGone => actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
                _ => actix_web::http::StatusCode::CONFLICT,
            };
            Err(ApiError::new(status, why.code(), why.to_string()))
        }
        Ok(Err(ControlError::Unreachable(why))) => Err(ApiError::new(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            "sfu_unreachable",
            format!("The meeting's media server cannot be reached: {why}"),
        )),
        Err(e) => Err(ApiError::internal(format_args!(
            "node registry unreachable: {e}"
        ))),
    }
}

/// What the apiserver must know of a host action once the sfuserver carried it out: the lock
/// (so `/join` refuses newcomers before they reach the sfuserver) and removals (so the person
/// loses notes and files at once and cannot join again).
async fn remember_control(
    st: &ApiState,
    meeting: i64,
    action: &RoomAction,
) -> Result<(), ApiError> {
    match action {
        RoomAction::Lock | RoomAction::Unlock | RoomAction::End => {
            models::meeting::set_locked(&st.db, meeting, matches!(action, RoomAction::Lock))
                .await?;
        }
        RoomAction::Remove { participant_id } => {
            models::participation::mark_removed(&st.db, meeting, &participant_id.0, now()).await?;
        }
        _ => {}
    }
    Ok(())
}

/// `POST /api/v1/meetings/{id}/code`: a new code for the meeting (the old link stops
/// working) — for a personal room whose link went too far. Everyone who was let in through
/// the old code loses notes and file access; the owner and invitees keep theirs.
pub async fn new_code(
    st: web::Data<ApiState>,
    me: AuthUser,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let m = owned(&st, &me.user, id.into_inner()).await?;
    let m = models::meeting::change_code(&st.db, m, MeetingCode::random().0, now()).await?;
    tracing::info!(meeting = m.id, "meeting code changed");
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "id": m.id,
        "code": m.code,
        "join_url": st.join_url(&m.code),
    })))
}

/// `GET /api/v1/meetings/{id}/participants`: who joined and when (attendance), newest first.
pub async fn participants(
    st: web::Data<ApiState>,
    me: AuthUser,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let m = visible(&st, &me.user, id.into_inner()).await?;
    let rows = models::participation::of_meeting(&st.db, m.id).await?;
    let list: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|p| {
            serde_json::json!({
                "participant_id": p.participant_id,
                "display_name": p.display_name,
                "user_id": p.user_id,
                "joined_at": p.joined_at,
                "entered_at": p.entered_at,
                "removed_at": p.removed_at,
                "left_at": p.left_at,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(list))
}
