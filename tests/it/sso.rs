//! Enterprise sign-in against real peers started by the tests: OpenLDAP (Debian's
//! `slapd`, in a temp dir, data loaded with `slapadd`, LDAPS and StartTLS with a test CA) and
//! a certified OpenID Provider (`oidc-provider` from npm, run by node) driven by Chromium.
//! Also: `auth.methods` combinations, account lifecycle (the provider's "no" and the
//! administrator's disable end access and close meeting connections), the audit log.

use crate::support;

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::Appliance;
use support::api::{Answer, call};
use support::ldap::{self as ldapd, Slapd};
use support::rtc_client::{WsMsg, ws_connect};

/// Where the browser scenarios leave their screenshots (linked from the README).
const SHOTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/screenshots");

/// Everyone in the test directory. Passwords are `pw-<uid>`.
fn directory() -> Slapd {
    let mut ldif = String::new();
    for (uid, name, mail) in [
        ("bob", "Bob Builder", Some("bob@corp.test")),
        ("carol", "Carol Jones", Some("carol@corp.test")),
        ("dave", "Dave Admin", Some("dave@corp.test")),
        ("erin", "Erin Partner", Some("erin@partner.test")),
        ("frank", "Frank Nomail", None),
        ("hank", "Hank Typo", Some("hank@corp.test")),
        ("ivy", "Ivy Burst", Some("ivy@corp.test")),
    ] {
        ldif.push_str(&ldapd::person(uid, name, mail, &format!("pw-{uid}")));
    }
    ldif.push_str(&ldapd::group(
        "creators",
        &["bob", "dave", "erin", "hank", "ivy"],
    ));
    ldif.push_str(&ldapd::group("admins", &["dave"]));
    Slapd::start(&ldif)
}

/// The flags and environment of an appliance that signs people in at `dir`.
fn ldap_app(dir: &Slapd, url: &str, extra: &[&str], env: &[(&str, &str)]) -> Appliance {
    let ca = dir.ca_file.display().to_string();
    let mut args = extra.to_vec();
    args.extend_from_slice(&[
        "--authMethods",
        "ldap",
        "--ldapUrl",
        url,
        "--ldapBindDn",
        ldapd::SERVICE_DN,
        "--ldapBindPassword",
        ldapd::SERVICE_PW,
        "--ldapUserBase",
        ldapd::PEOPLE,
        "--ldapCaFile",
        &ca,
        "--udpPort",
        "0",
        "--sfuWorkers",
        "1",
    ]);
    let creators = ldapd::group_dn("creators");
    let admins = ldapd::group_dn("admins");
    let mut envs = vec![
        ("MEETING_AUTH__LDAP__CREATE_GROUPS", creators.as_str()),
        ("MEETING_AUTH__LDAP__ADMIN_GROUPS", admins.as_str()),
        ("MEETING_AUTH__ALLOWED_DOMAINS", "corp.test"),
        ("MEETING_AUTH__LDAP__NAME", "Corp Directory"),
    ];
    envs.extend_from_slice(env);
    Appliance::start(&args, &envs)
}

async fn ldap_sign_in(app: &Appliance, user: &str, pw: &str) -> Answer {
    call(
        "POST",
        &app.url("/api/v1/auth/ldap"),
        None,
        Some(json!({"username": user, "password": pw})),
    )
    .await
}

/// The same, from another loopback source address (another client IP).
async fn ldap_sign_in_from(app: &Appliance, from: [u8; 4], user: &str, pw: &str) -> Answer {
    meeting_appliance::util::install_ring_provider();
    let c = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(from))
        .build()
        .expect("client");
    let r = c
        .post(app.url("/api/v1/auth/ldap"))
        .json(&json!({"username": user, "password": pw}))
        .send()
        .await
        .expect("POST /auth/ldap");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

fn token(a: &Answer) -> String {
    assert_eq!(a.status, 200, "sign-in: {:?}", a.body);
    a.body["token"].as_str().expect("token").to_string()
}

/// The audit log as an administrator sees it (newest first).
async fn audit(app: &Appliance, admin: &str, query: &str) -> Vec<Value> {
    let a = call(
        "GET",
        &app.url(&format!("/api/v1/admin/audit?limit=1000&{query}")),
        Some(admin),
        None,
    )
    .await;
    assert_eq!(a.status, 200, "audit: {:?}", a.body);
    a.body["entries"].as_array().cloned().unwrap_or_default()
}

fn has(entries: &[Value], f: impl Fn(&Value) -> bool) -> bool {
    entries.iter().any(f)
}

/// Opens a meeting connection (signaling, joined) for `token` in meeting `code`.
async fn open_connection(
    app: &Appliance,
    token: &str,
    code: &str,
) -> (
    support::rtc_client::WsSender,
    tokio::sync::mpsc::UnboundedReceiver<WsMsg>,
    String,
) {
    let j = call(
        "POST",
        &app.url(&format!("/api/v1/join/{code}")),
        Some(token),
        Some(json!({})),
    )
    .await;
    assert_eq!(j.status, 200, "join: {:?}", j.body);
    let url = j.body["sfu"]["signal_url"].as_str().expect("signal url");
    let (ws, mut rx) = ws_connect(url).await.expect("signaling");
    ws.text(json!({"type": "join", "token": j.body["token"]}).to_string());
    let pid = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match rx.recv().await {
                Some(WsMsg::Text(t)) => {
                    let v: Value = serde_json::from_str(&t).expect("json");
                    if v["type"] == "joined" {
                        return v["participant_id"].as_str().unwrap_or("").to_string();
                    }
                }
                other => panic!("signaling ended before joined: {other:?}"),
            }
        }
    })
    .await
    .expect("joined within 10 s");
    (ws, rx, pid)
}

/// Waits until the connection is closed by the server; returns the `closed` reason (or
/// "socket closed") and how long it took.
async fn wait_closed(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<WsMsg>,
    deadline: Duration,
) -> (String, Duration) {
    let start = Instant::now();
    let r = tokio::time::timeout(deadline, async {
        loop {
            match rx.recv().await {
                Some(WsMsg::Text(t)) => {
                    let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                    if v["type"] == "closed" {
                        return v["reason"].as_str().unwrap_or("").to_string();
                    }
                }
                Some(WsMsg::Close(..)) | Some(WsMsg::Error(_)) | None => {
                    return "socket closed".to_string();
                }
                Some(_) => {}
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the meeting connection was still open after {deadline:?}"));
    (r, start.elapsed())
}

/// LDAP over LDAPS with a private CA: the right password signs in (name and email from the
/// directory), a wrong one, an empty one and a filter injection are refused; groups decide
/// who may create (a user outside the group may join but not create) and who is an admin;
/// `allowed_domains` still applies; an account without email is refused; the code method
/// is off. Disabling the user in the directory ends their access and closes their open
/// meeting connection within `auth.recheck_every`. The audit log shows each event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_sign_in_groups_lifecycle_and_audit() {
    let dir = directory();
    let recheck = Duration::from_secs(2);
    let app = ldap_app(
        &dir,
        &dir.ldaps_url(),
        &[],
        &[("MEETING_AUTH__RECHECK_EVERY", "2s")],
    );
    // The sign-in page offers what is enabled, and only that.
    let m = call("GET", &app.url("/api/v1/auth/methods"), None, None).await;
    assert_eq!(
        m.body,
        json!({"methods": [{"method": "ldap", "name": "Corp Directory"}]})
    );
    let a = call(
        "POST",
        &app.url("/api/v1/auth/code"),
        None,
        Some(json!({"email": "bob@corp.test"})),
    )
    .await;
    assert_eq!((a.status, a.error_code()), (403, "method_disabled"));

    // The right password.
    let a = ldap_sign_in(&app, "bob", "pw-bob").await;
    let bob = token(&a);
    assert_eq!(a.body["user"]["email"], "bob@corp.test");
    assert_eq!(a.body["user"]["display_name"], "Bob Builder");
    assert_eq!(a.body["user"]["method"], "ldap");
    assert_eq!(a.body["user"]["can_create"], true);
    assert_eq!(a.body["user"]["admin"], false);
    assert!(
        a.headers
            .get("set-cookie")
            .is_some_and(|c| c.to_str().unwrap_or("").contains("HttpOnly"))
    );
    // Wrong, empty and injected credentials.
    let (binds_before, _) = dir.binds(&ldapd::dn_of("bob"));
    let a = ldap_sign_in(&app, "bob", "pw-wrong").await;
    assert_eq!((a.status, a.error_code()), (401, "invalid_credentials"));
    let a = ldap_sign_in(&app, "bob", "").await;
    assert_eq!((a.status, a.error_code()), (401, "invalid_credentials"));
    assert_eq!(
        dir.binds(&ldapd::dn_of("bob")).0,
        binds_before + 1,
        "the empty password never reaches the directory (it would bind anonymously)"
    );
    let a = ldap_sign_in(&app, "*", "pw-bob").await;
    assert_eq!((a.status, a.error_code()), (401, "invalid_credentials"));
    let a = ldap_sign_in(&app, "bob)(uid=*", "pw-bob").await;
    assert_eq!((a.status, a.error_code()), (401, "invalid_credentials"));

    // Outside the creators group: may join, may not create.
    let carol = token(&ldap_sign_in(&app, "carol", "pw-carol").await);
    let me = call("GET", &app.url("/api/v1/me"), Some(&carol), None).await;
    assert_eq!(me.body["can_create"], false, "{:?}", me.body);
    let a = call(
        "POST",
        &app.url("/api/v1/meetings"),
        Some(&carol),
        Some(json!({})),
    )
    .await;
    assert_eq!((a.status, a.error_code()), (403, "not_allowed_to_create"));
    let room = call(
        "POST",
        &app.url("/api/v1/meetings"),
        Some(&bob),
        Some(json!({})),
    )
    .await;
    assert_eq!(room.status, 201, "{:?}", room.body);
    let code = room.body["code"].as_str().expect("code").to_string();
    let room_id = room.body["id"].as_i64().expect("id");
    let j = call(
        "POST",
        &app.url(&format!("/api/v1/join/{code}")),
        Some(&carol),
        Some(json!({})),
    )
    .await;
    assert_eq!(j.status, 200, "carol joins bob's meeting: {:?}", j.body);
    let g = call(
        "POST",
        &app.url(&format!("/api/v1/join/{code}")),
        None,
        Some(json!({"display_name": "Guest Gina"})),
    )
    .await;
    assert_eq!(
        g.status, 200,
        "a guest joins by link, no sign-in: {:?}",
        g.body
    );
    // Put in the group at the directory: she may create after the next re-check.
    dir.modify(&format!(
        "dn: {}\nchangetype: modify\nadd: member\nmember: {}\n",
        ldapd::group_dn("creators"),
        ldapd::dn_of("carol")
    ));
    let start = Instant::now();
    loop {
        let me = call("GET", &app.url("/api/v1/me"), Some(&carol), None).await;
        if me.body["can_create"] == true {
            break;
        }
        assert!(
            start.elapsed() < recheck * 10,
            "the new group reached her session: {:?}",
            me.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "carol may create {:?} after joining the group",
        start.elapsed()
    );
    // In the group, but a domain outside allowed_domains: may not create.
    let erin = ldap_sign_in(&app, "erin", "pw-erin").await;
    assert_eq!(erin.body["user"]["can_create"], false, "{:?}", erin.body);
    // No email in the directory.
    let a = ldap_sign_in(&app, "frank", "pw-frank").await;
    assert_eq!((a.status, a.error_code()), (403, "no_email"));
    // The admin group.
    let dave = token(&ldap_sign_in(&app, "dave", "pw-dave").await);
    let a = call("GET", &app.url("/api/v1/admin/overview"), Some(&dave), None).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let a = call(
        "GET",
        &app.url("/api/v1/admin/overview"),
        Some(&carol),
        None,
    )
    .await;
    assert_eq!((a.status, a.error_code()), (403, "not_admin"));

    // Host actions are audited: bob locks and unlocks his room while carol is in it.
    let (_cw, _crx, carol_pid) = open_connection(&app, &carol, &code).await;
    for action in ["lock", "unlock"] {
        let a = call(
            "POST",
            &app.url(&format!("/api/v1/meetings/{room_id}/control")),
            Some(&bob),
            Some(json!({"action": action})),
        )
        .await;
        assert_eq!(a.status, 204, "{action}: {:?}", a.body);
    }
    let a = call(
        "POST",
        &app.url(&format!("/api/v1/meetings/{room_id}/control")),
        Some(&bob),
        Some(json!({"action": "remove", "participant_id": carol_pid})),
    )
    .await;
    assert_eq!(a.status, 204, "remove: {:?}", a.body);

    // Disabled in the directory while in a meeting: access ends and the connection closes
    // within the re-check interval.
    let (_ws, mut rx, _pid) = open_connection(&app, &bob, &code).await;
    dir.modify(&format!(
        "dn: {}\nchangetype: delete\n",
        ldapd::dn_of("bob")
    ));
    let (reason, took) = wait_closed(&mut rx, recheck * 10).await;
    eprintln!(
        "bob's meeting connection closed {took:?} after the directory dropped him ({reason})"
    );
    assert_eq!(reason, "removed");
    let tick = Duration::from_secs(1);
    assert!(
        took <= recheck + tick + Duration::from_secs(5),
        "closed within recheck_every ({recheck:?}) plus a tick and the check itself: {took:?}"
    );
    let a = call("GET", &app.url("/api/v1/me"), Some(&bob), None).await;
    assert_eq!(a.status, 401, "bob's session ended: {:?}", a.body);
    let a = ldap_sign_in(&app, "bob", "pw-bob").await;
    assert_eq!((a.status, a.error_code()), (401, "invalid_credentials"));
    // Carol and dave are unaffected.
    let a = call("GET", &app.url("/api/v1/me"), Some(&carol), None).await;
    assert_eq!(a.status, 200);

    // The audit log, as the admin sees it, and its export.
    let log = audit(&app, &dave, "").await;
    let sign_in = |who: &'static str, result: &'static str| {
        move |e: &Value| {
            e["action"] == "sign_in"
                && e["method"] == "ldap"
                && e["result"] == result
                && e["actor"].as_str().is_some_and(|a| a.starts_with(who))
                && e["ip"] == "127.0.0.1"
        }
    };
    assert!(has(&log, sign_in("bob", "ok")), "{log:#?}");
    assert!(has(&log, sign_in("bob", "failed")), "{log:#?}");
    assert!(has(&log, sign_in("frank", "refused")), "{log:#?}");
    for action in ["host.lock", "host.unlock", "host.remove"] {
        assert!(
            has(&log, |e| e["action"] == action
                && e["actor"] == "bob@corp.test"
                && e["result"] == "ok"
                && e["meeting_id"] == room_id),
            "{action} audited: {log:#?}"
        );
    }
    assert!(
        has(&log, |e| e["action"] == "host.remove"
            && e["target"]
                .as_str()
                .is_some_and(|t| t.contains(&carol_pid))),
        "{log:#?}"
    );
    assert!(
        has(&log, |e| e["action"] == "session.ended_by_provider"
            && e["target"] == "bob@corp.test"
            && e["detail"].as_str().is_some_and(
                |d| d.contains("1 meeting connection(s) closed")
            )),
        "{log:#?}"
    );
    let filtered = audit(&app, &dave, "action=host.").await;
    assert!(
        filtered
            .iter()
            .all(|e| e["action"].as_str().is_some_and(|a| a.starts_with("host.")))
    );
    assert_eq!(filtered.len(), 3, "{filtered:#?}");
    let a = call("GET", &app.url("/api/v1/admin/audit"), Some(&carol), None).await;
    assert_eq!(a.status, 403, "only admins read the audit log");
    let export = support::api::client()
        .get(app.url("/api/v1/admin/audit/export"))
        .bearer_auth(&dave)
        .send()
        .await
        .expect("export");
    assert_eq!(export.status(), 200);
    assert!(
        export
            .headers()
            .get("content-type")
            .is_some_and(|c| c.to_str().unwrap_or("").starts_with("application/x-ndjson"))
    );
    let text = export.text().await.expect("body");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    assert!(lines.len() >= log.len(), "{} < {}", lines.len(), log.len());
    assert!(
        lines
            .windows(2)
            .all(|w| w[0]["id"].as_i64() < w[1]["id"].as_i64()),
        "oldest first"
    );
}

/// Password guessing is throttled like the codes: 5 wrong passwords for one login from one
/// address, then 429 even for the right one; the same login from another address and other
/// logins from this one are unharmed; a burst of 20 parallel guesses reaches the directory
/// at most 5 times (counted in slapd's own log).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_guessing_is_throttled() {
    let dir = directory();
    let app = ldap_app(&dir, &dir.ldaps_url(), &[], &[]);
    for i in 1..=5 {
        let a = ldap_sign_in(&app, "hank", &format!("guess-{i}")).await;
        assert_eq!(
            (a.status, a.error_code()),
            (401, "invalid_credentials"),
            "#{i}"
        );
    }
    let a = ldap_sign_in(&app, "hank", "guess-6").await;
    assert_eq!(
        (a.status, a.error_code()),
        (429, "rate_limited"),
        "{:?}",
        a.body
    );
    let a = ldap_sign_in(&app, "hank", "pw-hank").await;
    assert_eq!(
        (a.status, a.error_code()),
        (429, "rate_limited"),
        "the right password is refused too once throttled"
    );
    let retry: u64 = a
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!(retry > 0 && retry <= 900, "{retry}");
    let (attempts, failed) = dir.binds(&ldapd::dn_of("hank"));
    assert_eq!(
        (attempts, failed),
        (5, 5),
        "only the 5 counted guesses reached the directory"
    );
    // Others are unharmed: hank from another address, carol from this one.
    let a = ldap_sign_in_from(&app, [127, 0, 0, 2], "hank", "pw-hank").await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let a = ldap_sign_in(&app, "carol", "pw-carol").await;
    assert_eq!(a.status, 200, "{:?}", a.body);

    // A burst of parallel guesses from a third address.
    let guesses = (0..20).map(|i| {
        let url = app.url("/api/v1/auth/ldap");
        async move {
            let c = reqwest::Client::builder()
                .local_address(std::net::IpAddr::from([127, 0, 0, 3]))
                .build()
                .expect("client");
            c.post(url)
                .json(&json!({"username": "ivy", "password": format!("burst-{i}")}))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    });
    let statuses = futures_util::future::join_all(guesses).await;
    let wrong = statuses.iter().filter(|s| **s == 401).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    let (ivy_binds, _) = dir.binds(&ldapd::dn_of("ivy"));
    eprintln!(
        "burst of 20: {wrong} checked (401), {limited} throttled (429); slapd saw {ivy_binds} binds for ivy"
    );
    assert_eq!(wrong + limited, 20, "{statuses:?}");
    assert!(wrong <= 5 && ivy_binds <= 5, "{wrong} / {ivy_binds}");
    let a = ldap_sign_in_from(&app, [127, 0, 0, 4], "ivy", "pw-ivy").await;
    assert_eq!(a.status, 200, "ivy from elsewhere: {:?}", a.body);
    // Refused guesses leave no rows behind (the table cannot be grown by hammering).
    {
        use meeting_appliance::db::entities::password_attempt as pa;
        use sea_orm::{ColumnTrait, Database, EntityTrait, PaginatorTrait, QueryFilter};
        let url = format!(
            "sqlite://{}?mode=rw",
            app.data_dir().join("meeting.db").display()
        );
        let db = Database::connect(&url).await.expect("open SQLite");
        let kept = pa::Entity::find()
            .filter(pa::Column::Login.eq("ivy"))
            .count(&db)
            .await
            .expect("count");
        assert_eq!(
            kept as usize,
            wrong + 1,
            "the checked guesses and the sign-in"
        );
        db.close().await.expect("close");
    }
    // Counted on /metrics.
    let metrics = support::api::client()
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for reason in ["ldap_throttled", "ldap_invalid"] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("meeting_sign_in_failures") && l.contains(reason)),
            "{reason} on /metrics"
        );
    }
    // Audited, throttled attempts included.
    let admin = token(&ldap_sign_in(&app, "dave", "pw-dave").await);
    let log = audit(&app, &admin, "action=sign_in").await;
    assert!(
        has(&log, |e| e["result"] == "throttled"
            && e["actor"] == "hank"
            && e["ip"] == "127.0.0.1"),
        "{log:#?}"
    );
    assert!(
        has(&log, |e| e["result"] == "ok" && e["ip"] == "127.0.0.2"),
        "{log:#?}"
    );
}

/// StartTLS on ldap:// with the private CA works; without the CA (the system's roots) the
/// directory's certificate is refused and nobody is signed in (503, audited); a plain
/// ldap:// URL to a non-loopback host without StartTLS is refused by the configuration check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_starttls_and_certificate_checks() {
    let dir = directory();
    let app = ldap_app(&dir, &dir.url(), &["--ldapStarttls"], &[]);
    let a = ldap_sign_in(&app, "bob", "pw-bob").await;
    assert_eq!(a.status, 200, "StartTLS: {:?}", a.body);
    drop(app);
    // No CA file: the system roots do not know the test CA.
    let app = Appliance::start(
        &[
            "--authMethods",
            "ldap",
            "--ldapUrl",
            &dir.ldaps_url(),
            "--ldapBindDn",
            ldapd::SERVICE_DN,
            "--ldapBindPassword",
            ldapd::SERVICE_PW,
            "--ldapUserBase",
            ldapd::PEOPLE,
        ],
        &[("MEETING_AUTH__ADMIN_EMAILS", "dave@corp.test")],
    );
    let a = ldap_sign_in(&app, "bob", "pw-bob").await;
    assert_eq!(
        (a.status, a.error_code()),
        (503, "directory_unavailable"),
        "{:?}",
        a.body
    );
    assert_eq!(
        dir.binds(&ldapd::dn_of("bob")).0,
        1,
        "no password was sent over the untrusted connection (the one bind is StartTLS's)"
    );
    let out = support::run_cli(
        support::appliance_bin!(),
        &[
            "check-config",
            "--authMethods",
            "ldap",
            "--ldapUrl",
            "ldap://dc1.example.com",
            "--ldapUserBase",
            "ou=people,dc=example,dc=com",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in the clear"), "{err}");
}

/// OpenID Connect with a real, certified provider (`oidc-provider`, node) and Chromium, on an
/// appliance offering all three methods: the sign-in page shows them; LDAP through the form;
/// the provider's login and consent pages lead back to our home page; a replayed callback, a
/// tampered `state`, a replayed code (with another login's PKCE verifier, as any replay
/// through our callback has) and an ID token issued to another client are refused;
/// sign-out ends the provider's session too (it asks for the password again); disabling the
/// person at the provider ends their meeting connection within `auth.recheck_every` while a
/// guest stays. The audit log shows each event.
#[test]
fn oidc_in_chromium_attacks_logout_and_disable() {
    if !support::media::enter_private_netns("oidc_in_chromium_attacks_logout_and_disable") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = directory();
    let port = support::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let provider = support::oidc::OidcProvider::start(
        &base,
        &json!({
            "alice": {"email": "alice@corp.test", "name": "Alice Example", "groups": ["staff"]},
            "root": {"email": "root@corp.test", "name": "Root Admin", "groups": ["it-admins"]},
            "una": {"email": "una@corp.test", "email_verified": false, "name": "Una Verified"},
        }),
    );
    let issuer = provider.issuer();
    let listen = format!("127.0.0.1:{port}");
    let recheck = Duration::from_secs(3);
    let app = ldap_app(
        &dir,
        &dir.ldaps_url(),
        &[
            "--listen",
            &listen,
            "--authMethods",
            "oidc,ldap,email_code",
            "--oidcDiscoveryUrl",
            &issuer,
            "--oidcClientId",
            support::oidc::CLIENT_ID,
            "--oidcClientSecret",
            support::oidc::CLIENT_SECRET,
            "--oidcName",
            "Test IdP",
        ],
        &[
            ("MEETING_AUTH__RECHECK_EVERY", "3s"),
            ("MEETING_AUTH__OIDC__SCOPES", "openid,email,profile,groups"),
            ("MEETING_AUTH__OIDC__CREATE_GROUPS", "staff"),
            ("MEETING_AUTH__OIDC__ADMIN_GROUPS", "it-admins"),
        ],
    );
    let context = || {
        let log = app.log_lines();
        format!(
            "appliance log tail:\n{}\nprovider log:\n{}",
            log[log.len().saturating_sub(60)..].join("\n"),
            provider.log()
        )
    };
    let mut sc = support::browser::Scenario::start(
        "sso.cjs",
        "oidc",
        &[("BASE", &base), ("ISSUER", &issuer), ("SHOTS", SHOTS)],
    );
    let mut disabled_at = None;
    let mut ended_after = None;
    let r: Value = loop {
        match sc.next(&["READY_DISABLE ", "ENDED ", "RESULT "], &context) {
            ("READY_DISABLE ", who) => {
                provider.disable(&who);
                disabled_at = Some(Instant::now());
                sc.cue("disabled");
            }
            ("ENDED ", _) => ended_after = disabled_at.map(|d| d.elapsed()),
            (_, r) => break serde_json::from_str(&r).expect("RESULT is JSON"),
        }
    };
    eprintln!("{r:#}");
    let tick = Duration::from_secs(1);
    let bound = recheck + tick + Duration::from_secs(10);
    // The sign-in page.
    assert_eq!(r["methods"], json!(["oidc", "ldap", "email_code"]));
    assert_eq!(r["oidc_button"], "Sign in with Test IdP");
    assert_eq!(r["ldap_button"], "Sign in with Corp Directory");
    assert_eq!(r["email_field"], true);
    assert_eq!(r["ldap_wrong"], "Wrong username or password.");
    assert_eq!(r["ldap_who"], "Signed in as bob@corp.test");
    // Through the provider's pages, back home.
    let pages = r["first_provider_pages"].to_string();
    assert!(
        pages.contains("login") && pages.contains("consent"),
        "{pages}"
    );
    assert_eq!(r["oidc_who"], "Signed in as alice@corp.test");
    assert_eq!(r["oidc_home_url"], format!("{base}/"));
    assert_eq!(r["first_answer"], "/");
    assert_eq!(r["callback_had_code"], true);
    // The attacks.
    let refused = |k: &str, code: &str| {
        let v = r[k].as_str().unwrap_or("");
        assert!(v.contains(&format!("sso_error={code}")), "{k}: {v}");
    };
    refused("replayed_url", "state_invalid");
    assert_eq!(r["still_signed_in_after_replay"], true);
    refused("tampered_state", "state_invalid");
    refused("replayed_code", "exchange_failed");
    assert_eq!(r["foreign_token"], "/?sso_error=token_invalid");
    assert_eq!(r["signed_in_after_foreign_token"], false);
    assert!(
        r["foreign_token_message"]
            .as_str()
            .unwrap_or("")
            .contains("could not be verified"),
        "{}",
        r["foreign_token_message"]
    );
    assert_eq!(
        provider.state()["swapped"],
        1,
        "the foreign token was served"
    );
    // RP-initiated logout: the provider's confirmation, then its login form again.
    assert!(
        r["logout_pages"].to_string().contains("logout"),
        "{}",
        r["logout_pages"]
    );
    assert_eq!(r["after_logout_url"], format!("{base}/"));
    assert!(
        r["pages_after_logout"].to_string().contains("login"),
        "the provider asks for the password again: {}",
        r["pages_after_logout"]
    );
    // The groups claim: an administrator who may not create; an unverified email refused.
    assert_eq!(r["root"]["who"], "Signed in as root@corp.test");
    assert_eq!(r["root"]["admin_link"], true);
    assert_eq!(r["root"]["admin_page"], true);
    assert_eq!(r["root"]["can_start"], false);
    assert!(
        r["una"]["error"]
            .as_str()
            .unwrap_or("")
            .contains("does not confirm your email"),
        "{}",
        r["una"]
    );
    assert_eq!(r["una"]["me"], 401);
    // Disabled at the provider during a meeting.
    assert!(r["guest_sees_alice"]["ok"] == true && r["alice_sees_guest"]["ok"] == true);
    assert_eq!(r["ended"]["reason"], "removed");
    assert!(
        r["ended"]["text"]
            .as_str()
            .unwrap_or("")
            .starts_with("Your sign-in has ended"),
        "{}",
        r["ended"]
    );
    assert_eq!(r["me_after_disable"], 401);
    assert_eq!(r["guest_after"]["connected"], true, "the guest stays");
    assert!(
        provider.state()["refreshes"].as_u64().unwrap_or(0) > 0,
        "re-checks redeemed the refresh token: {}",
        provider.state()
    );
    let ended_after = ended_after.expect("ENDED seen");
    eprintln!(
        "alice's meeting connection ended {ended_after:?} after the provider disabled her (recheck_every {recheck:?})"
    );
    assert!(ended_after <= bound, "{ended_after:?}");
    // The audit log; and no way around the provider's "no" by email code.
    rt.block_on(async {
        let before = app.log_len();
        let a = call(
            "POST",
            &app.url("/api/v1/auth/code"),
            None,
            Some(json!({"email": "alice@corp.test"})),
        )
        .await;
        assert_eq!(a.status, 204);
        let line = app.wait_log_from(before, "Your sign-in code is ", Duration::from_secs(10));
        let at = line.find("Your sign-in code is ").expect("code") + 21;
        let v = call(
            "POST",
            &app.url("/api/v1/auth/verify"),
            None,
            Some(json!({"email": "alice@corp.test", "code": &line[at..at + 6]})),
        )
        .await;
        assert_eq!(
            (v.status, v.error_code()),
            (403, "account_disabled"),
            "{:?}",
            v.body
        );
        let admin = token(&ldap_sign_in(&app, "dave", "pw-dave").await);
        let log = audit(&app, &admin, "").await;
        let oidc = |result: &'static str, detail: &'static str| {
            move |e: &Value| {
                e["action"] == "sign_in"
                    && e["method"] == "oidc"
                    && e["result"] == result
                    && e["ip"] == "127.0.0.1"
                    && e["detail"].as_str().is_some_and(|d| d.contains(detail))
            }
        };
        assert!(
            has(&log, |e| oidc("ok", "")(e)
                && e["actor"] == "alice@corp.test"),
            "{log:#?}"
        );
        assert!(
            has(&log, oidc("failed", "state_invalid: state already used")),
            "{log:#?}"
        );
        assert!(
            has(&log, oidc("failed", "state_invalid: unknown state")),
            "{log:#?}"
        );
        assert!(
            has(
                &log,
                oidc(
                    "failed",
                    "exchange_failed: the provider refused the code: invalid_grant"
                )
            ),
            "{log:#?}"
        );
        assert!(has(&log, oidc("failed", "token_invalid")), "{log:#?}");
        assert!(
            has(&log, |e| oidc("failed", "email_unverified")(e)
                && e["actor"] == "una@corp.test"),
            "{log:#?}"
        );
        assert!(
            has(&log, |e| oidc("failed", "token_invalid")(e)
                && e["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("audience"))),
            "the foreign token failed on its audience: {log:#?}"
        );
        let ended: Vec<&Value> = log
            .iter()
            .filter(|e| {
                e["action"] == "session.ended_by_provider" && e["target"] == "alice@corp.test"
            })
            .collect();
        assert_eq!(ended.len(), 1, "after the disable: {log:#?}");
        assert!(
            ended[0]["detail"].as_str().is_some_and(
                |d| d.contains("invalid_grant") && d.contains("1 meeting connection(s) closed")
            ),
            "{ended:#?}"
        );
        assert!(
            has(&log, |e| e["action"] == "sign_out" && e["method"] == "oidc"),
            "{log:#?}"
        );
        assert!(
            has(&log, |e| e["action"] == "sign_in"
                && e["method"] == "ldap"
                && e["result"] == "failed"
                && e["actor"] == "bob"),
            "{log:#?}"
        );
    });
}

/// Administrators end people's access from the API and from the admin page: disabling
/// revokes every session, closes open meeting connections at once and refuses new sign-ins
/// (by code too) until enabled; "sign out everywhere" revokes sessions but allows signing in
/// again; only administrators may, and not on themselves. The page lists people, filters the
/// audit log and exports it as JSON lines (also in Chinese).
#[test]
fn admins_disable_and_revoke_from_api_and_page() {
    if !support::media::enter_private_netns("admins_disable_and_revoke_from_api_and_page") {
        return;
    }
    use support::media::sign_in_from_log;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let app = Appliance::start(
        &["--udpPort", "0", "--sfuWorkers", "1"],
        &[("MEETING_AUTH__ADMIN_EMAILS", "admin@corp.test")],
    );
    let url = |p: &str| app.url(p);
    let (carol_ws, carol_rx, dan_ws, dan_rx) = rt.block_on(async {
        let admin = sign_in_from_log(&app, "admin@corp.test").await;
        let carol = sign_in_from_log(&app, "carol@corp.test").await;
        let room = call(
            "POST",
            &url("/api/v1/meetings"),
            Some(&carol),
            Some(json!({})),
        )
        .await;
        let code = room.body["code"].as_str().expect("code").to_string();
        let (carol_ws, mut carol_rx, _) = open_connection(&app, &carol, &code).await;
        let users = call("GET", &url("/api/v1/admin/users"), Some(&admin), None).await;
        assert_eq!(users.status, 200, "{:?}", users.body);
        let row = |email: &str| {
            users.body["users"]
                .as_array()
                .and_then(|u| u.iter().find(|r| r["email"] == email).cloned())
                .unwrap_or_else(|| panic!("{email} listed: {:?}", users.body))
        };
        let c = row("carol@corp.test");
        assert_eq!(
            (c["sessions"].clone(), c["methods"].clone()),
            (json!(1), json!(["email_code"]))
        );
        assert_eq!(c["last_ip"], "127.0.0.1");
        let carol_id = c["id"].as_i64().expect("id");
        let admin_id = row("admin@corp.test")["id"].as_i64().expect("id");
        // Only administrators, and not on themselves.
        let a = call(
            "POST",
            &url(&format!("/api/v1/admin/users/{admin_id}/disable")),
            Some(&carol),
            None,
        )
        .await;
        assert_eq!((a.status, a.error_code()), (403, "not_admin"));
        let a = call("GET", &url("/api/v1/admin/users"), Some(&carol), None).await;
        assert_eq!(a.status, 403);
        let a = call(
            "POST",
            &url(&format!("/api/v1/admin/users/{admin_id}/disable")),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!((a.status, a.error_code()), (409, "cannot_disable_self"));
        let a = call(
            "POST",
            &url("/api/v1/admin/users/999999/disable"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(a.status, 404);
        // Disable: sessions and the open connection end now.
        let a = call(
            "POST",
            &url(&format!("/api/v1/admin/users/{carol_id}/disable")),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(a.status, 200, "{:?}", a.body);
        assert_eq!(
            (
                a.body["sessions_revoked"].clone(),
                a.body["connections_closed"].clone()
            ),
            (json!(1), json!(1))
        );
        let (reason, took) = wait_closed(&mut carol_rx, Duration::from_secs(10)).await;
        eprintln!("carol's connection closed {took:?} after the disable ({reason})");
        assert_eq!(reason, "removed");
        assert_eq!(
            call("GET", &url("/api/v1/me"), Some(&carol), None)
                .await
                .status,
            401
        );
        // No new sign-in, by code either.
        let before = app.log_len();
        assert_eq!(
            call(
                "POST",
                &url("/api/v1/auth/code"),
                None,
                Some(json!({"email": "carol@corp.test"}))
            )
            .await
            .status,
            204
        );
        let line = app.wait_log_from(before, "Your sign-in code is ", Duration::from_secs(10));
        let at = line.find("Your sign-in code is ").expect("code") + 21;
        let v = call(
            "POST",
            &url("/api/v1/auth/verify"),
            None,
            Some(json!({"email": "carol@corp.test", "code": &line[at..at + 6]})),
        )
        .await;
        assert_eq!(
            (v.status, v.error_code()),
            (403, "account_disabled"),
            "{:?}",
            v.body
        );
        // Enabled again: she may sign in.
        let a = call(
            "POST",
            &url(&format!("/api/v1/admin/users/{carol_id}/enable")),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(a.status, 200, "{:?}", a.body);
        let carol2 = sign_in_from_log(&app, "carol@corp.test").await;
        let carol3 = sign_in_from_log(&app, "carol@corp.test").await;
        // Sign out everywhere: both sessions end; signing in again works.
        let a = call(
            "POST",
            &url(&format!("/api/v1/admin/users/{carol_id}/revoke")),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(a.status, 200, "{:?}", a.body);
        assert_eq!(a.body["sessions_revoked"], 2);
        for t in [&carol2, &carol3] {
            assert_eq!(
                call("GET", &url("/api/v1/me"), Some(t), None).await.status,
                401
            );
        }
        let _carol4 = sign_in_from_log(&app, "carol@corp.test").await;
        // The audit log.
        let log = audit(&app, &admin, "").await;
        for action in [
            "admin.disable_user",
            "admin.enable_user",
            "admin.revoke_sessions",
        ] {
            assert!(
                has(&log, |e| e["action"] == action
                    && e["actor"] == "admin@corp.test"
                    && e["target"] == "carol@corp.test"
                    && e["ip"] == "127.0.0.1"),
                "{action}: {log:#?}"
            );
        }
        assert!(
            has(&log, |e| e["action"] == "sign_in"
                && e["method"] == "email_code"
                && e["result"] == "refused"
                && e["actor"] == "carol@corp.test"),
            "{log:#?}"
        );
        // For the page: dan in a meeting, erin with a session.
        let dan = sign_in_from_log(&app, "dan@corp.test").await;
        let (dan_ws, dan_rx, _) = open_connection(&app, &dan, &code).await;
        sign_in_from_log(&app, "erin@corp.test").await;
        (carol_ws, carol_rx, dan_ws, dan_rx)
    });
    drop((carol_ws, carol_rx));
    let mut sc = support::browser::Scenario::start(
        "sso.cjs",
        "admin",
        &[("BASE", &app.base_url()), ("SHOTS", SHOTS)],
    );
    let context = || {
        let log = app.log_lines();
        log[log.len().saturating_sub(40)..].join("\n")
    };
    let r: Value = loop {
        match sc.next(&["NEED_CODE ", "RESULT "], &context) {
            ("NEED_CODE ", _) => {
                let line = app.wait_log("Your sign-in code is ", Duration::from_secs(10));
                let lines = app.log_lines();
                let last = lines
                    .iter()
                    .rev()
                    .find(|l| l.contains("Your sign-in code is "))
                    .unwrap_or(&line);
                let at = last.find("Your sign-in code is ").expect("code") + 21;
                sc.cue(&last[at..at + 6]);
            }
            (_, r) => break serde_json::from_str(&r).expect("RESULT is JSON"),
        }
    };
    eprintln!("{r:#}");
    assert!(
        r["people_before"].as_array().is_some_and(|rows| rows
            .iter()
            .any(|row| row[0] == "dan@corp.test" && row[3] == "active")),
        "{}",
        r["people_before"]
    );
    assert_eq!(r["dan_after"][3], "disabled");
    assert_eq!(r["dan_after"][4], "0");
    assert_eq!(r["dan_enable_button"], true);
    assert_eq!(r["erin_after"][3], "active");
    let filtered = r["audit_filtered"].as_array().expect("rows");
    assert!(
        filtered
            .iter()
            .any(|row| row[1] == "admin.disable_user" && row[6] == "dan@corp.test"),
        "{filtered:?}"
    );
    assert!(
        r["audit"].as_array().is_some_and(|rows| rows
            .iter()
            .any(|row| row[1] == "admin.revoke_sessions" && row[6] == "erin@corp.test")),
        "{}",
        r["audit"]
    );
    assert!(r["export_name"].as_str().unwrap_or("").ends_with(".jsonl"));
    assert!(
        r["export_lines"].as_array().is_some_and(|l| l
            .iter()
            .any(|e| e["action"] == "admin.disable_user" && e["target"] == "dan@corp.test")),
        "the export has the entry"
    );
    assert_eq!(r["zh_people"], "用户");
    assert_eq!(r["zh_audit"], "审计日志");
    // Dan's connection was closed by the page's "disable".
    rt.block_on(async {
        let mut dan_rx = dan_rx;
        let (reason, _) = wait_closed(&mut dan_rx, Duration::from_secs(10)).await;
        assert_eq!(reason, "removed");
        drop(dan_ws);
    });
}

/// The audit log keeps `audit.retention`: at start (and hourly) older entries are deleted,
/// newer ones stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_retention() {
    use meeting_appliance::db::entities::audit as entry;
    use sea_orm::{
        ActiveValue::Set, ColumnTrait, Database, EntityTrait, PaginatorTrait, QueryFilter,
    };
    let dir = tempfile::tempdir().expect("dir");
    let env = [
        ("MEETING_AUTH__ADMIN_EMAILS", "admin@corp.test"),
        ("MEETING_AUDIT__RETENTION", "30days"),
    ];
    let app = Appliance::start_bin(support::appliance_bin!(), dir.path(), &[], &env);
    support::media::sign_in_from_log(&app, "admin@corp.test").await;
    app.stop();
    let db_url = format!(
        "sqlite://{}?mode=rw",
        dir.path().join("meeting.db").display()
    );
    let db = Database::connect(&db_url).await.expect("open SQLite");
    let now = meeting_appliance::util::now();
    for (age_days, what) in [(31, "old"), (29, "recent")] {
        entry::Entity::insert(entry::ActiveModel {
            at: Set(now - age_days * 86400),
            action: Set("sign_in".into()),
            result: Set("ok".into()),
            method: Set(Some(meeting_appliance::config::AuthMethod::EmailCode)),
            ip: Set(Some("192.0.2.1".into())),
            actor_id: Set(None),
            actor: Set(format!("{what}@corp.test")),
            target: Set(String::new()),
            meeting_id: Set(None),
            detail: Set(String::new()),
            ..Default::default()
        })
        .exec(&db)
        .await
        .expect("insert");
    }
    db.close().await.expect("close");
    let app = Appliance::start_bin(support::appliance_bin!(), dir.path(), &[], &env);
    app.wait_log("audit log pruned", Duration::from_secs(30));
    let db = Database::connect(&db_url).await.expect("open SQLite");
    let count = |who: &'static str| {
        let db = db.clone();
        async move {
            entry::Entity::find()
                .filter(entry::Column::Actor.eq(who))
                .count(&db)
                .await
                .expect("count")
        }
    };
    assert_eq!(
        count("old@corp.test").await,
        0,
        "older than the retention: deleted"
    );
    assert_eq!(count("recent@corp.test").await, 1, "within it: kept");
    assert!(count("admin@corp.test").await >= 1, "today's sign-in kept");
}

/// Starting OIDC sign-ins without finishing them is limited per client IP (each one is a row
/// until it expires); other addresses are unharmed. The configuration's flags and secrets:
/// `check-config` shows the sign-in settings with the client secret masked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_login_flood_is_limited_and_config_is_masked() {
    let port = support::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let provider = support::oidc::OidcProvider::start(&base, &json!({}));
    let issuer = provider.issuer();
    let listen = format!("127.0.0.1:{port}");
    let args = [
        "--listen",
        listen.as_str(),
        "--authMethods",
        "oidc",
        "--oidcDiscoveryUrl",
        &issuer,
        "--oidcClientId",
        support::oidc::CLIENT_ID,
        "--oidcClientSecret",
        support::oidc::CLIENT_SECRET,
    ];
    let app = Appliance::start(&args, &[]);
    let client = |from: [u8; 4]| {
        meeting_appliance::util::install_ring_provider();
        reqwest::Client::builder()
            .local_address(std::net::IpAddr::from(from))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client")
    };
    let start = |c: reqwest::Client| {
        let u = app.url("/api/v1/auth/oidc/login?next=/");
        async move {
            let r = c.get(u).send().await.expect("login");
            r.headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
                .unwrap_or("")
                .to_string()
        }
    };
    let mut to_provider = 0;
    let mut limited = 0;
    for _ in 0..40 {
        let loc = start(client([127, 0, 0, 5])).await;
        if loc.starts_with(&format!("{issuer}/auth?")) {
            assert!(
                loc.contains("code_challenge_method=S256")
                    && loc.contains("nonce=")
                    && loc.contains("state="),
                "{loc}"
            );
            to_provider += 1;
        } else if loc == "/?sso_error=rate_limited" {
            limited += 1;
        } else {
            panic!("unexpected answer {loc:?}");
        }
    }
    eprintln!(
        "40 unfinished sign-ins from one address: {to_provider} sent to the provider, {limited} refused"
    );
    assert_eq!((to_provider, limited), (30, 10));
    let loc = start(client([127, 0, 0, 6])).await;
    assert!(
        loc.starts_with(&format!("{issuer}/auth?")),
        "another address is unharmed: {loc}"
    );
    // The configuration with these flags, secrets masked.
    let out = support::run_cli(
        support::appliance_bin!(),
        &[&["check-config"], &args[2..]].concat(),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("methods = [\"oidc\"]"), "{text}");
    assert!(
        text.contains(&format!("discovery_url = \"{issuer}\"")),
        "{text}"
    );
    assert!(
        !text.contains(support::oidc::CLIENT_SECRET),
        "the secret is masked: {text}"
    );
    assert!(text.contains("client_secret = \"********\""), "{text}");
}

/// The same LDAP sign-in, throttling and audit on MariaDB (the seed's database): the new
/// tables and columns work there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_on_mariadb() {
    let db = support::shared_mariadb();
    let name = db.unique_database("sso");
    let url = db.url_for(&name);
    let dir = directory();
    let app = ldap_app(
        &dir,
        &dir.ldaps_url(),
        &["--databaseUrl", &url],
        &[("MEETING_AUTH__PASSWORD_FAILURES_PER_LOGIN_PER_IP", "2")],
    );
    let dave = token(&ldap_sign_in(&app, "dave", "pw-dave").await);
    for _ in 0..2 {
        let a = ldap_sign_in(&app, "hank", "nope").await;
        assert_eq!(a.status, 401);
    }
    let a = ldap_sign_in(&app, "hank", "pw-hank").await;
    assert_eq!((a.status, a.error_code()), (429, "rate_limited"));
    let me = call("GET", &app.url("/api/v1/me"), Some(&dave), None).await;
    assert_eq!(
        (me.body["admin"].clone(), me.body["method"].clone()),
        (json!(true), json!("ldap"))
    );
    let log = audit(&app, &dave, "action=sign_in").await;
    assert!(
        has(&log, |e| e["result"] == "throttled" && e["actor"] == "hank"),
        "{log:#?}"
    );
    assert!(
        has(&log, |e| e["result"] == "ok"
            && e["actor"] == "dave@corp.test"),
        "{log:#?}"
    );
}

/// A provider on HTTPS with a private CA: with `auth.oidc.ca_file` discovery works and the
/// browser is sent to it; without, its certificate is refused and the sign-in page says the
/// provider cannot be reached (audited).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_provider_with_a_private_ca() {
    let ca = support::tls::TestCa::new();
    let dir = tempfile::tempdir().expect("dir");
    let ca_file = dir.path().join("idp-ca.pem");
    std::fs::write(&ca_file, &ca.pem).expect("write CA");
    let ca_path = ca_file.display().to_string();
    let port = support::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let provider = support::oidc::OidcProvider::start_tls(&base, &json!({}), &ca);
    let issuer = provider.issuer();
    assert!(issuer.starts_with("https://"), "{issuer}");
    let login = |app: &Appliance| {
        let u = app.url("/api/v1/auth/oidc/login");
        async move {
            meeting_appliance::util::install_ring_provider();
            let c = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client");
            let r = c.get(u).send().await.expect("login");
            r.headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
                .unwrap_or("")
                .to_string()
        }
    };
    let args = |ca: Option<&str>| {
        let mut a = vec![
            "--authMethods".to_string(),
            "oidc,email_code".into(),
            "--oidcDiscoveryUrl".into(),
            issuer.clone(),
            "--oidcClientId".into(),
            support::oidc::CLIENT_ID.into(),
            "--oidcClientSecret".into(),
            support::oidc::CLIENT_SECRET.into(),
        ];
        if ca.is_some() {
            a.extend(["--listen".to_string(), format!("127.0.0.1:{port}")]);
        }
        a
    };
    let with = args(Some(&ca_path));
    let with: Vec<&str> = with.iter().map(String::as_str).collect();
    let app = Appliance::start(&with, &[("MEETING_AUTH__OIDC__CA_FILE", &ca_path)]);
    let loc = login(&app).await;
    assert!(loc.starts_with(&format!("{issuer}/auth?")), "{loc}");
    drop(app);
    let without = args(None);
    let without: Vec<&str> = without.iter().map(String::as_str).collect();
    let app = Appliance::start(
        &without,
        &[("MEETING_AUTH__ADMIN_EMAILS", "admin@corp.test")],
    );
    let loc = login(&app).await;
    assert_eq!(loc, "/?sso_error=provider_unreachable");
    let admin = support::media::sign_in_from_log(&app, "admin@corp.test").await;
    let log = audit(&app, &admin, "action=sign_in").await;
    assert!(
        has(&log, |e| e["method"] == "oidc"
            && e["result"] == "refused"
            && e["detail"]
                .as_str()
                .is_some_and(|d| d.contains("discovery"))),
        "{log:#?}"
    );
}
