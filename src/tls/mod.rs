//! TLS for every listener, with certificates that take care of themselves.
//!
//! Which certificate a server uses (ARCHITECTURE.md section 3):
//! - `--cert/--certkey` given: those files, validated at start (readable, key fits, not
//!   expired, names cover the domain) and reloaded when they change on disk or on SIGHUP;
//! - no files, a DNS name: ACME HTTP-01 (`acme.rs`), kept in the data dir and renewed;
//! - no files, an IP address: a self-signed certificate, made once and kept;
//! - no files, localhost/loopback: plain HTTP (browsers treat localhost as secure).
//!
//! `CertStore` is the rustls certificate resolver behind every TLS listener. Swapping the
//! certificate in it affects only new handshakes, so open connections are never dropped.

pub mod acme;
pub mod headers;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

/// Sets up TLS for the main listener of a process whose public address is `own_address`.
/// Returns the certificate store (None: plain HTTP). Starts the reload watcher or the ACME
/// manager (with its challenge listener) as needed.
pub fn setup(
    cfg: &crate::config::Config,
    own_address: &str,
    bind_ip: IpAddr,
    https_port: u16,
) -> anyhow::Result<Option<Arc<CertStore>>> {
    let host = own_address
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(own_address);
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    match Mode::choose(cfg.cert.as_deref(), cfg.cert_key.as_deref(), &host) {
        Mode::Plain => {
            tracing::info!(host = %host, "plain HTTP: {host} is this machine (browsers treat it as secure); use a DNS name or --cert for HTTPS");
            Ok(None)
        }
        Mode::Files { cert, key } => {
            let (ck, info) = load_files(&cert, &key, Some(&host))?;
            tracing::info!(cert = %cert.display(), sha256 = %info.sha256, "serving the configured certificate; it is reloaded when the files change or on SIGHUP");
            let store = CertStore::new(ck);
            watch_files(store.clone(), cert, key, Some(host));
            Ok(Some(store))
        }
        Mode::SelfSigned { ip } => {
            let (ck, _) = self_signed(ip, &cfg.data_dir.join("tls"))?;
            Ok(Some(CertStore::new(ck)))
        }
        Mode::Acme { domain } => {
            let s = acme::AcmeSettings {
                domain: domain.clone(),
                directory: cfg.tls.acme_directory.clone(),
                email: cfg.tls.acme_email.clone(),
                ca_file: cfg.tls.acme_ca_file.clone(),
                renew_before: cfg.tls.renew_before.0,
                dir: cfg.data_dir.join("acme"),
            };
            let (first, have) = match acme::stored(&s) {
                Some((ck, info)) => {
                    tracing::info!(domain = %domain, sha256 = %info.sha256, "reusing the stored ACME certificate");
                    (ck, Some(info))
                }
                None => {
                    // Until the CA answers, a throwaway self-signed certificate keeps TLS up.
                    let key = rcgen::KeyPair::generate()?;
                    let cert =
                        rcgen::CertificateParams::new(vec![domain.clone()])?.self_signed(&key)?;
                    let (ck, _) = certified_key_from_pem(
                        cert.pem().as_bytes(),
                        key.serialize_pem().as_bytes(),
                        "temporary",
                        "temporary",
                        None,
                    )?;
                    (ck, None)
                }
            };
            let store = CertStore::new(first);
            let http = std::net::SocketAddr::new(bind_ip, cfg.tls.http_port);
            let listener = std::net::TcpListener::bind(http).map_err(|e| {
                anyhow::anyhow!(
                    "automatic certificates need the HTTP port {http} for the CA's challenge ({e}); free it, set tls.http_port, or give --cert/--certkey"
                )
            })?;
            let challenges = acme::Challenges::default();
            let server = acme::challenge_server(listener, challenges.clone(), https_port)?;
            actix_rt::spawn(server);
            acme::spawn_manager(s, store.clone(), challenges, have);
            Ok(Some(store))
        }
    }
}

/// How this server gets its certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    Plain,
    Files { cert: PathBuf, key: PathBuf },
    SelfSigned { ip: IpAddr },
    Acme { domain: String },
}

impl Mode {
    /// Decides from the configured files and the public host.
    pub fn choose(cert: Option<&Path>, key: Option<&Path>, host: &str) -> Mode {
        if let (Some(c), Some(k)) = (cert, key) {
            return Mode::Files {
                cert: c.to_path_buf(),
                key: k.to_path_buf(),
            };
        }
        let h = host.trim_start_matches('[').trim_end_matches(']');
        match h.parse::<IpAddr>() {
            Ok(ip) if ip.is_loopback() => Mode::Plain,
            Ok(ip) => Mode::SelfSigned { ip },
            Err(_) if h == "localhost" || h.ends_with(".localhost") => Mode::Plain,
            Err(_) => Mode::Acme {
                domain: h.to_string(),
            },
        }
    }
}

/// The certificate every TLS listener of this process presents; swappable at run time.
#[derive(Debug)]
pub struct CertStore {
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertStore {
    pub fn new(first: CertifiedKey) -> Arc<CertStore> {
        Arc::new(CertStore {
            current: RwLock::new(Arc::new(first)),
        })
    }

    /// Serves `next` to new connections from now on.
    pub fn swap(&self, next: CertifiedKey) {
        if let Ok(mut c) = self.current.write() {
            *c = Arc::new(next);
        }
    }

    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| c.clone())
    }

    /// A rustls server config presenting this store's certificate (HTTP/1.1 and h2 by ALPN
    /// left to the caller).
    pub fn server_config(self: &Arc<Self>) -> rustls::ServerConfig {
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_cert_resolver(self.clone())
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}

/// Facts about a certificate, for validation and logs.
#[derive(Debug, Clone)]
pub struct CertInfo {
    pub not_after: SystemTime,
    pub names: Vec<String>,
    pub sha256: String,
}

pub fn inspect(der: &CertificateDer<'_>) -> anyhow::Result<CertInfo> {
    use sha2::Digest;
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der.as_ref())
        .map_err(|e| anyhow::anyhow!("not an X.509 certificate: {e}"))?;
    let secs = cert.validity().not_after.timestamp();
    let not_after = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0));
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => names.push(d.to_string()),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => names
                        .push(IpAddr::from(<[u8; 4]>::try_from(*b).unwrap_or([0; 4])).to_string()),
                    16 => names.push(
                        IpAddr::from(<[u8; 16]>::try_from(*b).unwrap_or([0; 16])).to_string(),
                    ),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    let digest = sha2::Sha256::digest(der.as_ref());
    let sha256 = digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    Ok(CertInfo {
        not_after,
        names,
        sha256,
    })
}

/// Whether `name` is covered by a certificate name (exact, or a one-label `*.` wildcard).
fn covers(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.to_ascii_lowercase(), name.to_ascii_lowercase());
    if p == n {
        return true;
    }
    match p.strip_prefix("*.") {
        Some(suffix) => n.split_once('.').is_some_and(|(_, rest)| rest == suffix),
        None => false,
    }
}

/// Builds the signing key and chain from PEM, checking what an operator gets wrong:
/// unreadable files, no certificate, a key that does not fit, expiry, names.
pub fn certified_key_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_name: &str,
    key_name: &str,
    host: Option<&str>,
) -> anyhow::Result<(CertifiedKey, CertInfo)> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("{cert_name}: not valid PEM: {e}"))?;
    let Some(leaf) = chain.first() else {
        anyhow::bail!(
            "{cert_name}: holds no certificate (expected PEM \"BEGIN CERTIFICATE\" blocks)"
        );
    };
    let info = inspect(leaf).map_err(|e| anyhow::anyhow!("{cert_name}: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
        anyhow::anyhow!("{key_name}: no usable private key (PKCS#8, RSA or EC PEM): {e}")
    })?;
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| anyhow::anyhow!("{key_name}: unsupported private key: {e}"))?;
    let ck = CertifiedKey::new(chain, signing);
    ck.keys_match().map_err(|e| {
        anyhow::anyhow!("{key_name} does not match the certificate {cert_name} ({e})")
    })?;
    if info.not_after <= SystemTime::now() {
        anyhow::bail!(
            "{cert_name}: the certificate has expired; renew it or remove --cert/--certkey for automatic certificates"
        );
    }
    if let Some(h) = host
        && !info.names.iter().any(|n| covers(n, h))
    {
        anyhow::bail!(
            "{cert_name}: the certificate is for {:?}, not for {h}",
            info.names
        );
    }
    Ok((ck, info))
}

pub fn load_files(
    cert: &Path,
    key: &Path,
    host: Option<&str>,
) -> anyhow::Result<(CertifiedKey, CertInfo)> {
    let c = std::fs::read(cert)
        .map_err(|e| anyhow::anyhow!("cannot read the certificate {}: {e}", cert.display()))?;
    let k = std::fs::read(key)
        .map_err(|e| anyhow::anyhow!("cannot read the private key {}: {e}", key.display()))?;
    certified_key_from_pem(
        &c,
        &k,
        &cert.display().to_string(),
        &key.display().to_string(),
        host,
    )
}

/// A self-signed certificate for an IP address, made once and kept in `dir`.
pub fn self_signed(ip: IpAddr, dir: &Path) -> anyhow::Result<(CertifiedKey, CertInfo)> {
    std::fs::create_dir_all(dir)?;
    let (cert_path, key_path) = (dir.join("self-signed.crt"), dir.join("self-signed.key"));
    if !(cert_path.exists() && key_path.exists()) {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.subject_alt_names = vec![rcgen::SanType::IpAddress(ip)];
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, ip.to_string());
        let now = SystemTime::now();
        params.not_before = (now - Duration::from_secs(3600)).into();
        params.not_after = (now + Duration::from_secs(5 * 365 * 86400)).into();
        let key = rcgen::KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        write_private(&key_path, key.serialize_pem().as_bytes())?;
        std::fs::write(&cert_path, cert.pem())?;
    }
    let r = load_files(&cert_path, &key_path, None)?;
    tracing::warn!(
        ip = %ip,
        sha256 = %r.1.sha256,
        "serving a SELF-SIGNED certificate (an IP address cannot get a public one); browsers will warn. Check the fingerprint, or give --cert/--certkey"
    );
    Ok(r)
}

pub(crate) fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Reloads `--cert/--certkey` when either file changes, or on SIGHUP. A bad new pair is
/// logged and ignored: the old certificate stays in service.
pub fn watch_files(store: Arc<CertStore>, cert: PathBuf, key: PathBuf, host: Option<String>) {
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    actix_rt::spawn(async move {
        let mut seen = (mtime(&cert), mtime(&key));
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            let by_signal = match hup.as_mut() {
                Some(h) => tokio::select! {
                    _ = h.recv() => true,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => false,
                },
                None => {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    false
                }
            };
            let now = (mtime(&cert), mtime(&key));
            if !by_signal && now == seen {
                continue;
            }
            seen = now;
            match load_files(&cert, &key, host.as_deref()) {
                Ok((ck, info)) => {
                    store.swap(ck);
                    tracing::info!(cert = %cert.display(), sha256 = %info.sha256, "reloaded the certificate");
                }
                Err(e) => tracing::error!("{e:#}; keeping the certificate in service"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_follows_the_host() {
        assert_eq!(Mode::choose(None, None, "127.0.0.1"), Mode::Plain);
        assert_eq!(Mode::choose(None, None, "localhost"), Mode::Plain);
        assert_eq!(Mode::choose(None, None, "::1"), Mode::Plain);
        assert!(matches!(
            Mode::choose(None, None, "10.1.2.3"),
            Mode::SelfSigned { .. }
        ));
        assert_eq!(
            Mode::choose(None, None, "meet.example.com"),
            Mode::Acme {
                domain: "meet.example.com".into()
            }
        );
        assert!(matches!(
            Mode::choose(Some(Path::new("c")), Some(Path::new("k")), "x"),
            Mode::Files { .. }
        ));
    }

    #[test]
    fn wildcards_cover_one_label() {
        assert!(covers("*.example.com", "meet.example.com"));
        assert!(!covers("*.example.com", "a.b.example.com"));
        assert!(covers("Meet.Example.com", "meet.example.com"));
    }

    #[test]
    fn self_signed_is_kept_and_reused() {
        crate::util::install_ring_provider();
        let dir = tempfile::tempdir().expect("tmp");
        let (_, a) = self_signed("10.9.8.7".parse().expect("ip"), dir.path()).expect("made");
        let (_, b) = self_signed("10.9.8.7".parse().expect("ip"), dir.path()).expect("reused");
        assert_eq!(a.sha256, b.sha256);
        assert_eq!(a.names, vec!["10.9.8.7".to_string()]);
    }
}
