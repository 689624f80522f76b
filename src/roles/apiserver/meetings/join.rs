//! `POST /api/v1/join/{code}`: who may enter (passcode, lobby, removals, the lock), the
//! meeting's servers (allocated again when they went down), and the answer a client needs to
//! reach them: a join token, ICE servers with TURN credentials, the signaling URL.

use actix_web::{HttpResponse, web};
use serde::Serialize;

use super::super::auth::MaybeUser;
use super::super::{ApiState, client_ip, controls, registry};
use super::input::JoinRequest;
use super::{allocate, cancelled, owner_of};
use crate::db::entities::meeting::{self, ScreenShare, Status};
use crate::db::entities::user;
use crate::db::models;
use crate::error::ApiError;
use crate::ids::{MeetingCode, MeetingId, ParticipantId};
use crate::proto::{AllocateFileServer, NodeRole};
use crate::tokens::JoinClaims;
use crate::util::now;

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
    let req = JoinRequest::parse(&body)?;
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
    let name_given = req.name()?;
    let user = who.0.map(|u| u.user);
    // Every join answer carries TURN credentials and opens a participation: joins are
    // limited per signed-in person, and per client address for guests.
    let limited = match &user {
        Some(u) => st.limits.joins_per_user.check(&u.id),
        None => st.limits.joins_per_ip.check(&client_ip(&req_http)),
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
    let (role, invited) = controls::role_of(&st.db, &m, user.as_ref()).await?;
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
            None => format!("ip{}", client_ip(&req_http)),
        };
        controls::check_passcode(&st, &m, &who, req.passcode.as_deref())?;
    }
    let lobby = controls::waits_in_lobby(&m, role, invited);
    check_may_enter(&st, &m, user.as_ref(), guest_key.as_deref(), host).await?;
    let owner = owner_of(&st, &m).await?;
    let (sfu, turn) = servers(&st, &m, &owner).await?;
    let fs = file_server(&st, &m, user.as_ref().unwrap_or(&owner)).await?;
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
                // TURN over TLS when the meeting's turnserver is this box's own and has a
                // certificate (decided once by the wiring).
                st.own_turns_url.clone(),
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

/// The meeting's sfuserver and turnserver: the assigned ones while they are up; else the
/// allocator is asked again (it skips down nodes), once per meeting however many joins find
/// them down at the same time.
async fn servers(
    st: &ApiState,
    m: &meeting::Model,
    owner: &user::Model,
) -> Result<(String, String), ApiError> {
    // The assignment may be missing (e.g. the allocator was asked again and forgot it).
    let assigned = match (&m.sfu, &m.turn) {
        (Some(s), Some(t)) => {
            // A server that went down since: ask the allocator again (it skips down nodes).
            let down = |role, address: &String| {
                st.registry.send(registry::IsDown {
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
                    let a = allocate(st, &owner.email, m.begin_at, m.end_at).await?;
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
    Ok((sfu, turn))
}

/// The meeting's fsserver, asked for on behalf of `whom` the first time; None while there
/// is none (notes files are unavailable, but the meeting itself can go on).
async fn file_server(
    st: &ApiState,
    m: &meeting::Model,
    whom: &user::Model,
) -> Result<Option<String>, ApiError> {
    if let Some(fs) = &m.fs {
        return Ok(Some(fs.clone()));
    }
    let email = whom.email.clone();
    match st.fs_allocator.send(AllocateFileServer { email }).await {
        Ok(Ok(a)) => Ok(Some(
            models::meeting::assign_fs_once(&st.db, m.id, a.fs).await?,
        )),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, meeting = m.id, "no file server for this meeting yet");
            Ok(None)
        }
        Err(e) => {
            tracing::error!(error = %e, "file-server allocator unreachable");
            Ok(None)
        }
    }
}
