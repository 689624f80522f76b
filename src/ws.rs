//! The shape every server-side WebSocket session of the appliance has (signaling, live
//! notes, the bridge): a message size limit set at the upgrade; writes that give up after
//! [`WRITE_TIMEOUT`], so a peer that stops reading cannot stall its session's loop and the
//! idle check always runs; a ping every so often and an end after a silence
//! ([`Keepalive`]); a close frame that says why.

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessageStream, CloseCode, Session};
use std::time::{Duration, Instant};

/// A write that takes longer than this means the peer is not reading.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Upgrades `req` to a WebSocket whose messages (continuations joined) are at most
/// `max_message` bytes; a larger one ends the stream with a protocol error.
pub fn accept(
    req: &HttpRequest,
    body: web::Payload,
    max_message: usize,
) -> Result<(HttpResponse, Session, AggregatedMessageStream), actix_web::Error> {
    let (resp, session, stream) = actix_ws::handle(req, body)?;
    let stream = stream
        .max_frame_size(max_message)
        .aggregate_continuations()
        .max_continuation_size(max_message);
    Ok((resp, session, stream))
}

/// Why a write did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteError {
    /// The session is closed.
    Closed,
    /// The peer did not take it within [`WRITE_TIMEOUT`].
    NotReading,
}

async fn bounded(
    write: impl std::future::Future<Output = Result<(), actix_ws::Closed>>,
) -> Result<(), WriteError> {
    match tokio::time::timeout(WRITE_TIMEOUT, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(WriteError::Closed),
        Err(_) => Err(WriteError::NotReading),
    }
}

pub async fn text(session: &mut Session, text: impl Into<String>) -> Result<(), WriteError> {
    bounded(session.text(text.into())).await
}

pub async fn binary(session: &mut Session, b: impl Into<web::Bytes>) -> Result<(), WriteError> {
    bounded(session.binary(b.into())).await
}

/// Answers a ping.
pub async fn pong(session: &mut Session, payload: &[u8]) -> Result<(), WriteError> {
    bounded(session.pong(payload)).await
}

/// Ends the session with a close frame: `code` and `reason` (a short machine-readable word).
pub async fn close(session: Session, code: CloseCode, reason: &str) {
    let frame = actix_ws::CloseReason {
        code,
        description: Some(reason.into()),
    };
    let _ = tokio::time::timeout(WRITE_TIMEOUT, session.close(Some(frame))).await;
}

/// Pings the peer every `every` and notices when nothing came from it for `idle`.
pub struct Keepalive {
    ping: tokio::time::Interval,
    last_seen: Instant,
    idle: Duration,
}

/// Why [`Keepalive::ping`] ends a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Silence {
    /// Nothing came from the peer for the idle limit.
    Idle,
    Write(WriteError),
}

impl Keepalive {
    pub fn new(every: Duration, idle: Duration) -> Keepalive {
        Keepalive {
            ping: tokio::time::interval(every),
            last_seen: Instant::now(),
            idle,
        }
    }

    /// Something came from the peer.
    pub fn seen(&mut self) {
        self.last_seen = Instant::now();
    }

    /// Resolves when the next ping is due (cancel-safe: a `select!` branch).
    pub async fn due(&mut self) {
        self.ping.tick().await;
    }

    /// At a [`Keepalive::due`] time: the session ends if the peer has been silent too long,
    /// else it is pinged.
    pub async fn ping(&mut self, session: &mut Session) -> Result<(), Silence> {
        if self.last_seen.elapsed() > self.idle {
            return Err(Silence::Idle);
        }
        bounded(session.ping(b"")).await.map_err(Silence::Write)
    }
}
