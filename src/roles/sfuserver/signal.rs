//! The signaling WebSocket, `/sfu/v1/signal/{meeting}` (protocol: `proto` module doc).
//!
//! The first message must be `join` with a token valid for this meeting and this sfuserver,
//! within 10 s. Messages are text JSON of at most 64 KiB; a malformed one gets an `error`
//! and the session goes on. The server pings every 15 s and ends a silent session after 45 s.

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason};
use futures_util::StreamExt;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::unbounded_channel;

use super::{PickWorker, SfuState, WorkerCmd};
use crate::ids::MeetingId;
use crate::proto::signal::{ClientMsg, ServerMsg};

/// The largest signaling message: an SDP for a 25-person meeting (two m-lines per person,
/// simulcast and RTX) is well over 64 KiB.
const MAX_MESSAGE: usize = 1024 * 1024;

pub async fn signal(
    req: HttpRequest,
    body: web::Payload,
    st: web::Data<SfuState>,
    meeting: web::Path<i64>,
) -> Result<HttpResponse, actix_web::Error> {
    let meeting = MeetingId(meeting.into_inner());
    let (resp, session, stream) = actix_ws::handle(&req, body)?;
    let stream = stream
        .max_frame_size(MAX_MESSAGE)
        .aggregate_continuations()
        .max_continuation_size(MAX_MESSAGE);
    actix_web::rt::spawn(run(st.into_inner(), meeting, session, stream));
    Ok(resp)
}

async fn send(session: &mut actix_ws::Session, m: &ServerMsg) -> bool {
    match serde_json::to_string(m) {
        Ok(s) => session.text(s).await.is_ok(),
        Err(_) => false,
    }
}

async fn close(mut session: actix_ws::Session, reason: &str, message: &str) {
    let _ = send(
        &mut session,
        &ServerMsg::Closed {
            reason: reason.into(),
            message: message.into(),
        },
    )
    .await;
    let _ = session
        .close(Some(CloseReason {
            code: CloseCode::Normal,
            description: Some(reason.into()),
        }))
        .await;
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
                    "bad_join",
                    "The first message must be {\"type\":\"join\",\"token\":…}.",
                )
                .await;
            }
        },
        Err(_) => return close(session, "timeout", "No join message within 10 seconds.").await,
        _ => {
            return close(
                session,
                "bad_join",
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
                "bad_token",
                &format!("Join refused: {e}. Ask for a new join link."),
            )
            .await;
        }
    };
    if claims.sfu != st.own_address {
        return close(
            session,
            "wrong_server",
            "This join token is for another media server.",
        )
        .await;
    }
    let participant = claims.participant.clone();
    let Ok(Some(worker)) = st.sfu.send(PickWorker { meeting }).await else {
        return close(
            session,
            "server_error",
            "The media server is not available.",
        )
        .await;
    };
    let (tx, mut rx) = unbounded_channel();
    if worker.send(WorkerCmd::Join { claims, tx }).is_err() {
        return close(
            session,
            "server_error",
            "The media server is not available.",
        )
        .await;
    }

    // 2. Relay both ways until either side ends.
    let mut ping = tokio::time::interval(Duration::from_secs(15));
    let mut last_seen = Instant::now();
    let reason: &'static str = loop {
        tokio::select! {
            m = stream.next() => match m {
                Some(Ok(AggregatedMessage::Text(t))) => {
                    last_seen = Instant::now();
                    match serde_json::from_str::<ClientMsg>(&t) {
                        Ok(msg) => {
                            let leave = matches!(msg, ClientMsg::Leave);
                            if worker.send(WorkerCmd::Signal { participant: participant.clone(), msg }).is_err() {
                                break "server_error";
                            }
                            if leave {
                                break "left";
                            }
                        }
                        Err(e) => {
                            let _ = send(&mut session, &ServerMsg::error("bad_message", format!("Unreadable message: {e}"))).await;
                        }
                    }
                }
                Some(Ok(AggregatedMessage::Binary(_))) => {
                    last_seen = Instant::now();
                    let _ = send(&mut session, &ServerMsg::error("bad_message", "Send JSON text messages.")).await;
                }
                Some(Ok(AggregatedMessage::Ping(b))) => {
                    last_seen = Instant::now();
                    let _ = session.pong(&b).await;
                }
                Some(Ok(AggregatedMessage::Pong(_))) => last_seen = Instant::now(),
                Some(Ok(AggregatedMessage::Close(_))) | None => break "left",
                Some(Err(e)) => {
                    tracing::info!(%participant, error = %e, "signaling protocol error");
                    let _ = send(&mut session, &ServerMsg::Closed { reason: "protocol_error".into(), message: format!("{e}") }).await;
                    break "protocol_error";
                }
            },
            out = rx.recv() => match out {
                Some(msg) => {
                    let closing = matches!(msg, ServerMsg::Closed { .. });
                    if !send(&mut session, &msg).await {
                        break "left";
                    }
                    if closing {
                        break "closed";
                    }
                }
                None => break "closed",
            },
            _ = ping.tick() => {
                if last_seen.elapsed() > Duration::from_secs(45) {
                    break "timeout";
                }
                if session.ping(b"").await.is_err() {
                    break "left";
                }
            }
        }
    };
    let _ = worker.send(WorkerCmd::Leave {
        participant,
        reason,
    });
    let _ = session
        .close(Some(CloseReason {
            code: CloseCode::Normal,
            description: Some(reason.into()),
        }))
        .await;
}
