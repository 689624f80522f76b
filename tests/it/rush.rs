//! The morning rush: 1,000 people sign in by emailed code and join the all-hands as fast as
//! a real HTTP load tool drives them (wrk, with the Lua scripts in `tests/rush/`), on SQLite
//! and on MariaDB. Every request must succeed and every code mail arrive; the time it took and
//! the p99 of each endpoint are printed, not asserted (BENCHMARKS.md has the figures of a
//! release build:
//! `RUSH_BIN=target/release/meeting-appliance cargo test --test rush -- --nocapture`).

use crate::support;

use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::api::{call, mail_args, sign_in};
use support::{Appliance, SmtpSink};

const PEOPLE: usize = 1000;
const THREADS: usize = 2;
const CONNECTIONS: usize = 32;

/// What wrk reported for one phase.
struct Phase {
    requests: u64,
    non_2xx: u64,
    p50: String,
    p99: String,
    seconds: f64,
}

/// Runs one phase; `args[0]` is the work dir where each wrk thread marks itself done.
fn wrk(base: &str, script: &str, args: &[String]) -> Phase {
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rush");
    let dir = Path::new(&args[0]).to_path_buf();
    for t in 0..THREADS {
        let _ = std::fs::remove_file(dir.join(format!("done-{t}")));
    }
    let started = Instant::now();
    let child = Command::new("wrk")
        .args([
            "-t",
            &THREADS.to_string(),
            "-c",
            &CONNECTIONS.to_string(),
            "-d",
            "120s",
            "--timeout",
            "30s",
            "--latency",
            "-s",
        ])
        .arg(scripts.join(script))
        .arg(base)
        .arg("--")
        .args([PEOPLE.to_string(), THREADS.to_string()])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("wrk not found ({e}): run scripts/test-deps.sh"));
    let done = || (0..THREADS).all(|t| dir.join(format!("done-{t}")).exists());
    while !done() && started.elapsed() < Duration::from_secs(90) {
        std::thread::sleep(Duration::from_millis(100));
    }
    // wrk reports when interrupted.
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let out = child.wait_with_output().expect("wrk output");
    assert!(
        done(),
        "wrk {script} did not finish within 90 s:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "wrk {script}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |prefix: &str| -> Option<String> {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .map(|l| l[prefix.len()..].trim().to_string())
    };
    let requests = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no request count in wrk's output:\n{text}"));
    assert!(
        field("Socket errors:").is_none(),
        "wrk {script} saw socket errors:\n{text}"
    );
    Phase {
        requests,
        non_2xx: field("Non-2xx or 3xx responses:")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
        p50: field("50%").unwrap_or_default(),
        p99: field("99%").unwrap_or_default(),
        seconds: started.elapsed().as_secs_f64(),
    }
}

fn report(db: &str, name: &str, p: &Phase) {
    println!(
        "rush[{db}] {name}: {} requests ({} fillers to /healthz) in {:.1} s, p50 {}, p99 {}",
        p.requests,
        p.requests.saturating_sub(PEOPLE as u64),
        p.seconds,
        p.p50,
        p.p99
    );
}

async fn rush(db: &str, db_args: &[String]) {
    let sink = SmtpSink::start();
    let mut args = mail_args(sink.port());
    args.extend(db_args.iter().cloned());
    args.extend(["--udpPort".to_string(), "0".to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // An office behind one NAT address: every request comes from one client IP.
    let env = [("MEETING_AUTH__CODES_PER_IP_PER_HOUR", "100000")];
    let data = tempfile::tempdir().expect("data dir");
    let app = match std::env::var("RUSH_BIN") {
        Ok(bin) => Appliance::start_bin(&bin, data.path(), &args, &env),
        Err(_) => Appliance::start(&args, &env),
    };
    let host = sign_in(&app, &sink, "ceo@corp.test").await;
    let m = call(
        "POST",
        &app.url("/api/v1/meetings"),
        Some(&host),
        Some(json!({})),
    )
    .await;
    assert_eq!(m.status, 201, "{:?}", m.body);
    let code = m.body["code"].as_str().expect("code").to_string();
    let base = app.url("");
    let base = base.trim_end_matches('/').to_string();
    let work = tempfile::tempdir().expect("work dir");
    let dir = work.path().to_str().expect("utf8").to_string();
    let started = Instant::now();

    let codes = wrk(&base, "codes.lua", std::slice::from_ref(&dir));
    report(db, "POST /auth/code", &codes);
    assert_eq!(codes.non_2xx, 0, "code requests refused");
    let mails = tokio::task::block_in_place(|| sink.wait_for(PEOPLE + 1, Duration::from_secs(60)));
    let mail_done = started.elapsed();
    let mut lines = Vec::new();
    for i in 1..=PEOPLE {
        let email = format!("user{i}@rush.test");
        let mail = mails
            .iter()
            .find(|m| m.to().contains(&format!("<{email}>")) || m.to() == email)
            .unwrap_or_else(|| panic!("no code mail for {email}"));
        lines.push(format!("{email} {}", support::api::code_in(mail)));
    }
    std::fs::write(work.path().join("codes.txt"), lines.join("\n") + "\n").expect("codes");
    println!(
        "rush[{db}] all {PEOPLE} code mails delivered {:.1} s after the first request",
        mail_done.as_secs_f64()
    );

    let verify = wrk(&base, "verify.lua", std::slice::from_ref(&dir));
    report(db, "POST /auth/verify", &verify);
    assert_eq!(verify.non_2xx, 0, "sign-ins refused");
    let mut tokens = Vec::new();
    for t in 0..THREADS {
        let f =
            std::fs::read_to_string(work.path().join(format!("tokens-{t}.txt"))).expect("tokens");
        tokens.extend(f.lines().map(str::to_string));
    }
    assert_eq!(tokens.len(), PEOPLE, "every sign-in gave a session");
    std::fs::write(work.path().join("tokens.txt"), tokens.join("\n") + "\n").expect("tokens");

    let join = wrk(&base, "join.lua", &[dir.clone(), code.clone()]);
    report(db, "POST /join/{code}", &join);
    assert_eq!(join.non_2xx, 0, "joins refused");
    let total = started.elapsed();
    println!(
        "rush[{db}] {PEOPLE} people signed in and joined in {:.1} s",
        total.as_secs_f64()
    );
    // Nothing lost: exactly one code mail per person, and each join recorded.
    let per_person = sink
        .messages()
        .iter()
        .filter(|m| m.to().contains("@rush.test"))
        .count();
    assert_eq!(per_person, PEOPLE, "one code mail per person");
    let id = m.body["id"].as_i64().expect("id");
    let p = call(
        "GET",
        &app.url(&format!("/api/v1/meetings/{id}/participants")),
        Some(&host),
        None,
    )
    .await;
    assert_eq!(
        p.body.as_array().map(Vec::len),
        Some(PEOPLE),
        "join answers recorded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn morning_rush_on_sqlite() {
    rush("sqlite", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn morning_rush_on_mariadb() {
    let db = support::shared_mariadb();
    let name = db.unique_database("rush");
    let args = [
        "--mysqlAddress".to_string(),
        db.address(),
        "--mysqlUser".into(),
        db.user().into(),
        "--mysqlPassword".into(),
        db.password().into(),
        "--mysqlDatabase".into(),
        name,
    ];
    rush("mariadb", &args).await;
}
