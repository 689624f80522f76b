//! The signaling WebSocket, `/sfu/v1/signal/{meeting}` (protocol: `proto` module doc).
//!
//! The first message must be `join` with a token valid for this meeting and this sfuserver,
//! within 10 s. Messages are text JSON of at most 1 MiB; a malformed one gets an `error`
//! and the session goes on. The server pings every 15 s and ends a session that has not
//! answered a ping (or sent anything) for 45 s.
//!
//! Everything one session can make the server hold is bounded: messages and bytes per second
//! (a client beyond them is disconnected, reason `rate_limited`), chat per second (excess chat
//! gets an `error` and is dropped), the queue of messages to the client (a client that stops
//! reading is disconnected, reason `slow_reader`, and a write that cannot complete within
//! `ws::WRITE_TIMEOUT` ends the session the same way), and what an offer may declare (worker).

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessage, CloseCode};
use futures_util::StreamExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{PickWorker, SfuState, WorkerCmd};
use crate::ids::MeetingId;
use crate::proto::signal::{ClientMsg, CloseReason, ServerMsg};
use crate::ratelimit::Bucket;
use crate::ws::{Keepalive, Silence, WriteError};

/// The largest signaling message: an SDP for a 25-person meeting (two m-lines per person,
/// simulcast and RTX) is well over 64 KiB.
const MAX_MESSAGE: usize = 1024 * 1024;

/// Messages waiting for the client. A meeting's busiest moments (a room full of people
/// joining, a burst of chat) stay far below; a client that reads nothing fills it.
const OUT_QUEUE: usize = 512;

/// Sessions are numbered so the worker can tell a reconnect's session from the one it replaced.
static SESSIONS: AtomicU64 = AtomicU64::new(1);

/// What one session may send. A browser sends a few messages per second at most (mute,
/// layer sizes, an offer when a track comes or goes, chat typed by a person).
struct Limits {
    messages: Bucket,
    bytes: Bucket,
    chat: Bucket,
}

impl Limits {
    fn new(now: Instant) -> Limits {
        Limits {
            messages: Bucket::new(20.0, 100.0, now),
            bytes: Bucket::new(512.0 * 1024.0, 4.0 * 1024.0 * 1024.0, now),
            chat: Bucket::new(1.0, 10.0, now),
        }
    }
}

/// The outcome of one message against the limits.
enum Verdict {
    Pass,
    /// Dropped with an `error` to the client.
    Refuse(&'static str),
    /// The session ends.
    Disconnect,
}

fn judge(limits: &mut Limits, msg_len: usize, msg: Option<&ClientMsg>, now: Instant) -> Verdict {
    if !limits.messages.take(1.0, now) || !limits.bytes.take(msg_len as f64, now) {
        return Verdict::Disconnect;
    }
    if matches!(msg, Some(ClientMsg::Chat { .. })) && !limits.chat.take(1.0, now) {
        return Verdict::Refuse("Too many chat messages; wait a moment.");
    }
    Verdict::Pass
}

pub async fn signal(
    req: HttpRequest,
    body: web::Payload,
    st: web::Data<SfuState>,
    meeting: web::Path<i64>,
) -> Result<HttpResponse, actix_web::Error> {
    let meeting = MeetingId(meeting.into_inner());
    let (resp, session, stream) = crate::ws::accept(&req, body, MAX_MESSAGE)?;
    actix_web::rt::spawn(run(st.into_inner(), meeting, session, stream));
    Ok(resp)
}

/// Writes one message; false when the client is gone or does not read within
/// [`crate::ws::WRITE_TIMEOUT`].
async fn send(session: &mut actix_ws::Session, m: &ServerMsg) -> bool {
    match serde_json::to_string(m) {
        Ok(s) => crate::ws::text(session, s).await.is_ok(),
        Err(_) => false,
    }
}

async fn close(mut session: actix_ws::Session, reason: CloseReason, message: &str) {
    let _ = send(
        &mut session,
        &ServerMsg::Closed {
            reason,
            message: message.into(),
        },
    )
    .await;
    close_socket(session, reason).await;
}

async fn close_socket(session: actix_ws::Session, reason: CloseReason) {
    let code = match reason {
        CloseReason::RateLimited | CloseReason::ProtocolError | CloseReason::BadJoin => {
            CloseCode::Policy
        }
        _ => CloseCode::Normal,
    };
    crate::ws::close(session, code, reason.as_str()).await;
}

async fn run(
    st: std::sync::Arc<SfuState>,
    meeting: MeetingId,
    mut session: actix_ws::Session,
    mut stream: actix_ws::AggregatedMessageStream,
) {
    // 1. The join message.
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next()).await;
    let token = match first {
        Ok(Some(Ok(AggregatedMessage::Text(t)))) => match serde_json::from_str::<ClientMsg>(&t) {
            Ok(ClientMsg::Join { token }) => token,
            _ => {
                return close(
                    session,
                    CloseReason::BadJoin,
                    "The first message must be {\"type\":\"join\",\"token\":…}.",
                )
                .await;
            }
        },
        Err(_) => {
            return close(
                session,
                CloseReason::Timeout,
                "No join message within 10 seconds.",
            )
            .await;
        }
        _ => {
            return close(
                session,
                CloseReason::BadJoin,
                "The first message must be a join message.",
            )
            .await;
        }
    };
    let claims = match st.keys.verify_join(&token, meeting, crate::util::now()) {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(%meeting, error = %e, "join token refused");
            return close(
                session,
                CloseReason::BadToken,
                &format!("Join refused: {e}. Ask for a new join link."),
            )
            .await;
        }
    };
    if claims.sfu != st.own_address {
        return close(
            session,
            CloseReason::WrongServer,
            "This join token is for another media server.",
        )
        .await;
    }
    let participant = claims.participant.clone();
    let Ok(Some(worker)) = st.sfu.send(PickWorker { meeting }).await else {
        return close(
            session,
            CloseReason::ServerError,
            "The media server is not available.",
        )
        .await;
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(OUT_QUEUE);
    let sid = SESSIONS.fetch_add(1, Ordering::Relaxed);
    if worker
        .send(WorkerCmd::Join {
            claims,
            tx,
            session: sid,
        })
        .is_err()
    {
        return close(
            session,
            CloseReason::ServerError,
            "The media server is not available.",
        )
        .await;
    }

    // 2. Relay both ways until either side ends. Nothing in this loop waits on the client
    //    for longer than ws::WRITE_TIMEOUT, so the liveness check always runs.
    let mut keepalive = Keepalive::new(Duration::from_secs(15), Duration::from_secs(45));
    let mut limits = Limits::new(Instant::now());
    let reason = loop {
        tokio::select! {
            m = stream.next() => match m {
                Some(Ok(AggregatedMessage::Text(t))) => {
                    let now = Instant::now();
                    keepalive.seen();
                    let parsed = serde_json::from_str::<ClientMsg>(&t);
                    match judge(&mut limits, t.len(), parsed.as_ref().ok(), now) {
                        Verdict::Disconnect => {
                            tracing::info!(%participant, "signaling rate limit exceeded; disconnecting");
                            break CloseReason::RateLimited;
                        }
                        Verdict::Refuse(why) => {
                            if !send(&mut session, &ServerMsg::error("rate_limited", why)).await {
                                break CloseReason::SlowReader;
                            }
                            continue;
                        }
                        Verdict::Pass => {}
                    }
                    match parsed {
                        Ok(msg) => {
                            let leave = matches!(msg, ClientMsg::Leave);
                            if worker.send(WorkerCmd::Signal { participant: participant.clone(), session: sid, msg }).is_err() {
                                break CloseReason::ServerError;
                            }
                            if leave {
                                break CloseReason::Left;
                            }
                        }
                        Err(e) => {
                            let e = ServerMsg::error("bad_message", format!("Unreadable message: {e}"));
                            if !send(&mut session, &e).await {
                                break CloseReason::SlowReader;
                            }
                        }
                    }
                }
                Some(Ok(AggregatedMessage::Binary(b))) => {
                    let now = Instant::now();
                    keepalive.seen();
                    if let Verdict::Disconnect = judge(&mut limits, b.len(), None, now) {
                        break CloseReason::RateLimited;
                    }
                    if !send(&mut session, &ServerMsg::error("bad_message", "Send JSON text messages.")).await {
                        break CloseReason::SlowReader;
                    }
                }
                Some(Ok(AggregatedMessage::Ping(b))) => {
                    let now = Instant::now();
                    keepalive.seen();
                    if let Verdict::Disconnect = judge(&mut limits, b.len(), None, now) {
                        break CloseReason::RateLimited;
                    }
                    if crate::ws::pong(&mut session, &b).await.is_err() {
                        break CloseReason::SlowReader;
                    }
                }
                Some(Ok(AggregatedMessage::Pong(_))) => keepalive.seen(),
                Some(Ok(AggregatedMessage::Close(_))) | None => break CloseReason::Left,
                Some(Err(e)) => {
                    tracing::info!(%participant, error = %e, "signaling protocol error");
                    let _ = send(&mut session, &ServerMsg::Closed { reason: CloseReason::ProtocolError, message: format!("{e}") }).await;
                    break CloseReason::ProtocolError;
                }
            },
            out = rx.recv() => match out {
                Some(msg) => {
                    let closing = matches!(msg, ServerMsg::Closed { .. });
                    if !send(&mut session, &msg).await {
                        break CloseReason::SlowReader;
                    }
                    if closing {
                        break CloseReason::Closed;
                    }
                }
                None => break CloseReason::Closed,
            },
            _ = keepalive.due() => match keepalive.ping(&mut session).await {
                Ok(()) => {}
                Err(Silence::Idle) => break CloseReason::Timeout,
                Err(Silence::Write(WriteError::Closed)) => break CloseReason::Left,
                Err(Silence::Write(WriteError::NotReading)) => break CloseReason::SlowReader,
            },
        }
    };
    let _ = worker.send(WorkerCmd::Leave {
        participant,
        session: sid,
        reason,
    });
    if matches!(reason, CloseReason::RateLimited | CloseReason::SlowReader) {
        let message = if reason == CloseReason::RateLimited {
            "This connection sent more than a client may; it was closed."
        } else {
            "This connection did not read what the server sent; it was closed."
        };
        // Best effort: a slow reader may never see it.
        let closed = ServerMsg::Closed {
            reason,
            message: message.into(),
        };
        let _ = send(&mut session, &closed).await;
    }
    close_socket(session, reason).await;
}
