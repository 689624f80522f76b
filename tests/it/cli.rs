//! The command line and config as an operator meets them: the seed's commands, clear errors
//! naming the bad flag or key, precedence of file < environment < flags, masked secrets,
//! roles that are not built yet, a busy port, a database that is down, graceful stop.

use crate::support;

use support::{Appliance, appliance_bin, run_cli, run_cli_env};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn garbage_flag_and_unknown_config_key_are_named() {
    let o = run_cli(
        appliance_bin!(),
        &[
            "apiserver",
            "--secret",
            "s3cret-s3cret-s3cret",
            "--garbage",
            "1",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--garbage"), "{}", stderr(&o));

    let dir = tempfile::tempdir().expect("tmp");
    let f = dir.path().join("a.toml");
    std::fs::write(
        &f,
        "listen = \"127.0.0.1:0\"\n[mail]\nretry_intial = \"5s\"\n",
    )
    .expect("write");
    let o = run_cli(
        appliance_bin!(),
        &["--config", f.to_str().expect("utf8"), "check-config"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("retry_intial"), "{}", stderr(&o));

    let o = run_cli(
        appliance_bin!(),
        &["--config", "/nonexistent/appliance.toml"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("/nonexistent/appliance.toml"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn precedence_file_env_flags_and_masked_secrets() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = dir.path().join("a.toml");
    std::fs::write(
        &f,
        "listen = \"127.0.0.1:1111\"\nsecret = \"from-the-file\"\n[auth]\ncode_ttl = \"3m\"\n",
    )
    .expect("write");
    let file = f.to_str().expect("utf8");
    let o = run_cli_env(
        appliance_bin!(),
        &["check-config", "--config", file],
        &[("MEETING_LISTEN", "127.0.0.1:2222")],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("listen = \"127.0.0.1:2222\""),
        "env beats file: {out}"
    );
    assert!(
        out.contains("code_ttl = \"3m\""),
        "file beats defaults: {out}"
    );
    assert!(
        !out.contains("from-the-file") && out.contains("secret = \"********\""),
        "{out}"
    );
    let o = run_cli_env(
        appliance_bin!(),
        &[
            "check-config",
            "--config",
            file,
            "--listen",
            "127.0.0.1:3333",
            "--mysqlAddress",
            "db:3306",
            "--mysqlPassword",
            "hunter2",
            "--mailServer",
            "smtp.corp.test",
            "--mailPassword",
            "mailpw",
            "--mailFrom",
            "m@corp.test",
        ],
        &[("MEETING_LISTEN", "127.0.0.1:2222")],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("listen = \"127.0.0.1:3333\""),
        "flags beat env: {out}"
    );
    assert!(
        !out.contains("hunter2") && !out.contains("mailpw"),
        "secrets are masked: {out}"
    );
}

#[test]
fn node_roles_need_the_apiserver_and_the_secret() {
    // A node role on its own host registers with the apiserver over the bridge: it needs
    // where (--apiserver host:port) and the shared secret, and says so.
    for role in ["sfuserver", "turnserver", "fsserver"] {
        let o = run_cli(
            appliance_bin!(),
            &[role, "--secret", "s3cret-s3cret-s3cret"],
        );
        assert!(!o.status.success(), "{role}");
        assert!(
            stderr(&o).contains("--apiserver host:port"),
            "{role}: {}",
            stderr(&o)
        );
        let o = run_cli(appliance_bin!(), &[role, "--apiserver", "127.0.0.1:9"]);
        assert!(!o.status.success(), "{role}");
        assert!(
            stderr(&o).contains("deployment secret (--secret)"),
            "{role}: {}",
            stderr(&o)
        );
    }
    let dir = tempfile::tempdir().expect("tmp");
    let o = run_cli(
        appliance_bin!(),
        &[
            "turnserver",
            "--secret",
            "s3cret-s3cret-s3cret",
            "--ip",
            "127.0.0.1",
            "--port",
            "0",
            "--listen",
            "127.0.0.1:0",
            "--dataDir",
            dir.path().to_str().expect("utf8"),
            "--apiserver",
            "api.example.com",
        ],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--apiserver \"api.example.com\"")
            && stderr(&o).contains("expected host:port"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn busy_port_and_unreachable_database_fail_with_advice() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy = holder.local_addr().expect("addr").to_string();
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path().to_str().expect("utf8");
    let o = run_cli(appliance_bin!(), &["--dataDir", d, "--listen", &busy]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(&format!("cannot listen on {busy}")),
        "{}",
        stderr(&o)
    );

    let closed = support::free_port();
    let o = run_cli_env(
        appliance_bin!(),
        &[
            "apiserver",
            "--dataDir",
            d,
            "--listen",
            "127.0.0.1:0",
            "--mysqlAddress",
            &format!("127.0.0.1:{closed}"),
            "--mysqlUser",
            "meet",
            "--mysqlPassword",
            "topsecretpw",
            "--mysqlDatabase",
            "m",
        ],
        &[("MEETING_DATABASE__CONNECT_TIMEOUT", "2s")],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("cannot reach the database"), "{err}");
    assert!(
        !err.contains("topsecretpw"),
        "password leaked into the log: {err}"
    );
}

#[test]
fn sigterm_stops_gracefully() {
    let app = Appliance::start(&[], &[]);
    let status = app.stop();
    assert!(status.success(), "{status:?}");
}

#[test]
fn split_layout_samples_are_valid() {
    // config/two-host and config/five-host: every appliance file passes check-config, and the
    // node roles in them name the apiserver they register with.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut checked = 0;
    for layout in ["two-host", "five-host"] {
        for e in std::fs::read_dir(root.join(layout)).expect("layout dir") {
            let p = e.expect("entry").path();
            if p.file_name().is_some_and(|n| n == "allocate.toml") {
                continue; // the allocateserver's own format (tests/it/allocator_protocol.rs)
            }
            let o = run_cli(
                appliance_bin!(),
                &["check-config", "--config", p.to_str().expect("utf8")],
            );
            assert!(o.status.success(), "{}: {}", p.display(), stderr(&o));
            let out = String::from_utf8_lossy(&o.stdout).to_string();
            assert!(
                !out.contains("CHANGE-ME-to-32"),
                "{}: the secret is printed",
                p.display()
            );
            let text = std::fs::read_to_string(&p).expect("read");
            let roles = text
                .lines()
                .find(|l| l.starts_with("roles ="))
                .expect("a roles line");
            if !roles.contains("\"apiserver\"") {
                assert!(
                    text.contains("apiserver = \"meet.example.com:443\""),
                    "{}: a node role without the apiserver it registers with",
                    p.display()
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 6);
}
