//! The standalone allocateserver (`meeting-appliance allocateserver --config allocate.toml`):
//! the seed's protocol on one unguessable path, over HTTPS when it has a certificate,
//! optionally only to listed client addresses.
//!
//! `GET <path>?Kind=SFUTURN&Email=e&BeginAt=ts&EndAt=ts` → 200 `{"sfu":"h:p","turn":"h:p"}`
//! `GET <path>?Kind=FS&Email=e` → 200 `{"fs":"h:p"}`
//! No capacity right now → 503 with `Retry-After` (any non-200 means "ask again shortly").
//! `GET <path>/report` → the report as JSON; `/healthz`, `/readyz`. Any other path → 404; a client outside `allow`
//! → 403. Its state is a JSON file in the data dir; it registers with no apiserver, so its
//! pools are the configured ones (it gets no node registry snapshots).

use actix::prelude::*;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use std::collections::HashMap;
use std::sync::Arc;

use super::store::{FileStore, Store};
use super::{Allocator, GetReport, system_clock};
use crate::config::{Config, IpNet, ScheduledStrategy};
use crate::proto::{AllocateFileServer, AllocateServers, AllocationError, NodeRole};

/// How long a graceful stop may take.
const SHUTDOWN_SECS: u64 = 10;

/// What every request handler needs.
pub struct Endpoint {
    pub allocator: Addr<Allocator>,
    pub allow: Vec<IpNet>,
    pub retry_after: u64,
}

fn error(status: actix_web::http::StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({"error": code, "message": message}))
}

impl Endpoint {
    fn refused(&self, req: &HttpRequest) -> Option<HttpResponse> {
        if self.allow.is_empty() {
            return None;
        }
        let ip = req.peer_addr().map(|a| a.ip());
        if ip.is_some_and(|ip| self.allow.iter().any(|n| n.contains(ip))) {
            return None;
        }
        tracing::warn!(client = ?ip, "allocateserver: a client outside `allow` was refused");
        Some(error(
            actix_web::http::StatusCode::FORBIDDEN,
            "forbidden",
            "This address may not ask this allocator.",
        ))
    }

    fn not_ready(&self, e: &AllocationError) -> HttpResponse {
        let (code, msg) = match e {
            AllocationError::NotReady(why) => ("no_capacity", why.as_str()),
            AllocationError::Failed(why) => {
                tracing::error!(%why, "allocation failed");
                ("allocator_failed", why.as_str())
            }
        };
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", self.retry_after.to_string()))
            .json(serde_json::json!({"error": code, "message": msg}))
    }
}

fn bad_request(message: String) -> HttpResponse {
    error(
        actix_web::http::StatusCode::BAD_REQUEST,
        "invalid_request",
        &message,
    )
}

fn param<'a>(q: &'a HashMap<String, String>, k: &str) -> Result<&'a str, String> {
    q.get(k)
        .map(String::as_str)
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| format!("the query parameter {k} is missing"))
}

fn timestamp(q: &HashMap<String, String>, k: &str) -> Result<i64, String> {
    param(q, k)?
        .trim()
        .parse()
        .map_err(|_| format!("{k} must be a unix timestamp in seconds"))
}

/// The two questions of the seed's protocol.
enum Question {
    Servers(AllocateServers),
    Fs(AllocateFileServer),
}

fn parse(q: &HashMap<String, String>) -> Result<Question, String> {
    let email = param(q, "Email")?.to_string();
    match param(q, "Kind")? {
        "SFUTURN" => {
            let (begin_at, end_at) = (timestamp(q, "BeginAt")?, timestamp(q, "EndAt")?);
            if end_at < begin_at || (begin_at == 0) != (end_at == 0) {
                return Err(
                    "EndAt must not be before BeginAt; both are 0 for an instant meeting".into(),
                );
            }
            Ok(Question::Servers(AllocateServers {
                email,
                begin_at,
                end_at,
            }))
        }
        "FS" => Ok(Question::Fs(AllocateFileServer { email })),
        other => Err(format!("Kind {other:?} is not one of SFUTURN, FS")),
    }
}

/// The one endpoint of the seed's protocol.
async fn answer(
    req: HttpRequest,
    q: web::Query<HashMap<String, String>>,
    ep: web::Data<Endpoint>,
) -> HttpResponse {
    if let Some(r) = ep.refused(&req) {
        return r;
    }
    let question = match parse(&q) {
        Ok(x) => x,
        Err(m) => return bad_request(m),
    };
    let result = match question {
        Question::Servers(m) => ep
            .allocator
            .send(m)
            .await
            .map(|r| r.map(|a| HttpResponse::Ok().json(a))),
        Question::Fs(m) => ep
            .allocator
            .send(m)
            .await
            .map(|r| r.map(|a| HttpResponse::Ok().json(a))),
    };
    match result {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => ep.not_ready(&e),
        Err(e) => error(
            actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            &format!("the allocator is not running: {e}"),
        ),
    }
}

async fn report(req: HttpRequest, ep: web::Data<Endpoint>) -> HttpResponse {
    if let Some(r) = ep.refused(&req) {
        return r;
    }
    match ep.allocator.send(GetReport).await {
        Ok(r) => HttpResponse::Ok().json(r),
        Err(e) => error(
            actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            &format!("the allocator is not running: {e}"),
        ),
    }
}

/// The routes: the protocol at `path`, the report at `path/report`, `/healthz`, and
/// `/readyz` (its state is loaded before it listens, so answering means ready).
pub fn routes(c: &mut web::ServiceConfig, path: &str) {
    let report_path = format!("{}/report", path.trim_end_matches('/'));
    c.route(path, web::get().to(answer))
        .route(&report_path, web::get().to(report));
    crate::health::routes(c);
}

/// What the standalone allocateserver needs to start.
pub struct AllocateSettings {
    /// The `[allocator]` table (or the standalone file).
    pub allocator: crate::config::Allocator,
    /// Where its state file lives.
    pub data_dir: std::path::PathBuf,
    /// HTTPS with this certificate; None: plain HTTP.
    pub tls: Option<rustls::ServerConfig>,
}

/// A running standalone allocateserver.
pub struct AllocateHandle {
    /// Resolves once the HTTP server has stopped after the shutdown fired (requests in
    /// flight finished, bounded by `SHUTDOWN_SECS`).
    pub stopped: crate::shutdown::Stopped,
}

/// Loads the state and serves the protocol on `listener` until `shutdown`.
pub async fn start(
    s: AllocateSettings,
    listener: std::net::TcpListener,
    shutdown: crate::shutdown::Shutdown,
) -> anyhow::Result<AllocateHandle> {
    let a = &s.allocator;
    let store = Arc::new(FileStore::in_data_dir(&s.data_dir));
    // A damaged state file stops start-up here, with what to do, instead of double-booking.
    store.load().await?;
    let bound = listener.local_addr()?;
    let needs_pool = a.scheduled.strategy != ScheduledStrategy::OnDemand
        || a.instant.strategy != crate::config::InstantStrategy::OnDemand;
    if needs_pool && a.sfu.is_empty() {
        tracing::warn!(
            "no [[sfu]] pool is configured: pool strategies will answer 503 until you list sfuservers"
        );
    }
    if a.turn.is_empty() {
        tracing::warn!("no [[turn]] pool is configured: every SFUTURN question will answer 503");
    }
    if a.fs.is_empty() {
        tracing::warn!("no [[fs]] pool is configured: every FS question will answer 503");
    }
    let allocator = Allocator::new(
        a,
        [
            (NodeRole::Sfuserver, None),
            (NodeRole::Turnserver, None),
            (NodeRole::Fsserver, None),
        ],
        store,
        system_clock(),
    )?
    .start();
    let ep = web::Data::new(Endpoint {
        allocator,
        allow: a.allow.clone(),
        retry_after: a.retry_after.as_secs(),
    });
    let path = a.path.clone();
    let server = HttpServer::new(move || {
        let path = path.clone();
        App::new()
            .app_data(ep.clone())
            .configure(move |c| routes(c, &path))
            .default_service(web::to(|| async {
                error(
                    actix_web::http::StatusCode::NOT_FOUND,
                    "not_found",
                    "No such resource.",
                )
            }))
    })
    .disable_signals()
    .shutdown_timeout(SHUTDOWN_SECS);
    let tls = s.tls.is_some();
    let server = match s.tls {
        Some(tc) => server.listen_rustls_0_23(listener, tc)?,
        None => server.listen(listener)?,
    }
    .run();
    let scheme = if tls { "https" } else { "http" };
    tracing::info!(allow = ?a.allow.iter().map(ToString::to_string).collect::<Vec<_>>(), roles = ?["allocateserver"], "listening on {scheme}://{bound} (the protocol on the configured path)");
    let handle = server.handle();
    actix_rt::spawn(async move {
        shutdown.wait().await;
        handle.stop(true).await;
    });
    let (done, stopped) = crate::shutdown::Stopped::pair();
    actix_rt::spawn(async move {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "the allocateserver's HTTP server failed");
        }
        done.finish();
    });
    Ok(AllocateHandle { stopped })
}

/// `meeting-appliance allocateserver --config f --report`: the report from the saved state,
/// without the server (the standalone file, else the database of an in-process allocator).
pub fn print_report(cfg: &Config) -> anyhow::Result<String> {
    crate::util::install_ring_provider();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let file = FileStore::in_data_dir(&cfg.data_dir);
        let state = if file.path().exists() {
            file.load().await?
        } else {
            let url = cfg.database.effective_url(&cfg.data_dir);
            let sqlite_missing = url.starts_with("sqlite:")
                && !cfg.data_dir.join("meeting.db").exists()
                && cfg.database.url.is_none();
            if sqlite_missing {
                anyhow::bail!(
                    "no allocator state in {}: neither {} nor meeting.db exists (is --dataDir right?)",
                    cfg.data_dir.display(),
                    file.path().display()
                );
            }
            let db = crate::db::connect(
                &url,
                1,
                cfg.database.connect_timeout.0,
            )
            .await?;
            super::store::DbStore::new(db).load().await?
        };
        let pools = super::pools::Pools::new(
            cfg.allocator.sfu.clone(),
            cfg.allocator.turn.clone(),
            cfg.allocator.fs.clone(),
            [
                (NodeRole::Sfuserver, None),
                (NodeRole::Turnserver, None),
                (NodeRole::Fsserver, None),
            ],
        );
        let engine = super::engine::Engine::new(
            super::engine::Settings::from_config(&cfg.allocator),
            pools,
            state.unwrap_or_default(),
        );
        Ok(super::report::render(&super::report::build(
            &engine,
            crate::util::now(),
        )))
    })
}
