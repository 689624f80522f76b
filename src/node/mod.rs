//! Starts the actix System and the enabled roles of this process, and stops them gracefully.
//!
//! Order: data dir and secret → listener bound (fail fast if the port is taken) → database
//! (with migrations) → actors, wired by `wiring::wire` → HTTP server. SIGINT/SIGTERM stop
//! accepting, let requests in flight finish (bounded by `SHUTDOWN`), then stop the actors.

pub mod wiring;

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
use crate::roles::turnserver;
use crate::tokens::Keys;

/// How long a graceful stop may take before connections are dropped.
const SHUTDOWN_SECS: u64 = 10;

/// Runs until a stop signal. Returns an error that tells the operator what to fix.
pub fn run(cfg: Config) -> anyhow::Result<()> {
    crate::util::install_ring_provider();
    let sys = actix_rt::System::new();
    let result = sys.block_on(serve(cfg));
    if result.is_err() {
        // Start-up failed with actors already running; the process exits right after this,
        // and dropping them outside their runtime would only add a panic to the error.
        std::mem::forget(sys);
    }
    result
}

fn check_roles(cfg: &Config) -> anyhow::Result<()> {
    let unbuilt: [Role; 0] = [];
    if !cfg.has_role(Role::Apiserver) {
        // An fsserver on its own host needs only the secret: `serve_fsserver_alone`.
        if cfg.roles == [Role::Fsserver] {
            return Ok(());
        }
        if cfg.has_role(Role::Fsserver) {
            anyhow::bail!(
                "an fsserver without the apiserver runs alone: `meeting-appliance fsserver --secret … --directory … --apiserver …`"
            );
        }
        let r = cfg.roles[0];
        // Roles on their own host need the remote bridge (not built yet).
        if unbuilt.contains(&r)
            || r == Role::Sfuserver
            || r == Role::Turnserver
        {
            anyhow::bail!(
                "the {} role is not built yet in this version; run the apiserver (all-in-one) instead",
                r.name()
            );
        }
    }
    for r in unbuilt {
        if cfg.has_role(r) {
            tracing::warn!(
                role = r.name(),
                "this role is not built yet: meetings can be created and joined, but no media flows"
            );
        }
    }
    Ok(())
}

/// The deployment secret: configured, or generated once into the data dir (mode 0600).
fn ensure_secret(cfg: &Config) -> anyhow::Result<String> {
    if let Some(s) = &cfg.secret {
        if s.len() < 8 {
            anyhow::bail!(
                "--secret is too short: use at least 8 characters (32 random ones are better)"
            );
        }
        return Ok(s.clone());
    }
    let path = cfg.data_dir.join("secret");
    if path.exists() {
        let s = std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        return Ok(s.trim().to_string());
    }
    let s = crate::ids::random_token(32);
    write_private(&path, &s)?;
    tracing::info!(path = %path.display(), "generated the deployment secret");
    Ok(s)
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

async fn serve(cfg: Config) -> anyhow::Result<()> {
    check_roles(&cfg)?;
    crate::preflight::log_warnings(&cfg).await;
    if cfg.roles == [Role::Allocateserver] {
        return crate::roles::allocateserver::server::serve_alone(&cfg).await;
    }
    std::fs::create_dir_all(&cfg.data_dir).map_err(|e| {
        anyhow::anyhow!("cannot create the data dir {}: {e}", cfg.data_dir.display())
    })?;
    let secret = ensure_secret(&cfg)?;
    let keys = Keys::derive(&secret);
    let want = cfg.listen_addr()?;
    let listener = std::net::TcpListener::bind(want).map_err(|e| {
        anyhow::anyhow!("cannot listen on {want}: {e}; is another server using the port? Change `listen` (--listen)")
    })?;
    let bound = listener.local_addr()?;
    let here: IpAddr = if bound.ip().is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        bound.ip()
    };
    let own_address = cfg
        .domain_address
        .clone()
        .unwrap_or_else(|| SocketAddr::new(here, bound.port()).to_string());

    let tls_config = crate::tls::setup(&cfg, &own_address, bound.ip(), bound.port())?
        .map(|store| store.server_config());
    let tls = tls_config.is_some();
    let public_url = public_url(&own_address, tls);

    // ---- fsserver on its own host (issue 5): files only; no database, no mail ----
    if !cfg.has_role(Role::Apiserver) && cfg.has_role(Role::Fsserver) {
        return serve_fsserver_alone(&cfg, keys, listener, tls_config, &own_address).await;
    }
    // ---- end fsserver on its own host ----

    let db_url = cfg.database.effective_url(&cfg.data_dir);
    tracing::info!(db = %crate::db::redact(&db_url), "connecting to the database");
    let db = crate::db::connect(
        &db_url,
        cfg.database.max_connections,
        cfg.database.connect_timeout.0,
    )
    .await?;

    let metrics = Metrics::new();
    metrics.register_collector(crate::metrics::DbPoolCollector::boxed(&db, &cfg.database));
    let turn_ip = cfg.turn.ip.unwrap_or(here);
    // Bound now: a taken port fails start-up, and a port 0 is known before join answers name it.
    let turn_bound = if cfg.has_role(Role::Turnserver) {
        if cfg.turn.ip.is_none() && bound.ip().is_unspecified() {
            anyhow::bail!(
                "the turnserver listens on all addresses: give --ip, the address clients reach for TURN"
            );
        }
        // TURN over TLS when this process has a certificate.
        let tls_port = tls_config.as_ref().map(|_| cfg.turn.tls_port);
        Some(turnserver::bind(turn_ip, cfg.turn.port, tls_port)?)
    } else {
        None
    };
    let turn_port = turn_bound.as_ref().map_or(cfg.turn.port, |b| b.port());
    let turn_tls_port = turn_bound.as_ref().and_then(turnserver::Bound::tls_port);
    let own = wiring::OwnAddresses {
        sfu: own_address.clone(),
        turn: SocketAddr::new(turn_ip, turn_port).to_string(),
        fs: own_address.clone(),
    };
    let peers = wiring::wire(&cfg, &own, &db)?;
    let mailer = mail::Mailer::new(&cfg.mail)?;
    if cfg.mail.servers.is_empty() {
        tracing::warn!(
            "no mail server configured (--mailServer): sign-in codes and invitations are written to this log"
        );
    }
    let outbox = mail::MailOutbox::new(db.clone(), mailer.clone(), metrics.clone()).start();
    apiserver::Janitor { db: db.clone() }.start();
    let recorder = apiserver::ParticipationRecorder { db: db.clone() }.start();

    let sfu = if cfg.has_role(Role::Sfuserver) {
        let advertised_ip = match cfg.sfu.ip.first() {
            Some(ip) => *ip,
            None if bound.ip().is_unspecified() => anyhow::bail!(
                "the sfuserver listens on all addresses: give --ip, the address browsers reach for media"
            ),
            None => bound.ip(),
        };
        let workers = if cfg.sfu.workers == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            cfg.sfu.workers
        };
        let settings = sfuserver::SfuSettings {
            workers,
            udp_port: cfg.sfu.udp_port,
            advertised_ip,
            own_address: own_address.clone(),
            room_grace: cfg.sfu.room_grace.0,
        };
        let (addr, state, stats) =
            sfuserver::start(&settings, keys.clone(), Some(recorder.clone().recipient()))?;
        metrics.register_collector(Box::new(sfuserver::metrics::SfuCollector(stats)));
        Some((addr, web::Data::new(state)))
    } else {
        None
    };

    if let Some(turn) = turn_bound {
        let sfu_peers = own_sfu_peers(&cfg, bound.ip());
        let settings = turnserver::TurnSettings::new(&cfg.turn, turn_ip, sfu_peers);
        let stats = turnserver::start(turn, settings, keys.turn_secret(), tls_config.clone())?;
        metrics.register_collector(Box::new(turnserver::TurnCollector(stats)));
    }

    // Join answers name the TURN ports really bound (0 in the config: any free port).
    let mut api_cfg = cfg.clone();
    api_cfg.turn.port = turn_port;
    if let Some(p) = turn_tls_port {
        api_cfg.turn.tls_port = p;
    }
    // ---- fsserver on this box (issue 5): mounted on the shared HTTP server below ----
    let fs_state = if cfg.has_role(Role::Fsserver) {
        let settings = fsserver::FsSettings::from_config(&cfg, &own_address);
        let st = fsserver::start(settings, keys.clone())?;
        metrics.register_collector(Box::new(fsserver::stats::FsCollector(st.stats())));
        Some(web::Data::new(st))
    } else {
        None
    };

    let state = web::Data::new(ApiState {
        db,
        cfg: Arc::new(api_cfg),
        keys,
        allocator: peers.allocate,
        fs_allocator: peers.allocate_fs,
        room_control: sfu.as_ref().map(|(a, _)| a.clone().recipient()),
        mailer,
        outbox,
        metrics: metrics.clone(),
        own_address: own_address.clone(),
        public_url: public_url.clone(),
        tls,
        notes_hub: Arc::new(apiserver::notes::NotesHub::default()),
    });
    let m = metrics.clone();
    let sfu_state = sfu.map(|(_, st)| st);
    let server = HttpServer::new(move || {
        let m = m.clone();
        let m2 = m.clone();
        let sfu_state = sfu_state.clone();
        let fs_state = fs_state.clone();
        let mut security = actix_web::middleware::DefaultHeaders::new();
        for h in crate::tls::headers::security_headers(tls) {
            security = security.add(h);
        }
        App::new()
            .wrap(security)
            .app_data(state.clone())
            .configure(move |c| {
                if let Some(st) = sfu_state {
                    c.app_data(st).route(
                        "/sfu/v1/signal/{meeting}",
                        web::get().to(sfuserver::signal::signal),
                    );
                }
            })
            .configure(move |c| {
                if let Some(st) = fs_state {
                    fsserver::routes(c, st);
                }
            })
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
            .configure(move |c| ops_routes(c, m2))
            .configure(apiserver::routes)
    })
    .shutdown_timeout(SHUTDOWN_SECS);
    let server = match tls_config {
        Some(tc) => server.listen_rustls_0_23(listener, tc)?,
        None => server.listen(listener)?,
    }
    .run();
    let scheme = if tls { "https" } else { "http" };
    tracing::info!(public = %public_url, roles = ?cfg.roles.iter().map(|r| r.name()).collect::<Vec<_>>(), "listening on {scheme}://{bound}");
    server.await?;
    tracing::info!("stopped");
    System::current().stop();
    Ok(())
}

/// `/healthz` and `/metrics`, served by every role's HTTP listener.
fn ops_routes(c: &mut web::ServiceConfig, metrics: Metrics) {
    c.route(
        "/healthz",
        web::get().to(|| async { HttpResponse::Ok().json(serde_json::json!({"status": "ok"})) }),
    )
    .route("/readyz", web::get().to(crate::health::readyz))
    .route(
        "/metrics",
        web::get().to(move || {
            let body = metrics.render();
            async move {
                HttpResponse::Ok()
                    .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
                    .body(body)
            }
        }),
    );
}

// ---- fsserver on its own host (issue 5) ----

/// An fsserver alone (`meeting-appliance fsserver --secret … --directory … --apiserver …`):
/// it checks every request's signed URL with the secret alone, so it needs no database, no
/// mail and no connection to the apiserver (`--apiserver` is kept for the node registry of
/// the remote bridge, which is not built yet).
async fn serve_fsserver_alone(
    cfg: &Config,
    keys: Keys,
    listener: std::net::TcpListener,
    tls_config: Option<rustls::ServerConfig>,
    own_address: &str,
) -> anyhow::Result<()> {
    let bound = listener.local_addr()?;
    let settings = fsserver::FsSettings::from_config(cfg, own_address);
    let st = fsserver::start(settings, keys)?;
    let metrics = Metrics::new();
    metrics.register_collector(Box::new(fsserver::stats::FsCollector(st.stats())));
    let st = web::Data::new(st);
    let server = HttpServer::new(move || {
        let (st, m) = (st.clone(), metrics.clone());
        App::new()
            .configure(move |c| fsserver::routes(c, st))
            .configure(move |c| ops_routes(c, m))
            .default_service(web::to(|| async {
                HttpResponse::NotFound()
                    .json(serde_json::json!({"error": "not_found", "message": "No such resource."}))
            }))
    })
    .shutdown_timeout(SHUTDOWN_SECS);
    let tls = tls_config.is_some();
    let server = match tls_config {
        Some(tc) => server.listen_rustls_0_23(listener, tc)?,
        None => server.listen(listener)?,
    }
    .run();
    let scheme = if tls { "https" } else { "http" };
    tracing::info!(address = %own_address, apiserver = ?cfg.apiserver, roles = ?["fsserver"], "listening on {scheme}://{bound}");
    server.await?;
    tracing::info!("stopped");
    System::current().stop();
    Ok(())
}

// ---- end fsserver on its own host ----

/// This box's sfuserver media addresses, which its turnserver always relays to (even on
/// loopback or a private address): the advertised IPs, on the workers' ports (any port when
/// the system picks them).
fn own_sfu_peers(cfg: &Config, listen_ip: IpAddr) -> Vec<turnserver::TrustedPeer> {
    if !cfg.has_role(Role::Sfuserver) {
        return Vec::new();
    }
    let ips = if cfg.sfu.ip.is_empty() {
        vec![listen_ip]
    } else {
        cfg.sfu.ip.clone()
    };
    let workers = match cfg.sfu.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let ports = match cfg.sfu.udp_port {
        0 => 1..=u16::MAX,
        p => p..=p.saturating_add(u16::try_from(workers.saturating_sub(1)).unwrap_or(u16::MAX)),
    };
    ips.into_iter()
        .map(|ip| turnserver::TrustedPeer {
            ip,
            ports: ports.clone(),
        })
        .collect()
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
