//! A real OpenID Provider for the sign-in tests: the certified `oidc-provider` npm package,
//! run by node from `tests/peers/oidc-provider.mjs` on a loopback port (installed by
//! `scripts/test-deps.sh` beside playwright-core). The appliance is registered as client
//! `meeting`; a second client `other` exists to obtain ID tokens for another audience.

use super::{TiedChild, file_tail, free_port, wait_until};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;
use tempfile::TempDir;

pub const CLIENT_ID: &str = "meeting";
pub const CLIENT_SECRET: &str = "meeting-client-secret";

fn node_prefix() -> String {
    std::env::var("APPLIANCE_NODE_PREFIX")
        .unwrap_or_else(|_| "/var/tmp/meeting-appliance-node".into())
}

pub struct OidcProvider {
    child: TiedChild,
    pub port: u16,
    tls: bool,
    log: PathBuf,
    _dir: TempDir,
}

impl OidcProvider {
    /// Starts the provider for an appliance at `app_base` (its callback is registered) with
    /// `accounts`: `{"alice": {"email": …, "name": …, "groups": […]}}`.
    pub fn start(app_base: &str, accounts: &serde_json::Value) -> OidcProvider {
        OidcProvider::start_with(app_base, accounts, None)
    }

    /// The same over HTTPS with a certificate from `ca` for 127.0.0.1.
    pub fn start_tls(
        app_base: &str,
        accounts: &serde_json::Value,
        ca: &super::tls::TestCa,
    ) -> OidcProvider {
        OidcProvider::start_with(app_base, accounts, Some(ca))
    }

    fn start_with(
        app_base: &str,
        accounts: &serde_json::Value,
        ca: Option<&super::tls::TestCa>,
    ) -> OidcProvider {
        let prefix = node_prefix();
        assert!(
            std::path::Path::new(&prefix)
                .join("node_modules/oidc-provider/package.json")
                .exists(),
            "oidc-provider missing in {prefix}: run scripts/test-deps.sh"
        );
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/oidc-provider.mjs");
        let dir = tempfile::Builder::new()
            .prefix("oidc-provider-")
            .tempdir()
            .expect("temp dir");
        let log = dir.path().join("provider.log");
        let tls = ca.map(|ca| {
            let (cert, key) = ca.leaf(&["127.0.0.1", "localhost"], 86400);
            let (c, k) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
            std::fs::write(&c, cert).expect("write cert");
            std::fs::write(&k, key).expect("write key");
            (c, k)
        });
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            let f = std::fs::File::create(&log).expect("log file");
            let mut cmd = Command::new("node");
            cmd.arg(script)
                .env("PORT", port.to_string())
                .env("APP_BASE", app_base)
                .env("CLIENT_SECRET", CLIENT_SECRET)
                .env("ACCOUNTS", accounts.to_string())
                .env("NODE_PREFIX", &prefix)
                .envs(
                    tls.iter()
                        .flat_map(|(c, k)| [("TLS_CERT", c), ("TLS_KEY", k)]),
                )
                .stdin(Stdio::null())
                .stdout(f.try_clone().expect("log handle"))
                .stderr(f);
            let mut child = TiedChild::spawn(cmd).expect("node runs (scripts/test-deps.sh)");
            let log2 = log.clone();
            let up = wait_until(Duration::from_secs(30), "the OIDC provider", || {
                if child.try_wait().is_some() {
                    return Some(false);
                }
                std::fs::read_to_string(&log2)
                    .ok()
                    .filter(|l| l.contains("LISTENING "))
                    .map(|_| true)
            });
            if up {
                return OidcProvider {
                    child,
                    port,
                    tls: tls.is_some(),
                    log,
                    _dir: dir,
                };
            }
            last = file_tail(&log, 30);
        }
        panic!("the OIDC provider did not start:\n{last}");
    }

    pub fn issuer(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The provider's log (its warnings and errors).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One request to the provider's test controls: (status, body). Plain HTTP only.
    pub fn control(&self, method: &str, path: &str) -> (u16, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect provider");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        let status = out
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }

    /// The account no longer exists for the provider (sign-in and refresh fail).
    pub fn disable(&self, login: &str) {
        let (s, b) = self.control("POST", &format!("/test/disable/{login}"));
        assert_eq!(s, 200, "disable {login}: {b}");
    }

    pub fn state(&self) -> serde_json::Value {
        let (_, b) = self.control("GET", "/test/state");
        serde_json::from_str(&b).unwrap_or(serde_json::Value::Null)
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        self.child.kill();
    }
}
