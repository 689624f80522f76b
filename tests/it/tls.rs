//! Certificates that take care of themselves: configured files (validated at start-up,
//! reloaded on change without dropping open connections), a self-signed certificate for an
//! IP, and ACME HTTP-01 against a real ACME server (Pebble) — obtained, reused, renewed.

use crate::support;

use std::net::SocketAddr;
use std::time::Duration;
use support::tls::{Pebble, TestCa, TlsConn};
use support::{Appliance, appliance_bin, free_port, run_cli, wait_until};

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[test]
fn configured_files_are_served_and_reloaded_without_dropping_connections() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().expect("tmp");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let (c1, k1) = ca.leaf(&["127.0.0.1"], 86400);
    std::fs::write(&cert, &c1).expect("write");
    std::fs::write(&key, &k1).expect("write");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let app = Appliance::start(
        &[
            "--listen",
            &listen,
            "--domainaddress",
            &listen,
            "--cert",
            cert.to_str().expect("utf8"),
            "--certkey",
            key.to_str().expect("utf8"),
        ],
        &[],
    );
    let mut open = TlsConn::connect(addr(port), "127.0.0.1", &ca.pem)
        .expect("TLS with the configured certificate");
    let first = open.peer_sha256();
    let r = open.get("127.0.0.1", "/healthz");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let lower = r.to_ascii_lowercase();
    for h in [
        "strict-transport-security: max-age=",
        "content-security-policy: default-src 'self'",
        "x-content-type-options: nosniff",
        "referrer-policy:",
        "frame-ancestors 'none'",
    ] {
        assert!(lower.contains(h), "security header {h:?} missing:\n{r}");
    }

    // Swap the pair on disk (key first, as a careless admin might): new connections get the
    // new certificate once both fit; the open connection keeps working.
    let (c2, k2) = ca.leaf(&["127.0.0.1"], 2 * 86400);
    let before = app.log_len();
    std::fs::write(&key, &k2).expect("write");
    std::fs::write(&cert, &c2).expect("write");
    app.wait_log_from(before, "reloaded the certificate", Duration::from_secs(15));
    let second = wait_until(
        Duration::from_secs(10),
        "the new certificate on new connections",
        || {
            let c = TlsConn::connect(addr(port), "127.0.0.1", &ca.pem).ok()?;
            let h = c.peer_sha256();
            (h != first).then_some(h)
        },
    );
    assert_ne!(first, second);
    let r = open.get("127.0.0.1", "/healthz");
    assert!(
        r.starts_with("HTTP/1.1 200"),
        "the connection opened before the swap still works: {r}"
    );
    assert_eq!(open.peer_sha256(), first, "…on its original certificate");

    // A broken replacement is refused; the good certificate stays in service.
    let before = app.log_len();
    std::fs::write(&cert, "not a certificate").expect("write");
    app.wait_log_from(
        before,
        "keeping the certificate in service",
        Duration::from_secs(15),
    );
    let c = TlsConn::connect(addr(port), "127.0.0.1", &ca.pem).expect("still serving");
    assert_eq!(c.peer_sha256(), second);
}

#[test]
fn bad_certificates_fail_start_up_naming_the_file_and_problem() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().expect("tmp");
    let p = |n: &str| dir.path().join(n).to_str().expect("utf8").to_string();
    let (c1, _) = ca.leaf(&["127.0.0.1"], 86400);
    let (_, k2) = ca.leaf(&["127.0.0.1"], 86400);
    let (expired, kexp) = ca.leaf(&["127.0.0.1"], -86400);
    let (other, kother) = ca.leaf(&["other.example.com"], 86400);
    for (n, t) in [
        ("c1.pem", &c1),
        ("k2.pem", &k2),
        ("exp.pem", &expired),
        ("kexp.pem", &kexp),
        ("other.pem", &other),
        ("kother.pem", &kother),
    ] {
        std::fs::write(dir.path().join(n), t).expect("write");
    }
    let data = tempfile::tempdir().expect("data");
    let run = |cert: &str, key: &str| {
        let o = run_cli(
            appliance_bin!(),
            &[
                "--dataDir",
                data.path().to_str().expect("utf8"),
                "--listen",
                "127.0.0.1:0",
                "--domainaddress",
                "127.0.0.1:443",
                "--cert",
                cert,
                "--certkey",
                key,
            ],
        );
        assert_eq!(o.status.code(), Some(1), "must fail");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let e = run(&p("c1.pem"), &p("k2.pem"));
    assert!(e.contains("k2.pem") && e.contains("does not match"), "{e}");
    let e = run(&p("exp.pem"), &p("kexp.pem"));
    assert!(e.contains("exp.pem") && e.contains("expired"), "{e}");
    let e = run(&p("missing.pem"), &p("kexp.pem"));
    assert!(
        e.contains("missing.pem") && e.contains("cannot read"),
        "{e}"
    );
    let e = run(&p("other.pem"), &p("kother.pem"));
    assert!(
        e.contains("other.pem") && e.contains("not for 127.0.0.1"),
        "{e}"
    );
}

#[test]
fn an_ip_address_gets_a_kept_self_signed_certificate() {
    let port = free_port();
    let dir = tempfile::tempdir().expect("data");
    let listen = format!("127.0.0.1:{port}");
    // The public address is an IP that is not loopback: no CA can certify it publicly.
    let public = format!("10.11.12.13:{port}");
    let args = [
        "--listen",
        listen.as_str(),
        "--domainaddress",
        public.as_str(),
    ];
    let app = Appliance::start_bin(appliance_bin!(), dir.path(), &args, &[]);
    let line = app.wait_log("SELF-SIGNED", Duration::from_secs(5));
    let pem = std::fs::read_to_string(dir.path().join("tls/self-signed.crt"))
        .expect("kept in the data dir");
    let c = TlsConn::connect(addr(port), "10.11.12.13", &pem)
        .expect("the self-signed certificate verifies against itself");
    let fp = c.peer_sha256();
    assert!(
        line.to_ascii_uppercase()
            .replace(':', "")
            .contains(&fp.to_ascii_uppercase()),
        "the log shows the fingerprint: {line}"
    );
    app.stop();
    let app = Appliance::start_bin(appliance_bin!(), dir.path(), &args, &[]);
    let c =
        TlsConn::connect(addr(port), "10.11.12.13", &pem).expect("same certificate after restart");
    assert_eq!(c.peer_sha256(), fp);
    drop(app);
}

#[test]
fn acme_obtains_reuses_and_renews_with_pebble() {
    let pebble = Pebble::start();
    pebble.add_a("meet.test");
    let port = free_port();
    let dir = tempfile::tempdir().expect("data");
    let listen = format!("127.0.0.1:{port}");
    let public = format!("meet.test:{port}");
    let args = [
        "--listen",
        listen.as_str(),
        "--domainaddress",
        public.as_str(),
    ];
    let http_port = pebble.http_port.to_string();
    let ca_file = pebble.api_cert.to_str().expect("utf8").to_string();
    let env = [
        ("MEETING_TLS__ACME_DIRECTORY", pebble.directory_url.as_str()),
        ("MEETING_TLS__ACME_CA_FILE", ca_file.as_str()),
        ("MEETING_TLS__HTTP_PORT", http_port.as_str()),
        ("MEETING_TLS__ACME_EMAIL", "admin@corp.test"),
    ];
    let app = Appliance::start_bin(appliance_bin!(), dir.path(), &args, &env);
    app.wait_log("certificate obtained", Duration::from_secs(60));
    let root = pebble.root_pem();
    let mut c = TlsConn::connect(addr(port), "meet.test", &root)
        .expect("the ACME certificate chains to Pebble's root");
    let issued = c.peer_sha256();
    assert!(c.get("meet.test", "/healthz").starts_with("HTTP/1.1 200"));
    // The challenge port redirects browsers to HTTPS.
    let mut plain =
        std::net::TcpStream::connect(("127.0.0.1", pebble.http_port)).expect("http port");
    use std::io::{Read, Write};
    write!(plain, "GET /m/abc HTTP/1.0\r\nHost: meet.test\r\n\r\n").expect("write");
    let mut resp = String::new();
    let _ = plain.read_to_string(&mut resp);
    assert!(
        resp.starts_with("HTTP/1.0 301") || resp.starts_with("HTTP/1.1 301"),
        "{resp}"
    );
    assert!(
        resp.contains(&format!("location: https://meet.test:{port}/m/abc"))
            || resp.contains(&format!("Location: https://meet.test:{port}/m/abc")),
        "{resp}"
    );
    app.stop();

    // Restart: the stored certificate is reused; no new order.
    let app = Appliance::start_bin(appliance_bin!(), dir.path(), &args, &env);
    app.wait_log(
        "reusing the stored ACME certificate",
        Duration::from_secs(10),
    );
    let c = TlsConn::connect(addr(port), "meet.test", &root).expect("TLS");
    assert_eq!(c.peer_sha256(), issued);
    assert!(
        !app.log_lines()
            .iter()
            .any(|l| l.contains("ordering a certificate")),
        "no re-issue while the certificate is valid"
    );
    app.stop();

    // A certificate near expiry (2 days left, renew_before is 30 days) is renewed at start.
    let ca = TestCa::new();
    let (near, near_key) = ca.leaf(&["meet.test"], 2 * 86400);
    std::fs::write(dir.path().join("acme/cert.pem"), near).expect("write");
    std::fs::write(dir.path().join("acme/key.pem"), near_key).expect("write");
    let app = Appliance::start_bin(appliance_bin!(), dir.path(), &args, &env);
    app.wait_log("ordering a certificate", Duration::from_secs(20));
    app.wait_log("certificate obtained", Duration::from_secs(60));
    let renewed = wait_until(Duration::from_secs(10), "the renewed certificate", || {
        let c = TlsConn::connect(addr(port), "meet.test", &root).ok()?;
        Some(c.peer_sha256())
    });
    assert_ne!(renewed, issued);
    drop(app);
}
