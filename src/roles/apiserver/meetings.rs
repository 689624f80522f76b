//! Meetings: each user's one instant room, scheduled meetings with emailed calendar
//! invitations (updates and cancellations keep the UID and raise SEQUENCE), and the join
//! answer a client needs to reach the meeting's sfuserver, turnserver and fsserver.

use actix_web::{HttpResponse, web};
use sea_orm::{ActiveModelTrait, ConnectionTrait, Set, TransactionTrait};

use super::ApiState;
use super::auth::AuthUser;
use super::registry::ControlError;
use crate::db::entities::meeting::{self, Kind, Status};
use crate::db::entities::user;
use crate::db::models;
use crate::error::ApiError;
use crate::ids::{MeetingCode, MeetingId};
use crate::metrics::Metrics;
use crate::proto::{AllocateServers, AllocationError, ControlRoom, RoomAction, ServerAssignment};
use crate::util::now;

mod input;
mod invites;
mod join;
mod view;

pub use input::MeetingBody;
use input::{People, check_times, clean_people, clean_title};
use invites::{Notice, send_invites};
pub use join::{GUEST_COOKIE, IceServer, join};
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
        Some(list) => Some(clean_people(&st, list, &me.email, People::Cohosts)?),
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
    let invitees = clean_people(
        &st,
        body.invitees.as_deref().unwrap_or(&[]),
        &me.email,
        People::Invitees,
    )?;
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
        Some(list) => Some(clean_people(&st, list, &me.email, People::Cohosts)?),
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
        Some(list) => clean_people(&st, list, &me.email, People::Invitees)?,
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
