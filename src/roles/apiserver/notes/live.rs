//! `GET /api/v1/meetings/{id}/notes/live`: a WebSocket over which everyone editing a
//! meeting's notes keeps their copy of the CRDT document in sync (the y-sync protocol of
//! y-protocols/yrs) and sees the others' cursors (awareness).
//!
//! Credentials: those of the upgrade request (the browser's session cookie, `Authorization`,
//! or a guest's `?join_token=`), else a first message within 10 s:
//! `{"type":"auth","token":"<session token>"}` or `{"type":"auth","join_token":"…"}`.
//!
//! Binary messages are y-sync messages (`varuint` type, then the payload), both ways:
//! - `[0, 0, state vector]` sync step 1: "this is what I have"; answered with step 2.
//! - `[0, 1, update]` sync step 2 and `[0, 2, update]` update: changes. The server stores a
//!   change before passing it on and then acknowledges it (below). Changes may only add
//!   content in the names (client ids) the sender introduced.
//! - `[1, awareness update]`: cursors and names; the server puts the member's name in
//!   `user.name` and drops states for other connections' ids. `[3]` asks for all states.
//!
//! Text messages are JSON, server to client:
//! - `{"type":"hello","version","name","user_id"}` first; then the server sends its step 1
//!   (the client answers with step 2: edits made offline) and the others' awareness.
//! - `{"type":"ack","n","version"}` after the n-th change message of this connection
//!   (step 2 or update) is stored (or was known already): acknowledged means durable.
//! - `{"type":"closed","reason","message"}` before the server ends the connection. Reasons:
//!   `bad_auth`, `not_allowed`, `timeout`, `left_meeting` (a guest who left), `rate_limited`
//!   (too many or too large changes: `notes.live_*`), `bad_update`, `notes_too_large`,
//!   `reload` (the server dropped its copy: reconnect at once), `server_error`.
//!
//! and client to server `{"type":"ping"}` (→ `{"type":"pong"}`). The server pings every
//! 20 s and ends a connection silent for 60 s. A follower too slow for the stream of
//! changes gets the whole document again instead of the ones it missed.

use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessage, CloseCode};
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::error::RecvError;

use tokio::sync::broadcast;
use yrs::encoding::read::Cursor;
use yrs::sync::protocol::MessageReader;
use yrs::sync::{Message, SyncMessage};
use yrs::updates::decoder::DecoderV1;
use yrs::updates::encoder::Encode;

use super::access::{Credentials, Member, Who, member, session_user};
use super::crdt;
use super::hub::{self, Author, Event, LiveDoc, LiveRefused};
use crate::error::ApiError;
use crate::roles::apiserver::ApiState;
use crate::ws::Keepalive;

/// The largest message: a change that pastes the largest notes, with room for its encoding.
const MAX_MESSAGE: usize = 2 * super::MAX_NOTES_BYTES + 64 * 1024;
/// How often a guest's presence in the meeting, and a signed-in member's session, are
/// checked again.
const RECHECK: Duration = Duration::from_secs(10);

/// A browser names the page that opens a WebSocket in `Origin`, and sends our session cookie
/// whatever the page: another site's page must not get a live notes connection in the user's
/// name. Clients that are not browsers send no `Origin` and authenticate explicitly.
fn same_origin(req: &HttpRequest, st: &ApiState) -> bool {
    let Some(origin) = req.headers().get(actix_web::http::header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    if origin.eq_ignore_ascii_case(st.public_url.trim_end_matches('/')) {
        return true;
    }
    let host = req.connection_info().host().to_ascii_lowercase();
    let scheme = if st.tls { "https" } else { "http" };
    origin.eq_ignore_ascii_case(&format!("{scheme}://{host}"))
}

pub async fn live(
    req: HttpRequest,
    body: web::Payload,
    st: web::Data<ApiState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    if !same_origin(&req, &st) {
        return Err(ApiError::forbidden(
            "cross_origin",
            "The notes connection is only for pages of this appliance.",
        ));
    }
    let creds = Credentials::extract(&req).await?;
    // Refuse before upgrading when credentials came with the request.
    let known = if creds.is_empty() {
        None
    } else {
        Some(member(&st, &creds, id).await?)
    };
    let (resp, session, stream) = crate::ws::accept(&req, body, MAX_MESSAGE).map_err(|e| {
        ApiError::bad_request("websocket_expected", format!("Open a WebSocket here: {e}"))
    })?;
    actix_web::rt::spawn(run(st.into_inner(), id, known, session, stream));
    Ok(resp)
}

/// Writes a text message; false when the peer is gone or does not read
/// ([`crate::ws::WRITE_TIMEOUT`]).
async fn send(session: &mut actix_ws::Session, s: &str) -> bool {
    crate::ws::text(session, s).await.is_ok()
}

async fn close(mut session: actix_ws::Session, reason: &str, message: &str) {
    let msg = serde_json::json!({"type": "closed", "reason": reason, "message": message});
    let _ = send(&mut session, &msg.to_string()).await;
    crate::ws::close(session, CloseCode::Policy, reason).await;
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
    let (user, session_id) = match v["token"].as_str() {
        Some(t) => {
            let (u, s) = session_user(st, t)
                .await
                .map_err(|e| ("server_error", e.message))?
                .ok_or((
                    "bad_auth",
                    "Your session has ended; sign in again.".to_string(),
                ))?;
            (Some(u), Some(s))
        }
        None => (None, None),
    };
    let creds = Credentials {
        user,
        session_id,
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
    let doc = match st.notes_hub.open(&st, id).await {
        Ok(d) => d,
        Err(e) => return close(session, "server_error", &e.message).await,
    };
    let (conn, mut events) = doc.join();
    let reason = follow(&st, &doc, conn, &m, &mut events, &mut session, &mut stream).await;
    doc.leave(&st, conn);
    match reason {
        Some((reason, message)) => close(session, reason, &message).await,
        None => {
            let _ = session.close(None).await;
        }
    }
}

/// Sends a y-sync frame.
async fn send_bin(session: &mut actix_ws::Session, b: Vec<u8>) -> bool {
    crate::ws::binary(session, b).await.is_ok()
}

/// Serves one connection until it ends; `Some((reason, message))` when the server ends it.
async fn follow(
    st: &Arc<ApiState>,
    doc: &Arc<LiveDoc>,
    conn: u64,
    m: &Member,
    events: &mut broadcast::Receiver<Event>,
    session: &mut actix_ws::Session,
    stream: &mut actix_ws::AggregatedMessageStream,
) -> Option<(&'static str, String)> {
    let writable = m.check_writable().is_ok();
    let author = Author::of(m);
    let hello = serde_json::json!({
        "type": "hello", "version": doc.version().await, "name": m.name(), "user_id": m.user_id(),
        "writable": writable,
    });
    if !send(session, &hello.to_string()).await {
        return None;
    }
    let step1 = Message::Sync(SyncMessage::SyncStep1(doc.state_vector().await)).encode_v1();
    if !send_bin(session, step1).await {
        return None;
    }
    if let Some(all) = doc.awareness_all()
        && !send_bin(session, all).await
    {
        return None;
    }
    let mut acks: u64 = 0;
    let mut keepalive = Keepalive::new(Duration::from_secs(20), Duration::from_secs(60));
    let mut recheck = tokio::time::interval(RECHECK);
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(Event::Update { from, frame } | Event::Awareness { from, frame }) => {
                    if from != conn && !send_bin(session, frame.to_vec()).await {
                        return None;
                    }
                }
                Ok(Event::Reload) => {
                    return Some(("reload", "The notes were reloaded on the server; connect again.".into()));
                }
                Err(RecvError::Lagged(_)) => {
                    // Missed changes: the whole document (applying known parts is harmless).
                    let (all, _) = doc.diff_since(&yrs::StateVector::default()).await;
                    if !send_bin(session, hub::update_frame(&all)).await {
                        return None;
                    }
                }
                Err(RecvError::Closed) => return None,
            },
            incoming = stream.next() => {
                keepalive.seen();
                match incoming {
                    Some(Ok(AggregatedMessage::Binary(b))) => {
                        if let Err(e) = st.notes_hub.limits(st).live(doc.meeting, &author.tag, b.len(), Instant::now()) {
                            tracing::info!(meeting = doc.meeting, member = %author.tag, "notes live changes rate-limited");
                            return Some(("rate_limited", format!(
                                "Too many or too large changes at once; wait {} s and connect again.",
                                e.as_secs() + 1
                            )));
                        }
                        match handle_binary(st, doc, conn, m, &author, writable, &b, session, &mut acks).await {
                            Ok(true) => {}
                            Ok(false) => return None,
                            Err(r) => return Some(r),
                        }
                    }
                    Some(Ok(AggregatedMessage::Text(t))) => {
                        if serde_json::from_str::<serde_json::Value>(&t).is_ok_and(|v| v["type"] == "ping")
                            && !send(session, r#"{"type":"pong"}"#).await
                        {
                            return None;
                        }
                    }
                    Some(Ok(AggregatedMessage::Ping(b))) => {
                        if crate::ws::pong(session, &b).await.is_err() {
                            return None;
                        }
                    }
                    Some(Ok(AggregatedMessage::Pong(_))) => {}
                    Some(Ok(AggregatedMessage::Close(_))) | None => return None,
                    Some(Err(e)) => {
                        tracing::debug!(meeting = doc.meeting, error = %e, "notes WebSocket protocol error");
                        return None;
                    }
                }
            },
            _ = keepalive.due() => {
                if keepalive.ping(session).await.is_err() {
                    return None;
                }
            }
            _ = recheck.tick() => {
                if let Who::Guest { participant, .. } = &m.who
                    && !guest_still_in(st, doc.meeting, participant).await
                {
                    return Some((
                        "left_meeting",
                        "You left the meeting; its notes are for people in it.".into(),
                    ));
                }
                // A session revoked or a person disabled since the connection opened.
                if let Some(s) = m.session_id
                    && matches!(super::super::auth::session_still_valid(st, s).await, Ok(false))
                {
                    return Some((
                        "signed_out",
                        "Your session has ended; sign in again.".into(),
                    ));
                }
            }
        }
    }
}

/// One binary message (it may hold several y-sync messages). `Ok(false)`: the connection is
/// gone; `Err`: end it for this reason.
#[allow(clippy::too_many_arguments)]
async fn handle_binary(
    st: &Arc<ApiState>,
    doc: &Arc<LiveDoc>,
    conn: u64,
    m: &Member,
    author: &Author,
    writable: bool,
    bytes: &[u8],
    session: &mut actix_ws::Session,
    acks: &mut u64,
) -> Result<bool, (&'static str, String)> {
    let bad = |what: &str| {
        (
            "bad_update",
            format!("That message could not be read ({what})."),
        )
    };
    let mut decoder = DecoderV1::new(Cursor::new(bytes));
    let msgs: Vec<Message> = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        MessageReader::new(&mut decoder).collect::<Result<Vec<_>, _>>()
    }))
    .map_err(|_| bad("malformed"))?
    .map_err(|_| bad("malformed"))?;
    // The reader stops quietly at a message cut short: all of it must have been read.
    let read: usize = msgs.iter().map(|m| m.encode_v1().len()).sum();
    if read != bytes.len() || msgs.is_empty() {
        return Err(bad("truncated"));
    }
    for msg in msgs {
        match msg {
            Message::Sync(SyncMessage::SyncStep1(sv)) => {
                let (diff, _) = doc.diff_since(&sv).await;
                let frame = Message::Sync(SyncMessage::SyncStep2(diff)).encode_v1();
                if !send_bin(session, frame).await {
                    return Ok(false);
                }
            }
            Message::Sync(SyncMessage::SyncStep2(u) | SyncMessage::Update(u)) => {
                if !writable {
                    return Err((
                        "not_allowed",
                        "This meeting was cancelled; its notes can be read, not changed.".into(),
                    ));
                }
                let version = match doc.apply_live(st, conn, author, &u).await {
                    Ok(v) => v,
                    Err(LiveRefused::Unavailable) => {
                        return Err((
                            "reload",
                            "The notes could not be saved just now; connect again.".into(),
                        ));
                    }
                    Err(LiveRefused::Update(crdt::UpdateRefused::TooLarge(max))) => {
                        return Err((
                            "notes_too_large",
                            format!("Notes have at most {max} bytes; that change was not saved."),
                        ));
                    }
                    Err(LiveRefused::Update(e)) => {
                        tracing::info!(meeting = doc.meeting, member = %author.tag, error = %e, "notes change refused");
                        return Err(("bad_update", format!("That change was refused: {e}.")));
                    }
                };
                *acks += 1;
                let ack = serde_json::json!({"type": "ack", "n": *acks, "version": version});
                if !send(session, &ack.to_string()).await {
                    return Ok(false);
                }
            }
            Message::Awareness(a) => doc.awareness_update(conn, &m.name(), &a.encode_v1()),
            Message::AwarenessQuery => {
                if let Some(all) = doc.awareness_all()
                    && !send_bin(session, all).await
                {
                    return Ok(false);
                }
            }
            Message::Auth(_) | Message::Custom(..) => {}
        }
    }
    Ok(true)
}

/// Whether a guest's participation is still open.
async fn guest_still_in(st: &ApiState, id: i64, participant: &crate::ids::ParticipantId) -> bool {
    match crate::db::models::participation::by_participant(&st.db, id, &participant.0).await {
        Ok(Some(p)) => p.left_at.is_none(),
        Ok(None) => false,
        // A database hiccup does not throw people out.
        Err(_) => true,
    }
}
