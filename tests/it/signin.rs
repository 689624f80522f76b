//! Email sign-in end to end, over real HTTP, with a real SMTP server receiving the codes —
//! on SQLite and on a real MariaDB.

use crate::support;

use serde_json::json;
use std::time::Duration;
use support::api::{call, code_in, mail_args, nth_mail_to, sign_in};
use support::{Appliance, SmtpSink, shared_mariadb};

async fn verify(app: &Appliance, email: &str, code: &str) -> support::api::Answer {
    call(
        "POST",
        &app.url("/api/v1/auth/verify"),
        None,
        Some(json!({"email": email, "code": code})),
    )
    .await
}

async fn request_code(app: &Appliance, email: &str) -> support::api::Answer {
    call(
        "POST",
        &app.url("/api/v1/auth/code"),
        None,
        Some(json!({"email": email})),
    )
    .await
}

/// Everything a user can do or get wrong while signing in.
async fn scenario(app: &Appliance, sink: &SmtpSink) {
    // Happy path: code by mail, verify, a session that works.
    let token = sign_in(app, sink, "Ann@Corp.test").await;
    let me = call("GET", &app.url("/api/v1/me"), Some(&token), None).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["email"], "ann@corp.test");
    let mail = nth_mail_to(sink, "ann@corp.test", 1);
    assert!(
        mail.subject().contains("sign-in code"),
        "{}",
        mail.subject()
    );
    assert!(
        mail.from().contains("meetings@corp.test"),
        "{}",
        mail.from()
    );

    // The same code again: used codes never work twice.
    let used = code_in(&mail);
    let a = verify(app, "ann@corp.test", &used).await;
    assert_eq!(
        (a.status, a.error_code()),
        (400, "invalid_code"),
        "{:?}",
        a.body
    );

    // Wrong codes: counted; the fifth wrong try voids the code, even the right one after it.
    assert_eq!(request_code(app, "bob@corp.test").await.status, 204);
    let right = code_in(&nth_mail_to(sink, "bob@corp.test", 1));
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    for left in (1..=4).rev() {
        let a = verify(app, "bob@corp.test", wrong).await;
        assert_eq!((a.status, a.error_code()), (400, "invalid_code"));
        assert!(
            a.body["message"]
                .as_str()
                .unwrap_or("")
                .contains(&format!("{left} tries left")),
            "{:?}",
            a.body
        );
    }
    let a = verify(app, "bob@corp.test", wrong).await;
    assert_eq!((a.status, a.error_code()), (400, "too_many_attempts"));
    let a = verify(app, "bob@corp.test", &right).await;
    assert_eq!(
        (a.status, a.error_code()),
        (400, "invalid_code"),
        "a voided code must not work"
    );

    // A new code supersedes the previous one.
    assert_eq!(request_code(app, "bob@corp.test").await.status, 204);
    let first = code_in(&nth_mail_to(sink, "bob@corp.test", 2));
    assert_eq!(request_code(app, "bob@corp.test").await.status, 204);
    let second = code_in(&nth_mail_to(sink, "bob@corp.test", 3));
    if first != second {
        let a = verify(app, "bob@corp.test", &first).await;
        assert_eq!(a.error_code(), "invalid_code", "superseded code accepted");
    }
    let ok = verify(app, "bob@corp.test", &second).await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    assert!(ok.headers.get("set-cookie").is_some_and(|c| {
        let c = c.to_str().unwrap_or("");
        c.contains("meeting_session=") && c.contains("HttpOnly") && c.contains("SameSite=Lax")
    }));

    // Malformed input.
    let a = request_code(app, "not-an-email").await;
    assert_eq!((a.status, a.error_code()), (400, "invalid_email"));
    let a = verify(app, "bob@corp.test", "12ab").await;
    assert_eq!((a.status, a.error_code()), (400, "invalid_code"));

    // Sign out revokes the session for good; a forged token is refused.
    let a = call("POST", &app.url("/api/v1/auth/logout"), Some(&token), None).await;
    assert_eq!(a.status, 204);
    let a = call("GET", &app.url("/api/v1/me"), Some(&token), None).await;
    assert_eq!((a.status, a.error_code()), (401, "unauthorized"));
    let a = call(
        "GET",
        &app.url("/api/v1/me"),
        Some("forged-token-value"),
        None,
    )
    .await;
    assert_eq!(a.status, 401);
    let a = call("GET", &app.url("/api/v1/me"), None, None).await;
    assert_eq!(a.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_on_sqlite() {
    let sink = SmtpSink::start();
    let args = mail_args(sink.port());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let app = Appliance::start(&args, &[]);
    scenario(&app, &sink).await;
    assert!(
        app.data_dir().join("meeting.db").exists(),
        "SQLite file in the data dir"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_on_mariadb_with_the_seed_flags() {
    let db = shared_mariadb();
    let name = db.unique_database("signin");
    let sink = SmtpSink::start();
    let mut args = mail_args(sink.port());
    for (f, v) in [
        ("--mysqlAddress", db.address()),
        ("--mysqlUser", db.user().to_string()),
        ("--mysqlPassword", db.password().to_string()),
        ("--mysqlDatabase", name.clone()),
    ] {
        args.push(f.into());
        args.push(v);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let app = Appliance::start(&args, &[]);
    scenario(&app, &sink).await;
    // The rows really are in MariaDB.
    let users = db.root_sql(&format!("SELECT email FROM `{name}`.users ORDER BY email"));
    assert!(
        users.contains("ann@corp.test") && users.contains("bob@corp.test"),
        "{users}"
    );
    assert!(
        !app.data_dir().join("meeting.db").exists(),
        "no SQLite file when MariaDB is configured"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_code_is_rejected() {
    let sink = SmtpSink::start();
    let args = mail_args(sink.port());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let app = Appliance::start(&args, &[("MEETING_AUTH__CODE_TTL", "1s")]);
    assert_eq!(request_code(&app, "cy@corp.test").await.status, 204);
    let code = code_in(&nth_mail_to(&sink, "cy@corp.test", 1));
    // The code's lifetime is the point of this test: wait it out.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let a = verify(&app, "cy@corp.test", &code).await;
    assert_eq!(
        (a.status, a.error_code()),
        (400, "code_expired"),
        "{:?}",
        a.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_requests_are_rate_limited_per_email_and_per_ip() {
    let sink = SmtpSink::start();
    let args = mail_args(sink.port());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let app = Appliance::start(
        &args,
        &[
            ("MEETING_AUTH__CODES_PER_EMAIL_PER_HOUR", "2"),
            ("MEETING_AUTH__CODES_PER_IP_PER_HOUR", "4"),
        ],
    );
    assert_eq!(request_code(&app, "dee@corp.test").await.status, 204);
    assert_eq!(request_code(&app, "dee@corp.test").await.status, 204);
    let a = request_code(&app, "dee@corp.test").await;
    assert_eq!(
        (a.status, a.error_code()),
        (429, "rate_limited"),
        "{:?}",
        a.body
    );
    let retry: u64 = a.headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(retry > 0 && retry <= 3600, "{retry}");
    // Other addresses from the same IP: two more fit in the per-IP budget of 4, then no more.
    assert_eq!(request_code(&app, "eve@corp.test").await.status, 204);
    assert_eq!(request_code(&app, "fay@corp.test").await.status, 204);
    let a = request_code(&app, "gus@corp.test").await;
    assert_eq!(
        (a.status, a.error_code()),
        (429, "rate_limited"),
        "{:?}",
        a.body
    );
    // Exactly the accepted requests produced mail.
    sink.wait_for(4, Duration::from_secs(20));
    assert_eq!(sink.messages().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_on_postgresql_by_url() {
    let pg = support::postgres::Postgres::start();
    let url = pg.database("meeting");
    let sink = SmtpSink::start();
    let mut args = mail_args(sink.port());
    args.extend(["--databaseUrl".to_string(), url]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let app = Appliance::start(&args, &[]);
    scenario(&app, &sink).await;
    assert!(
        !app.data_dir().join("meeting.db").exists(),
        "no SQLite file when PostgreSQL is configured"
    );
}
