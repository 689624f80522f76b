//! Meetings over real HTTP: scheduling with emailed calendar invitations that a calendar
//! parser accepts, rescheduling (SEQUENCE+1), cancelling (METHOD:CANCEL), instant rooms, and
//! the join answer (a join token the sfuserver's verifier accepts, coturn-style TURN
//! credentials).

use crate::support;

use icalendar::{CalendarComponent, CalendarDateTime, Component, DatePerhapsTime};
use meeting_appliance::ids::MeetingId;
use meeting_appliance::tokens::{Keys, TokenError, turn_password};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use support::api::{Answer, call, mail_args, mails_to, nth_mail_to, sign_in};
use support::{Appliance, Mail, SmtpSink};

fn now() -> i64 {
    meeting_appliance::util::now()
}

struct Ics {
    method: String,
    uid: String,
    sequence: u32,
    start: i64,
    end: i64,
    organizer: String,
    summary: String,
    status: String,
    attendees: usize,
}

fn ts(d: Option<DatePerhapsTime>) -> i64 {
    match d {
        Some(DatePerhapsTime::DateTime(CalendarDateTime::Utc(dt))) => dt.timestamp(),
        other => panic!("expected a UTC date-time, got {other:?}"),
    }
}

/// Parses the text/calendar part of an invitation mail with the icalendar crate.
fn ics_of(mail: &Mail) -> Ics {
    let (ct, body) = mail.part("text/calendar").expect("a text/calendar part");
    let cal: icalendar::Calendar = body.parse().expect("the invitation parses as iCalendar");
    let method = cal.property_value("METHOD").expect("METHOD").to_string();
    assert!(
        ct.to_ascii_lowercase()
            .contains(&format!("method={}", method.to_ascii_lowercase())),
        "{ct}"
    );
    assert!(
        mail.mimetypes().iter().any(|m| m == "application/ics"),
        "an invite.ics attachment too"
    );
    let ev = match cal.components.first() {
        Some(CalendarComponent::Event(e)) => e.clone(),
        other => panic!("expected one VEVENT, got {other:?}"),
    };
    Ics {
        method,
        uid: ev.get_uid().expect("UID").to_string(),
        sequence: ev.get_sequence().expect("SEQUENCE"),
        start: ts(ev.get_start()),
        end: ts(ev.get_end()),
        organizer: ev
            .property_value("ORGANIZER")
            .expect("ORGANIZER")
            .to_string(),
        summary: ev.get_summary().expect("SUMMARY").to_string(),
        status: ev.property_value("STATUS").expect("STATUS").to_string(),
        attendees: ev
            .multi_properties()
            .get("ATTENDEE")
            .map(Vec::len)
            .unwrap_or(0),
    }
}

fn start(extra: &[&str]) -> (SmtpSink, Appliance) {
    let sink = SmtpSink::start();
    let mut args = mail_args(sink.port());
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let app = Appliance::start(&args, &[]);
    (sink, app)
}

async fn post(app: &Appliance, path: &str, token: Option<&str>, body: serde_json::Value) -> Answer {
    call("POST", &app.url(path), token, Some(body)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_reschedule_cancel_send_calendar_mail() {
    let (sink, app) = start(&[]);
    let ann = sign_in(&app, &sink, "ann@corp.test").await;
    let begin = now() + 3600;
    let end = begin + 1800;
    let a = post(
        &app,
        "/api/v1/meetings",
        Some(&ann),
        json!({"title": "Budget review", "begin_at": begin, "end_at": end,
               "invitees": ["bob@corp.test", "Cy@Other.test", "ann@corp.test", "bob@corp.test"]}),
    )
    .await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    assert_eq!(a.body["kind"], "scheduled");
    assert_eq!(
        a.body["invitees"],
        json!(["bob@corp.test", "cy@other.test"])
    );
    let id = a.body["id"].as_i64().expect("id");
    let join_url = a.body["join_url"].as_str().expect("join_url").to_string();
    assert!(
        join_url.starts_with(&app.base_url()) && join_url.contains("/m/"),
        "{join_url}"
    );

    // Two invitations, one per invitee; the owner gets none.
    let bob1 = ics_of(&nth_mail_to(&sink, "bob@corp.test", 1));
    let cy1_mail = nth_mail_to(&sink, "cy@other.test", 1);
    let cy1 = ics_of(&cy1_mail);
    assert_eq!(
        mails_to(&sink, "ann@corp.test").len(),
        1,
        "ann got only her sign-in code"
    );
    for i in [&bob1, &cy1] {
        assert_eq!(i.method, "REQUEST");
        assert_eq!((i.start, i.end), (begin, end));
        assert_eq!(i.organizer, "mailto:ann@corp.test");
        assert_eq!(i.summary, "Budget review");
        assert_eq!(i.sequence, 0);
        assert_eq!(i.status, "CONFIRMED");
        assert_eq!(i.attendees, 2);
    }
    assert_eq!(bob1.uid, cy1.uid, "one UID per meeting");
    assert!(
        cy1_mail.text_body().contains(&join_url),
        "the mail carries the join link"
    );

    // An invitee sees it but cannot change it.
    let bob = sign_in(&app, &sink, "bob@corp.test").await;
    let list = call("GET", &app.url("/api/v1/meetings"), Some(&bob), None).await;
    assert_eq!(list.status, 200);
    assert!(
        list.body
            .as_array()
            .expect("array")
            .iter()
            .any(|m| m["id"] == id && m["is_owner"] == false)
    );
    let a = call(
        "PATCH",
        &app.url(&format!("/api/v1/meetings/{id}")),
        Some(&bob),
        Some(json!({"title": "x"})),
    )
    .await;
    assert_eq!((a.status, a.error_code()), (403, "not_owner"));

    // Reschedule: same UID, SEQUENCE 1, new times, to both invitees.
    let (begin2, end2) = (begin + 7200, begin + 9000);
    let a = call(
        "PATCH",
        &app.url(&format!("/api/v1/meetings/{id}")),
        Some(&ann),
        Some(json!({"begin_at": begin2, "end_at": end2})),
    )
    .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["sequence"], 1);
    // bob's 2nd mail is his sign-in code; the update is his 3rd.
    let bob2 = ics_of(&nth_mail_to(&sink, "bob@corp.test", 3));
    let cy2 = ics_of(&nth_mail_to(&sink, "cy@other.test", 2));
    for i in [&bob2, &cy2] {
        assert_eq!(
            (i.method.as_str(), i.sequence, i.start, i.end),
            ("REQUEST", 1, begin2, end2)
        );
        assert_eq!(i.uid, bob1.uid);
    }

    // Cancel: METHOD:CANCEL, SEQUENCE 2, same UID.
    let a = call(
        "DELETE",
        &app.url(&format!("/api/v1/meetings/{id}")),
        Some(&ann),
        None,
    )
    .await;
    assert_eq!(a.status, 204, "{:?}", a.body);
    let bob3 = ics_of(&nth_mail_to(&sink, "bob@corp.test", 4));
    let cy3 = ics_of(&nth_mail_to(&sink, "cy@other.test", 3));
    for i in [&bob3, &cy3] {
        assert_eq!(
            (i.method.as_str(), i.sequence, i.status.as_str()),
            ("CANCEL", 2, "CANCELLED")
        );
        assert_eq!(i.uid, bob1.uid);
    }
    let m = call(
        "GET",
        &app.url(&format!("/api/v1/meetings/{id}")),
        Some(&ann),
        None,
    )
    .await;
    assert_eq!(m.body["status"], "cancelled");
    let code = m.body["code"].as_str().expect("code");
    let a = post(&app, &format!("/api/v1/join/{code}"), Some(&ann), json!({})).await;
    assert_eq!((a.status, a.error_code()), (410, "meeting_cancelled"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitee_changes_send_invites_and_cancellations() {
    let (sink, app) = start(&[]);
    let ann = sign_in(&app, &sink, "ann@corp.test").await;
    let begin = now() + 3600;
    let a = post(
        &app,
        "/api/v1/meetings",
        Some(&ann),
        json!({"title": "Sync", "begin_at": begin, "end_at": begin + 600, "invitees": ["bob@corp.test"]}),
    )
    .await;
    let id = a.body["id"].as_i64().expect("id");
    nth_mail_to(&sink, "bob@corp.test", 1);
    let a = call(
        "PATCH",
        &app.url(&format!("/api/v1/meetings/{id}")),
        Some(&ann),
        Some(json!({"invitees": ["dan@corp.test"]})),
    )
    .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let bob = ics_of(&nth_mail_to(&sink, "bob@corp.test", 2));
    assert_eq!(
        (bob.method.as_str(), bob.sequence),
        ("CANCEL", 1),
        "removed invitee is cancelled"
    );
    let dan = ics_of(&nth_mail_to(&sink, "dan@corp.test", 1));
    assert_eq!(
        (dan.method.as_str(), dan.sequence),
        ("REQUEST", 1),
        "added invitee is invited"
    );
    assert_eq!(dan.uid, bob.uid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instant_room_and_join_answer() {
    let (sink, app) = start(&[]);
    let ann = sign_in(&app, &sink, "ann@corp.test").await;
    let a = post(&app, "/api/v1/meetings", Some(&ann), json!({})).await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    assert_eq!(
        (a.body["kind"].as_str(), a.body["begin_at"].as_i64()),
        (Some("instant"), Some(0))
    );
    let id = a.body["id"].as_i64().expect("id");
    let code = a.body["code"].as_str().expect("code").to_string();
    // One personal room per user: asking again returns the same one.
    let again = post(
        &app,
        "/api/v1/meetings",
        Some(&ann),
        json!({"title": "Ann's room"}),
    )
    .await;
    assert_eq!(
        (again.status, again.body["code"].as_str()),
        (200, Some(code.as_str()))
    );
    assert_eq!(again.body["title"], "Ann's room");

    let j = post(&app, &format!("/api/v1/join/{code}"), Some(&ann), json!({})).await;
    assert_eq!(j.status, 200, "{:?}", j.body);
    assert_eq!(j.body["host"], true);
    let secret = std::fs::read_to_string(app.data_dir().join("secret")).expect("generated secret");
    let keys = Keys::derive(secret.trim());
    let token = j.body["token"].as_str().expect("token");
    let claims = keys
        .verify_join(token, MeetingId(id), now())
        .expect("the sfuserver's verifier accepts it");
    assert_eq!(
        claims.participant.as_str(),
        j.body["participant_id"].as_str().expect("pid")
    );
    assert_eq!(claims.sfu, app.addr().to_string());
    assert!(claims.exp > now() && claims.exp <= now() + 300);
    assert_eq!(
        keys.verify_join(token, MeetingId(id + 1), now()),
        Err(TokenError::WrongMeeting)
    );
    assert_eq!(
        j.body["sfu"]["signal_url"],
        format!("ws://{}/sfu/v1/signal/{id}", app.addr())
    );
    assert_eq!(j.body["fs"]["url"], app.base_url());
    // TURN: coturn's REST scheme with the deployment's TURN secret.
    let turn = &j.body["ice_servers"][1];
    let user = turn["username"].as_str().expect("username");
    // `expiry:meeting.participant`: the TURN server caps allocations per meeting by it.
    let (expiry, who) = user.split_once(':').expect("expiry:meeting.participant");
    assert!(expiry.parse::<i64>().expect("expiry") > now() + 3600);
    assert_eq!(who, format!("{id}.{}", claims.participant.as_str()));
    assert_eq!(turn["credential"], turn_password(keys.turn_secret(), user));
    let urls: Vec<&str> = turn["urls"]
        .as_array()
        .expect("urls")
        .iter()
        .filter_map(|u| u.as_str())
        .collect();
    // The meeting's turnserver (this box's, on the port it really bound), over UDP and TCP.
    let port = urls[0]
        .strip_prefix("turn:127.0.0.1:")
        .and_then(|r| r.strip_suffix("?transport=udp"))
        .and_then(|p| p.parse::<u16>().ok())
        .expect("turn:127.0.0.1:<port>?transport=udp");
    assert!(port > 0);
    assert_eq!(urls[1], format!("turn:127.0.0.1:{port}?transport=tcp"));

    // Guests: a name is required; then they join as non-hosts.
    let g = post(&app, &format!("/api/v1/join/{code}"), None, json!({})).await;
    assert_eq!((g.status, g.error_code()), (400, "display_name_required"));
    let g = post(
        &app,
        &format!("/api/v1/join/{code}"),
        None,
        json!({"display_name": "Visitor"}),
    )
    .await;
    assert_eq!(
        (
            g.status,
            g.body["host"].as_bool(),
            g.body["display_name"].as_str()
        ),
        (200, Some(false), Some("Visitor"))
    );
    // The owner closes the room to guests.
    let a = call(
        "PATCH",
        &app.url(&format!("/api/v1/meetings/{id}")),
        Some(&ann),
        Some(json!({"guests_allowed": false})),
    )
    .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let g = post(
        &app,
        &format!("/api/v1/join/{code}"),
        None,
        json!({"display_name": "Visitor"}),
    )
    .await;
    assert_eq!(g.status, 401);
    // Unknown codes.
    let g = post(
        &app,
        "/api/v1/join/abc-defg-hjk",
        None,
        json!({"display_name": "V"}),
    )
    .await;
    assert_eq!((g.status, g.error_code()), (404, "not_found"));
    let g = post(
        &app,
        "/api/v1/join/..%2F..%2Fetc",
        None,
        json!({"display_name": "V"}),
    )
    .await;
    assert_eq!(g.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meeting_input_is_validated() {
    let (sink, app) = start(&["--allowedDomains", "corp.test"]);
    let ann = sign_in(&app, &sink, "ann@corp.test").await;
    let t = now();
    let cases = [
        (
            json!({"title": "x", "begin_at": t + 3600, "end_at": t + 60}),
            "invalid_time",
        ),
        (
            json!({"title": "x", "begin_at": t - 7200, "end_at": t - 3600}),
            "invalid_time",
        ),
        (
            json!({"title": "x", "begin_at": t + 60, "end_at": t + 60 + 3 * 86400}),
            "invalid_time",
        ),
        (
            json!({"title": "y".repeat(201), "begin_at": t + 60, "end_at": t + 120}),
            "invalid_title",
        ),
        (
            json!({"title": " ", "begin_at": t + 60, "end_at": t + 120}),
            "invalid_title",
        ),
        (
            json!({"title": "x", "begin_at": t + 60, "end_at": t + 120, "invitees": ["nope"]}),
            "invalid_email",
        ),
        (
            json!({"title": "x", "begin_at": t + 60, "end_at": t + 120, "colour": "red"}),
            "invalid_json",
        ),
        (json!({"title": 5}), "invalid_json"),
        (json!({"end_at": t + 60}), "invalid_request"),
    ];
    for (body, code) in cases {
        let a = post(&app, "/api/v1/meetings", Some(&ann), body.clone()).await;
        assert_eq!(
            (a.status, a.error_code()),
            (400, code),
            "{body} → {:?}",
            a.body
        );
        assert!(a.body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let a = post(&app, "/api/v1/meetings", None, json!({})).await;
    assert_eq!(a.status, 401);
    // Outside allowed_domains: may sign in (to join), may not create.
    let out = sign_in(&app, &sink, "xena@other.test").await;
    let a = post(&app, "/api/v1/meetings", Some(&out), json!({})).await;
    assert_eq!((a.status, a.error_code()), (403, "not_allowed_to_create"));
    let me = call("GET", &app.url("/api/v1/me"), Some(&out), None).await;
    assert_eq!(me.body["can_create"], false);
    // Nobody sees a meeting they are not part of.
    let mine = post(&app, "/api/v1/meetings", Some(&ann), json!({})).await;
    let id = mine.body["id"].as_i64().expect("id");
    let a = call(
        "GET",
        &app.url(&format!("/api/v1/meetings/{id}")),
        Some(&out),
        None,
    )
    .await;
    assert_eq!(a.status, 404);
    let a = call(
        "GET",
        &app.url("/api/v1/meetings/notanumber"),
        Some(&ann),
        None,
    )
    .await;
    assert_eq!(a.status, 404);
    assert_eq!(a.error_code(), "not_found");
}

/// An allocator in the seed's protocol that hands out a new sfuserver and turnserver on every
/// request (`sfu-N.test:443`), slowly, so that joins asking at the same time overlap.
/// Answers how many SFUTURN requests it got.
fn allocator_giving_a_new_server_each_time() -> (String, std::sync::Arc<AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind allocator");
    let url = format!("http://{}/alloc", listener.local_addr().expect("address"));
    let asked = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let counter = counter.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let n = conn.read(&mut buf).unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]);
                let k = if head.contains("Kind=SFUTURN") {
                    counter.fetch_add(1, SeqCst) + 1
                } else {
                    0
                };
                std::thread::sleep(std::time::Duration::from_millis(300));
                let body = format!(
                    r#"{{"sfu": "sfu-{k}.test:443", "turn": "turn-{k}.test:3478", "fs": "fs.test:443"}}"#
                );
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    (url, asked)
}

/// A meeting's sfuserver is lost; several people join at once, each finding it down. They are
/// all sent to one new sfuserver (the first assignment stored), not each to their own.
async fn concurrent_joins_after_sfuserver_loss(database_url: &str) {
    let (alloc_url, asked) = allocator_giving_a_new_server_each_time();
    let sink = SmtpSink::start();
    let mut args = mail_args(sink.port());
    args.extend(["--allocateserver".into(), alloc_url]);
    args.extend(["--databaseUrl".into(), database_url.to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let dir = tempfile::tempdir().expect("data dir");
    let bin = env!("CARGO_BIN_EXE_meeting-appliance");

    let app = Appliance::start_bin(bin, dir.path(), &args, &[]);
    let ann = sign_in(&app, &sink, "ann@corp.test").await;
    let room = post(&app, "/api/v1/meetings", Some(&ann), json!({})).await;
    assert_eq!(room.status, 201, "{:?}", room.body);
    let code = room.body["code"].as_str().expect("code").to_string();
    app.stop();

    // The registry starts from what the last run knew: the meeting's sfuserver, down.
    let db = sea_orm::Database::connect(database_url)
        .await
        .expect("database");
    sea_orm::ConnectionTrait::execute_unprepared(
        &db,
        &format!(
            "INSERT INTO nodes (id, role, address, capacity, version, state, `load`, last_seen) \
             VALUES ('sfuserver@sfu-1.test:443', 'sfuserver', 'sfu-1.test:443', 100, 'test', \
             'down', 0, {})",
            now()
        ),
    )
    .await
    .expect("mark the sfuserver down");
    db.close().await.expect("close");

    let app = Appliance::start_bin(bin, dir.path(), &args, &[]);
    let join_path = format!("/api/v1/join/{code}");
    let asked_before = asked.load(SeqCst);
    let joins = (0..8).map(|i| {
        post(
            &app,
            &join_path,
            None,
            json!({"display_name": format!("G{i}")}),
        )
    });
    let answers = futures_util::future::join_all(joins).await;
    let sfus: std::collections::BTreeSet<String> = answers
        .iter()
        .map(|a| {
            assert_eq!(a.status, 200, "{:?}", a.body);
            a.body["sfu"]["address"].as_str().expect("sfu").to_string()
        })
        .collect();
    assert_eq!(
        sfus.len(),
        1,
        "joins were sent to different sfuservers: {sfus:?}"
    );
    assert!(!sfus.contains("sfu-1.test:443"), "{sfus:?}");
    // One of the racing joins asked the allocator; the others took its answer.
    assert_eq!(
        asked.load(SeqCst) - asked_before,
        1,
        "the allocator was asked more than once"
    );
    // Later joins get the same one without asking again.
    let before = asked.load(SeqCst);
    let again = post(&app, &join_path, None, json!({"display_name": "Late"})).await;
    assert_eq!(
        again.body["sfu"]["address"].as_str(),
        sfus.first().map(String::as_str)
    );
    assert_eq!(asked.load(SeqCst), before);
    app.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_joins_after_sfuserver_loss_agree_on_one_sfuserver() {
    let dir = tempfile::tempdir().expect("db dir");
    let sqlite = format!("sqlite://{}/cas.db?mode=rwc", dir.path().display());
    concurrent_joins_after_sfuserver_loss(&sqlite).await;
    let db = support::shared_mariadb();
    let url = db.url_for(&db.unique_database("cas"));
    concurrent_joins_after_sfuserver_loss(&url).await;
}
