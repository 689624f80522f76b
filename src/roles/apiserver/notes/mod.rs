//! Meeting notes (minutes): one Markdown document per meeting that everyone in it edits at
//! once. The document is a CRDT (Yjs in the browser, yrs here): concurrent edits merge
//! without conflicts and without anyone's text being lost or invented.
//!
//! ```text
//! GET  /api/v1/meetings/{id}/notes                    → {text, version, updated_at, updated_by}
//! PUT  /api/v1/meetings/{id}/notes {text, version}    → the notes after the change (see below)
//! GET  /api/v1/meetings/{id}/notes/versions           → history, newest first (history.rs)
//! GET  /api/v1/meetings/{id}/notes/versions/{v}       → that version's text
//! POST /api/v1/meetings/{id}/notes/versions/{v}/restore → its text becomes the current text
//! GET  /api/v1/meetings/{id}/notes/live               → WebSocket, y-sync protocol (live.rs)
//! POST /api/v1/meetings/{id}/notes/send               → mails the rendered notes (mail.rs)
//! ```
//!
//! `version` counts stored changes (live keystrokes and REST saves alike). A `PUT` says which
//! version its text was made on; the server applies the difference between that version's
//! text and the new text (by words) to the document:
//! - made on the current version: the text becomes exactly the new text;
//! - made on an older version: the change is merged with everything since, as if typed
//!   then (both sides' words are kept). This works while the server still has the changes
//!   since that version, i.e. for versions since the last compaction (which folds changes
//!   in every few hundred changes and when the notes go idle);
//! - older than that, or newer than the current version: `409 version_conflict` with the
//!   current `text` and `version`, nothing changed: apply your change to that text and PUT
//!   again with that version.
//!
//! A restore is a change like any other (everyone following sees it at once) and is kept in
//! history, as is every REST save. REST saves (PUT, restore) are limited per member and
//! meeting (`notes.saves_per_minute`, `notes.save_burst`: 429 + `Retry-After`), and the
//! history per meeting to `notes.history_budget` bytes (history.rs).
//!
//! Live updates go over an apiserver WebSocket rather than the sfuserver's signaling channel:
//! notes outlive the media session, are read by people who are not in the call, and must not
//! depend on which sfuserver (on which host) runs the meeting. The documents live in this
//! process (hub.rs); several apiservers behind one database would need a shared bus (not
//! built).

mod access;
mod awareness;
mod crdt;
mod history;
mod hub;
mod limits;
mod live;
mod mail;

pub use access::{Credentials, JOIN_TOKEN_HEADER, Member, Who, member};
pub use hub::NotesHub;

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Instant;

use super::ApiState;
use crate::error::{ApiError, json_error};
use hub::Author;

/// The largest notes document, in bytes of UTF-8.
pub const MAX_NOTES_BYTES: usize = 1024 * 1024;

pub fn routes(cfg: &mut web::ServiceConfig) {
    // Notes may be larger than the API's usual 64 KiB bodies.
    let big_json = web::JsonConfig::default()
        .limit(MAX_NOTES_BYTES + 4096)
        .error_handler(|e, _| json_error(e).into());
    cfg.service(
        web::resource("/meetings/{id}/notes")
            .app_data(big_json)
            .route(web::get().to(get))
            .route(web::put().to(put)),
    )
    .route(
        "/meetings/{id}/notes/versions",
        web::get().to(history::versions),
    )
    .route(
        "/meetings/{id}/notes/versions/{v}",
        web::get().to(history::version),
    )
    .route(
        "/meetings/{id}/notes/versions/{v}/restore",
        web::post().to(restore),
    )
    .route("/meetings/{id}/notes/live", web::get().to(live::live))
    .route("/meetings/{id}/notes/send", web::post().to(mail::send));
}

/// The notes as the API shows them.
#[derive(Serialize, Clone, Debug)]
pub struct NotesView {
    pub meeting_id: i64,
    pub text: String,
    pub version: i64,
    pub updated_at: i64,
    pub updated_by: Option<i64>,
}

/// The current notes (version 0 and no text before the first change).
pub async fn current(st: &Arc<ApiState>, meeting_id: i64) -> Result<NotesView, ApiError> {
    Ok(st.notes_hub.open(st, meeting_id).await?.view().await)
}

/// A REST save may go ahead (or 429).
fn check_save_rate(st: &ApiState, m: &Member) -> Result<(), ApiError> {
    st.notes_hub
        .limits(st)
        .save(m.meeting.id, &m.tag(), Instant::now())
        .map_err(|wait| {
            tracing::info!(meeting = m.meeting.id, member = %m.tag(), "notes saves rate-limited");
            ApiError::rate_limited(
                wait.as_secs() + 1,
                format!(
                    "Too many saves of these notes; at most {} a minute. Try again shortly.",
                    st.cfg.notes.saves_per_minute
                ),
            )
        })
}

/// `GET /api/v1/meetings/{id}/notes`
pub async fn get(
    st: web::Data<ApiState>,
    creds: Credentials,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let m = member(&st, &creds, id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(current(&st.into_inner(), m.meeting.id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutNotes {
    pub text: String,
    /// The version the text was made on.
    pub version: i64,
}

/// `PUT /api/v1/meetings/{id}/notes {text, version}`
pub async fn put(
    st: web::Data<ApiState>,
    creds: Credentials,
    id: web::Path<i64>,
    body: web::Json<PutNotes>,
) -> Result<HttpResponse, ApiError> {
    let m = member(&st, &creds, id.into_inner()).await?;
    m.check_writable()?;
    check_save_rate(&st, &m)?;
    let body = body.into_inner();
    let st = st.into_inner();
    let doc = st.notes_hub.open(&st, m.meeting.id).await?;
    let view = doc
        .set_text(&st, &Author::of(&m), body.version, &body.text, "save")
        .await?;
    tracing::info!(
        meeting = m.meeting.id,
        version = view.version,
        "notes saved"
    );
    Ok(HttpResponse::Ok().json(view))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Restore {
    /// Accepted for older clients and ignored: a restore applies to the current text.
    #[allow(dead_code)]
    pub version: Option<i64>,
}

/// `POST /api/v1/meetings/{id}/notes/versions/{v}/restore`: the text of version `v` becomes
/// the current text (a change everyone following sees, kept in history as a restore).
pub async fn restore(
    st: web::Data<ApiState>,
    creds: Credentials,
    path: web::Path<(i64, i64)>,
    _body: Option<web::Json<Restore>>,
) -> Result<HttpResponse, ApiError> {
    let (id, v) = path.into_inner();
    let m = member(&st, &creds, id).await?;
    m.check_writable()?;
    check_save_rate(&st, &m)?;
    let old = history::find(&st, m.meeting.id, v).await?;
    let st = st.into_inner();
    let doc = st.notes_hub.open(&st, m.meeting.id).await?;
    let base = doc.version().await;
    let view = doc
        .set_text(&st, &Author::of(&m), base, &old.text, "restore")
        .await?;
    tracing::info!(
        meeting = id,
        restored = v,
        version = view.version,
        "notes version restored"
    );
    Ok(HttpResponse::Ok().json(view))
}
