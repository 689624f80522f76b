//! Who may read and write a meeting's notes and files.
//!
//! - Signed-in people: the owner, the invitees (by email), and everyone who was in the
//!   meeting while signed in (a participation row with their user id that the sfuserver
//!   reported entering; a join answer alone is not enough). They keep access after the
//!   meeting — the notes are what people keep — unless a host removed them, or the owner gave
//!   the meeting a new code since (`access_since`: a personal room's link that went too far).
//! - Guests have no account; a guest is known by the join token the join answer gave it
//!   (header `X-Join-Token`, or `?join_token=` where headers cannot be set: `<img>`, a
//!   WebSocket). The token's signature and meeting are checked; its short expiry is not (it
//!   exists to open the media session at once), presence is: the sfuserver must have reported
//!   the guest entering, the participation must still be open (the sfuserver closes it when
//!   the guest leaves), not removed by a host, and not older than the longest meeting. So a
//!   guest reads and writes only while in the meeting.
//!
//! Anyone else gets 404 for a meeting that exists (we do not confirm it does), or 401 when
//! they presented nothing.

use actix_web::{FromRequest, HttpRequest, dev::Payload};
use std::future::Future;
use std::pin::Pin;

use super::super::ApiState;
use super::super::auth::MaybeUser;
use crate::db::entities::{meeting, user};
use crate::db::models;
use crate::error::ApiError;
use crate::ids::{MeetingId, ParticipantId};
use crate::util::now;

/// The header a guest sends its join token in.
pub const JOIN_TOKEN_HEADER: &str = "X-Join-Token";

/// What a request presented: a session (Bearer or cookie) and/or a guest's join token.
pub struct Credentials {
    pub user: Option<user::Model>,
    /// The session `user` came with (connections re-check it while they last).
    pub session_id: Option<i64>,
    pub join_token: Option<String>,
}

impl Credentials {
    pub fn is_empty(&self) -> bool {
        self.user.is_none() && self.join_token.is_none()
    }
}

fn join_token_of(req: &HttpRequest) -> Option<String> {
    if let Some(v) = req.headers().get(JOIN_TOKEN_HEADER) {
        return v.to_str().ok().map(|s| s.trim().to_string());
    }
    url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "join_token")
        .map(|(_, v)| v.into_owned())
        .filter(|t| !t.is_empty())
}

impl FromRequest for Credentials {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;
    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let maybe = MaybeUser::from_request(req, payload);
        let join_token = join_token_of(req);
        Box::pin(async move {
            let (user, session_id) = match maybe.await?.0 {
                Some(u) => (Some(u.user), Some(u.session_id)),
                None => (None, None),
            };
            Ok(Credentials {
                user,
                session_id,
                join_token,
            })
        })
    }
}

/// A session token's person and session, by the sign-in rule (`auth::lookup`). For the notes
/// WebSocket's auth message.
pub async fn session_user(
    st: &ApiState,
    token: &str,
) -> Result<Option<(user::Model, i64)>, ApiError> {
    Ok(super::super::auth::lookup(st, token)
        .await?
        .map(|a| (a.user, a.session_id)))
}

/// Who is asking.
#[derive(Clone, Debug)]
pub enum Who {
    User(user::Model),
    Guest {
        participant: ParticipantId,
        name: String,
    },
}

/// Someone allowed into a meeting's notes and files.
pub struct Member {
    pub meeting: meeting::Model,
    pub who: Who,
    /// A signed-in member's session.
    pub session_id: Option<i64>,
}

impl Member {
    pub fn is_owner(&self) -> bool {
        matches!(&self.who, Who::User(u) if u.id == self.meeting.owner_id)
    }
    pub fn user_id(&self) -> Option<i64> {
        match &self.who {
            Who::User(u) => Some(u.id),
            Who::Guest { .. } => None,
        }
    }
    pub fn name(&self) -> String {
        match &self.who {
            Who::User(u) => u.display_name.clone(),
            Who::Guest { name, .. } => name.clone(),
        }
    }
    /// `u:<user id>` or `g:<participant id>`, as file grants name uploaders.
    pub fn tag(&self) -> String {
        match &self.who {
            Who::User(u) => format!("u:{}", u.id),
            Who::Guest { participant, .. } => format!("g:{participant}"),
        }
    }
    pub fn email(&self) -> Option<&str> {
        match &self.who {
            Who::User(u) => Some(&u.email),
            Who::Guest { .. } => None,
        }
    }
    /// Changes are refused on a cancelled meeting (reading stays possible).
    pub fn check_writable(&self) -> Result<(), ApiError> {
        if self.meeting.status == meeting::Status::Cancelled {
            return Err(ApiError::new(
                actix_web::http::StatusCode::GONE,
                "meeting_cancelled",
                "This meeting was cancelled.",
            ));
        }
        Ok(())
    }
}

fn no_such_meeting() -> ApiError {
    ApiError::not_found("No such meeting.")
}

/// The member the credentials make of the asker, or why not.
pub async fn member(st: &ApiState, creds: &Credentials, id: i64) -> Result<Member, ApiError> {
    let m = models::meeting::by_id(&st.db, id)
        .await?
        .ok_or_else(no_such_meeting)?;
    if let Some(u) = &creds.user
        && (m.owner_id == u.id
            || models::meeting::is_invited(&st.db, m.id, &u.email).await?
            || models::participation::user_was_present(&st.db, m.id, u.id, m.access_since).await?)
    {
        return Ok(Member {
            meeting: m,
            who: Who::User(u.clone()),
            session_id: creds.session_id,
        });
    }
    if let Some(token) = &creds.join_token {
        return guest(st, m, token).await;
    }
    if creds.user.is_some() {
        Err(no_such_meeting())
    } else {
        Err(ApiError::unauthorized(
            "Sign in first, or use the join token of the meeting you are in.",
        ))
    }
}

async fn guest(st: &ApiState, m: meeting::Model, token: &str) -> Result<Member, ApiError> {
    // Expiry deliberately not checked (a `now` before every expiry): see the module doc.
    let claims = st
        .keys
        .verify_join(token, MeetingId(m.id), i64::MIN)
        .map_err(|e| {
            tracing::info!(meeting = m.id, error = %e, "join token refused for notes");
            ApiError::unauthorized("That join token is not valid for this meeting.")
        })?;
    let p = models::participation::by_participant(&st.db, m.id, &claims.participant.0).await?;
    let oldest = now() - st.cfg.meetings.max_duration.as_secs_i64();
    match p {
        Some(p)
            if p.entered_at.is_some()
                && p.left_at.is_none()
                && p.removed_at.is_none()
                && p.joined_at >= oldest
                && p.id > m.access_since =>
        {
            Ok(Member {
                meeting: m,
                who: Who::Guest {
                    participant: claims.participant,
                    name: p.display_name,
                },
                session_id: None,
            })
        }
        _ => Err(ApiError::forbidden(
            "not_in_meeting",
            "Guests see the notes and files only while they are in the meeting.",
        )),
    }
}
