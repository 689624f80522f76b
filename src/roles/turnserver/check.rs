//! `meeting-appliance turn-check --server host:port [--secret S]`: a self-test for admins
//! diagnosing "people behind the corporate firewall see no video".
//!
//! It does what a browser does, step by step, and says which step fails and what that usually
//! means: a STUN binding (is UDP reachable at all?), an allocation over UDP, over TCP and over
//! TLS (are the credentials right, is the port open, is the certificate trusted?), then relays
//! between its own allocations in both directions (is the relay port range open, does the
//! server relay?).
//! It needs nothing but the server's address and the deployment secret, and works against
//! coturn configured with the same secret too.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::client::{Allocation, Transport, TurnClient, TurnError};

/// Credentials for the check: a REST username valid for ten minutes.
pub fn credentials(deployment_secret: &str) -> (String, String) {
    let keys = crate::tokens::Keys::derive(deployment_secret);
    let username = format!("{}:turn-check", crate::util::now() + 600);
    let password = crate::tokens::turn_password(keys.turn_secret(), &username);
    (username, password)
}

/// The secret to use: given, or the one a single box generated into its data dir.
pub fn find_secret(given: Option<&str>, data_dir: Option<&PathBuf>) -> anyhow::Result<String> {
    if let Some(s) = given {
        return Ok(s.to_string());
    }
    let dir = data_dir
        .cloned()
        .unwrap_or_else(|| crate::config::Config::default().data_dir);
    let path = dir.join("secret");
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_string())
        .map_err(|e| {
            anyhow::anyhow!(
                "no --secret given and cannot read {}: {e}. Give the deployment secret with --secret",
                path.display()
            )
        })
}

struct Report<'a, W: Write> {
    out: &'a mut W,
    failed: usize,
    passed: usize,
}

impl<W: Write> Report<'_, W> {
    fn line(&mut self, ok: Option<bool>, what: &str, detail: &str) {
        let tag = match ok {
            Some(true) => {
                self.passed += 1;
                "ok  "
            }
            Some(false) => {
                self.failed += 1;
                "FAIL"
            }
            None => "skip",
        };
        let _ = writeln!(self.out, "  {tag}  {what}: {detail}");
    }
}

/// What an error usually means, for the admin reading the report.
fn hint(e: &TurnError, transport: &str) -> String {
    match e {
        TurnError::Timeout => format!(
            "no answer: is {transport} to the TURN port open in the firewall, and the server running?"
        ),
        TurnError::Refused { code: 401, .. } => {
            "credentials refused (401): is --secret this deployment's secret, and the server's clock right?"
                .into()
        }
        TurnError::Refused { code: 403, .. } => {
            "the server refuses to relay to its own relay address (403)".into()
        }
        TurnError::Refused { code: 486, .. } => {
            "allocation quota reached (486): too many allocations for this username, from this address or for this meeting (turn.max_allocations_per_*)".into()
        }
        TurnError::Refused { code: 508, .. } => {
            "no free relay port on the server (508): widen turn.relay_port_min/max".into()
        }
        TurnError::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!("connection refused: nothing listens on {transport} at that port")
        }
        other => other.to_string(),
    }
}

async fn allocate(
    server: SocketAddr,
    transport: Transport,
    user: &str,
    password: &str,
) -> Result<(TurnClient, Allocation), TurnError> {
    let mut c = TurnClient::connect(server, transport, user, password).await?;
    let a = c.allocate(None, false).await?;
    Ok((c, a))
}

/// What to check TURN over TLS with.
pub struct TlsCheck {
    pub port: u16,
    /// PEM of a private CA that signed the server's certificate; else the public web roots.
    pub ca_pem: Option<String>,
}

fn tls_hint(e: &TurnError) -> String {
    match e {
        TurnError::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => format!(
            "the TLS handshake failed: {io} (a private or self-signed certificate needs --tlsCa)"
        ),
        other => hint(other, "TCP"),
    }
}

/// Sends one message from `a` to `b`'s relay address through the server; returns the time
/// it took. `via_channel` uses ChannelData (what browsers send), else a Send indication.
async fn relay_once(
    a: &mut TurnClient,
    a_relay: SocketAddr,
    b: &mut TurnClient,
    b_relay: SocketAddr,
    via_channel: bool,
) -> Result<Duration, String> {
    a.create_permission(&[b_relay])
        .await
        .map_err(|e| hint(&e, "UDP"))?;
    b.create_permission(&[a_relay])
        .await
        .map_err(|e| hint(&e, "UDP"))?;
    let payload = format!("turn-check {}", rand::random::<u64>()).into_bytes();
    let t0 = Instant::now();
    if via_channel {
        a.channel_bind(0x4000, b_relay)
            .await
            .map_err(|e| hint(&e, "UDP"))?;
        a.send_channel(0x4000, &payload)
            .await
            .map_err(|e| e.to_string())?;
    } else {
        a.send_indication(b_relay, &payload)
            .await
            .map_err(|e| e.to_string())?;
    }
    loop {
        match b.recv_data(Duration::from_secs(3)).await {
            Ok(r) if r.data == payload => {
                if r.peer.is_some_and(|p| p != a_relay) {
                    return Err(format!("arrived from {:?}, not from {a_relay}", r.peer));
                }
                return Ok(t0.elapsed());
            }
            Ok(_) => continue,
            Err(TurnError::Timeout) => {
                return Err(format!(
                    "nothing arrived within 3 s: is UDP to the relay ports (turn.relay_port_min..max) open, and {} reachable from the server?",
                    b_relay.ip()
                ));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Runs every check against `server` and writes the report; true when all passed.
pub async fn run<W: Write>(
    server: &str,
    username: &str,
    password: &str,
    tls: &TlsCheck,
    out: &mut W,
) -> bool {
    let _ = writeln!(out, "TURN check of {server} (username {username})");
    let mut r = Report {
        out,
        failed: 0,
        passed: 0,
    };
    let addr = match tokio::net::lookup_host(server).await.map(|mut a| a.next()) {
        Ok(Some(a)) => a,
        Ok(None) | Err(_) => {
            r.line(
                Some(false),
                "resolve the server",
                &format!("{server:?} is not a host:port this machine can resolve"),
            );
            return false;
        }
    };
    match TurnClient::connect(addr, Transport::Udp, username, password).await {
        Ok(mut c) => match c.binding().await {
            Ok(me) => r.line(
                Some(true),
                "STUN binding over UDP",
                &format!("the server sees this machine as {me}"),
            ),
            Err(e) => r.line(Some(false), "STUN binding over UDP", &hint(&e, "UDP")),
        },
        Err(e) => r.line(Some(false), "STUN binding over UDP", &e.to_string()),
    }
    let mut udp = match allocate(addr, Transport::Udp, username, password).await {
        Ok((c, a)) => {
            r.line(
                Some(true),
                "allocate over UDP",
                &format!("relay address {} (lifetime {} s)", a.relayed, a.lifetime),
            );
            Some((c, a))
        }
        Err(e) => {
            r.line(Some(false), "allocate over UDP", &hint(&e, "UDP"));
            None
        }
    };
    let mut tcp = match allocate(addr, Transport::Tcp, username, password).await {
        Ok((c, a)) => {
            r.line(
                Some(true),
                "allocate over TCP",
                &format!("relay address {} (lifetime {} s)", a.relayed, a.lifetime),
            );
            Some((c, a))
        }
        Err(e) => {
            r.line(Some(false), "allocate over TCP", &hint(&e, "TCP"));
            None
        }
    };
    // Relay between two of our own allocations: UDP and TCP if both worked, else two UDP.
    let mut second_udp = None;
    if tcp.is_none()
        && udp.is_some()
        && let Ok(pair) = allocate(addr, Transport::Udp, username, password).await
    {
        second_udp = Some(pair);
    }
    let other = tcp.as_mut().or(second_udp.as_mut());
    match (udp.as_mut(), other) {
        (Some((a, aa)), Some((b, ba))) => {
            let kind = b.transport().name();
            let forward = format!("relay UDP -> {kind} (Send indication)");
            match relay_once(a, aa.relayed, b, ba.relayed, false).await {
                Ok(t) => r.line(Some(true), &forward, &format!("{} ms", t.as_millis())),
                Err(e) => r.line(Some(false), &forward, &e),
            }
            let back = format!("relay {kind} -> UDP (ChannelData)");
            match relay_once(b, ba.relayed, a, aa.relayed, true).await {
                Ok(t) => r.line(Some(true), &back, &format!("{} ms", t.as_millis())),
                Err(e) => r.line(Some(false), &back, &e),
            }
        }
        _ => r.line(
            Some(false),
            "relay",
            "not tried: needs two allocations, and allocating failed",
        ),
    }
    // TURN over TLS, on the TLS port of the same host, checked for the name in --server.
    let host = server
        .rsplit_once(':')
        .map_or(server, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let tls_addr = SocketAddr::new(addr.ip(), tls.port);
    let what = format!("allocate over TLS (port {})", tls.port);
    let mut over_tls = None;
    match TurnClient::connect_tls(tls_addr, host, tls.ca_pem.as_deref(), username, password).await {
        Err(TurnError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => r.line(
            None,
            &what,
            "nothing listens there (TURN over TLS is on when the server has a certificate)",
        ),
        Err(e) => r.line(Some(false), &what, &tls_hint(&e)),
        Ok(mut c) => match c.allocate(None, false).await {
            Ok(a) => {
                r.line(
                    Some(true),
                    &what,
                    &format!("relay address {} (lifetime {} s)", a.relayed, a.lifetime),
                );
                over_tls = Some((c, a));
            }
            Err(e) => r.line(Some(false), &what, &tls_hint(&e)),
        },
    }
    if let (Some((a, aa)), Some((b, ba))) = (udp.as_mut(), over_tls.as_mut()) {
        match relay_once(b, ba.relayed, a, aa.relayed, true).await {
            Ok(t) => r.line(
                Some(true),
                "relay TLS -> UDP (ChannelData)",
                &format!("{} ms", t.as_millis()),
            ),
            Err(e) => r.line(Some(false), "relay TLS -> UDP (ChannelData)", &e),
        }
    }
    // Give the relay ports back now rather than at the end of their lifetime.
    for (mut c, _) in [udp, tcp, second_udp, over_tls].into_iter().flatten() {
        let _ = c.refresh(0).await;
    }
    let summary = if r.failed == 0 {
        format!("all {} checks passed", r.passed)
    } else {
        format!("{} of {} checks failed", r.failed, r.failed + r.passed)
    };
    let _ = writeln!(r.out, "{summary}");
    r.failed == 0
}

/// `meeting-appliance turn-check`: runs the checks, prints the report, exit code 0 when all
/// passed.
pub fn main(
    server: &str,
    secret: Option<&str>,
    data_dir: Option<&PathBuf>,
    tls_port: u16,
    tls_ca: Option<&PathBuf>,
) -> std::process::ExitCode {
    let secret = match find_secret(secret, data_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let ca_pem = match tls_ca.map(std::fs::read_to_string).transpose() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: cannot read --tlsCa: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let tls = TlsCheck {
        port: tls_port,
        ca_pem,
    };
    let (user, password) = credentials(&secret);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let mut stdout = std::io::stdout();
    if rt.block_on(run(server, &user, &password, &tls, &mut stdout)) {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    }
}
