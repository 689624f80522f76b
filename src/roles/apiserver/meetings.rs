//! Meetings: each user's one instant room, scheduled meetings with emailed calendar
//! invitations (updates and cancellations keep the UID and raise SEQUENCE), and the join
//! answer a client needs to reach the meeting's sfuserver, turnserver and fsserver.

use actix_web::{HttpResponse, web};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, ExprTrait, QueryFilter, Set,
    TransactionTrait,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};

use super::ApiState;
use super::auth::{AuthUser, MaybeUser};
use super::ics::{Invite, Method};
use super::mail::{Outgoing, enqueue};
use super::registry::ControlError;
use crate::db::entities::{cohost, invitation, meeting, participation, user};
use crate::error::ApiError;
use crate::ids::{MeetingCode, MeetingId, ParticipantId};
use crate::metrics::Metrics;
use crate::proto::{
    AllocateFileServer, AllocateServers, AllocationError, ControlRoom, NodeRole, RoomAction,
    ServerAssignment,
};
use crate::tokens::JoinClaims;
use crate::util::{normalize_email, now};

const INSTANT: &str = "instant";
const SCHEDULED: &str = "scheduled";
const ACTIVE: &str = "active";
const CANCELLED: &str = "cancelled";

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateMeeting {
    pub title: Option<String>,
    pub begin_at: Option<i64>,
    pub end_at: Option<i64>,
    pub invitees: Option<Vec<String>>,
    pub guests_allowed: Option<bool>,
    pub lobby: Option<String>,
    pub passcode: Option<String>,
    pub cohosts: Option<Vec<String>>,
    pub screen_share: Option<String>,
    pub chat_in_notes: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PatchMeeting {
    pub title: Option<String>,
    pub begin_at: Option<i64>,
    pub end_at: Option<i64>,
    pub invitees: Option<Vec<String>>,
    pub guests_allowed: Option<bool>,
    pub lobby: Option<String>,
    pub passcode: Option<String>,
    pub cohosts: Option<Vec<String>>,
    pub screen_share: Option<String>,
    pub chat_in_notes: Option<bool>,
}

/// The running-a-meeting settings of a create or patch body.
macro_rules! settings_of {
    ($b:expr) => {
        super::controls::Settings {
            lobby: $b.lobby.clone(),
            passcode: $b.passcode.clone(),
            cohosts: $b.cohosts.clone(),
            screen_share: $b.screen_share.clone(),
            chat_in_notes: $b.chat_in_notes,
        }
    };
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    pub display_name: Option<String>,
    /// The meeting's passcode, when it has one (hosts need none).
    pub passcode: Option<String>,
}

#[derive(Serialize)]
pub struct Person {
    pub email: String,
    pub display_name: String,
}

#[derive(Serialize)]
pub struct MeetingView {
    pub id: i64,
    pub code: String,
    pub join_url: String,
    pub kind: String,
    pub title: String,
    pub begin_at: i64,
    pub end_at: i64,
    pub status: String,
    pub sequence: i32,
    pub guests_allowed: bool,
    pub owner: Person,
    pub is_owner: bool,
    pub invitees: Vec<String>,
    /// Owner or co-host.
    pub is_host: bool,
    pub cohosts: Vec<String>,
    /// "off", "guests" or "everyone".
    pub lobby: String,
    pub has_passcode: bool,
    /// The passcode itself, for the owner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passcode: Option<String>,
    /// "everyone" or "hosts".
    pub screen_share: String,
    pub chat_in_notes: bool,
}

fn clean_title(t: &str) -> Result<String, ApiError> {
    let t = t.trim();
    if t.is_empty() || t.chars().count() > 200 {
        return Err(ApiError::bad_request(
            "invalid_title",
            "A title has 1 to 200 characters.",
        ));
    }
    if t.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_title",
            "A title cannot contain control characters.",
        ));
    }
    Ok(t.to_string())
}

fn clean_invitees(st: &ApiState, list: &[String], owner: &str) -> Result<Vec<String>, ApiError> {
    let mut out = BTreeSet::new();
    for raw in list {
        let e = normalize_email(raw).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_email",
                format!("Invitee {raw:?} is not a valid email address."),
            )
        })?;
        if e != owner {
            out.insert(e);
        }
    }
    if out.len() > st.cfg.meetings.max_invitees {
        return Err(ApiError::bad_request(
            "too_many_invitees",
            format!(
                "At most {} invitees per meeting.",
                st.cfg.meetings.max_invitees
            ),
        ));
    }
    Ok(out.into_iter().collect())
}

fn check_times(st: &ApiState, begin: i64, end: i64) -> Result<(), ApiError> {
    let t = now();
    if begin <= 0 || end <= begin {
        return Err(ApiError::bad_request(
            "invalid_time",
            "The end must be after the beginning.",
        ));
    }
    if begin < t - 300 {
        return Err(ApiError::bad_request(
            "invalid_time",
            "The meeting cannot begin in the past.",
        ));
    }
    if end - begin > st.cfg.meetings.max_duration.as_secs_i64() {
        return Err(ApiError::bad_request(
            "invalid_time",
            format!(
                "A meeting lasts at most {}.",
                humantime::format_duration(st.cfg.meetings.max_duration.0)
            ),
        ));
    }
    Ok(())
}

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
    user::Entity::find_by_id(m.owner_id)
        .one(&st.db)
        .await?
        .ok_or_else(|| ApiError::internal(format_args!("meeting {} has no owner row", m.id)))
}

async fn invitees_of<C: ConnectionTrait>(db: &C, id: i64) -> Result<Vec<String>, ApiError> {
    let mut v: Vec<String> = invitation::Entity::find()
        .filter(invitation::Column::MeetingId.eq(id))
        .all(db)
        .await?
        .into_iter()
        .map(|i| i.email)
        .collect();
    v.sort();
    Ok(v)
}

async fn views(
    st: &ApiState,
    me: &user::Model,
    ms: Vec<meeting::Model>,
) -> Result<Vec<MeetingView>, ApiError> {
    let ids: Vec<i64> = ms.iter().map(|m| m.id).collect();
    let owner_ids: Vec<i64> = ms.iter().map(|m| m.owner_id).collect();
    let owners: HashMap<i64, user::Model> = user::Entity::find()
        .filter(user::Column::Id.is_in(owner_ids))
        .all(&st.db)
        .await?
        .into_iter()
        .map(|u| (u.id, u))
        .collect();
    let mut invites: HashMap<i64, Vec<String>> = HashMap::new();
    for i in invitation::Entity::find()
        .filter(invitation::Column::MeetingId.is_in(ids.clone()))
        .all(&st.db)
        .await?
    {
        invites.entry(i.meeting_id).or_default().push(i.email);
    }
    let mut cohosts: HashMap<i64, Vec<String>> = HashMap::new();
    for c in cohost::Entity::find()
        .filter(cohost::Column::MeetingId.is_in(ids))
        .all(&st.db)
        .await?
    {
        cohosts.entry(c.meeting_id).or_default().push(c.email);
    }
    Ok(ms
        .into_iter()
        .map(|m| {
            let owner = owners.get(&m.owner_id);
            let mut inv = invites.remove(&m.id).unwrap_or_default();
            inv.sort();
            let mut co = cohosts.remove(&m.id).unwrap_or_default();
            co.sort();
            let is_owner = m.owner_id == me.id;
            let passcode = if is_owner {
                super::controls::passcode_of(st, &m)
            } else {
                None
            };
            MeetingView {
                is_host: is_owner || co.contains(&me.email),
                cohosts: co,
                lobby: m.lobby.clone(),
                has_passcode: m.passcode_hash.is_some(),
                passcode,
                screen_share: m.screen_share.clone(),
                chat_in_notes: m.chat_in_notes,
                id: m.id,
                join_url: st.join_url(&m.code),
                code: m.code,
                kind: m.kind,
                title: m.title,
                begin_at: m.begin_at,
                end_at: m.end_at,
                status: m.status,
                sequence: m.sequence,
                guests_allowed: m.guests_allowed,
                owner: Person {
                    email: owner.map(|o| o.email.clone()).unwrap_or_default(),
                    display_name: owner.map(|o| o.display_name.clone()).unwrap_or_default(),
                },
                is_owner,
                invitees: inv,
            }
        })
        .collect())
}

async fn view(st: &ApiState, me: &user::Model, m: meeting::Model) -> Result<MeetingView, ApiError> {
    views(st, me, vec![m])
        .await?
        .pop()
        .ok_or_else(|| ApiError::internal("view of one meeting is empty"))
}

/// What an invitation mail tells its recipient.
#[derive(Clone, Copy)]
enum Notice {
    Invite,
    Update,
    Cancel,
}

/// Queues one invitation mail (REQUEST or CANCEL) per recipient, in the caller's transaction.
async fn send_invites<C: ConnectionTrait>(
    db: &C,
    st: &ApiState,
    m: &meeting::Model,
    owner: &user::Model,
    attendees: &[String],
    recipients: &[String],
    notice: Notice,
) -> Result<(), ApiError> {
    let passcode = super::controls::passcode_of(st, m);
    let url = match &passcode {
        // Letters and digits only (see `controls::apply`): safe in a URL as they are.
        Some(p) => format!("{}?pwd={p}", st.join_url(&m.code)),
        None => st.join_url(&m.code),
    };
    let pass_line = passcode
        .as_deref()
        .map(|p| format!("Passcode: {p}\n"))
        .unwrap_or_default();
    let when = chrono::DateTime::<chrono::Utc>::from_timestamp(m.begin_at, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default();
    let minutes = (m.end_at - m.begin_at) / 60;
    super::mail::check_quota(db, &st.cfg.mail, owner.id, recipients.len()).await?;
    for to in recipients {
        let inv = Invite {
            method: match notice {
                Notice::Invite | Notice::Update => Method::Request,
                Notice::Cancel => Method::Cancel,
            },
            uid: &m.ical_uid,
            sequence: m.sequence,
            title: &m.title,
            begin_at: m.begin_at,
            end_at: m.end_at,
            organizer_email: &owner.email,
            organizer_name: &owner.display_name,
            attendees,
            join_url: &url,
            now: now(),
        };
        let (subject, text) = match notice {
            Notice::Update => (
                format!("Updated invitation: {} @ {when}", m.title),
                format!(
                    "{} changed the meeting \"{}\".\n\nWhen: {when} ({minutes} minutes)\nJoin: {url}\n{pass_line}",
                    owner.display_name, m.title
                ),
            ),
            Notice::Invite => (
                format!("Invitation: {} @ {when}", m.title),
                format!(
                    "{} ({}) invites you to \"{}\".\n\nWhen: {when} ({minutes} minutes)\nJoin: {url}\n{pass_line}",
                    owner.display_name, owner.email, m.title
                ),
            ),
            Notice::Cancel => (
                format!("Cancelled: {} @ {when}", m.title),
                format!(
                    "{} cancelled the meeting \"{}\" ({when}).\n",
                    owner.display_name, m.title
                ),
            ),
        };
        let ics = inv.render();
        enqueue(
            db,
            &st.mailer,
            Outgoing {
                calendar: Some((inv.method_name(), ics)),
                ..Outgoing::by(owner.id, to.clone(), subject, text)
            },
        )
        .await
        .map_err(ApiError::internal)?;
    }
    Ok(())
}

/// `POST /api/v1/meetings`: without `begin_at`, my instant room; with it, a scheduled meeting.
pub async fn create(
    st: web::Data<ApiState>,
    me: AuthUser,
    body: web::Json<CreateMeeting>,
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
    let settings = settings_of!(body);
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
    let t = now();
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
        let existing = meeting::Entity::find()
            .filter(meeting::Column::OwnerId.eq(me.id))
            .filter(meeting::Column::Kind.eq(INSTANT))
            .one(&st.db)
            .await?;
        let (m, status) = match existing {
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
                let mut am = meeting::ActiveModel {
                    code: Set(MeetingCode::random().0),
                    owner_id: Set(me.id),
                    title: Set(title.unwrap_or_else(|| format!("{}'s meeting", me.display_name))),
                    kind: Set(INSTANT.into()),
                    begin_at: Set(0),
                    end_at: Set(0),
                    ical_uid: Set(format!("{}@meeting-appliance", uuid::Uuid::new_v4())),
                    sequence: Set(0),
                    status: Set(ACTIVE.into()),
                    guests_allowed: Set(body
                        .guests_allowed
                        .unwrap_or(st.cfg.meetings.guests_allowed)),
                    sfu: Set(Some(servers.sfu)),
                    turn: Set(Some(servers.turn)),
                    fs: Set(None),
                    created_at: Set(t),
                    updated_at: Set(t),
                    lobby: Set(st.cfg.meetings.lobby.as_str().into()),
                    screen_share: Set("everyone".into()),
                    chat_in_notes: Set(false),
                    ..Default::default()
                };
                super::controls::apply(&st, &mut am, &settings)?;
                let m = am.insert(&st.db).await?;
                st.metrics
                    .meetings_created
                    .get_or_create(&Metrics::label("kind", INSTANT))
                    .inc();
                (m, actix_web::http::StatusCode::CREATED)
            }
        };
        if let Some(list) = &cohosts {
            super::controls::set_cohosts(&st.db, m.id, list).await?;
        }
        return Ok(HttpResponse::build(status).json(view(&st, &me, m).await?));
    }

    let end = body.end_at.unwrap_or(0);
    check_times(&st, begin, end)?;
    let title = clean_title(body.title.as_deref().unwrap_or("Meeting"))?;
    let invitees = clean_invitees(&st, body.invitees.as_deref().unwrap_or(&[]), &me.email)?;
    let servers = allocate(&st, &me.email, begin, end).await?;
    let txn = st.db.begin().await?;
    let mut am = meeting::ActiveModel {
        code: Set(MeetingCode::random().0),
        owner_id: Set(me.id),
        title: Set(title),
        kind: Set(SCHEDULED.into()),
        begin_at: Set(begin),
        end_at: Set(end),
        ical_uid: Set(format!("{}@meeting-appliance", uuid::Uuid::new_v4())),
        sequence: Set(0),
        status: Set(ACTIVE.into()),
        guests_allowed: Set(body
            .guests_allowed
            .unwrap_or(st.cfg.meetings.guests_allowed)),
        sfu: Set(Some(servers.sfu)),
        turn: Set(Some(servers.turn)),
        fs: Set(None),
        created_at: Set(t),
        updated_at: Set(t),
        lobby: Set(st.cfg.meetings.lobby.as_str().into()),
        screen_share: Set("everyone".into()),
        chat_in_notes: Set(false),
        ..Default::default()
    };
    super::controls::apply(&st, &mut am, &settings)?;
    let m = am.insert(&txn).await?;
    if let Some(list) = &cohosts {
        super::controls::set_cohosts(&txn, m.id, list).await?;
    }
    for e in &invitees {
        invitation::ActiveModel {
            meeting_id: Set(m.id),
            email: Set(e.clone()),
            created_at: Set(t),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
    }
    send_invites(&txn, &st, &m, &me, &invitees, &invitees, Notice::Invite).await?;
    txn.commit().await?;
    st.kick_mail();
    st.metrics
        .meetings_created
        .get_or_create(&Metrics::label("kind", SCHEDULED))
        .inc();
    Ok(HttpResponse::Created().json(view(&st, &me, m).await?))
}

/// `GET /api/v1/meetings`: mine and those I am invited to; my instant room first, then
/// upcoming meetings soonest first, then past ones latest first.
pub async fn list(st: web::Data<ApiState>, me: AuthUser) -> Result<HttpResponse, ApiError> {
    let me = me.user;
    let invited: Vec<i64> = invitation::Entity::find()
        .filter(invitation::Column::Email.eq(me.email.clone()))
        .all(&st.db)
        .await?
        .into_iter()
        .map(|i| i.meeting_id)
        .chain(
            cohost::Entity::find()
                .filter(cohost::Column::Email.eq(me.email.clone()))
                .all(&st.db)
                .await?
                .into_iter()
                .map(|c| c.meeting_id),
        )
        .collect();
    let mut ms = meeting::Entity::find()
        .filter(meeting::Column::Status.eq(ACTIVE))
        .filter(
            meeting::Column::OwnerId
                .eq(me.id)
                .or(meeting::Column::Id.is_in(invited)),
        )
        .all(&st.db)
        .await?;
    let t = now();
    ms.sort_by_key(|m| {
        if m.kind == INSTANT {
            (0, 0)
        } else if m.end_at >= t {
            (1, m.begin_at)
        } else {
            (2, -m.begin_at)
        }
    });
    Ok(HttpResponse::Ok().json(views(&st, &me, ms).await?))
}

/// A meeting I own or am invited to; otherwise 404 (not 403: do not confirm it exists).
async fn visible(st: &ApiState, me: &user::Model, id: i64) -> Result<meeting::Model, ApiError> {
    let m = meeting::Entity::find_by_id(id)
        .one(&st.db)
        .await?
        .ok_or_else(|| ApiError::not_found("No such meeting."))?;
    if m.owner_id == me.id {
        return Ok(m);
    }
    let invited = invitation::Entity::find()
        .filter(invitation::Column::MeetingId.eq(id))
        .filter(invitation::Column::Email.eq(me.email.clone()))
        .one(&st.db)
        .await?
        .is_some();
    if invited || super::controls::is_cohost(&st.db, id, &me.email).await? {
        Ok(m)
    } else {
        Err(ApiError::not_found("No such meeting."))
    }
}

/// A meeting I own or co-host (co-hosts may run it, not change or cancel it).
async fn visible_to_host(
    st: &ApiState,
    me: &user::Model,
    id: i64,
) -> Result<meeting::Model, ApiError> {
    let m = meeting::Entity::find_by_id(id)
        .one(&st.db)
        .await?
        .ok_or_else(|| ApiError::not_found("No such meeting."))?;
    if super::controls::is_host(&st.db, &m, me).await? {
        if m.status == CANCELLED {
            return Err(ApiError::new(
                actix_web::http::StatusCode::GONE,
                "meeting_cancelled",
                "This meeting was cancelled.",
            ));
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
    if m.status == CANCELLED {
        return Err(ApiError::new(
            actix_web::http::StatusCode::GONE,
            "meeting_cancelled",
            "This meeting was cancelled.",
        ));
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
    body: web::Json<PatchMeeting>,
) -> Result<HttpResponse, ApiError> {
    let me = me.user;
    let m = owned(&st, &me, id.into_inner()).await?;
    let body = body.into_inner();
    let settings = settings_of!(body);
    let cohosts = match &settings.cohosts {
        Some(list) => Some(super::controls::clean_cohosts(&st, list, &me.email)?),
        None => None,
    };
    let scheduled = m.kind == SCHEDULED;
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
    let old_invitees = invitees_of(&st.db, m.id).await?;
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
        super::controls::set_cohosts(&txn, m.id, list).await?;
    }
    if !removed.is_empty() {
        invitation::Entity::delete_many()
            .filter(invitation::Column::MeetingId.eq(m.id))
            .filter(invitation::Column::Email.is_in(removed.clone()))
            .exec(&txn)
            .await?;
    }
    for e in &added {
        invitation::ActiveModel {
            meeting_id: Set(m.id),
            email: Set(e.clone()),
            created_at: Set(t),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
    }
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
    if m.kind == INSTANT {
        return Err(ApiError::bad_request(
            "instant_meeting",
            "Your instant meeting room is permanent; it cannot be cancelled.",
        ));
    }
    let invitees = invitees_of(&st.db, m.id).await?;
    let txn = st.db.begin().await?;
    let mut a: meeting::ActiveModel = m.clone().into();
    a.status = Set(CANCELLED.into());
    a.sequence = Set(m.sequence + 1);
    a.updated_at = Set(now());
    let m = a.update(&txn).await?;
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
    let m = meeting::Entity::find()
        .filter(meeting::Column::Code.eq(code))
        .one(&st.db)
        .await?
        .ok_or_else(|| ApiError::not_found("No meeting has that code."))?;
    if m.status == CANCELLED {
        return Err(ApiError::new(
            actix_web::http::StatusCode::GONE,
            "meeting_cancelled",
            "This meeting was cancelled.",
        ));
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
            let a = allocate(&st, &owner.email, m.begin_at, m.end_at).await?;
            let mut am: meeting::ActiveModel = m.clone().into();
            am.sfu = Set(Some(a.sfu.clone()));
            am.turn = Set(Some(a.turn.clone()));
            am.update(&st.db).await?;
            (a.sfu, a.turn)
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
                Ok(Ok(a)) => {
                    let mut am: meeting::ActiveModel = m.clone().into();
                    am.fs = Set(Some(a.fs.clone()));
                    am.update(&st.db).await?;
                    Some(a.fs)
                }
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
    participation::ActiveModel {
        meeting_id: Set(m.id),
        participant_id: Set(participant.0.clone()),
        user_id: Set(user.as_ref().map(|u| u.id)),
        display_name: Set(name.clone()),
        joined_at: Set(t),
        left_at: Set(None),
        // Set when the sfuserver reports the participant in the media session.
        entered_at: Set(None),
        removed_at: Set(None),
        guest_key: Set(guest_key),
        ..Default::default()
    }
    .insert(&st.db)
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
        screens_hosts_only: m.screen_share == "hosts",
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
    let signal_url = format!("{}/sfu/v1/signal/{}", st.base_url(&sfu, true), m.id);
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
        "screens_hosts_only": m.screen_share == "hosts",
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
    let mut removed = participation::Entity::find()
        .filter(participation::Column::MeetingId.eq(m.id))
        .filter(participation::Column::RemovedAt.is_not_null())
        .filter(participation::Column::Id.gt(m.access_since));
    removed = match (user, guest_key) {
        (Some(u), _) => removed.filter(participation::Column::UserId.eq(u.id)),
        (None, Some(k)) => removed.filter(participation::Column::GuestKey.eq(k)),
        (None, None) => return Ok(()),
    };
    if !host && removed.one(&st.db).await?.is_some() {
        return Err(ApiError::forbidden(
            "removed",
            "The host removed you from this meeting; you cannot join it again.",
        ));
    }
    if m.locked && !host {
        if present_count(st, m.id).await? > 0 {
            return Err(ApiError::forbidden(
                "locked",
                "The host has locked this meeting: nobody new may join.",
            ));
        }
        meeting::Entity::update_many()
            .col_expr(
                meeting::Column::Locked,
                sea_orm::sea_query::Expr::value(false),
            )
            .filter(meeting::Column::Id.eq(m.id))
            .exec(&st.db)
            .await?;
    }
    Ok(())
}

/// How many people the sfuserver reports in the meeting's media session now.
async fn present_count(st: &ApiState, meeting: i64) -> Result<u64, ApiError> {
    use sea_orm::PaginatorTrait;
    Ok(participation::Entity::find()
        .filter(participation::Column::MeetingId.eq(meeting))
        .filter(participation::Column::EnteredAt.is_not_null())
        .filter(participation::Column::LeftAt.is_null())
        .count(&st.db)
        .await?)
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
        Ok(Err(ControlError::Refused(why))) => Err(ApiError::conflict("not_in_meeting", why)),
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
    use sea_orm::sea_query::Expr;
    match action {
        RoomAction::Lock | RoomAction::Unlock | RoomAction::End => {
            meeting::Entity::update_many()
                .col_expr(
                    meeting::Column::Locked,
                    Expr::value(matches!(action, RoomAction::Lock)),
                )
                .filter(meeting::Column::Id.eq(meeting))
                .exec(&st.db)
                .await?;
        }
        RoomAction::Remove { participant_id } => {
            let t = now();
            participation::Entity::update_many()
                .col_expr(participation::Column::RemovedAt, Expr::value(t))
                .col_expr(participation::Column::LeftAt, Expr::value(t))
                .filter(participation::Column::MeetingId.eq(meeting))
                .filter(participation::Column::ParticipantId.eq(participant_id.0.clone()))
                .exec(&st.db)
                .await?;
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
    use sea_orm::{QueryOrder, QuerySelect};
    let m = owned(&st, &me.user, id.into_inner()).await?;
    let t = now();
    let last: Option<i64> = participation::Entity::find()
        .select_only()
        .column(participation::Column::Id)
        .filter(participation::Column::MeetingId.eq(m.id))
        .order_by_desc(participation::Column::Id)
        .into_tuple()
        .one(&st.db)
        .await?;
    let mut am: meeting::ActiveModel = m.into();
    am.code = Set(MeetingCode::random().0);
    am.access_since = Set(last.unwrap_or(0));
    am.updated_at = Set(t);
    let m = am.update(&st.db).await?;
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
    use sea_orm::QueryOrder;
    let m = visible(&st, &me.user, id.into_inner()).await?;
    let rows = participation::Entity::find()
        .filter(participation::Column::MeetingId.eq(m.id))
        .order_by_desc(participation::Column::Id)
        .all(&st.db)
        .await?;
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
