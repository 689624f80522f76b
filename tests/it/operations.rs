//! What an operator watches, through the real binary: `/healthz`, `/readyz` and `/metrics` on
//! the all-in-one box and on an fsserver alone, the metric families operators need, and
//! JSON logs (`--logJson`, `log.json`).

use crate::support;

use serde_json::Value;
use support::Appliance;
use support::api::call;
use support::media::instant_meeting;

async fn get_text(url: &str) -> (u16, String) {
    let r = support::api::client()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    (
        r.status().as_u16(),
        r.text().await.expect("body").to_string(),
    )
}

/// The value of the first sample of `name` (no labels or any labels).
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_in_one_health_readiness_and_metric_families() {
    let app = Appliance::start(&["--udpPort", "0", "--port", "0", "--sfuWorkers", "1"], &[]);
    let h = call("GET", &app.url("/healthz"), None, None).await;
    assert_eq!((h.status, h.body["status"].as_str()), (200, Some("ok")));
    let r = call("GET", &app.url("/readyz"), None, None).await;
    assert_eq!(
        (r.status, r.body["status"].as_str()),
        (200, Some("ready")),
        "{:?}",
        r.body
    );
    // Some traffic so that the counters have samples.
    let _ = instant_meeting(&app).await;
    let (s, m) = get_text(&app.url("/metrics")).await;
    assert_eq!(s, 200);
    for family in [
        "meeting_http_requests_total",       // requests
        "meeting_meetings_created_total",    // meetings
        "meeting_sfu_rooms",                 // live meetings
        "meeting_sfu_participants",          // participants
        "meeting_sfu_rtp_packets_out_total", // forwarded packets
        "meeting_sfu_bytes_out_total",       // forwarded bytes
        "meeting_turn_allocations",          // TURN allocations
        "meeting_mail_pending",              // mail queue
        "meeting_db_pool_connections",       // DB pool
        "meeting_db_pool_idle",
        "meeting_db_pool_max",
    ] {
        assert!(
            sample(&m, family).is_some(),
            "/metrics has no sample of {family}:\n{m}"
        );
    }
    assert_eq!(sample(&m, "meeting_db_pool_max"), Some(10.0));
    assert!(sample(&m, "meeting_db_pool_connections").is_some_and(|n| n >= 1.0));
    assert!(sample(&m, "meeting_meetings_created_total").is_some_and(|n| n >= 1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_fsserver_alone_has_health_readiness_and_metrics() {
    let dir = tempfile::tempdir().expect("tmp");
    let files = dir.path().join("files");
    let app = Appliance::start(
        &[
            "fsserver",
            "--secret",
            "ops-test-secret-123",
            "--directory",
            files.to_str().expect("utf8"),
            "--apiserver",
            "127.0.0.1:9",
        ],
        &[],
    );
    for (path, want) in [("/healthz", "ok"), ("/readyz", "ready")] {
        let a = call("GET", &app.url(path), None, None).await;
        assert_eq!(
            (a.status, a.body["status"].as_str()),
            (200, Some(want)),
            "{path}: {:?}",
            a.body
        );
    }
    let (s, m) = get_text(&app.url("/metrics")).await;
    assert_eq!(s, 200);
    assert!(m.contains("meeting_fs_files_stored"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line() {
    let app = Appliance::start(
        &[
            "--udpPort",
            "0",
            "--port",
            "0",
            "--sfuWorkers",
            "1",
            "--logJson",
        ],
        &[],
    );
    // A request that logs something (the sign-in code goes to the log on a dev box).
    let a = call(
        "POST",
        &app.url("/api/v1/auth/code"),
        None,
        Some(serde_json::json!({"email": "ann@corp.test"})),
    )
    .await;
    assert_eq!(a.status, 204);
    app.wait_log("Your sign-in code is", std::time::Duration::from_secs(10));
    let lines = app.log_lines();
    assert!(lines.len() >= 3, "{lines:?}");
    let mut listening = false;
    for l in &lines {
        let v: Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON object ({e}): {l}"));
        assert!(v["timestamp"].is_string(), "{l}");
        assert!(v["level"].is_string(), "{l}");
        let msg = v["fields"]["message"].as_str().unwrap_or("");
        listening |= msg.starts_with("listening on http://");
    }
    assert!(
        listening,
        "the listening line is a JSON object too: {lines:?}"
    );

    // The same from the config file's `[log] json = true`.
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("a.toml");
    std::fs::write(&cfg, "[log]\njson = true\nlevel = \"info\"\n").expect("write");
    let app = Appliance::start(
        &[
            "--config",
            cfg.to_str().expect("utf8"),
            "--udpPort",
            "0",
            "--port",
            "0",
            "--sfuWorkers",
            "1",
        ],
        &[],
    );
    let first = app.log_lines().into_iter().next().expect("a line");
    serde_json::from_str::<Value>(&first).unwrap_or_else(|e| panic!("not JSON ({e}): {first}"));
}

/// The all-in-one stops like a node on its own: SIGTERM first tells every signaling session
/// (`closed`, reason `server_shutdown`, so clients know to rejoin), then the process exits
/// successfully.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_in_one_sigterm_tells_clients_server_shutdown() {
    let mut app = Appliance::start(&[], &[]);
    let (_host, code, _id) = instant_meeting(&app).await;
    let answer = call(
        "POST",
        &app.url(&format!("/api/v1/join/{code}")),
        None,
        Some(serde_json::json!({"display_name": "Guest"})),
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let mut session = support::signal::open(&answer.body).await;
    app.signal(libc::SIGTERM);
    let reason = session
        .until_closed(std::time::Duration::from_secs(10))
        .await;
    assert_eq!(reason.as_deref(), Some("server_shutdown"));
    let status = support::wait_until(
        std::time::Duration::from_secs(15),
        "the appliance to exit",
        || app.try_wait(),
    );
    assert!(status.success(), "{status}");
}

/// A listener handed over by the service manager (socket activation) is bound on purpose:
/// preflight does not report its port as taken.
#[test]
fn a_handed_over_listener_is_not_a_port_in_use() {
    let listen = format!("127.0.0.1:{}", support::free_port());
    let app = Appliance::start(&["--listen", &listen], &[]);
    assert_eq!(app.addr().to_string(), listen);
    let log = app.log_lines();
    assert!(
        !log.iter().any(|l| l.contains("port_in_use")),
        "{}",
        log.join("\n")
    );
}
