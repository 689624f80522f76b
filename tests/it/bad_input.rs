//! Bad input gets a clear JSON error and changes nothing: malformed and oversized bodies,
//! wrong content types, unknown endpoints, and a database that goes away under a running
//! apiserver (a clear 500/503 without SQL in it, and readiness reports it).

use crate::support;

use serde_json::json;
use support::api::{call, post_raw};
use support::{Appliance, MariaDb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_oversized_and_mistyped_bodies() {
    let app = Appliance::start(&[], &[]);
    let url = app.url("/api/v1/auth/code");
    let a = post_raw(&url, "application/json", b"{\"email\":".to_vec()).await;
    assert_eq!(
        (a.status, a.error_code()),
        (400, "invalid_json"),
        "{:?}",
        a.body
    );
    let a = post_raw(&url, "application/json", b"\xff\xfe garbage".to_vec()).await;
    assert_eq!((a.status, a.error_code()), (400, "invalid_json"));
    let a = post_raw(&url, "application/json", b"[1,2,3]".to_vec()).await;
    assert_eq!((a.status, a.error_code()), (400, "invalid_json"));
    let a = post_raw(&url, "text/plain", b"{\"email\":\"a@b.co\"}".to_vec()).await;
    assert_eq!((a.status, a.error_code()), (415, "unsupported_media_type"));
    let big = format!("{{\"email\":\"{}@corp.test\"}}", "a".repeat(200 * 1024));
    let a = post_raw(&url, "application/json", big.into_bytes()).await;
    assert_eq!((a.status, a.error_code()), (413, "payload_too_large"));
    let a = post_raw(
        &app.url("/api/v1/join/abc-defg-hjk"),
        "application/json",
        b"{oops".to_vec(),
    )
    .await;
    assert_eq!((a.status, a.error_code()), (400, "invalid_json"));
    let a = call("GET", &app.url("/api/v1/nothing-here"), None, None).await;
    assert_eq!((a.status, a.error_code()), (404, "not_found"));
    // None of that queued a mail or created anything.
    let m = reqwest::get(app.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(m.contains("meeting_login_codes_sent_total 0"), "{m}");
    // The server is fine afterwards.
    let h = call("GET", &app.url("/healthz"), None, None).await;
    assert_eq!(h.status, 200);
    let a = call("POST", &url, None, Some(json!({"email": "ok@corp.test"}))).await;
    assert_eq!(a.status, 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_going_away_gives_clean_errors() {
    let db = MariaDb::start();
    let args = [
        "--mysqlAddress".to_string(),
        db.address(),
        "--mysqlUser".into(),
        db.user().into(),
        "--mysqlPassword".into(),
        db.password().into(),
        "--mysqlDatabase".into(),
        db.database().into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let app = Appliance::start(&args, &[]);
    let r = call("GET", &app.url("/readyz"), None, None).await;
    assert_eq!(r.status, 200);
    drop(db); // the database server is killed
    let a = call(
        "POST",
        &app.url("/api/v1/auth/code"),
        None,
        Some(json!({"email": "a@corp.test"})),
    )
    .await;
    assert_eq!(
        (a.status, a.error_code()),
        (503, "database_unavailable"),
        "{:?}",
        a.body
    );
    assert!(a.headers.contains_key("retry-after"), "{:?}", a.headers);
    let msg = a.body["message"].as_str().unwrap_or("");
    assert!(
        !msg.to_ascii_lowercase().contains("sql") && !msg.contains("login_codes"),
        "no internals: {msg}"
    );
    let r = call("GET", &app.url("/readyz"), None, None).await;
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert_eq!(
        call("GET", &app.url("/healthz"), None, None).await.status,
        200,
        "alive, not ready"
    );
}
