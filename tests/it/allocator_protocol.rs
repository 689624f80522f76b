//! The apiserver against an external allocator speaking the seed's protocol: the exact query
//! strings for scheduled, instant and FS requests, the answers flowing into join answers, and
//! a non-200 (or a broken allocator) becoming 503 `servers_not_ready` with `Retry-After`.

use crate::support;

use serde_json::json;
use std::time::Duration;
use support::api::{call, mail_args, mails_to, sign_in};
use support::{Appliance, FakeAllocator, SmtpSink};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_queries_and_not_ready_answers() {
    let alloc = FakeAllocator::start();
    alloc.set_response(
        200,
        r#"{"sfu": "sfu1.corp.test:443", "turn": "turn1.corp.test:3478", "fs": "fs1.corp.test:443"}"#,
    );
    let sink = SmtpSink::start();
    let mut args = mail_args(sink.port());
    let url = alloc.url("/alloc/x7Qp-unguessable?key=v");
    args.extend(["--allocateserver".to_string(), url]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let app = Appliance::start(&args, &[]);
    let ann = sign_in(&app, &sink, "ann@corp.test").await;

    // 1. Scheduled meeting.
    let begin = meeting_appliance::util::now() + 3600;
    let end = begin + 1800;
    let a = call(
        "POST",
        &app.url("/api/v1/meetings"),
        Some(&ann),
        Some(json!({"title": "Plan", "begin_at": begin, "end_at": end, "invitees": ["bob@corp.test"]})),
    )
    .await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    // 2. Instant meeting.
    let inst = call(
        "POST",
        &app.url("/api/v1/meetings"),
        Some(&ann),
        Some(json!({})),
    )
    .await;
    assert_eq!(inst.status, 201, "{:?}", inst.body);
    let (id, code) = (
        inst.body["id"].as_i64().expect("id"),
        inst.body["code"].as_str().expect("code").to_string(),
    );
    // 3. A guest joins: the fsserver is asked for with the owner's email.
    let j = call(
        "POST",
        &app.url(&format!("/api/v1/join/{code}")),
        None,
        Some(json!({"display_name": "G"})),
    )
    .await;
    assert_eq!(j.status, 200, "{:?}", j.body);

    let reqs = alloc.wait_requests(3, Duration::from_secs(10));
    assert_eq!(
        reqs,
        vec![
            format!(
                "/alloc/x7Qp-unguessable?key=v&Kind=SFUTURN&Email=ann%40corp.test&BeginAt={begin}&EndAt={end}"
            ),
            "/alloc/x7Qp-unguessable?key=v&Kind=SFUTURN&Email=ann%40corp.test&BeginAt=0&EndAt=0"
                .to_string(),
            "/alloc/x7Qp-unguessable?key=v&Kind=FS&Email=ann%40corp.test".to_string(),
        ]
    );
    // The allocator's answers are what the client is sent to.
    assert_eq!(j.body["sfu"]["address"], "sfu1.corp.test:443");
    assert_eq!(
        j.body["sfu"]["signal_url"],
        format!("wss://sfu1.corp.test:443/sfu/v1/signal/{id}")
    );
    assert_eq!(
        j.body["ice_servers"][1]["urls"][0],
        "turn:turn1.corp.test:3478?transport=udp"
    );
    assert_eq!(j.body["fs"]["url"], "https://fs1.corp.test:443");
    // The FS assignment is kept: a second join does not ask again.
    let j2 = call(
        "POST",
        &app.url(&format!("/api/v1/join/{code}")),
        None,
        Some(json!({"display_name": "H"})),
    )
    .await;
    assert_eq!(j2.status, 200);
    assert_eq!(alloc.requests().len(), 3);

    // Non-200: "no capacity right now" → 503 servers_not_ready + Retry-After; nothing created.
    let before = call("GET", &app.url("/api/v1/meetings"), Some(&ann), None).await;
    let count = before.body.as_array().expect("list").len();
    // The outbox sends the first meeting's invitation in the background: count from after it.
    let mails_before =
        support::wait_until(Duration::from_secs(15), "bob's first invitation", || {
            let n = mails_to(&sink, "bob@corp.test").len();
            (n >= 1).then_some(n)
        });
    for (status, body) in [
        (503, "busy"),
        (404, "{}"),
        (200, "not json"),
        (200, r#"{"sfu": "no-port"}"#),
    ] {
        alloc.set_response(status, body);
        let a = call(
            "POST",
            &app.url("/api/v1/meetings"),
            Some(&ann),
            Some(json!({"title": "Later", "begin_at": begin, "end_at": end, "invitees": ["bob@corp.test"]})),
        )
        .await;
        assert_eq!(
            (a.status, a.error_code()),
            (503, "servers_not_ready"),
            "allocator {status} {body}: {:?}",
            a.body
        );
        assert_eq!(a.headers["retry-after"], "10");
    }
    let after = call("GET", &app.url("/api/v1/meetings"), Some(&ann), None).await;
    assert_eq!(
        after.body.as_array().expect("list").len(),
        count,
        "no meeting was created"
    );
    assert_eq!(
        mails_to(&sink, "bob@corp.test").len(),
        mails_before,
        "no invitation was sent"
    );

    // An allocator that is gone altogether: the same answer, quickly.
    drop(alloc);
    let a = call(
        "POST",
        &app.url("/api/v1/meetings"),
        Some(&ann),
        Some(json!({})),
    )
    .await;
    assert_eq!((a.status, a.error_code()), (503, "servers_not_ready"));
    let metrics = reqwest::get(app.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("meeting_allocation_failures_total 5"),
        "{metrics}"
    );
}

// ---- the built-in allocateserver, standalone, and a third-party one in Python ----

const PATH: &str = "/alloc/x7Qp-unguessable-3f9a";

/// An allocate.toml for our allocateserver: two dedicated sfuservers for scheduled meetings
/// (so the third overlapping meeting is refused), the same two shared by instant ones.
fn allocate_toml(dir: &std::path::Path, allow: &str) -> std::path::PathBuf {
    let f = dir.join("allocate.toml");
    std::fs::write(
        &f,
        format!(
            r#"path = "{PATH}"
allow = [{allow}]
[scheduled]
strategy = "dedicated"
[instant]
strategy = "shared"
max_owners_per_sfu = 10
[[sfu]]
address = "sfu1.corp.test:443"
[[sfu]]
address = "sfu2.corp.test:443"
[[turn]]
address = "turn1.corp.test:3478"
[[fs]]
address = "fs1.corp.test:443"
"#
        ),
    )
    .expect("write allocate.toml");
    f
}

async fn get(url: &str) -> support::api::Answer {
    support::api::call("GET", url, None, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_allocateserver_speaks_the_seed_protocol_and_keeps_reservations() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = allocate_toml(dir.path(), r#""127.0.0.0/8""#);
    let data = dir.path().join("data");
    let args = ["allocateserver", "--config", cfg.to_str().expect("utf-8")];
    let app = Appliance::start_bin(support::appliance_bin!(), &data, &args, &[]);
    let url = |q: &str| app.url(&format!("{PATH}{q}"));
    let begin = 1_900_000_000;
    let sched = |b: i64, e: i64| {
        url(&format!(
            "?Kind=SFUTURN&Email=ann%40corp.test&BeginAt={b}&EndAt={e}"
        ))
    };

    let a = get(&sched(begin, begin + 3600)).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.headers["content-type"], "application/json");
    assert_eq!(
        a.body,
        json!({"sfu": "sfu1.corp.test:443", "turn": "turn1.corp.test:3478"})
    );
    let b = get(&sched(begin + 1800, begin + 5400)).await;
    assert_eq!(b.body["sfu"], "sfu2.corp.test:443");
    // Overlapping both (lead and lag count): no server free, a clean non-200.
    let c = get(&sched(begin + 3600 * 4, begin + 3600 * 5)).await;
    assert_eq!(
        (c.status, c.error_code()),
        (503, "no_capacity"),
        "{:?}",
        c.body
    );
    assert_eq!(c.headers["retry-after"], "10");
    let i = get(&url(
        "?Kind=SFUTURN&Email=bob%40corp.test&BeginAt=0&EndAt=0",
    ))
    .await;
    assert_eq!(i.status, 200, "{:?}", i.body);
    let fs = get(&url("?Kind=FS&Email=bob%40corp.test")).await;
    assert_eq!(fs.body, json!({"fs": "fs1.corp.test:443"}));
    // Mistakes are named; other paths do not exist.
    assert_eq!(get(&url("?Kind=VIDEO&Email=a%40b.c")).await.status, 400);
    assert_eq!(get(&url("?Kind=FS")).await.status, 400);
    assert_eq!(
        get(&url("?Kind=SFUTURN&Email=a%40b.c&BeginAt=9&EndAt=1"))
            .await
            .status,
        400
    );
    assert_eq!(
        get(&app.url("/alloc/guess?Kind=FS&Email=a%40b.c"))
            .await
            .status,
        404
    );
    let r = get(&url("/report")).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body["reservations"].as_array().map(Vec::len),
        Some(2),
        "{:?}",
        r.body
    );
    assert_eq!(r.body["strategies"]["scheduled"], "dedicated");

    // Restarted: the reservations are still there.
    app.stop();
    let app = Appliance::start_bin(support::appliance_bin!(), &data, &args, &[]);
    let url = |q: &str| app.url(&format!("{PATH}{q}"));
    let sched = |b: i64, e: i64| {
        url(&format!(
            "?Kind=SFUTURN&Email=ann%40corp.test&BeginAt={b}&EndAt={e}"
        ))
    };
    assert_eq!(
        get(&sched(begin + 3600 * 4, begin + 3600 * 5)).await.status,
        503
    );
    let d = get(&sched(begin + 3600 * 8, begin + 3600 * 9)).await;
    assert_eq!(
        d.body["sfu"], "sfu1.corp.test:443",
        "free again after end + 2h: {:?}",
        d.body
    );
    app.stop();
    // The CLI report reads the saved state.
    let out = support::run_cli(
        support::appliance_bin!(),
        &[
            "allocateserver",
            "--config",
            cfg.to_str().expect("utf-8"),
            "--dataDir",
            data.to_str().expect("utf-8"),
            "--report",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("reservations (3)"), "{text}");
    assert!(text.contains("server-hours per day"), "{text}");

    // A client outside `allow` is refused.
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).expect("mkdir");
    let cfg2 = allocate_toml(&other, r#""10.9.9.0/24""#);
    let args2 = ["allocateserver", "--config", cfg2.to_str().expect("utf-8")];
    let app2 = Appliance::start_bin(support::appliance_bin!(), &other.join("data"), &args2, &[]);
    let f = get(&app2.url(&format!("{PATH}?Kind=FS&Email=a%40b.c"))).await;
    assert_eq!((f.status, f.error_code()), (403, "forbidden"));
}

/// A third-party allocator in another language (Python's http.server), with the same policy
/// as the allocate.toml above: two sfuservers, one per overlapping scheduled meeting (2 h lead
/// and lag), instant meetings on the first one.
const PY_ALLOCATOR: &str = r#"
import http.server, json, sys, urllib.parse
PORT, PATH = int(sys.argv[1]), sys.argv[2]
SFU = ["sfu1.corp.test:443", "sfu2.corp.test:443"]
TURN, FS, LEAD, LAG = "turn1.corp.test:3478", "fs1.corp.test:443", 7200, 7200
held = []
class H(http.server.BaseHTTPRequestHandler):
    def answer(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def do_GET(self):
        u = urllib.parse.urlsplit(self.path)
        if u.path != PATH:
            return self.answer(404, {})
        q = dict(urllib.parse.parse_qsl(u.query))
        if q.get("Kind") == "FS":
            return self.answer(200, {"fs": FS})
        b, e = int(q["BeginAt"]), int(q["EndAt"])
        if b == 0:
            return self.answer(200, {"sfu": SFU[0], "turn": TURN})
        f, t = b - LEAD, e + LAG
        for s in SFU:
            if not any(h[0] == s and h[1] < t and f < h[2] for h in held):
                held.append((s, f, t))
                return self.answer(200, {"sfu": s, "turn": TURN})
        self.answer(503, {"error": "no_capacity"})
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", PORT), H).serve_forever()
"#;

/// What a user sees through the apiserver: three overlapping scheduled meetings (the third
/// refused), an instant meeting, a guest's join answer.
async fn scenario(allocator_url: &str) -> Vec<String> {
    let sink = SmtpSink::start();
    let mut args = mail_args(sink.port());
    args.extend(["--allocateserver".to_string(), allocator_url.to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let app = Appliance::start(&args, &[]);
    let ann = sign_in(&app, &sink, "ann@corp.test").await;
    let begin = meeting_appliance::util::now() + 3 * 3600;
    let mut seen = Vec::new();
    for k in 0..3 {
        let b = begin + k * 1800;
        let a = call(
            "POST",
            &app.url("/api/v1/meetings"),
            Some(&ann),
            Some(json!({"title": format!("Plan {k}"), "begin_at": b, "end_at": b + 3600})),
        )
        .await;
        seen.push(format!("scheduled {k}: {} {}", a.status, a.error_code()));
    }
    let inst = call(
        "POST",
        &app.url("/api/v1/meetings"),
        Some(&ann),
        Some(json!({})),
    )
    .await;
    seen.push(format!("instant: {}", inst.status));
    let code = inst.body["code"].as_str().expect("code").to_string();
    let j = call(
        "POST",
        &app.url(&format!("/api/v1/join/{code}")),
        None,
        Some(json!({"display_name": "G"})),
    )
    .await;
    seen.push(format!(
        "join: {} sfu {} turn {} fs {}",
        j.status,
        j.body["sfu"]["address"],
        j.body["ice_servers"][1]["urls"][0],
        j.body["fs"]["url"]
    ));
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apiserver_behaves_the_same_with_our_allocateserver_and_a_python_one() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = allocate_toml(dir.path(), "");
    let args = ["allocateserver", "--config", cfg.to_str().expect("utf-8")];
    let ours = Appliance::start_bin(
        support::appliance_bin!(),
        &dir.path().join("data"),
        &args,
        &[],
    );
    let with_ours = scenario(&ours.url(PATH)).await;

    let script = dir.path().join("allocator.py");
    std::fs::write(&script, PY_ALLOCATOR).expect("write allocator.py");
    let port = support::free_port();
    let mut cmd = std::process::Command::new(support::python());
    cmd.arg(&script).arg(port.to_string()).arg(PATH);
    let _py = support::TiedChild::spawn(cmd).expect("start python allocator");
    support::wait_until(Duration::from_secs(20), "the python allocator", || {
        support::port_open(port).then_some(())
    });
    let with_python = scenario(&format!("http://127.0.0.1:{port}{PATH}")).await;

    assert_eq!(with_ours, with_python);
    assert_eq!(
        with_ours,
        vec![
            "scheduled 0: 201 ".to_string(),
            "scheduled 1: 201 ".to_string(),
            "scheduled 2: 503 servers_not_ready".to_string(),
            "instant: 201".to_string(),
            "join: 200 sfu \"sfu1.corp.test:443\" turn \"turn:turn1.corp.test:3478?transport=udp\" fs \"https://fs1.corp.test:443\"".to_string(),
        ]
    );
}

#[test]
fn standalone_allocateserver_over_https_with_dry_run_provisioning() {
    let dir = tempfile::tempdir().expect("tmp");
    let ca = support::tls::TestCa::new();
    let (cert, key) = ca.leaf(&["127.0.0.1"], 86400);
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert).expect("cert");
    std::fs::write(&key_path, key).expect("key");
    let cfg = dir.path().join("allocate.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"path = "{PATH}"
cert = "{}"
cert_key = "{}"
check_every = "200ms"
[instant]
strategy = "on_demand"
[[turn]]
address = "turn1.corp.test:3478"
[provision]
create = "/nonexistent/make-sfu {{name}}"
delete = "/nonexistent/drop-sfu {{name}}"
dry_run = true
"#,
            cert_path.display(),
            key_path.display()
        ),
    )
    .expect("write allocate.toml");
    let args = ["allocateserver", "--config", cfg.to_str().expect("utf-8")];
    let app = Appliance::start_bin(
        support::appliance_bin!(),
        &dir.path().join("data"),
        &args,
        &[],
    );
    assert!(
        app.base_url().starts_with("https://"),
        "the allocateserver with a certificate serves HTTPS"
    );
    let ask = || {
        let mut c = support::tls::TlsConn::connect(app.addr(), "127.0.0.1", &ca.pem)
            .expect("TLS with the configured certificate");
        c.get(
            "127.0.0.1",
            &format!("{PATH}?Kind=SFUTURN&Email=dee%40corp.test&BeginAt=0&EndAt=0"),
        )
    };
    let first = ask();
    assert!(first.starts_with("HTTP/1.1 503"), "{first}");
    // Dry run: the command is printed, not run, and the server counts as created.
    let line = app.wait_log(
        "dry-run: would run (create meeting-sfu-i1",
        Duration::from_secs(10),
    );
    assert!(
        line.contains("/nonexistent/make-sfu meeting-sfu-i1"),
        "{line}"
    );
    let ok = support::wait_until(Duration::from_secs(10), "the dry-run server", || {
        let a = ask();
        a.starts_with("HTTP/1.1 200").then_some(a)
    });
    assert!(
        ok.contains(r#""sfu":"meeting-sfu-i1.dry-run.invalid:443""#),
        "{ok}"
    );
}
