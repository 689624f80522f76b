//! The images and files of meeting notes, apiserver side: who may upload, read and delete,
//! and the signed URLs (`proto::files`) that let them do it on the meeting's fsserver.
//!
//! ```text
//! POST   /api/v1/meetings/{id}/files {name, content_type?, size?}
//!            → 201 {id, upload_url, expires_at, max_size}   then the client PUTs the bytes there
//! POST   /api/v1/meetings/{id}/files/{file}/commit {receipt} → 201 the file (listed from now on)
//! GET    /api/v1/meetings/{id}/files                 → [file], oldest first
//! GET    /api/v1/meetings/{id}/files/{file}          → 302 to a fresh signed download URL
//! DELETE /api/v1/meetings/{id}/files/{file}          → 204 (owner or uploader)
//! ```
//!
//! Notes reference a file by its stable path `/api/v1/meetings/{id}/files/{file}` (Markdown
//! `![](…)` or `[](…)`); reading it checks access and redirects to the bytes. The upload's
//! receipt, signed by the fsserver, is what makes the apiserver record a file: it learns the
//! real size and sha256 without the fsserver ever calling it. The meeting's fsserver is the
//! one the allocator names (`Kind=FS`), asked once and kept with the meeting.

use actix_web::{HttpResponse, http::StatusCode, web};
use sea_orm::Set;
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::notes::{Credentials, Member, member};
use crate::db::entities::file;
use crate::db::models;
use crate::error::ApiError;
use crate::ids::{FileId, MeetingId};
use crate::proto::AllocateFileServer;
use crate::proto::files::{FileGrant, FileOp, FileReceipt, is_file_id};
use crate::util::now;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/meetings/{id}/files", web::post().to(create))
        .route("/meetings/{id}/files", web::get().to(list))
        .route("/meetings/{id}/files/{file}", web::get().to(content))
        .route("/meetings/{id}/files/{file}", web::delete().to(delete))
        .route("/meetings/{id}/files/{file}/commit", web::post().to(commit));
}

/// The stable path notes use for a file.
pub fn file_path(meeting: i64, file: &str) -> String {
    format!("/api/v1/meetings/{meeting}/files/{file}")
}

/// A signed URL for `op` on a stored file, valid for `ttl_secs`.
pub fn signed_url(st: &ApiState, f: &file::Model, op: FileOp, ttl_secs: i64) -> String {
    FileGrant {
        op,
        meeting: MeetingId(f.meeting_id),
        file: FileId(f.id.clone()),
        fs: f.fs.clone(),
        exp: now() + ttl_secs,
        max_size: None,
        name: None,
        content_type: None,
        uploader: None,
    }
    .url(&st.base_url(&f.fs, false), st.keys.files_key())
}

#[derive(Serialize)]
pub struct FileView {
    pub id: String,
    pub name: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    pub created_at: i64,
    pub uploaded_by: Option<i64>,
    /// The stable path for notes (redirects to the bytes).
    pub url: String,
    /// The bytes, directly; works for `fs.download_url_ttl` (a guest's: at most
    /// [`GUEST_URL_TTL`]).
    pub download_url: String,
}

/// A guest's download URLs work this long at most: guests read only while in the meeting,
/// and a URL outlives the check that issued it.
pub const GUEST_URL_TTL: i64 = 300;

/// How long download URLs for this member work.
fn download_ttl(st: &ApiState, m: &Member) -> i64 {
    let ttl = st.cfg.fs.download_url_ttl.as_secs_i64();
    if m.user_id().is_some() {
        ttl
    } else {
        ttl.min(GUEST_URL_TTL)
    }
}

fn view(st: &ApiState, m: &Member, f: &file::Model) -> FileView {
    FileView {
        id: f.id.clone(),
        name: f.name.clone(),
        content_type: f.content_type.clone(),
        size: f.size,
        sha256: f.sha256.clone(),
        created_at: f.created_at,
        uploaded_by: f.uploaded_by,
        url: file_path(f.meeting_id, &f.id),
        download_url: signed_url(st, f, FileOp::Get, download_ttl(st, m)),
    }
}

/// A file name as metadata: the last path component, no control characters, at most 255
/// bytes. It never becomes a path (files are stored under their id).
pub fn clean_name(raw: &str) -> Result<String, ApiError> {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let mut name: String = last.chars().filter(|c| !c.is_control()).collect();
    name = name.trim().trim_start_matches('.').trim().to_string();
    while name.len() > 255 {
        name.pop();
    }
    if name.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_name",
            "Give the file a name (e.g. report.pdf).",
        ));
    }
    Ok(name)
}

/// A media type `type/subtype` in lower case; anything else becomes `application/octet-stream`.
pub fn clean_type(raw: Option<&str>) -> String {
    let t = raw
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let token = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    match t.split_once('/') {
        Some((a, b)) if token(a) && token(b) => t,
        _ => "application/octet-stream".into(),
    }
}

/// The meeting's fsserver: kept with the meeting, else asked of the allocator once.
async fn fs_of(st: &ApiState, m: &Member) -> Result<String, ApiError> {
    if let Some(fs) = &m.meeting.fs {
        return Ok(fs.clone());
    }
    let email = match m.email() {
        Some(e) => e.to_string(),
        None => models::user::by_id(&st.db, m.meeting.owner_id)
            .await?
            .map(|u| u.email)
            .unwrap_or_default(),
    };
    let not_ready = || ApiError::servers_not_ready(st.cfg.allocator.retry_after.as_secs());
    match st.fs_allocator.send(AllocateFileServer { email }).await {
        Ok(Ok(a)) => Ok(models::meeting::assign_fs_once(&st.db, m.meeting.id, a.fs).await?),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, meeting = m.meeting.id, "no file server for this meeting");
            Err(not_ready())
        }
        Err(e) => {
            tracing::error!(error = %e, "file-server allocator unreachable");
            Err(not_ready())
        }
    }
}

async fn files_of(st: &ApiState, meeting: i64) -> Result<Vec<file::Model>, ApiError> {
    Ok(models::file::of_meeting(&st.db, meeting).await?)
}

/// The files of a meeting, for other parts of the apiserver (the notes mail).
pub async fn meeting_files(st: &ApiState, meeting: i64) -> Result<Vec<file::Model>, ApiError> {
    files_of(st, meeting).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewFile {
    pub name: String,
    pub content_type: Option<String>,
    /// The size, when known: checked against the limits before any byte is sent.
    pub size: Option<u64>,
}

/// `POST /api/v1/meetings/{id}/files`: an upload URL on the meeting's fsserver.
pub async fn create(
    st: web::Data<ApiState>,
    creds: Credentials,
    id: web::Path<i64>,
    body: web::Json<NewFile>,
) -> Result<HttpResponse, ApiError> {
    let m = member(&st, &creds, id.into_inner()).await?;
    m.check_writable()?;
    let body = body.into_inner();
    let name = clean_name(&body.name)?;
    let content_type = clean_type(body.content_type.as_deref());
    let (max, quota) = (st.cfg.fs.max_file_size, st.cfg.fs.meeting_quota);
    let size = body.size.unwrap_or(0);
    if size > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "file_too_large",
            format!("A file may have at most {max} bytes."),
        ));
    }
    let used: u64 = files_of(&st, m.meeting.id)
        .await?
        .iter()
        .map(|f| u64::try_from(f.size).unwrap_or(0))
        .sum();
    if used.saturating_add(size) > quota {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "quota_exceeded",
            format!(
                "This meeting's files may take at most {quota} bytes together; delete some first."
            ),
        ));
    }
    let fs = fs_of(&st, &m).await?;
    let file = FileId::random();
    let expires_at = now() + st.cfg.fs.upload_url_ttl.as_secs_i64();
    let grant = FileGrant {
        op: FileOp::Put,
        meeting: MeetingId(m.meeting.id),
        file: file.clone(),
        fs: fs.clone(),
        exp: expires_at,
        max_size: Some(max),
        name: Some(name),
        content_type: Some(content_type),
        uploader: Some(m.tag()),
    };
    let upload_url = grant.url(&st.base_url(&fs, false), st.keys.files_key());
    Ok(HttpResponse::Created().json(serde_json::json!({
        "id": file,
        "upload_url": upload_url,
        "expires_at": expires_at,
        "max_size": max,
        "commit_url": format!("{}/commit", file_path(m.meeting.id, &file.0)),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Commit {
    pub receipt: String,
}

fn bad_file_id(path: &(i64, String)) -> Result<(), ApiError> {
    if is_file_id(&path.1) {
        Ok(())
    } else {
        Err(ApiError::not_found("No such file."))
    }
}

/// `POST /api/v1/meetings/{id}/files/{file}/commit {receipt}`: records an upload the
/// fsserver confirmed. Idempotent.
pub async fn commit(
    st: web::Data<ApiState>,
    creds: Credentials,
    path: web::Path<(i64, String)>,
    body: web::Json<Commit>,
) -> Result<HttpResponse, ApiError> {
    let path = path.into_inner();
    bad_file_id(&path)?;
    let m = member(&st, &creds, path.0).await?;
    let r = FileReceipt::verify(st.keys.files_key(), &body.receipt, now()).map_err(|e| {
        tracing::info!(meeting = path.0, error = %e, "upload receipt refused");
        ApiError::bad_request(
            "invalid_receipt",
            format!("That upload receipt is not valid: {e}."),
        )
    })?;
    if r.meeting.0 != m.meeting.id || r.file.0 != path.1 {
        return Err(ApiError::bad_request(
            "invalid_receipt",
            "That upload receipt is for another file.",
        ));
    }
    if let Some(f) = models::file::by_id(&st.db, &path.1).await? {
        return Ok(HttpResponse::Ok().json(view(&st, &m, &f)));
    }
    keep_upload(&st, &r).await?;
    let uploaded_by = r
        .uploader
        .as_deref()
        .and_then(|u| u.strip_prefix("u:"))
        .and_then(|n| n.parse::<i64>().ok());
    let row = file::ActiveModel {
        id: Set(path.1.clone()),
        meeting_id: Set(m.meeting.id),
        name: Set(r.name.chars().take(255).collect()),
        content_type: Set(r.content_type.chars().take(128).collect()),
        size: Set(i64::try_from(r.size).unwrap_or(i64::MAX)),
        sha256: Set(r.sha256.clone()),
        fs: Set(r.fs.clone()),
        uploaded_by: Set(uploaded_by),
        created_at: Set(r.stored_at),
    };
    let f = models::file::record(&st.db, &path.1, row).await?;
    tracing::info!(meeting = m.meeting.id, file = %f.id, size = f.size, "file recorded");
    Ok(HttpResponse::Created().json(view(&st, &m, &f)))
}

/// Tells the fsserver holding an upload that it is recorded, so it is not reaped as unclaimed
/// (`fs.unclaimed_ttl`). The call carries a `keep` grant like any client's; a self-signed
/// certificate is accepted, as the grant (not the channel) is what the fsserver trusts and it
/// allows nothing but keeping this one file.
async fn keep_upload(st: &ApiState, r: &FileReceipt) -> Result<(), ApiError> {
    static CLIENT: std::sync::OnceLock<Option<reqwest::Client>> = std::sync::OnceLock::new();
    let client = CLIENT
        .get_or_init(|| {
            crate::util::install_ring_provider();
            reqwest::Client::builder()
                .tls_danger_accept_invalid_certs(true)
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .ok()
        })
        .as_ref()
        .ok_or_else(|| ApiError::internal("no HTTP client for the fsserver"))?;
    let grant = FileGrant {
        op: FileOp::Keep,
        meeting: r.meeting,
        file: r.file.clone(),
        fs: r.fs.clone(),
        exp: now() + 60,
        max_size: None,
        name: None,
        content_type: None,
        uploader: None,
    };
    let url = grant.url(&st.call_url(&r.fs), st.keys.files_key());
    let unreachable = |why: String| {
        tracing::warn!(fs = %r.fs, error = %why, "cannot tell the fsserver to keep an upload");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "fs_unreachable",
            "The file server cannot be reached to confirm the upload; try again shortly.",
        )
    };
    match client.post(url).send().await {
        Ok(resp) if resp.status().is_success() => Ok(()),
        Ok(resp) if resp.status() == reqwest::StatusCode::GONE => Err(ApiError::new(
            StatusCode::GONE,
            "upload_expired",
            "The upload was not recorded in time and has been deleted; upload it again.",
        )),
        Ok(resp) => Err(unreachable(format!("status {}", resp.status()))),
        Err(e) => Err(unreachable(e.to_string())),
    }
}

/// `GET /api/v1/meetings/{id}/files`
pub async fn list(
    st: web::Data<ApiState>,
    creds: Credentials,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let m = member(&st, &creds, id.into_inner()).await?;
    let files = files_of(&st, m.meeting.id).await?;
    Ok(HttpResponse::Ok().json(files.iter().map(|f| view(&st, &m, f)).collect::<Vec<_>>()))
}

async fn one(st: &ApiState, m: &Member, id: &str) -> Result<file::Model, ApiError> {
    models::file::by_id(&st.db, id)
        .await?
        .filter(|f| f.meeting_id == m.meeting.id)
        .ok_or_else(|| ApiError::not_found("No such file."))
}

/// `GET /api/v1/meetings/{id}/files/{file}`: 302 to the bytes.
pub async fn content(
    st: web::Data<ApiState>,
    creds: Credentials,
    path: web::Path<(i64, String)>,
) -> Result<HttpResponse, ApiError> {
    let path = path.into_inner();
    bad_file_id(&path)?;
    let m = member(&st, &creds, path.0).await?;
    let f = one(&st, &m, &path.1).await?;
    let url = signed_url(&st, &f, FileOp::Get, download_ttl(&st, &m));
    Ok(HttpResponse::Found()
        .insert_header(("Location", url))
        .insert_header(("Cache-Control", "no-store"))
        .finish())
}

/// `DELETE /api/v1/meetings/{id}/files/{file}`: the meeting's owner or the uploader. The
/// bytes go first; the record only once the fsserver confirmed (or has no such file).
pub async fn delete(
    st: web::Data<ApiState>,
    creds: Credentials,
    path: web::Path<(i64, String)>,
) -> Result<HttpResponse, ApiError> {
    let path = path.into_inner();
    bad_file_id(&path)?;
    let m = member(&st, &creds, path.0).await?;
    let f = one(&st, &m, &path.1).await?;
    if !(m.is_owner() || (m.user_id().is_some() && m.user_id() == f.uploaded_by)) {
        return Err(ApiError::forbidden(
            "not_allowed",
            "Only the meeting's owner or the file's uploader can delete it.",
        ));
    }
    let url = signed_url(&st, &f, FileOp::Delete, 300);
    crate::util::install_ring_provider();
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(20))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(ApiError::internal)?;
    let unreachable = |why: String| {
        tracing::error!(fs = %f.fs, file = %f.id, %why, "file server did not delete");
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "fs_unreachable",
            "The file server could not delete the file right now; try again later.",
        )
    };
    match client.delete(&url).send().await {
        Ok(r) if r.status().is_success() || r.status() == reqwest::StatusCode::NOT_FOUND => {}
        Ok(r) => return Err(unreachable(format!("answered {}", r.status()))),
        Err(e) => return Err(unreachable(e.to_string())),
    }
    models::file::delete(&st.db, &f.id).await?;
    tracing::info!(meeting = m.meeting.id, file = %f.id, "file deleted");
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_types_are_metadata_only() {
        assert_eq!(
            clean_name("../../etc/passwd").ok().as_deref(),
            Some("passwd")
        );
        assert_eq!(clean_name("/abs/x.png").ok().as_deref(), Some("x.png"));
        assert_eq!(clean_name("C:\\dir\\y.txt").ok().as_deref(), Some("y.txt"));
        assert_eq!(clean_name("..").ok(), None);
        assert_eq!(clean_name("a\u{0}b\nc").ok().as_deref(), Some("abc"));
        assert_eq!(clean_type(Some("Image/PNG; q=1")), "image/png");
        assert_eq!(
            clean_type(Some("text/html\r\nX: y")),
            "application/octet-stream"
        );
        assert_eq!(clean_type(None), "application/octet-stream");
    }
}
