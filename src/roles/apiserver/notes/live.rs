//! `GET /api/v1/meetings/{id}/notes/live`: a WebSocket that carries every accepted change of
//! a meeting's notes to everyone following them.
//!
//! Credentials: those of the upgrade request (the browser's session cookie, `Authorization`,
//! or a guest's `?join_token=`), else a first message within 10 s:
//! `{"type":"auth","token":"<session token>"}` or `{"type":"auth","join_token":"…"}`.
//!
//! Server messages (JSON text):
//! - `{"type":"notes","text","version","updated_at","updated_by","by"}`: the current notes
//!   right after connecting, then every accepted change. Changes may arrive out of order
//!   when two are accepted at nearly the same moment: keep the highest `version`.
//! - `{"type":"closed","reason","message"}` before the server ends the connection (a guest
//!   who left the meeting, bad credentials).
//!
//! The server pings every 20 s and ends a connection silent for 60 s; `{"type":"ping"}` gets
//! `{"type":"pong"}`. A follower too slow for the stream of changes gets the current notes
//! again instead of the ones it missed.

use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason};
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::error::RecvError;

use super::access::{Credentials, Member, Who, member, session_user};
use super::{current, live_message};
use crate::error::ApiError;
use crate::roles::apiserver::ApiState;

const MAX_MESSAGE: usize = 16 * 1024;
/// How often a guest's presence in the meeting is checked again.
const GUEST_RECHECK: Duration = Duration::from_secs(10);

pub async fn live(
    req: HttpRequest,
    body: web::Payload,
    st: web::Data<ApiState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let creds = Credentials::extract(&req).await?;
    // Refuse before upgrading when credentials came with the request.
    let known = if creds.is_empty() {
        None
    } else {
        Some(member(&st, &creds, id).await?)
    };
    let (resp, session, stream) = actix_ws::handle(&req, body).map_err(|e| {
        ApiError::bad_request("websocket_expected", format!("Open a WebSocket here: {e}"))
    })?;
    let stream = stream
        .max_frame_size(MAX_MESSAGE)
        .aggregate_continuations()
        .max_continuation_size(MAX_MESSAGE);
    actix_web::rt::spawn(run(st.into_inner(), id, known, session, stream));
    Ok(resp)
}

async fn send(session: &mut actix_ws::Session, s: &str) -> bool {
    session.text(s.to_owned()).await.is_ok()
}

async fn close(mut session: actix_ws::Session, reason: &str, message: &str) {
    let msg = serde_json::json!({"type": "closed", "reason": reason, "message": message});
    let _ = send(&mut session, &msg.to_string()).await;
    let _ = session
        .close(Some(CloseReason {
            code: CloseCode::Policy,
            description: Some(reason.into()),
        }))
        .await;
}

/// Reads the auth message and resolves it.
async fn authenticate(
    st: &ApiState,
    id: i64,
    stream: &mut actix_ws::AggregatedMessageStream,
) -> Result<Member, (&'static str, String)> {
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next()).await;
    let text = match first {
        Ok(Some(Ok(AggregatedMessage::Text(t)))) => t,
        Err(_) => return Err(("timeout", "No auth message within 10 seconds.".into())),
        _ => {
            return Err((
                "bad_auth",
                "The first message must be the auth message.".into(),
            ));
        }
    };
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|_| ("bad_auth", "The auth message is not JSON.".to_string()))?;
    if v["type"] != "auth" {
        return Err((
            "bad_auth",
            "The first message must be {\"type\":\"auth\",\"token\":…}.".into(),
        ));
    }
    let user = match v["token"].as_str() {
        Some(t) => Some(
            session_user(st, t)
                .await
                .map_err(|e| ("server_error", e.message))?
                .ok_or((
                    "bad_auth",
                    "Your session has ended; sign in again.".to_string(),
                ))?,
        ),
        None => None,
    };
    let creds = Credentials {
        user,
        join_token: v["join_token"].as_str().map(str::to_owned),
    };
    member(st, &creds, id)
        .await
        .map_err(|e| ("not_allowed", e.message))
}

async fn run(
    st: Arc<ApiState>,
    id: i64,
    known: Option<Member>,
    mut session: actix_ws::Session,
    mut stream: actix_ws::AggregatedMessageStream,
) {
    let m = match known {
        Some(m) => m,
        None => match authenticate(&st, id, &mut stream).await {
            Ok(m) => m,
            Err((reason, message)) => return close(session, reason, &message).await,
        },
    };
    let is_guest = matches!(m.who, Who::Guest { .. });
    // Subscribe before reading the current notes, so no change falls in between.
    let mut changes = st.notes_hub.subscribe(id);
    let snapshot = |st: Arc<ApiState>| async move {
        current(&st.db, id).await.map(|v| live_message(&v, None))
    };
    match snapshot(st.clone()).await {
        Ok(s) => {
            if !send(&mut session, &s).await {
                return;
            }
        }
        Err(e) => return close(session, "server_error", &e.message).await,
    }
    let mut ping = tokio::time::interval(Duration::from_secs(20));
    let mut recheck = tokio::time::interval(GUEST_RECHECK);
    let mut last_seen = Instant::now();
    loop {
        tokio::select! {
            change = changes.recv() => match change {
                Ok(msg) => {
                    if !send(&mut session, &msg).await {
                        return;
                    }
                }
                Err(RecvError::Lagged(_)) => match snapshot(st.clone()).await {
                    Ok(s) => {
                        if !send(&mut session, &s).await {
                            return;
                        }
                    }
                    Err(e) => return close(session, "server_error", &e.message).await,
                },
                Err(RecvError::Closed) => return,
            },
            incoming = stream.next() => match incoming {
                Some(Ok(AggregatedMessage::Text(t))) => {
                    last_seen = Instant::now();
                    if serde_json::from_str::<serde_json::Value>(&t).is_ok_and(|v| v["type"] == "ping")
                        && !send(&mut session, r#"{"type":"pong"}"#).await
                    {
                        return;
                    }
                }
                Some(Ok(AggregatedMessage::Ping(b))) => {
                    last_seen = Instant::now();
                    let _ = session.pong(&b).await;
                }
                Some(Ok(AggregatedMessage::Pong(_) | AggregatedMessage::Binary(_))) => {
                    last_seen = Instant::now();
                }
                Some(Ok(AggregatedMessage::Close(_))) | None => break,
                Some(Err(e)) => {
                    tracing::debug!(meeting = id, error = %e, "notes WebSocket protocol error");
                    break;
                }
            },
            _ = ping.tick() => {
                if last_seen.elapsed() > Duration::from_secs(60) {
                    break;
                }
                if session.ping(b"").await.is_err() {
                    return;
                }
            }
            _ = recheck.tick(), if is_guest => {
                if let Who::Guest { participant, .. } = &m.who
                    && !guest_still_in(&st, id, participant).await
                {
                    return close(
                        session,
                        "left_meeting",
                        "You left the meeting; its notes are for people in it.",
                    )
                    .await;
                }
            }
        }
    }
    let _ = session.close(None).await;
}

/// Whether a guest's participation is still open.
async fn guest_still_in(st: &ApiState, id: i64, participant: &crate::ids::ParticipantId) -> bool {
    use crate::db::entities::participation;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    match participation::Entity::find()
        .filter(participation::Column::MeetingId.eq(id))
        .filter(participation::Column::ParticipantId.eq(participant.0.clone()))
        .one(&st.db)
        .await
    {
        Ok(Some(p)) => p.left_at.is_none(),
        Ok(None) => false,
        // A database hiccup does not throw people out.
        Err(_) => true,
    }
}
