//! Start-up checks that tell the operator what to fix (CONVENTIONS.md 9, after Galène's
//! "File descriptor limit is N, please increase it").
//!
//! Each check looks at one thing the appliance needs from its host and, when it is missing,
//! returns a [`Warning`] whose message names the setting or command that fixes it. Nothing
//! here stops the start: a box with small UDP buffers still works, only worse, and the
//! failures that do stop it (a taken HTTP port, a database that never answers) fail later
//! with their own error; the warning just comes first and says what to do.
//!
//! Run at start-up by `node::serve` (logged as `WARN preflight …`) and on demand by
//! `meeting-appliance preflight` (printed; exit status 1 when there is a warning).
//!
//! The checks touch only this host and the servers named in the configuration: local
//! binds (released at once), TCP connects to the database and SMTP servers with a short
//! timeout, and a name lookup for the public domain when ACME will be used. Names under
//! reserved top-level domains (`.test`, `.invalid`, … RFC 6761) are never looked up: no public
//! DNS answers for them, so asking would only send a query off the box.

use crate::config::{Config, Role};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::time::Duration;

/// How long a TCP connect or a name lookup may take before the peer counts as unreachable.
pub const TIMEOUT: Duration = Duration::from_secs(3);
/// Open files wanted by a process that runs the sfuserver or turnserver: every participant
/// holds a signaling connection, every TURN allocation a relay socket.
pub const NOFILE_MEDIA: u64 = 16384;
/// Open files wanted by the other roles (HTTP connections, database pool, files).
pub const NOFILE_OTHER: u64 = 4096;
/// `net.core.rmem_max`/`wmem_max` below this cap the 4 MiB buffers the media roles ask for.
pub const UDP_BUFFER: u64 = 4 << 20;

/// One finding: which check, and a sentence that says what is wrong and what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// A stable snake_case name (`fd_limit`, `udp_buffers`, `port_in_use`, `database`,
    /// `mail_server`, `domain`).
    pub check: &'static str,
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}", self.check, self.message)
    }
}

fn warning(check: &'static str, message: String) -> Warning {
    Warning { check, message }
}

/// Runs every check that applies to the roles of `cfg`, concurrently.
pub async fn run(cfg: &Config) -> Vec<Warning> {
    let mut out = Vec::new();
    out.extend(fd_limit(current_nofile(), media_roles(cfg)));
    if media_roles(cfg) {
        out.extend(udp_buffers(
            read_sysctl("net/core/rmem_max"),
            read_sysctl("net/core/wmem_max"),
        ));
    }
    out.extend(ports(cfg));
    let (db, mail, domain) = tokio::join!(database(cfg), mail_servers(cfg), domain(cfg));
    out.extend(db);
    out.extend(mail);
    out.extend(domain);
    out
}

/// `meeting-appliance preflight`: prints every warning; exit status 1 when there is one.
pub fn main(cfg: &Config) -> std::process::ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the checks: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let warnings = rt.block_on(run(cfg));
    let roles: Vec<&str> = cfg.roles.iter().map(|r| r.name()).collect();
    for w in &warnings {
        println!("warning: {w}");
    }
    if warnings.is_empty() {
        println!("preflight: no problems found for {}", roles.join(", "));
        std::process::ExitCode::SUCCESS
    } else {
        println!(
            "preflight: {} thing(s) to fix for {}",
            warnings.len(),
            roles.join(", ")
        );
        std::process::ExitCode::from(1)
    }
}

/// The start-up hook: logs every warning (one line each).
pub async fn log_warnings(cfg: &Config) {
    for w in run(cfg).await {
        tracing::warn!(check = w.check, "preflight: {}", w.message);
    }
}

fn media_roles(cfg: &Config) -> bool {
    cfg.has_role(Role::Sfuserver) || cfg.has_role(Role::Turnserver)
}

// ---- file descriptors -------------------------------------------------------------------

/// The soft `RLIMIT_NOFILE` of this process.
pub fn current_nofile() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own; no other memory is touched.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) };
    (rc == 0).then_some(r.rlim_cur)
}

/// Warns when the open-file limit is below what the roles need.
pub fn fd_limit(soft: Option<u64>, media: bool) -> Option<Warning> {
    let soft = soft?;
    let want = if media { NOFILE_MEDIA } else { NOFILE_OTHER };
    (soft < want).then(|| {
        warning(
            "fd_limit",
            format!(
                "the open-file limit (RLIMIT_NOFILE) is {soft}, below {want}: connections and relay sockets will fail under load. \
                 Raise it: `LimitNOFILE=65536` in the systemd unit (the packaged units set it), or `ulimit -n 65536` before starting"
            ),
        )
    })
}

// ---- UDP buffers ------------------------------------------------------------------------

/// A number from `/proc/sys/<name>`.
pub fn read_sysctl(name: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/sys/{name}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Warns when the kernel caps UDP socket buffers below what the SFU and TURN relay ask for.
pub fn udp_buffers(rmem_max: Option<u64>, wmem_max: Option<u64>) -> Option<Warning> {
    let small: Vec<String> = [
        ("net.core.rmem_max", rmem_max),
        ("net.core.wmem_max", wmem_max),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.filter(|v| *v < UDP_BUFFER).map(|v| format!("{k} = {v}")))
    .collect();
    if small.is_empty() {
        return None;
    }
    Some(warning(
        "udp_buffers",
        format!(
            "UDP socket buffers are capped small ({}): media bursts will be dropped under load. \
             Raise them: `sysctl -w net.core.rmem_max=8388608 net.core.wmem_max=8388608`, and keep it in \
             /etc/sysctl.d/60-meeting-appliance.conf (the packages install that file)",
            small.join(", ")
        ),
    ))
}

// ---- ports ------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    Tcp,
    Udp,
}

/// One port this process will bind: what for, and the setting that moves it.
struct Want {
    what: &'static str,
    proto: Proto,
    addr: SocketAddr,
    setting: &'static str,
}

/// Binds (and releases at once) every fixed port the roles of `cfg` will listen on.
pub fn ports(cfg: &Config) -> Vec<Warning> {
    let Ok(listen) = cfg.listen_addr() else {
        return Vec::new(); // validate() already names a bad `listen`
    };
    let here = if listen.ip().is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        listen.ip()
    };
    let mut wants = Vec::new();
    // A socket handed over by the service manager is bound already (by it, on purpose).
    if !crate::listen::handed_over(false) {
        wants.push(Want {
            what: "the HTTP(S) listener",
            proto: Proto::Tcp,
            addr: listen,
            setting: "`listen` (--listen)",
        });
    }
    let mode = tls_mode(cfg);
    if matches!(mode, Some(crate::tls::Mode::Acme { .. })) {
        wants.push(Want {
            what: "the ACME challenge listener",
            proto: Proto::Tcp,
            addr: SocketAddr::new(listen.ip(), cfg.tls.http_port),
            setting: "`tls.http_port`, or give --cert/--certkey",
        });
    }
    if cfg.has_role(Role::Turnserver) {
        let ip = cfg.turn.ip.unwrap_or(here);
        for proto in [Proto::Udp, Proto::Tcp] {
            wants.push(Want {
                what: "TURN",
                proto,
                addr: SocketAddr::new(ip, cfg.turn.port),
                setting: "`turn.port` (--port)",
            });
        }
        if !matches!(mode, Some(crate::tls::Mode::Plain) | None) {
            wants.push(Want {
                what: "TURN over TLS",
                proto: Proto::Tcp,
                addr: SocketAddr::new(ip, cfg.turn.tls_port),
                setting: "`turn.tls_port`",
            });
        }
    }
    if cfg.has_role(Role::Sfuserver) && cfg.sfu.udp_port != 0 && !crate::listen::handed_over(true) {
        let ip = cfg.sfu.ip.first().copied().unwrap_or(listen.ip());
        let workers = match cfg.sfu.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        for i in 0..workers {
            let Some(port) = u16::try_from(i)
                .ok()
                .and_then(|i| cfg.sfu.udp_port.checked_add(i))
            else {
                break;
            };
            wants.push(Want {
                what: "the SFU media socket",
                proto: Proto::Udp,
                addr: SocketAddr::new(ip, port),
                setting: "`sfu.udp_port` (--udpPort)",
            });
        }
    }
    wants
        .into_iter()
        .filter(|w| w.addr.port() != 0)
        .filter_map(|w| {
            try_bind(w.proto, w.addr)
                .err()
                .map(|e| port_warning(&w, &e))
        })
        .collect()
}

fn tls_mode(cfg: &Config) -> Option<crate::tls::Mode> {
    let listen = cfg.listen_addr().ok()?;
    let own = cfg
        .domain_address
        .clone()
        .unwrap_or_else(|| listen.to_string());
    let host = crate::config::split_host_port(&own).ok()?.0;
    Some(crate::tls::Mode::choose(
        cfg.cert.as_deref(),
        cfg.cert_key.as_deref(),
        &host,
    ))
}

/// Binds like the roles do: an address this host does not have (a public IP behind 1:1
/// NAT) falls back to all addresses.
fn try_bind(proto: Proto, addr: SocketAddr) -> io::Result<()> {
    let bind = |a: SocketAddr| match proto {
        Proto::Tcp => TcpListener::bind(a).map(drop),
        Proto::Udp => UdpSocket::bind(a).map(drop),
    };
    match bind(addr) {
        Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => {
            let any = match addr.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            };
            bind(SocketAddr::new(any, addr.port()))
        }
        r => r,
    }
}

fn port_warning(w: &Want, e: &io::Error) -> Warning {
    let (proto, ss) = match w.proto {
        Proto::Tcp => ("tcp", "ss -ltnp"),
        Proto::Udp => ("udp", "ss -lunp"),
    };
    let port = w.addr.port();
    let message = match e.kind() {
        io::ErrorKind::AddrInUse => format!(
            "port {port}/{proto} for {} ({}) is already in use by another program: stop it \
             (`{ss} 'sport = :{port}'` shows which) or change {}",
            w.what, w.addr, w.setting
        ),
        io::ErrorKind::PermissionDenied => format!(
            "port {port}/{proto} for {} ({}) is a privileged port and this process may not bind it: \
             grant CAP_NET_BIND_SERVICE (the packaged systemd units do: AmbientCapabilities=CAP_NET_BIND_SERVICE) \
             or change {} to a port above 1023",
            w.what, w.addr, w.setting
        ),
        _ => format!(
            "cannot bind port {port}/{proto} for {} ({}): {e}; change {}",
            w.what, w.addr, w.setting
        ),
    };
    warning("port_in_use", message)
}

// ---- database and mail ------------------------------------------------------------------

/// TCP-connects to the database server (MySQL/MariaDB, PostgreSQL); SQLite needs none.
pub async fn database(cfg: &Config) -> Option<Warning> {
    if !cfg.has_role(Role::Apiserver) {
        return None;
    }
    let url = cfg.database.effective_url(&cfg.data_dir);
    let parsed = url::Url::parse(&url).ok()?;
    let default_port = match parsed.scheme() {
        "mysql" | "mariadb" => 3306,
        "postgres" | "postgresql" => 5432,
        _ => return None,
    };
    let host = parsed
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = parsed.port().unwrap_or(default_port);
    let err = reach(host, port).await.err()?;
    let how = if cfg.database.url.is_some() {
        "`database.url` (--databaseUrl)"
    } else {
        "--mysqlAddress (`database.mysql_address`)"
    };
    Some(warning(
        "database",
        format!(
            "cannot reach the database server at {host}:{port} ({err}): start it (e.g. `systemctl start mariadb`), \
             open the firewall, or fix {how}. Start-up waits `database.connect_timeout` ({}) for it, then stops",
            humantime::format_duration(cfg.database.connect_timeout.0)
        ),
    ))
}

/// TCP-connects to every configured SMTP server.
pub async fn mail_servers(cfg: &Config) -> Vec<Warning> {
    if !cfg.has_role(Role::Apiserver) {
        return Vec::new();
    }
    let checks = cfg.mail.servers.iter().map(|m| async move {
        let err = reach(&m.host, m.port).await.err()?;
        Some(warning(
            "mail_server",
            format!(
                "cannot reach the mail server {}:{} ({err}): sign-in codes and invitations wait in the outbox \
                 until it answers. Check that it runs and the firewall allows it, or fix --mailServer/--mailPort \
                 (`mail.servers`)",
                m.host, m.port
            ),
        ))
    });
    futures_util::future::join_all(checks)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Resolves `host` and connects to the first address that answers, within [`TIMEOUT`].
async fn reach(host: &str, port: u16) -> Result<(), String> {
    let addrs = lookup(host, port).await?;
    let mut last = String::from("no address");
    for a in addrs {
        match tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect(a)).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => last = format!("{a}: {e}"),
            Err(_) => last = format!("{a}: no answer within {}s", TIMEOUT.as_secs()),
        }
    }
    Err(last)
}

async fn lookup(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    match tokio::time::timeout(TIMEOUT, tokio::net::lookup_host((host, port))).await {
        Ok(Ok(a)) => {
            let v: Vec<SocketAddr> = a.collect();
            if v.is_empty() {
                Err(format!("{host} has no address"))
            } else {
                Ok(v)
            }
        }
        Ok(Err(e)) => Err(format!("{host} does not resolve: {e}")),
        Err(_) => Err(format!(
            "looking up {host} took more than {}s",
            TIMEOUT.as_secs()
        )),
    }
}

// ---- the public domain (ACME) -----------------------------------------------------------

/// Top-level names public DNS never answers (RFC 2606, 6761, 6762; `.internal`, `home.arpa`).
const RESERVED_SUFFIXES: [&str; 7] = [
    ".test",
    ".invalid",
    ".example",
    ".localhost",
    ".local",
    ".internal",
    ".home.arpa",
];

/// When the certificate will come from ACME (HTTP-01), the CA connects to the domain's
/// address on port 80: it must resolve, and to this host.
pub async fn domain(cfg: &Config) -> Option<Warning> {
    let crate::tls::Mode::Acme { domain } = tls_mode(cfg)? else {
        return None;
    };
    let fix = "point its A/AAAA record at this host's public address, or give --cert/--certkey";
    let lower = format!(".{}", domain.to_ascii_lowercase().trim_end_matches('.'));
    if let Some(tld) = RESERVED_SUFFIXES.iter().find(|s| lower.ends_with(*s)) {
        return Some(warning(
            "domain",
            format!(
                "the domain {domain} (--domainaddress) is under the reserved name {tld}, which public DNS never \
                 resolves, so a public CA cannot validate it for an automatic certificate: use a real domain and \
                 {fix} (a private ACME server in `tls.acme_directory` that resolves it itself is fine)"
            ),
        ));
    }
    let addrs = match lookup(&domain, 80).await {
        Ok(a) => a,
        Err(e) => {
            return Some(warning(
                "domain",
                format!(
                    "the domain {domain} (--domainaddress) does not resolve ({e}), so the CA cannot reach this host \
                     for an automatic certificate: {fix}"
                ),
            ));
        }
    };
    let public: Vec<IpAddr> = cfg.sfu.ip.iter().copied().chain(cfg.turn.ip).collect();
    let foreign: Vec<IpAddr> = addrs
        .iter()
        .map(SocketAddr::ip)
        .filter(|ip| !public.contains(ip) && !is_local(*ip))
        .collect();
    if foreign.is_empty() {
        return None;
    }
    let list = foreign
        .iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    Some(warning(
        "domain",
        format!(
            "the domain {domain} (--domainaddress) resolves to {list}, which is not an address of this host, so the \
             CA's HTTP-01 check on port 80 will not reach it: {fix}. Behind NAT, forward ports 80 and 443 here and \
             list the public address in --ip so this check knows it"
        ),
    ))
}

/// True when `ip` is an address of this host (binding to it works; nothing is sent).
fn is_local(ip: IpAddr) -> bool {
    UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_limit_names_the_fix() {
        let w = fd_limit(Some(1024), true).expect("1024 is low for an SFU");
        assert!(w.message.contains("LimitNOFILE"), "{w}");
        assert!(fd_limit(Some(65536), true).is_none());
        assert!(fd_limit(Some(8192), false).is_none());
        assert!(fd_limit(None, true).is_none());
    }

    #[test]
    fn udp_buffers_name_the_sysctl() {
        let w = udp_buffers(Some(212_992), Some(8 << 20)).expect("small rmem");
        assert!(w.message.contains("net.core.rmem_max = 212992"), "{w}");
        assert!(!w.message.contains("wmem_max = "), "{w}");
        assert!(w.message.contains("sysctl -w"), "{w}");
        assert!(udp_buffers(Some(8 << 20), Some(8 << 20)).is_none());
    }

    #[test]
    fn local_addresses() {
        assert!(is_local(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        // TEST-NET-1 (RFC 5737) is never configured on a host.
        assert!(!is_local("192.0.2.1".parse().expect("ip")));
    }
}
