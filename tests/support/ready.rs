//! Starting the appliance the way a service manager does: the test binds the HTTP listener
//! itself (so it knows the address before the process exists) and passes it by socket
//! activation (`LISTEN_FDS`/`LISTEN_PID`, fd 3; `src/listen.rs`); readiness is `GET /readyz`
//! answering 200, over HTTP or, when the appliance serves TLS, over HTTPS. Nothing here reads
//! the appliance's log, so its wording is free to change.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

/// The address the appliance would bind for `args` (and `MEETING_LISTEN` in `envs`): `--listen`,
/// else the port of `--domainaddress` on its IP (or all addresses for a name), else the
/// built-in default. Mirrors `effective_listen` in `src/node/mod.rs`.
pub fn listen_address(args: &[String], env_listen: Option<String>) -> SocketAddr {
    let flag = |name: &str| {
        args.iter().enumerate().find_map(|(i, a)| {
            a.strip_prefix(&format!("{name}="))
                .map(str::to_string)
                .or_else(|| (a == name).then(|| args.get(i + 1).cloned()).flatten())
        })
    };
    if let Some(l) = flag("--listen").or(env_listen) {
        return l.parse().unwrap_or_else(|e| panic!("--listen {l:?}: {e}"));
    }
    if let Some(d) = flag("--domainaddress") {
        let (host, port) = d.rsplit_once(':').expect("--domainaddress host:port");
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ip = if host == "localhost" {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            host.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
        };
        return SocketAddr::new(ip, port.parse().expect("--domainaddress port"));
    }
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

/// Binds `addr` for the appliance (std sets `SO_REUSEADDR`, so a restarted appliance gets the
/// same port back at once).
pub fn bind(addr: SocketAddr) -> TcpListener {
    TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind the appliance's listener {addr}: {e}"))
}

/// `cmd` run through `/bin/sh`, which sets `LISTEN_PID` to its own id and then `exec`s the
/// program (keeping that id), with `listener` as fd 3 and `media` as fds 4, 5, …: the
/// socket-activation handover that systemd does between fork and exec.
pub fn socket_activated(cmd: &Command, listener: &TcpListener, media: &[UdpSocket]) -> Command {
    /// Enough for the sockets a test hands over; a fixed array keeps `pre_exec` allocation-free.
    const MAX: usize = 8;
    let mut fds = [-1; MAX];
    let n = 1 + media.len();
    assert!(n <= MAX, "at most {MAX} sockets");
    fds[0] = listener.as_raw_fd();
    for (i, m) in media.iter().enumerate() {
        fds[i + 1] = m.as_raw_fd();
    }
    let mut sh = Command::new("/bin/sh");
    sh.arg("-c")
        .arg(format!(
            r#"export LISTEN_PID=$$ LISTEN_FDS={n}; exec "$0" "$@""#
        ))
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => sh.env(k, v),
            None => sh.env_remove(k),
        };
    }
    if let Some(d) = cmd.get_current_dir() {
        sh.current_dir(d);
    }
    // SAFETY: runs between fork and exec and calls only the async-signal-safe fcntl, dup2 and
    // close, on a copied array.
    unsafe {
        sh.pre_exec(move || {
            // Out of the way first (to 100 and up), so that no source is overwritten by an
            // earlier target; dup2's copies are inherited across exec, the originals are not.
            let mut high = [-1; MAX];
            for i in 0..n {
                high[i] = libc::fcntl(fds[i], libc::F_DUPFD_CLOEXEC, 100);
                if high[i] < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (i, fd) in high.iter().enumerate().take(n) {
                if libc::dup2(*fd, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(*fd);
            }
            Ok(())
        });
    }
    sh
}

/// What one `GET /readyz` found.
pub enum Probe {
    /// 200 over plain HTTP.
    Http,
    /// 200 over TLS.
    Https,
    /// Not (yet) ready: no answer in time, or not 200.
    NotYet,
}

/// [`probe`] from inside the network namespace at `netns` (none: this thread's).
pub fn probe_in(netns: Option<&std::path::Path>, addr: SocketAddr) -> Probe {
    let Some(ns) = netns else {
        return probe(addr);
    };
    // setns changes the calling thread's namespace only: a thread that ends here.
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let f = std::fs::File::open(ns)
                    .unwrap_or_else(|e| panic!("open {}: {e}", ns.display()));
                // SAFETY: setns(2) with a namespace fd that stays open for the call.
                if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    panic!(
                        "setns {}: {}",
                        ns.display(),
                        std::io::Error::last_os_error()
                    );
                }
                probe(addr)
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

/// One `GET /readyz` on `addr`: plain HTTP first; a peer that answers that with something other
/// than HTTP (a TLS alert, or closing) is asked again over TLS, trusting any certificate (the
/// question is only whether it serves).
pub fn probe(addr: SocketAddr) -> Probe {
    let Ok(mut tcp) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return Probe::NotYet;
    };
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(2)));
    if tcp.write_all(request().as_bytes()).is_err() {
        return Probe::NotYet;
    }
    let mut answer = Vec::new();
    match tcp.read_to_end(&mut answer) {
        Err(e)
            if answer.is_empty()
                && matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
        {
            return Probe::NotYet;
        }
        _ => {}
    }
    if answer.starts_with(b"HTTP/") {
        return if answer.starts_with(b"HTTP/1.1 200") {
            Probe::Http
        } else {
            Probe::NotYet
        };
    }
    match tls_get(addr) {
        Some(a) if a.starts_with(b"HTTP/1.1 200") => Probe::Https,
        _ => Probe::NotYet,
    }
}

fn request() -> String {
    "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".to_string()
}

fn tls_get(addr: SocketAddr) -> Option<Vec<u8>> {
    meeting_appliance::util::install_ring_provider();
    let cfg = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert))
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").ok()?;
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).ok()?;
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    s.write_all(request().as_bytes()).ok()?;
    let mut answer = Vec::new();
    // A server closing without close_notify still gave its answer.
    let _ = s.read_to_end(&mut answer);
    Some(answer)
}

/// Accepts any certificate: readiness asks whether the server serves, not whom to trust.
#[derive(Debug)]
struct AnyCert;

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &rustls::pki_types::CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &rustls::pki_types::CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
