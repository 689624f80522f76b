//! Meeting notes (minutes): one Markdown document per meeting, with a version number.
//!
//! ```text
//! GET  /api/v1/meetings/{id}/notes                    → {text, version, updated_at, updated_by}
//! PUT  /api/v1/meetings/{id}/notes {text, version}    → the new state; 409 + current text if stale
//! GET  /api/v1/meetings/{id}/notes/versions           → [{version, created_at, created_by}], newest first
//! GET  /api/v1/meetings/{id}/notes/versions/{v}       → that version's text
//! POST /api/v1/meetings/{id}/notes/versions/{v}/restore {version} → its text as a new version
//! GET  /api/v1/meetings/{id}/notes/live               → WebSocket: every accepted change (live.rs)
//! POST /api/v1/meetings/{id}/notes/send               → mails the rendered notes (mail.rs)
//! ```
//!
//! Optimistic concurrency: a change names the version it was made on; the write is one
//! conditional UPDATE (`… WHERE version = ?`, or an INSERT guarded by the primary key for the
//! first version), so of two writers on the same version exactly one wins and the other gets
//! 409 with the text it must merge with. Nobody silently overwrites anyone. Every accepted
//! version is also kept in `note_versions`; a restore writes an old text as a new version, so
//! history only grows.
//!
//! Live updates go over an apiserver WebSocket rather than the sfuserver's signaling channel:
//! notes outlive the media session, are read by people who are not in the call, and must not
//! depend on which sfuserver (on which host) runs the meeting. The hub is in-process; several
//! apiservers behind one database would need a shared bus (not built).

mod access;
mod live;
mod mail;

pub use access::{Credentials, JOIN_TOKEN_HEADER, Member, Who, member};

use actix_web::{HttpResponse, web};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set, SqlErr, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

use super::ApiState;
use crate::db::entities::{note, note_version};
use crate::error::{ApiError, json_error};
use crate::util::now;

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
    .route("/meetings/{id}/notes/versions", web::get().to(versions))
    .route("/meetings/{id}/notes/versions/{v}", web::get().to(version))
    .route(
        "/meetings/{id}/notes/versions/{v}/restore",
        web::post().to(restore),
    )
    .route("/meetings/{id}/notes/live", web::get().to(live::live))
    .route("/meetings/{id}/notes/send", web::post().to(mail::send));
}

/// Fans accepted changes out to the live connections of each meeting (in this process).
#[derive(Default)]
pub struct NotesHub {
    /// Locked briefly to find or make a meeting's channel; never across an await.
    channels: Mutex<HashMap<i64, broadcast::Sender<Arc<String>>>>,
}

impl NotesHub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, broadcast::Sender<Arc<String>>>> {
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn subscribe(&self, meeting: i64) -> broadcast::Receiver<Arc<String>> {
        let mut map = self.lock();
        map.retain(|_, tx| tx.receiver_count() > 0);
        map.entry(meeting)
            .or_insert_with(|| broadcast::channel(64).0)
            .subscribe()
    }

    /// Sends one serialized message to everyone following the meeting's notes.
    pub fn publish(&self, meeting: i64, msg: String) {
        let mut map = self.lock();
        if let Some(tx) = map.get(&meeting)
            && tx.send(Arc::new(msg)).is_err()
        {
            map.remove(&meeting);
        }
    }
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
pub async fn current<C: sea_orm::ConnectionTrait>(
    db: &C,
    meeting_id: i64,
) -> Result<NotesView, ApiError> {
    Ok(match note::Entity::find_by_id(meeting_id).one(db).await? {
        Some(n) => NotesView {
            meeting_id,
            text: n.text,
            version: n.version,
            updated_at: n.updated_at,
            updated_by: n.updated_by,
        },
        None => NotesView {
            meeting_id,
            text: String::new(),
            version: 0,
            updated_at: 0,
            updated_by: None,
        },
    })
}

/// The live message for a state of the notes.
fn live_message(v: &NotesView, by: Option<&str>) -> String {
    serde_json::json!({
        "type": "notes",
        "meeting_id": v.meeting_id,
        "text": v.text,
        "version": v.version,
        "updated_at": v.updated_at,
        "updated_by": v.updated_by,
        "by": by,
    })
    .to_string()
}

fn conflict(cur: NotesView) -> ApiError {
    ApiError::conflict(
        "version_conflict",
        format!(
            "Someone else changed the notes first (now version {}); merge your change into the current text and save again.",
            cur.version
        ),
    )
    .with_extra(serde_json::json!({
        "text": cur.text,
        "version": cur.version,
        "updated_at": cur.updated_at,
        "updated_by": cur.updated_by,
    }))
}

/// Writes `text` as the version after `base`, or answers 409 with the current notes.
async fn save(st: &ApiState, m: &Member, base: i64, text: String) -> Result<NotesView, ApiError> {
    m.check_writable()?;
    if base < 0 {
        return Err(ApiError::bad_request(
            "invalid_version",
            "`version` is the version your change was made on (0 for the first).",
        ));
    }
    if text.len() > MAX_NOTES_BYTES {
        return Err(ApiError::new(
            actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
            "notes_too_large",
            format!("Notes have at most {MAX_NOTES_BYTES} bytes."),
        ));
    }
    let id = m.meeting.id;
    let (t, by, version) = (now(), m.user_id(), base + 1);
    let txn = st.db.begin().await?;
    let won = if base == 0 {
        let row = note::ActiveModel {
            meeting_id: Set(id),
            text: Set(text.clone()),
            version: Set(version),
            updated_at: Set(t),
            updated_by: Set(by),
        };
        match note::Entity::insert(row).exec_without_returning(&txn).await {
            Ok(_) => true,
            Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => false,
            Err(e) => return Err(e.into()),
        }
    } else {
        note::Entity::update_many()
            .col_expr(note::Column::Text, Expr::value(text.clone()))
            .col_expr(note::Column::Version, Expr::value(version))
            .col_expr(note::Column::UpdatedAt, Expr::value(t))
            .col_expr(note::Column::UpdatedBy, Expr::value(by))
            .filter(note::Column::MeetingId.eq(id))
            .filter(note::Column::Version.eq(base))
            .exec(&txn)
            .await?
            .rows_affected
            == 1
    };
    if !won {
        txn.rollback().await?;
        return Err(conflict(current(&st.db, id).await?));
    }
    note_version::Entity::insert(note_version::ActiveModel {
        meeting_id: Set(id),
        version: Set(version),
        text: Set(text.clone()),
        created_at: Set(t),
        created_by: Set(by),
        ..Default::default()
    })
    .exec_without_returning(&txn)
    .await?;
    txn.commit().await?;
    let view = NotesView {
        meeting_id: id,
        text,
        version,
        updated_at: t,
        updated_by: by,
    };
    st.notes_hub
        .publish(id, live_message(&view, Some(&m.name())));
    tracing::info!(meeting = id, version, "notes saved");
    Ok(view)
}

/// `GET /api/v1/meetings/{id}/notes`
pub async fn get(
    st: web::Data<ApiState>,
    creds: Credentials,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let m = member(&st, &creds, id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(current(&st.db, m.meeting.id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutNotes {
    pub text: String,
    /// The version the change was made on.
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
    let body = body.into_inner();
    Ok(HttpResponse::Ok().json(save(&st, &m, body.version, body.text).await?))
}

/// `GET /api/v1/meetings/{id}/notes/versions`
pub async fn versions(
    st: web::Data<ApiState>,
    creds: Credentials,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let m = member(&st, &creds, id.into_inner()).await?;
    let rows: Vec<(i64, i64, Option<i64>)> = note_version::Entity::find()
        .select_only()
        .column(note_version::Column::Version)
        .column(note_version::Column::CreatedAt)
        .column(note_version::Column::CreatedBy)
        .filter(note_version::Column::MeetingId.eq(m.meeting.id))
        .order_by_desc(note_version::Column::Version)
        .into_tuple()
        .all(&st.db)
        .await?;
    let list: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|(version, created_at, created_by)| {
            serde_json::json!({"version": version, "created_at": created_at, "created_by": created_by})
        })
        .collect();
    Ok(HttpResponse::Ok().json(list))
}

async fn old_version(
    st: &ApiState,
    meeting_id: i64,
    v: i64,
) -> Result<note_version::Model, ApiError> {
    note_version::Entity::find()
        .filter(note_version::Column::MeetingId.eq(meeting_id))
        .filter(note_version::Column::Version.eq(v))
        .one(&st.db)
        .await?
        .ok_or_else(|| ApiError::not_found("The notes have no such version."))
}

/// `GET /api/v1/meetings/{id}/notes/versions/{v}`
pub async fn version(
    st: web::Data<ApiState>,
    creds: Credentials,
    path: web::Path<(i64, i64)>,
) -> Result<HttpResponse, ApiError> {
    let (id, v) = path.into_inner();
    let m = member(&st, &creds, id).await?;
    let row = old_version(&st, m.meeting.id, v).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "meeting_id": row.meeting_id,
        "version": row.version,
        "text": row.text,
        "created_at": row.created_at,
        "created_by": row.created_by,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Restore {
    /// The current version the restore is made on (as for a change).
    pub version: i64,
}

/// `POST /api/v1/meetings/{id}/notes/versions/{v}/restore {version}`: the text of version
/// `v` becomes the newest version.
pub async fn restore(
    st: web::Data<ApiState>,
    creds: Credentials,
    path: web::Path<(i64, i64)>,
    body: web::Json<Restore>,
) -> Result<HttpResponse, ApiError> {
    let (id, v) = path.into_inner();
    let m = member(&st, &creds, id).await?;
    let old = old_version(&st, m.meeting.id, v).await?;
    let view = save(&st, &m, body.version, old.text).await?;
    tracing::info!(
        meeting = id,
        restored = v,
        version = view.version,
        "notes version restored"
    );
    Ok(HttpResponse::Ok().json(view))
}
