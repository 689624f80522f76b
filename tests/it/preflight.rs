//! The start-up preflight, through the real binary: every warning is triggered for real and
//! its message must say what to do. Only loopback is used; the DNS cases run inside a
//! private network and mount namespace (`unshare -n -m`) with their own /etc/hosts, so no
//! query can leave the box.

use crate::support;

use std::net::{TcpListener, UdpSocket};
use std::process::Output;
use support::{Appliance, appliance_bin, run_cli, run_cli_env};

const BIN: &str = appliance_bin!();

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `meeting-appliance preflight` on loopback, fixed TURN and SFU ports off unless `extra` sets them.
fn preflight(data: &std::path::Path, extra: &[&str], envs: &[(&str, &str)]) -> (Output, String) {
    let mut args = vec!["preflight", "--dataDir", data.to_str().expect("utf8")];
    for (flag, v) in [
        ("--listen", "127.0.0.1:0"),
        ("--port", "0"),
        ("--udpPort", "0"),
    ] {
        if !extra.contains(&flag) {
            args.extend([flag, v]);
        }
    }
    args.extend_from_slice(extra);
    let o = run_cli_env(BIN, &args, envs);
    let t = text(&o);
    (o, t)
}

/// The lines of check `[name]`.
fn lines<'a>(t: &'a str, check: &str) -> Vec<&'a str> {
    let tag = format!("[{check}]");
    t.lines().filter(|l| l.contains(&tag)).collect()
}

/// A TCP port on loopback that nothing listens on (bound, read, released).
fn closed_port() -> u16 {
    support::free_port()
}

#[test]
fn a_clean_host_passes_and_exits_zero() {
    let dir = tempfile::tempdir().expect("tmp");
    // Without the media roles UDP buffers do not matter; every port is free or 0.
    let cfg = dir.path().join("a.toml");
    std::fs::write(
        &cfg,
        "roles = [\"apiserver\", \"fsserver\", \"allocateserver\"]\n",
    )
    .expect("write");
    // The open-file limit is the host's: raised for this run where the hard limit allows.
    let script = format!(
        "ulimit -n 4096 2>/dev/null; exec '{BIN}' preflight --dataDir '{d}' --listen 127.0.0.1:0 --config '{c}'",
        d = dir.path().display(),
        c = cfg.display()
    );
    let o = run_cli("sh", &["-c", &script]);
    let t = text(&o);
    let warnings: Vec<&str> = t
        .lines()
        .filter(|l| l.starts_with("warning:") && !l.contains("[fd_limit]"))
        .collect();
    assert!(warnings.is_empty(), "{t}");
    if lines(&t, "fd_limit").is_empty() {
        assert!(o.status.success(), "{t}");
        assert!(t.contains("no problems found"), "{t}");
    } else {
        eprintln!("this host's hard open-file limit is below 4096: only that is reported");
    }
}

#[test]
fn ports_in_use_name_the_setting_to_change() {
    let dir = tempfile::tempdir().expect("tmp");
    let http = TcpListener::bind("127.0.0.1:0").expect("bind");
    let turn = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let sfu = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let listen = format!("127.0.0.1:{}", http.local_addr().expect("addr").port());
    let turn_port = turn.local_addr().expect("addr").port().to_string();
    let sfu_port = sfu.local_addr().expect("addr").port().to_string();
    let (o, t) = preflight(
        dir.path(),
        &[
            "--listen",
            &listen,
            "--port",
            &turn_port,
            "--udpPort",
            &sfu_port,
            "--sfuWorkers",
            "1",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{t}");
    let w = lines(&t, "port_in_use");
    let find = |needle: &str| {
        w.iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no port warning with {needle:?}:\n{t}"))
            .to_string()
    };
    let l = find(&format!("{listen})"));
    assert!(
        l.contains("already in use") && l.contains("--listen") && l.contains("ss -ltnp"),
        "{l}"
    );
    let l = find(&format!("port {turn_port}/udp for TURN"));
    assert!(l.contains("--port"), "{l}");
    let l = find(&format!("port {sfu_port}/udp for the SFU"));
    assert!(l.contains("--udpPort"), "{l}");

    // At start-up the same warning comes first, then the start fails on the taken port.
    let o = run_cli_env(
        BIN,
        &[
            "--dataDir",
            dir.path().to_str().expect("utf8"),
            "--listen",
            "127.0.0.1:0",
            "--port",
            &turn_port,
            "--udpPort",
            "0",
        ],
        &[("MEETING_TURN__TLS_PORT", "0")],
    );
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    let warn = t
        .find("preflight: port")
        .unwrap_or_else(|| panic!("start-up logs the preflight warning:\n{t}"));
    let fail = t
        .find("cannot listen for TURN")
        .unwrap_or_else(|| panic!("start-up fails on the port:\n{t}"));
    assert!(warn < fail, "the warning comes before the failure:\n{t}");
    drop((http, turn, sfu));
}

#[test]
fn a_low_open_file_limit_says_how_to_raise_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let script = format!(
        "ulimit -n 512 && exec '{BIN}' preflight --dataDir '{}' --listen 127.0.0.1:0 --port 0 --udpPort 0",
        dir.path().display()
    );
    let o = run_cli("sh", &["-c", &script]);
    let t = text(&o);
    let w = lines(&t, "fd_limit");
    assert_eq!(w.len(), 1, "{t}");
    assert!(
        w[0].contains("is 512") && w[0].contains("LimitNOFILE=65536") && w[0].contains("ulimit -n"),
        "{}",
        w[0]
    );
    assert_eq!(o.status.code(), Some(1), "{t}");
}

/// Runs `script` in a private mount (and network, with `net`) namespace as root. A machine
/// that does not allow it fails the test with the reason (the suite runs as root).
fn in_namespace(net: bool, script: &str) -> Output {
    let ns = if net { "-n -m" } else { "-m" };
    let probe = run_cli("sh", &["-c", &format!("unshare {ns} true")]);
    assert!(
        probe.status.success(),
        "this test needs `unshare {ns}` (root): {}",
        text(&probe).trim()
    );
    let full = if net {
        format!("ip link set lo up && {script}")
    } else {
        script.to_string()
    };
    run_cli(
        "unshare",
        &[ns.split(' ').collect::<Vec<_>>(), vec!["sh", "-c", &full]].concat(),
    )
}

#[test]
fn small_udp_buffers_name_the_sysctl_for_media_roles_only() {
    let dir = tempfile::tempdir().expect("tmp");
    let fake = dir.path().join("small");
    std::fs::write(&fake, "212992\n").expect("write");
    let only_api = dir.path().join("api.toml");
    std::fs::write(&only_api, "roles = [\"apiserver\", \"fsserver\"]\n").expect("write");
    // The kernel's caps are faked for this process only: the files are bind-mounted over
    // /proc/sys/net/core/{r,w}mem_max inside a private mount namespace.
    let run = |cfg: &str| {
        format!(
            "mount --bind '{f}' /proc/sys/net/core/rmem_max && mount --bind '{f}' /proc/sys/net/core/wmem_max && \
             '{BIN}' preflight --dataDir '{d}' --listen 127.0.0.1:0 --port 0 --udpPort 0 {cfg}",
            f = fake.display(),
            d = dir.path().display()
        )
    };
    let o = in_namespace(false, &run(""));
    let t = text(&o);
    let w = lines(&t, "udp_buffers");
    assert_eq!(w.len(), 1, "{t}");
    assert!(
        w[0].contains("net.core.rmem_max = 212992")
            && w[0].contains("net.core.wmem_max = 212992")
            && w[0].contains("sysctl -w net.core.rmem_max=8388608")
            && w[0].contains("/etc/sysctl.d/60-meeting-appliance.conf"),
        "{}",
        w[0]
    );
    // Without the sfuserver and turnserver, UDP buffers do not matter.
    let o = in_namespace(false, &run(&format!("--config '{}'", only_api.display())));
    let t = text(&o);
    assert!(lines(&t, "udp_buffers").is_empty(), "{t}");
}

#[test]
fn unreachable_database_and_mail_server_are_named_with_the_flags() {
    let dir = tempfile::tempdir().expect("tmp");
    let (db, mail) = (closed_port(), closed_port());
    let smtp_up = TcpListener::bind("127.0.0.1:0").expect("bind");
    let up = smtp_up.local_addr().expect("addr").port().to_string();
    let db_addr = format!("127.0.0.1:{db}");
    let mail_port = mail.to_string();
    let (o, t) = preflight(
        dir.path(),
        &[
            "--mysqlAddress",
            &db_addr,
            "--mysqlUser",
            "meet",
            "--mailServer",
            "127.0.0.1",
            "--mailPort",
            &mail_port,
            "--mailTls",
            "none",
            "--mailServer",
            "localhost",
            "--mailPort",
            &up,
            "--mailTls",
            "none",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{t}");
    let w = lines(&t, "database");
    assert_eq!(w.len(), 1, "{t}");
    assert!(
        w[0].contains(&db_addr) && w[0].contains("--mysqlAddress") && w[0].contains("start it"),
        "{}",
        w[0]
    );
    let w = lines(&t, "mail_server");
    assert_eq!(w.len(), 1, "only the closed one:\n{t}");
    assert!(
        w[0].contains(&format!("127.0.0.1:{mail}")) && w[0].contains("--mailServer/--mailPort"),
        "{}",
        w[0]
    );

    // At start-up the database case stops the appliance: the warning comes at once, and the
    // final error says what to check.
    let o = run_cli_env(
        BIN,
        &[
            "--dataDir",
            dir.path().to_str().expect("utf8"),
            "--listen",
            "127.0.0.1:0",
            "--port",
            "0",
            "--udpPort",
            "0",
            "--mysqlAddress",
            &db_addr,
        ],
        &[("MEETING_DATABASE__CONNECT_TIMEOUT", "1s")],
    );
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("preflight: cannot reach the database server"),
        "{t}"
    );
    assert!(
        t.contains("cannot reach the database") && t.contains("check that it runs"),
        "{t}"
    );
    drop(smtp_up);
}

#[test]
fn a_domain_that_does_not_resolve_here_is_named_for_acme() {
    let dir = tempfile::tempdir().expect("tmp");
    // A reserved name is never looked up: the warning says public DNS cannot resolve it.
    let (o, t) = preflight(
        dir.path(),
        &["--domainaddress", "meet.nonexistent.invalid:443"],
        &[
            ("MEETING_TLS__HTTP_PORT", "0"),
            ("MEETING_TURN__TLS_PORT", "0"),
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{t}");
    let w = lines(&t, "domain");
    assert_eq!(w.len(), 1, "{t}");
    assert!(
        w[0].contains("meet.nonexistent.invalid") && w[0].contains("--cert/--certkey"),
        "{}",
        w[0]
    );
    // A certificate given: no ACME, no domain check.
    let (_, t) = preflight(
        dir.path(),
        &[
            "--domainaddress",
            "meet.nonexistent.invalid:443",
            "--cert",
            "/nonexistent/c.pem",
            "--certkey",
            "/nonexistent/k.pem",
        ],
        &[
            ("MEETING_TLS__HTTP_PORT", "0"),
            ("MEETING_TURN__TLS_PORT", "0"),
        ],
    );
    assert!(lines(&t, "domain").is_empty(), "{t}");

    // Real lookups, inside a private network namespace with its own /etc/hosts: one name
    // points elsewhere (TEST-NET-1), one here, one nowhere (no DNS server is reachable).
    let hosts = dir.path().join("hosts");
    std::fs::write(
        &hosts,
        "127.0.0.1 localhost\n192.0.2.10 meet.elsewhere.example.com\n127.0.0.1 meet.here.example.com\n",
    )
    .expect("write");
    let run = |name: &str| {
        format!(
            "MEETING_TLS__HTTP_PORT=0 MEETING_TURN__TLS_PORT=0 '{BIN}' preflight --dataDir '{d}' --listen 127.0.0.1:0 \
             --port 0 --udpPort 0 --domainaddress {name}:443",
            d = dir.path().display()
        )
    };
    let script = format!(
        "mount --bind '{}' /etc/hosts && {{ {}; {}; {}; }}",
        hosts.display(),
        run("meet.elsewhere.example.com"),
        run("meet.here.example.com"),
        run("meet.nowhere.example.com")
    );
    let o = in_namespace(true, &script);
    let t = text(&o);
    let w = lines(&t, "domain");
    assert_eq!(w.len(), 2, "elsewhere and nowhere, not here:\n{t}");
    assert!(
        w[0].contains("meet.elsewhere.example.com")
            && w[0].contains("resolves to 192.0.2.10")
            && w[0].contains("A/AAAA record"),
        "{}",
        w[0]
    );
    assert!(
        w[1].contains("meet.nowhere.example.com")
            && w[1].contains("does not resolve")
            && w[1].contains("A/AAAA record"),
        "{}",
        w[1]
    );
}

#[test]
fn the_running_appliance_logs_its_preflight() {
    // A box started with a closed SMTP port logs the warning and keeps running.
    let closed = closed_port().to_string();
    let app = Appliance::start(
        &[
            "--udpPort",
            "0",
            "--port",
            "0",
            "--mailServer",
            "127.0.0.1",
            "--mailPort",
            &closed,
            "--mailTls",
            "none",
        ],
        &[],
    );
    let l = app.wait_log(
        "preflight: cannot reach the mail server",
        std::time::Duration::from_secs(5),
    );
    assert!(l.contains(&format!("127.0.0.1:{closed}")), "{l}");
}
