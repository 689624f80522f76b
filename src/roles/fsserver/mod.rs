//! The fsserver role: the bytes of the images and files in meeting notes.
//!
//! It has no database and never calls the apiserver. Every request carries a grant signed
//! with the deployment's file key (`proto::files`): the apiserver decides who may upload,
//! read or delete what, and the fsserver checks the signature, the expiry, that the grant is
//! for this path, this operation and this server, and then does exactly that. So the same
//! code serves a single box (mounted on the shared HTTP server) and a host of its own
//! (`meeting-appliance fsserver --secret … --directory …`) with only the secret.
//!
//! - `PUT  /fs/v1/files/{meeting}/{file}?t=` streams the body to a temp file (sha256 on the
//!   way, size limit and the meeting's quota checked per chunk), then publishes it
//!   atomically (`store`) and answers with a signed receipt for the apiserver.
//! - `GET|HEAD` serves it with ranges, ETag (the sha256), caching headers; only allowlisted
//!   image types whose bytes match are inline, everything else is an attachment; always
//!   `X-Content-Type-Options: nosniff` and a sandboxing CSP.
//! - `DELETE` removes it.
//!
//! Uploads come from browsers on the apiserver's origin, so answers allow any origin (CORS):
//! the grant in the URL is the only credential, never a cookie.

mod download;
pub mod http;
pub mod stats;
pub mod store;
mod upload;

use actix_web::{HttpRequest, HttpResponse, middleware::DefaultHeaders, web};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::ApiError;
use crate::ids::{FileId, MeetingId};
use crate::proto::files::{FILES_PATH, FileGrant, FileOp, is_file_id};
use crate::tokens::{Keys, TokenError};
use stats::{FsStats, Refused};

/// What the fsserver needs to start.
pub struct FsSettings {
    /// `--directory`.
    pub directory: PathBuf,
    /// The `host:port` grants name this server by (its `--domainaddress`).
    pub own_address: String,
    pub max_file_size: u64,
    pub meeting_quota: u64,
    pub inline_types: Vec<String>,
    /// How long an upload waits for the apiserver to record it (`keep`) before it is reaped.
    pub unclaimed_ttl: std::time::Duration,
    /// Grants are checked with these (the deployment secret alone).
    pub keys: Keys,
}

/// Shared by the fsserver's request handlers.
pub struct FsState {
    settings: FsSettings,
    store: Arc<store::Store>,
    stats: Arc<FsStats>,
}

impl FsState {
    /// The counters, for `/metrics` ([`stats::FsCollector`]).
    pub fn stats(&self) -> Arc<FsStats> {
        self.stats.clone()
    }
}

/// A running fsserver. It has no listener of its own: [`routes`] mounts it on the process's
/// HTTP server, which stops it from taking requests.
pub struct FsHandle {
    pub state: FsState,
    /// Resolves once the upload reaper is told to stop after the shutdown fired.
    pub stopped: crate::shutdown::Stopped,
}

/// Opens the store (creating folders, removing unfinished uploads of an earlier run) and
/// reaps uploads nobody recorded until `shutdown`.
pub fn start(
    settings: FsSettings,
    shutdown: crate::shutdown::Shutdown,
) -> anyhow::Result<FsHandle> {
    let store = store::Store::open(&settings.directory, settings.meeting_quota)?;
    tracing::info!(
        directory = %settings.directory.display(),
        address = %settings.own_address,
        max_file_size = settings.max_file_size,
        meeting_quota = settings.meeting_quota,
        "fsserver: file store ready"
    );
    let stats: Arc<FsStats> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    spawn_reaper(
        store.clone(),
        stats.clone(),
        settings.unclaimed_ttl,
        stop.clone(),
    );
    let stopped = shutdown.then(async move { stop.store(true, Ordering::Relaxed) });
    Ok(FsHandle {
        state: FsState {
            settings,
            store,
            stats,
        },
        stopped,
    })
}

/// Deletes uploads the apiserver never recorded once their time is up, so they stop holding
/// the meeting's quota. Runs on a thread of its own (blocking file I/O, a few per minute).
fn spawn_reaper(
    store: Arc<store::Store>,
    stats: Arc<FsStats>,
    ttl: std::time::Duration,
    stop: Arc<AtomicBool>,
) {
    let every = (ttl / 4).clamp(
        std::time::Duration::from_millis(500),
        std::time::Duration::from_secs(60),
    );
    let weak = Arc::downgrade(&store);
    drop(store);
    let spawned = std::thread::Builder::new()
        .name("fs-reaper".into())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let Some(store) = weak.upgrade() else { return };
                for (meeting, file) in store.unclaimed_due(crate::util::now()) {
                    match store::delete(&store, meeting, &file) {
                        Ok(Some(size)) => {
                            stats.deleted();
                            tracing::info!(%meeting, %file, size, "upload never recorded by the apiserver: deleted");
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(%meeting, %file, error = %e, "cannot delete an unrecorded upload")
                        }
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the upload reaper");
    }
}

/// Mounts the file routes (on the shared server of a single box, or on a server of its own).
pub fn routes(cfg: &mut web::ServiceConfig, st: web::Data<FsState>) {
    cfg.service(
        web::resource(format!("{FILES_PATH}/{{meeting}}/{{file}}"))
            .app_data(st)
            .wrap(
                DefaultHeaders::new()
                    .add(("Access-Control-Allow-Origin", "*"))
                    .add((
                        "Access-Control-Expose-Headers",
                        "ETag, Content-Range, Content-Length, Content-Disposition",
                    ))
                    .add(("X-Content-Type-Options", "nosniff")),
            )
            .route(web::put().to(upload::put))
            .route(web::get().to(download::get))
            .route(web::head().to(download::get))
            .route(web::delete().to(download::delete))
            .route(web::post().to(download::keep))
            .route(web::method(actix_web::http::Method::OPTIONS).to(preflight))
            .default_service(web::to(|| async {
                Err::<HttpResponse, _>(ApiError::new(
                    actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    "Files take PUT, GET, HEAD, DELETE and POST (keep).",
                ))
            })),
    );
}

/// CORS preflight: the browser asks before a cross-origin PUT or DELETE.
async fn preflight() -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header(("Access-Control-Allow-Methods", "GET, HEAD, PUT, DELETE"))
        .insert_header((
            "Access-Control-Allow-Headers",
            "Content-Type, Range, If-None-Match",
        ))
        .insert_header(("Access-Control-Max-Age", "600"))
        .finish()
}

fn no_such_file() -> ApiError {
    ApiError::not_found("No such file.")
}

/// Checks the request's grant for `op` on the path's file; returns the ids and the grant.
/// Ids are checked before anything else, so no client text ever reaches a path.
fn authorize(
    st: &FsState,
    req: &HttpRequest,
    path: &(String, String),
    op: FileOp,
) -> Result<(MeetingId, FileId, FileGrant), ApiError> {
    let refuse = |e: ApiError| {
        st.stats.refused(Refused::Grant);
        e
    };
    let meeting = match path.0.parse::<i64>() {
        Ok(m) if m > 0 && path.0.bytes().all(|b| b.is_ascii_digit()) => MeetingId(m),
        _ => return Err(refuse(no_such_file())),
    };
    if !is_file_id(&path.1) {
        return Err(refuse(no_such_file()));
    }
    let file = FileId(path.1.clone());
    let token = url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "t")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| {
            refuse(ApiError::forbidden(
                "invalid_url",
                "This file link is not valid: it carries no grant.",
            ))
        })?;
    let grant = FileGrant::verify(
        st.settings.keys.files_key(),
        &token,
        op,
        meeting,
        &file,
        crate::util::now(),
    )
    .map_err(|e| {
        tracing::info!(%meeting, file = %file, ?op, error = %e, "file grant refused");
        st.stats.refused(Refused::Grant);
        match e {
            TokenError::Expired => ApiError::forbidden(
                "url_expired",
                "This file link has expired; ask the meeting for a new one.",
            ),
            TokenError::WrongMeeting => ApiError::forbidden(
                "invalid_url",
                "This file link is for another file or another operation.",
            ),
            TokenError::Malformed | TokenError::BadSignature => {
                ApiError::forbidden("invalid_url", "This file link is not valid.")
            }
        }
    })?;
    if grant.fs != st.settings.own_address {
        st.stats.refused(Refused::Grant);
        return Err(ApiError::forbidden(
            "wrong_server",
            "This file link is for another file server.",
        ));
    }
    Ok((meeting, file, grant))
}
