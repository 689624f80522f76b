//! TLS helpers for tests: a throwaway CA and leaf certificates (rcgen), a rustls client that
//! reports the server's certificate, and a throwaway Pebble ACME server.

use super::{TiedChild, free_port, wait_until};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pub pem: String,
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "test CA");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = p.self_signed(&key).expect("CA cert");
        TestCa {
            pem: cert.pem(),
            issuer: rcgen::Issuer::new(p, key),
        }
    }

    /// A leaf for `names` (DNS names or IPs) valid until `valid_for` from now (negative: expired).
    pub fn leaf(&self, names: &[&str], valid_secs: i64) -> (String, String) {
        let mut p =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        let now = SystemTime::now();
        p.not_before = (now - Duration::from_secs(7200)).into();
        p.not_after = if valid_secs >= 0 {
            (now + Duration::from_secs(valid_secs.unsigned_abs())).into()
        } else {
            (now - Duration::from_secs(valid_secs.unsigned_abs())).into()
        };
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = p.signed_by(&key, &self.issuer).expect("leaf");
        (cert.pem(), key.serialize_pem())
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

/// A TLS connection to `addr` checking the chain against `root_pem` and the name `name`.
pub struct TlsConn {
    pub stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
}

impl TlsConn {
    pub fn connect(addr: SocketAddr, name: &str, root_pem: &str) -> Result<TlsConn, String> {
        meeting_appliance::util::install_ring_provider();
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
            roots
                .add(c.map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        }
        let cfg = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let sn = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
        let conn = rustls::ClientConnection::new(Arc::new(cfg), sn).map_err(|e| e.to_string())?;
        let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .map_err(|e| format!("handshake: {e}"))?;
        }
        Ok(TlsConn { stream })
    }

    /// SHA-256 (hex) of the leaf the server presented.
    pub fn peer_sha256(&self) -> String {
        use sha2::Digest;
        let c = self
            .stream
            .conn
            .peer_certificates()
            .and_then(|c| c.first())
            .expect("a certificate");
        hex::encode(sha2::Sha256::digest(c.as_ref()))
    }

    /// GET with keep-alive; returns (status line, headers+body text).
    pub fn get(&mut self, host: &str, path: &str) -> String {
        write!(
            self.stream,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: keep-alive\r\n\r\n"
        )
        .expect("write");
        self.stream.flush().expect("flush");
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        // Read until the headers and the Content-Length body have arrived.
        loop {
            let n = self.stream.read(&mut chunk).expect("read");
            assert!(n > 0, "connection closed");
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf);
            if let Some(end) = text.find("\r\n\r\n") {
                let len = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                    })
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    return text.into_owned();
                }
            }
        }
    }
}

/// Pebble (ACME test CA) with pebble-challtestsrv answering DNS for test names.
pub struct Pebble {
    _dir: tempfile::TempDir,
    pub directory_url: String,
    /// Pebble's own HTTPS certificate (trust anchor for its API).
    pub api_cert: PathBuf,
    pub http_port: u16,
    management: u16,
    dns_management: u16,
    _pebble: TiedChild,
    _dns: TiedChild,
}

impl Pebble {
    pub fn start() -> Pebble {
        assert!(
            Path::new("/usr/bin/pebble").exists(),
            "pebble missing: run scripts/test-deps.sh"
        );
        let dir = tempfile::tempdir().expect("tmp");
        // Pebble's API certificate: an end entity (CA:FALSE), which rustls accepts as an anchor.
        let key = rcgen::KeyPair::generate().expect("key");
        let mut p =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("params");
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "pebble");
        let cert = p.self_signed(&key).expect("cert");
        let api_cert = dir.path().join("cert.pem");
        std::fs::write(&api_cert, cert.pem()).expect("write");
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).expect("write");
        let (api, management, http_port, tls_port, dns, dns_management) = (
            free_port(),
            free_port(),
            free_port(),
            free_port(),
            free_port(),
            free_port(),
        );
        let cfg = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{api}"), "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": api_cert, "privateKey": dir.path().join("key.pem"),
            "httpPort": http_port, "tlsPort": tls_port, "ocspResponderURL": "", "externalAccountBindingRequired": false
        }});
        let cfg_path = dir.path().join("pebble.json");
        std::fs::write(&cfg_path, cfg.to_string()).expect("write");
        let mut c = Command::new("pebble-challtestsrv");
        c.args([
            "-defaultIPv6",
            "",
            "-defaultIPv4",
            "127.0.0.1",
            "-management",
            &format!("127.0.0.1:{dns_management}"),
            "-http01",
            "",
            "-https01",
            "",
            "-tlsalpn01",
            "",
            "-dns01",
            &format!("127.0.0.1:{dns}"),
        ]);
        c.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let dns_child = TiedChild::spawn(c).expect("pebble-challtestsrv");
        let mut c = Command::new("pebble");
        c.args([
            "-config",
            cfg_path.to_str().expect("utf8"),
            "-dnsserver",
            &format!("127.0.0.1:{dns}"),
        ])
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
        let pebble = TiedChild::spawn(c).expect("pebble");
        wait_until(Duration::from_secs(20), "pebble to listen", || {
            super::port_open(api).then_some(())
        });
        wait_until(Duration::from_secs(20), "challtestsrv to listen", || {
            super::port_open(dns_management).then_some(())
        });
        Pebble {
            _dir: dir,
            directory_url: format!("https://127.0.0.1:{api}/dir"),
            api_cert,
            http_port,
            management,
            dns_management,
            _pebble: pebble,
            _dns: dns_child,
        }
    }

    /// Pebble's current issuing root (it changes on every Pebble start).
    pub fn root_pem(&self) -> String {
        let api = std::fs::read_to_string(&self.api_cert).expect("api cert");
        let mut c = TlsConn::connect(
            SocketAddr::from(([127, 0, 0, 1], self.management)),
            "127.0.0.1",
            &api,
        )
        .expect("pebble management TLS");
        let resp = c.get("127.0.0.1", "/roots/0");
        let body = resp
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        assert!(body.contains("BEGIN CERTIFICATE"), "root: {resp}");
        body
    }

    /// Makes `name` resolve to 127.0.0.1 for Pebble's validation.
    pub fn add_a(&self, name: &str) {
        let body =
            serde_json::json!({"host": format!("{name}."), "addresses": ["127.0.0.1"]}).to_string();
        let mut s = TcpStream::connect(("127.0.0.1", self.dns_management)).expect("challtestsrv");
        write!(s, "POST /add-a HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).expect("write");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert!(
            out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200"),
            "add-a: {out}"
        );
    }
}
