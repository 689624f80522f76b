//! The apiserver against an external allocator speaking the seed's protocol: the exact query
//! strings for scheduled, instant and FS requests, the answers flowing into join answers, and
//! a non-200 (or a broken allocator) becoming 503 `servers_not_ready` with `Retry-After`.

mod support;

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
    let mails_before = mails_to(&sink, "bob@corp.test").len();
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
