//! Starts the actix System and the enabled roles of this process, and stops them gracefully.
//!
//! Order: data dir → listener handed over by the service manager or bound (fail fast if the
//! port is taken; `crate::listen`) → secret → with the apiserver: database (with migrations)
//! and its actors (`wiring::wire`) → node roles, each `start(settings, sockets, shutdown)`
//! with settings from `settings` → registration (`wiring::Registrar`: in-process or over the
//! bridge) → one HTTP server. The same function runs a box and a node alone; only the
//! registrar differs. SIGINT/SIGTERM (`stop_gracefully`): the shutdown fires, the roles stop
//! (signaling sessions are told `server_shutdown`), bridge links say bye, then the server
//! stops accepting and lets requests in flight finish (bounded by `SHUTDOWN_SECS`).

pub mod roles;
pub mod settings;
pub mod wiring;

use crate::error::ApiError;
use actix::prelude::*;
use actix_web::{App, HttpResponse, HttpServer, dev::Service, web};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use crate::config::{Config, Role};
use crate::metrics::Metrics;
use crate::roles::apiserver::{self, ApiState, mail};
use crate::roles::fsserver;
use crate::roles::sfuserver;
use crate::tokens::Keys;

/// How long a graceful stop may take before connections are dropped.
const SHUTDOWN_SECS: u64 = 10;

/// Runs until a stop signal. Returns an error that tells the operator what to fix.
pub fn run(cfg: Config) -> anyhow::Result<()> {
    crate::util::install_ring_provider();
    let sys = actix_rt::System::new();
    let result = sys.block_on(serve(cfg));
    // The process exits right after this. The actors still held by the System (the mail
    // outbox with its pooled SMTP connections, whose drop needs a runtime) would be dropped
    // outside their runtime and panic; the operating system closes what is left. Everything
    // that must survive is in the database or on disk already.
    std::mem::forget(sys);
    result
}

fn check_roles(cfg: &Config) -> anyhow::Result<()> {
    if !cfg.has_role(Role::Apiserver)
        && cfg.has_role(Role::Allocateserver)
        && cfg.roles != [Role::Allocateserver]
    {
        // Roles on other hosts register with the apiserver over the bridge (`wiring::Registrar`);
        // the allocateserver answers the apiserver's HTTP questions instead.
        anyhow::bail!(
            "the allocateserver runs alone (`meeting-appliance allocateserver --config allocate.toml`) or in-process with the apiserver"
        );
    }
    Ok(())
}

/// The deployment secret: configured, or generated once into the data dir (mode 0600).
/// Every key (join tokens, TURN, files, bridge) derives from it: a guessable one is refused.
fn ensure_secret(cfg: &Config) -> anyhow::Result<String> {
    if let Some(s) = &cfg.secret {
        if s.chars().count() < MIN_SECRET_FLAG {
            anyhow::bail!(
                "--secret is too short: use at least {MIN_SECRET_FLAG} characters (32 random ones are better, e.g. `openssl rand -base64 32`)"
            );
        }
        return Ok(s.clone());
    }
    let path = cfg.data_dir.join("secret");
    if path.exists() {
        let s = std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        let s = s.trim().to_string();
        check_secret_file(&s).map_err(|why| {
            anyhow::anyhow!(
                "the secret in {} is {why}: it must hold at least 32 random bytes (the appliance writes 43 base64 characters). Move it away to have a new one generated (sessions, join links and file links signed with the old one stop working), or put a strong one there",
                path.display()
            )
        })?;
        return Ok(s);
    }
    let s = crate::ids::random_token(32);
    write_private(&path, &s)?;
    tracing::info!(path = %path.display(), "generated the deployment secret");
    Ok(s)
}

/// The shortest `--secret` accepted.
const MIN_SECRET_FLAG: usize = 16;

/// A secret file must carry about 32 bytes of entropy: 43 characters of base64 as generated,
/// or anything at least as long that is not a repetition of a few characters.
fn check_secret_file(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("empty");
    }
    if s.chars().count() < 32 {
        return Err("too short");
    }
    let distinct: std::collections::BTreeSet<char> = s.chars().collect();
    if distinct.len() < 12 {
        return Err("made of too few different characters");
    }
    Ok(())
}

fn write_private(path: &Path, content: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
    f.write_all(content.as_bytes())?;
    Ok(())
}

/// This process's HTTP listener and what follows from it.
pub struct Listening {
    pub listener: std::net::TcpListener,
    pub bound: SocketAddr,
    /// A loopback address when `bound` is on all addresses: where this process reaches itself.
    pub here: IpAddr,
    /// The `host:port` this process is known by (`--domainaddress`, else the bound address).
    pub own_address: String,
    pub tls: Option<rustls::ServerConfig>,
}

impl Listening {
    /// Creates the data dir, takes the handed-over listener or binds `want`, and sets up TLS.
    fn open(cfg: &Config, want: SocketAddr) -> anyhow::Result<Listening> {
        std::fs::create_dir_all(&cfg.data_dir).map_err(|e| {
            anyhow::anyhow!("cannot create the data dir {}: {e}", cfg.data_dir.display())
        })?;
        let listener = crate::listen::http_listener(want)?;
        let bound = listener.local_addr()?;
        let here = if bound.ip().is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            bound.ip()
        };
        let own_address = cfg
            .domain_address
            .clone()
            .unwrap_or_else(|| SocketAddr::new(here, bound.port()).to_string());
        let tls = crate::tls::setup(cfg, &own_address, bound.ip(), bound.port())?
            .map(|store| store.server_config());
        Ok(Listening {
            listener,
            bound,
            here,
            own_address,
            tls,
        })
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    check_roles(&cfg)?;
    if cfg.roles == [Role::Allocateserver] {
        return serve_allocator(&cfg).await;
    }
    crate::preflight::log_warnings(&cfg).await;
    let at = Listening::open(&cfg, effective_listen(&cfg)?)?;
    let keys = Keys::derive(&ensure_secret(&cfg)?);
    let metrics = Metrics::new();
    let (trigger, shutdown) = crate::shutdown::channel();
    let turn_bound = roles::bind_turn(&cfg, at.here, at.bound.ip(), at.tls.is_some())?;

    // The one decision: the apiserver here (its registry takes the node roles in-process), or
    // on another host (the node roles register over the bridge).
    let (api, registrar) = if cfg.has_role(Role::Apiserver) {
        let api = start_api(&cfg, &keys, &metrics, &at, turn_bound.as_ref()).await?;
        let registrar = wiring::Registrar::InProcess {
            registry: api.state.registry.clone(),
            reports: api.reports.clone(),
        };
        (Some(api.state), registrar)
    } else {
        let Some(apiserver) = cfg.apiserver.as_deref() else {
            anyhow::bail!(
                "roles without the apiserver need --apiserver host:port to register with"
            );
        };
        let target = crate::bridge::client::Target::parse(apiserver)?;
        (None, wiring::Registrar::bridge(target, &keys))
    };

    let started = roles::start(
        &cfg, &keys, &metrics, &at, turn_bound, &registrar, &shutdown,
    )?;
    let mut links = Vec::new();
    for (uplink, node) in started.nodes {
        links.extend(uplink.register(node).await);
    }
    let public_url = api.as_ref().map(|a| a.public_url.clone());
    let server = http_server(&cfg, at, metrics, api, started.sfu, started.fs)?;
    let roles = cfg.roles.iter().map(|r| r.name()).collect::<Vec<_>>();
    match (&public_url, cfg.apiserver.as_deref()) {
        (Some(public), _) => {
            tracing::info!(public = %public, ?roles, "listening on {}", server.url)
        }
        (None, apiserver) => {
            tracing::info!(address = %server.own_address, apiserver = %apiserver.unwrap_or_default(), ?roles, "listening on {}", server.url)
        }
    }
    let handle = server.server.handle();
    actix_rt::spawn(stop_gracefully(trigger, handle, started.stopped, links));
    server.server.await?;
    tracing::info!("stopped");
    System::current().stop();
    Ok(())
}

/// The allocateserver on its own (`meeting-appliance allocateserver --config allocate.toml`):
/// its own listener, no secret, no database.
async fn serve_allocator(cfg: &Config) -> anyhow::Result<()> {
    let at = Listening::open(cfg, cfg.listen_addr()?)?;
    let (trigger, shutdown) = crate::shutdown::channel();
    let settings = settings::allocate(cfg, at.tls);
    let h = crate::roles::allocateserver::server::start(settings, at.listener, shutdown).await?;
    actix_rt::spawn(async move {
        stop_signal().await;
        trigger.fire();
    });
    h.stopped.wait().await;
    tracing::info!("stopped");
    System::current().stop();
    Ok(())
}

/// What the apiserver of this process brings to the rest of it.
struct Api {
    state: web::Data<ApiState>,
    /// Where this process's sfuserver reports (the recorder).
    reports: sfuserver::Reports,
}

/// The apiserver's database, actors and shared state. Its node registry is started here; the
/// node roles of this process register with it afterwards.
async fn start_api(
    cfg: &Config,
    keys: &Keys,
    metrics: &Metrics,
    at: &Listening,
    turn_bound: Option<&roles::TurnBound>,
) -> anyhow::Result<Api> {
    let own_address = &at.own_address;
    let tls = at.tls.is_some();
    let public_url = public_url(own_address, tls);
    let db_url = cfg.database.effective_url(&cfg.data_dir);
    tracing::info!(db = %crate::db::redact(&db_url), "connecting to the database");
    let db = crate::db::connect(
        &db_url,
        cfg.database.max_connections,
        cfg.database.connect_timeout.0,
    )
    .await?;
    metrics.register_collector(crate::metrics::DbPoolCollector::boxed(&db, &cfg.database));
    let turn_port = turn_bound.map_or(cfg.turn.port, |b| b.bound.port());
    let turn_tls_port = turn_bound.and_then(|b| b.bound.tls_port());
    let own = wiring::OwnAddresses {
        sfu: own_address.clone(),
        turn: turn_bound.map_or_else(
            || SocketAddr::new(cfg.turn.ip.unwrap_or(at.here), turn_port).to_string(),
            roles::TurnBound::address,
        ),
        fs: own_address.clone(),
        turn_tls: turn_tls_port.map(|p| {
            let host = own_address
                .rsplit_once(':')
                .map_or(own_address.as_str(), |(h, _)| h);
            format!("{host}:{p}")
        }),
    };
    let peers = wiring::wire(cfg, &own, &db)?;
    let mailer = mail::Mailer::new(&cfg.mail)?;
    if cfg.mail.servers.is_empty() {
        tracing::warn!(
            "no mail server configured (--mailServer): sign-in codes and invitations are written to this log"
        );
    }
    let outbox = mail::MailOutbox::new(db.clone(), mailer.clone(), metrics.clone()).start();
    let limits = Arc::new(apiserver::ApiLimits::new(cfg));
    apiserver::Janitor {
        db: db.clone(),
        limits: limits.clone(),
    }
    .start();
    let recorder = apiserver::ParticipationRecorder::new(db.clone()).start();
    // Where node roles' reports go: participation to the recorder, chat to the chat store,
    // host actions to the audit log (all kept by the recorder). Roles of this process send
    // them there directly; nodes over the bridge through the same recipients, by kind.
    let reports = sfuserver::Reports {
        participation: recorder.clone().recipient(),
        chat: recorder.clone().recipient(),
        host_acted: recorder.recipient(),
    };
    let remotes = crate::bridge::remote::Remotes::new(
        crate::bridge::EventRoutes::default()
            .route(reports.participation.clone())
            .route(reports.chat.clone())
            .route(reports.host_acted.clone()),
    );
    let registry = apiserver::registry::Registry::new(db.clone(), remotes.clone()).start();
    if let Some(n) = &peers.nodes {
        registry.do_send(apiserver::registry::Subscribe(n.clone()));
    }

    // Join answers name the TURN ports really bound (0 in the config: any free port).
    let mut api_cfg = cfg.clone();
    api_cfg.turn.port = turn_port;
    if let Some(p) = turn_tls_port {
        api_cfg.turn.tls_port = p;
    }
    let state = web::Data::new(ApiState {
        db,
        cfg: Arc::new(api_cfg),
        keys: keys.clone(),
        own_turns_url: peers.own_turns,
        allocator: peers.allocate,
        fs_allocator: peers.allocate_fs,
        registry,
        remotes,
        mailer,
        outbox,
        metrics: metrics.clone(),
        own_address: own_address.clone(),
        public_url: public_url.clone(),
        tls,
        self_url: format!(
            "{}://{}",
            at.scheme(),
            SocketAddr::new(at.here, at.bound.port())
        ),
        notes_hub: Arc::new(apiserver::notes::NotesHub::default()),
        limits,
        allocating: Arc::default(),
        sso: Arc::new(apiserver::auth::Sso::new(cfg, keys, &public_url)?),
    });
    apiserver::auth::lifecycle::Lifecycle::start_for(state.clone());
    Ok(Api { state, reports })
}

/// The process's HTTP server, running.
struct Serving {
    server: actix_web::dev::Server,
    url: String,
    own_address: String,
}

/// One HTTP server for whatever runs here: the node roles' routes, `/healthz`, `/readyz`,
/// `/metrics`, and with the apiserver its API and web client (and the bridge's listener);
/// without it, a JSON 404 for anything else.
fn http_server(
    cfg: &Config,
    at: Listening,
    metrics: Metrics,
    api: Option<web::Data<ApiState>>,
    sfu: Option<web::Data<sfuserver::SfuState>>,
    fs: Option<web::Data<fsserver::FsState>>,
) -> anyhow::Result<Serving> {
    let tls = at.tls.is_some();
    let metrics_access = cfg.metrics.clone();
    let server = HttpServer::new(move || {
        let (m, m2) = (metrics.clone(), metrics.clone());
        let (sfu, fs, api) = (sfu.clone(), fs.clone(), api.clone());
        let mut security = actix_web::middleware::DefaultHeaders::new();
        for h in crate::tls::headers::security_headers(tls) {
            security = security.add(h);
        }
        let is_api = api.is_some();
        App::new()
            // Security headers are for what browsers open as pages: the apiserver's. A node
            // on a host of its own answers only signaling and files, which set what they need.
            .wrap(actix_web::middleware::Condition::new(is_api, security))
            .configure(move |c| node_routes(c, sfu, fs))
            .wrap_fn(move |req, srv| {
                let m = m.clone();
                let fut = srv.call(req);
                async move {
                    let res = fut.await?;
                    let class = format!("{}xx", res.status().as_u16() / 100);
                    m.http_requests
                        .get_or_create(&Metrics::label("status", &class))
                        .inc();
                    Ok(res)
                }
            })
            .configure({
                let access = metrics_access.clone();
                move |c| ops_routes(c, m2, access)
            })
            .configure(move |c| match api {
                Some(state) => {
                    c.app_data(state);
                    apiserver::routes(c);
                }
                None => {
                    c.default_service(web::to(|| async {
                        HttpResponse::NotFound().json(
                            serde_json::json!({"error": "not_found", "message": "No such resource."}),
                        )
                    }));
                }
            })
    })
    .on_connect(crate::bridge::on_connect)
    .disable_signals()
    .shutdown_timeout(SHUTDOWN_SECS);
    let url = format!("{}://{}", at.scheme(), at.bound);
    let server = match at.tls {
        Some(tc) => server.listen_rustls_0_23(at.listener, tc)?,
        None => server.listen(at.listener)?,
    }
    .run();
    Ok(Serving {
        server,
        url,
        own_address: at.own_address,
    })
}

/// The node roles' routes on this process's listener: the sfuserver's signaling and the
/// fsserver's files, when those roles run here.
fn node_routes(
    c: &mut web::ServiceConfig,
    sfu: Option<web::Data<sfuserver::SfuState>>,
    fs: Option<web::Data<fsserver::FsState>>,
) {
    if let Some(st) = sfu {
        c.app_data(st).route(
            crate::proto::signal::SIGNAL_ROUTE,
            web::get().to(sfuserver::signal::signal),
        );
    }
    if let Some(st) = fs {
        fsserver::routes(c, st);
    }
}

/// `/healthz` and `/metrics`, served by every role's HTTP listener. `/metrics` answers only
/// the addresses and the token of `[metrics]` when they are set (403 / 401 otherwise).
fn ops_routes(c: &mut web::ServiceConfig, metrics: Metrics, access: crate::config::MetricsAccess) {
    let access = std::sync::Arc::new(access);
    crate::health::routes(c);
    c.route(
        "/metrics",
        web::get().to(move |req: actix_web::HttpRequest| {
            let refused = metrics_refused(&access, &req);
            let body = if refused.is_none() {
                metrics.render()
            } else {
                String::new()
            };
            async move {
                if let Some(e) = refused {
                    return Err(e);
                }
                Ok(HttpResponse::Ok()
                    .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
                    .body(body))
            }
        }),
    );
}

fn metrics_refused(
    access: &crate::config::MetricsAccess,
    req: &actix_web::HttpRequest,
) -> Option<ApiError> {
    if !access.allow.is_empty() {
        let ip = req.peer_addr().map(|a| a.ip());
        if !ip.is_some_and(|ip| access.allow.iter().any(|n| n.contains(ip))) {
            return Some(ApiError::forbidden(
                "not_allowed",
                "Metrics are not served to this address (metrics.allow).",
            ));
        }
    }
    if let Some(want) = &access.token {
        let got = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !crate::util::ct_eq(
            &crate::tokens::sha256_hex(got),
            &crate::tokens::sha256_hex(want),
        ) {
            return Some(ApiError::unauthorized(
                "Metrics need the scrape token (metrics.token).",
            ));
        }
    }
    None
}

/// On SIGTERM/SIGINT, the same for every process: the roles are told (the signaling
/// sessions hear `closed`, reason `server_shutdown`, and their clients rejoin through the
/// apiserver), then the apiserver hears bye on each bridge link and marks those nodes down at
/// once (after the roles have stopped, so the participants' leaves arrive before the bye),
/// then the HTTP server stops accepting and lets requests in flight finish.
async fn stop_gracefully(
    trigger: crate::shutdown::Trigger,
    server: actix_web::dev::ServerHandle,
    roles: Vec<crate::shutdown::Stopped>,
    links: Vec<Addr<crate::bridge::client::BridgeLink>>,
) {
    stop_signal().await;
    tracing::info!("stopping: telling the clients and the apiserver");
    trigger.fire();
    for r in roles {
        r.wait().await;
    }
    for l in &links {
        if let Err(e) = l.send(crate::bridge::client::SayBye).await {
            tracing::debug!(error = %e, "bridge link already gone at stop");
        }
    }
    server.stop(true).await;
}

/// SIGTERM or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending::<()>().await,
    }
}

/// The HTTP listener's address: `listen`, or, when it is left at its default and
/// `--domainaddress` is given, the domain address's port (on its IP when that is an IP
/// literal, else on all addresses), so the seed's command lines need nothing more.
fn effective_listen(cfg: &Config) -> anyhow::Result<SocketAddr> {
    let configured = cfg.listen_addr()?;
    let default = Config::default().listen;
    let Some(domain) = cfg.domain_address.as_deref() else {
        return Ok(configured);
    };
    if cfg.listen != default {
        return Ok(configured);
    }
    let (host, port) = crate::config::split_host_port(domain)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = if host == "localhost" {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse::<IpAddr>()
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    };
    Ok(SocketAddr::new(ip, port))
}

/// `https://host` for port 443, `http://host` for 80, else with the port.
fn public_url(address: &str, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    let default_port = if tls { ":443" } else { ":80" };
    let a = address.strip_suffix(default_port).unwrap_or(address);
    format!("{scheme}://{a}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_urls() {
        assert_eq!(
            public_url("meet.example.com:443", true),
            "https://meet.example.com"
        );
        assert_eq!(public_url("127.0.0.1:8080", false), "http://127.0.0.1:8080");
    }
}
