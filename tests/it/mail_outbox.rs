//! The outbox: a mail queued while the SMTP server is down is delivered once it is back —
//! across a restart of the appliance in between. Nothing is lost.

use crate::support;

use serde_json::json;
use std::time::Duration;
use support::api::{call, code_in, mail_args, nth_mail_to};
use support::{Appliance, SmtpSink, appliance_bin, free_port};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_queued_while_smtp_is_down_is_delivered_after_restart() {
    let port = free_port(); // nothing listens here yet
    let dir = tempfile::tempdir().expect("data dir");
    let args = mail_args(port);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let env = [
        ("MEETING_MAIL__RETRY_INITIAL", "1s"),
        ("MEETING_MAIL__RETRY_MAX", "2s"),
    ];
    let app = Appliance::start_bin(appliance_bin!(), dir.path(), &args, &env);
    let a = call(
        "POST",
        &app.url("/api/v1/auth/code"),
        None,
        Some(json!({"email": "ann@corp.test"})),
    )
    .await;
    assert_eq!(
        a.status, 204,
        "accepted although SMTP is down: {:?}",
        a.body
    );
    app.wait_log(
        "mail not delivered yet; will retry",
        Duration::from_secs(30),
    );
    app.wait_log("attempts=2", Duration::from_secs(30));
    let metrics = reqwest::get(app.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("meeting_mail_pending 1"), "{metrics}");

    // Stop gracefully, then start again on the same data dir with the mail still queued.
    let status = app.stop();
    assert!(status.success(), "graceful stop exits 0: {status:?}");
    let app = Appliance::start_bin(appliance_bin!(), dir.path(), &args, &env);
    let sink = SmtpSink::start_on(port);
    let mail = nth_mail_to(&sink, "ann@corp.test", 1);
    let code = code_in(&mail);
    let v = call(
        "POST",
        &app.url("/api/v1/auth/verify"),
        None,
        Some(json!({"email": "ann@corp.test", "code": code})),
    )
    .await;
    assert_eq!(
        v.status, 200,
        "the code mailed late still signs in: {:?}",
        v.body
    );
    // Exactly one copy was delivered.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.messages().len(), 1);
}

/// A stop after mail went out (an SMTP connection is pooled) is still clean: before, dropping
/// the pool after the runtime had ended panicked and the exit status said so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_after_sending_mail_exits_cleanly() {
    let sink = SmtpSink::start();
    let args = mail_args(sink.port());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let app = Appliance::start(&args, &[]);
    support::api::sign_in(&app, &sink, "ann@corp.test").await;
    let status = app.stop();
    assert!(status.success(), "graceful stop exits 0: {status:?}");
}
