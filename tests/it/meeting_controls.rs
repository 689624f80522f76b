//! Running a meeting, against the real binary: per-meeting settings through
//! `PATCH /api/v1/meetings/{id}`, the passcode (hashed, mailed, its wrong attempts limited),
//! roles and the lobby at the join answer and at the sfuserver (a waiting guest's direct
//! signaling, notes and files are refused), co-hosts' host powers over HTTP; then the web
//! client end to end in headless Chromium (tests/browser/controls.cjs) inside a private
//! network namespace.
//!
//! These appliances run with the product's default lobby ("guests"); the other test files
//! turn it off (tests/support `TEST_LOBBY`).

use crate::support;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use support::api::{call, mail_args, mails_to, sign_in};
use support::browser::Scenario;
use support::media::enter_private_netns;
use support::split::loopback_deployment;
use support::{Appliance, SmtpSink};
use tokio_tungstenite::tungstenite::Message;

const PRODUCT_LOBBY: (&str, &str) = ("MEETING_MEETINGS__LOBBY", "guests");

fn start(sink: &SmtpSink) -> Appliance {
    let args = mail_args(sink.port());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Appliance::start(&args, &[PRODUCT_LOBBY])
}

async fn join(
    app: &Appliance,
    code: &str,
    token: Option<&str>,
    body: Value,
) -> support::api::Answer {
    call(
        "POST",
        &app.url(&format!("/api/v1/join/{code}")),
        token,
        Some(body),
    )
    .await
}

/// A raw signaling session: sends `join`, returns the socket and the first message.
async fn signal(answer: &Value) -> (support::api::Presence, Value) {
    let mut ws = support::signal::connect(answer).await.ws;
    let first = next_json(&mut ws).await;
    (support::api::Presence { ws }, first)
}

async fn next_json(ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>) -> Value {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                return serde_json::from_str(&t).expect("json from the sfuserver");
            }
            Ok(Some(Ok(_))) => continue,
            other => panic!("no message from the sfuserver: {other:?}"),
        }
    }
}

/// Reads messages until one of `ty` (skipping others), within 10 s.
async fn until_type(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    ty: &str,
) -> Value {
    loop {
        let m = next_json(ws).await;
        if m["type"] == ty {
            return m;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_are_patched_checked_and_shown_by_role() {
    let sink = SmtpSink::start();
    let app = start(&sink);
    let owner = sign_in(&app, &sink, "owner@corp.test").await;
    let co = sign_in(&app, &sink, "co@corp.test").await;
    let other = sign_in(&app, &sink, "other@corp.test").await;
    let m = call(
        "POST",
        &app.url("/api/v1/meetings"),
        Some(&owner),
        Some(json!({})),
    )
    .await;
    assert_eq!(m.status, 201, "{}", m.body);
    assert_eq!(m.body["lobby"], "guests", "the product's default lobby");
    assert_eq!(m.body["has_passcode"], false);
    let url = app.url(&format!("/api/v1/meetings/{}", m.body["id"]));

    let p = call(
        "PATCH",
        &url,
        Some(&owner),
        Some(json!({"lobby": "everyone", "passcode": "Tea4two", "cohosts": ["CO@corp.test", "owner@corp.test"],
                    "screen_share": "hosts", "chat_in_notes": true})),
    )
    .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(p.body["lobby"], "everyone");
    assert_eq!(p.body["passcode"], "Tea4two", "the owner sees the passcode");
    assert_eq!(
        p.body["cohosts"],
        json!(["co@corp.test"]),
        "normalized, owner left out"
    );
    assert_eq!(p.body["screen_share"], "hosts");
    assert_eq!(p.body["chat_in_notes"], true);

    // The co-host sees the meeting (and is a host there) but not the passcode, and may not
    // change or cancel it; someone else does not even learn it exists.
    let g = call("GET", &url, Some(&co), None).await;
    assert_eq!(g.status, 200, "{}", g.body);
    assert_eq!(g.body["is_host"], true);
    assert_eq!(g.body["has_passcode"], true);
    assert!(g.body.get("passcode").is_none(), "{}", g.body);
    let listed = call("GET", &app.url("/api/v1/meetings"), Some(&co), None).await;
    assert!(
        listed
            .body
            .as_array()
            .is_some_and(|l| l.iter().any(|x| x["id"] == m.body["id"]))
    );
    let denied = call("PATCH", &url, Some(&co), Some(json!({"lobby": "off"}))).await;
    assert_eq!((denied.status, denied.error_code()), (403, "not_owner"));
    let hidden = call("GET", &url, Some(&other), None).await;
    assert_eq!(hidden.status, 404);

    // Bad input: a clear error, and nothing changed.
    for (body, code) in [
        (json!({"lobby": "sometimes"}), "invalid_lobby"),
        (json!({"passcode": "abc"}), "invalid_passcode"),
        (json!({"passcode": "has space"}), "invalid_passcode"),
        (json!({"passcode": "x".repeat(33)}), "invalid_passcode"),
        (json!({"screen_share": "nobody"}), "invalid_screen_share"),
        (json!({"cohosts": ["not an email"]}), "invalid_email"),
        (json!({"lobby": "off", "surprise": 1}), "invalid_json"),
    ] {
        let r = call("PATCH", &url, Some(&owner), Some(body.clone())).await;
        assert_eq!(
            (r.status, r.error_code()),
            (400, code),
            "{body}: {}",
            r.body
        );
    }
    let g = call("GET", &url, Some(&owner), None).await;
    assert_eq!(g.body["lobby"], "everyone");
    assert_eq!(g.body["passcode"], "Tea4two");
    // Removing the passcode.
    let p = call("PATCH", &url, Some(&owner), Some(json!({"passcode": ""}))).await;
    assert_eq!(p.body["has_passcode"], false, "{}", p.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passcode_is_mailed_stored_hashed_and_guessing_it_is_limited() {
    let sink = SmtpSink::start();
    let app = start(&sink);
    let owner = sign_in(&app, &sink, "owner@corp.test").await;
    let ivy = sign_in(&app, &sink, "ivy@corp.test").await;
    let begin = meeting_appliance::util::now() + 3600;
    let m = call(
        "POST",
        &app.url("/api/v1/meetings"),
        Some(&owner),
        Some(
            json!({"title": "Budget", "begin_at": begin, "end_at": begin + 1800,
                    "invitees": ["ivy@corp.test"], "passcode": "Blue42x"}),
        ),
    )
    .await;
    assert_eq!(m.status, 201, "{}", m.body);
    let code = m.body["code"].as_str().expect("code").to_string();
    // The invitation carries the passcode and a link with it.
    let mail = support::api::nth_mail_to(&sink, "ivy@corp.test", 2);
    let body = mail.text_body();
    let link = format!("{}/m/{code}?pwd=Blue42x", app.base_url());
    assert!(
        body.contains(&link) && body.contains("Passcode: Blue42x"),
        "{body}"
    );
    // A new passcode goes out to the invitees as an updated invitation.
    let p = call(
        "PATCH",
        &app.url(&format!("/api/v1/meetings/{}", m.body["id"])),
        Some(&owner),
        Some(json!({"passcode": "Green7"})),
    )
    .await;
    assert_eq!(p.status, 200, "{}", p.body);
    let update = support::api::nth_mail_to(&sink, "ivy@corp.test", 3);
    assert!(
        update.text_body().contains("?pwd=Green7"),
        "{}",
        update.text_body()
    );
    // Stored hashed (Argon2id) and sealed: the meeting's row has no passcode in clear.
    {
        use meeting_appliance::db::entities::meeting;
        use sea_orm::{Database, EntityTrait};
        let db = app.data_dir().join("meeting.db");
        let conn = Database::connect(format!("sqlite://{}?mode=ro", db.display()))
            .await
            .expect("open the database read-only");
        let row = meeting::Entity::find_by_id(m.body["id"].as_i64().expect("id"))
            .one(&conn)
            .await
            .expect("query")
            .expect("the meeting");
        let hash = row.passcode_hash.clone().unwrap_or_default();
        let sealed = row.passcode_sealed.clone().unwrap_or_default();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(!sealed.is_empty());
        let whole = format!("{row:?}");
        assert!(
            !whole.contains("Green7") && !whole.contains("Blue42x"),
            "{whole}"
        );
    }

    // A guest: no passcode, then five wrong ones, each refused; then the limit holds, even
    // for the right one.
    let r = join(&app, &code, None, json!({"display_name": "Mallory"})).await;
    assert_eq!((r.status, r.error_code()), (403, "passcode_required"));
    for i in 0..5 {
        let r = join(
            &app,
            &code,
            None,
            json!({"display_name": "Mallory", "passcode": format!("Guess{i}")}),
        )
        .await;
        assert_eq!(
            (r.status, r.error_code()),
            (403, "wrong_passcode"),
            "attempt {i}"
        );
    }
    let r = join(
        &app,
        &code,
        None,
        json!({"display_name": "Mallory", "passcode": "Green7"}),
    )
    .await;
    assert_eq!(
        (r.status, r.error_code()),
        (429, "rate_limited"),
        "{}",
        r.body
    );
    assert!(r.headers.get("retry-after").is_some());
    let huge = join(
        &app,
        &code,
        None,
        json!({"display_name": "Mallory", "passcode": "x".repeat(50_000)}),
    )
    .await;
    assert_eq!(huge.status, 429);
    // Others are unharmed: the invitee with the passcode from her mail, and the owner
    // (hosts need none).
    let r = join(&app, &code, Some(&ivy), json!({"passcode": "Green7"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["role"], "participant");
    assert_eq!(r.body["lobby"], false, "invitees come straight in");
    let r = join(&app, &code, Some(&ivy), json!({"passcode": "Green8"})).await;
    assert_eq!(r.error_code(), "wrong_passcode");
    let r = join(&app, &code, Some(&owner), json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["role"], "owner");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lobby_guest_is_refused_everything_until_a_cohost_admits_it() {
    let sink = SmtpSink::start();
    let app = start(&sink);
    let owner = sign_in(&app, &sink, "owner@corp.test").await;
    let co = sign_in(&app, &sink, "co@corp.test").await;
    let pat = sign_in(&app, &sink, "pat@corp.test").await;
    let m = call(
        "POST",
        &app.url("/api/v1/meetings"),
        Some(&owner),
        Some(json!({"cohosts": ["co@corp.test"]})),
    )
    .await;
    let (id, code) = (
        m.body["id"].clone(),
        m.body["code"].as_str().expect("code").to_string(),
    );

    let ja = join(&app, &code, Some(&co), json!({})).await;
    assert_eq!(
        (
            ja.body["role"].as_str(),
            ja.body["host"].as_bool(),
            ja.body["lobby"].as_bool()
        ),
        (Some("cohost"), Some(true), Some(false))
    );
    let (mut cohost, first) = signal(&ja.body).await;
    assert_eq!(first["type"], "joined");
    assert_eq!(first["host"], true);
    // A signed-in person who is not invited waits too (lobby "guests"), like a guest.
    let jp = join(&app, &code, Some(&pat), json!({})).await;
    assert_eq!(jp.body["lobby"], true);
    let jg = join(&app, &code, None, json!({"display_name": "Gina"})).await;
    assert_eq!(
        (jg.body["role"].as_str(), jg.body["lobby"].as_bool()),
        (Some("guest"), Some(true))
    );
    let gpid = jg.body["participant_id"].as_str().expect("pid").to_string();
    let (mut guest, first) = signal(&jg.body).await;
    assert_eq!(first["type"], "waiting", "{first}");
    let lobby = loop {
        let l = until_type(&mut cohost.ws, "lobby").await;
        if l["waiting"].as_array().is_some_and(|w| !w.is_empty()) {
            break l;
        }
    };
    assert_eq!(lobby["waiting"][0]["participant_id"], gpid.as_str());
    assert_eq!(lobby["waiting"][0]["role"], "guest");

    // Direct signaling from the lobby is refused, and so are notes and files.
    for msg in [
        json!({"type": "chat", "text": "let me in"}),
        json!({"type": "offer", "sdp": "v=0", "sources": {}}),
        json!({"type": "hand", "raised": true}),
        json!({"type": "host", "action": {"action": "admit"}}),
        json!({"type": "layer", "mid": "0", "width": 1, "height": 1}),
    ] {
        guest
            .ws
            .send(Message::text(msg.to_string()))
            .await
            .expect("send");
        let e = next_json(&mut guest.ws).await;
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some("in_lobby")),
            "{msg}: {e}"
        );
    }
    let token = jg.body["token"].as_str().expect("token");
    let notes_as_guest = || async {
        support::api::client()
            .get(app.url(&format!("/api/v1/meetings/{id}/notes")))
            .header("X-Join-Token", token)
            .send()
            .await
            .expect("notes")
            .status()
            .as_u16()
    };
    assert_eq!(notes_as_guest().await, 403, "no notes from the lobby");
    let files = support::api::client()
        .get(app.url(&format!("/api/v1/meetings/{id}/files")))
        .header("X-Join-Token", token)
        .send()
        .await
        .expect("files")
        .status()
        .as_u16();
    assert_eq!(files, 403, "no files from the lobby");

    // The co-host (not the owner, who is not even here) admits the guest.
    cohost
        .ws
        .send(Message::text(
            json!({"type": "host", "action": {"action": "admit", "participant_id": gpid}})
                .to_string(),
        ))
        .await
        .expect("admit");
    let joined = until_type(&mut guest.ws, "joined").await;
    assert_eq!(joined["participant_id"], gpid.as_str());
    support::api::eventually("the admitted guest's notes", || async {
        notes_as_guest().await == 200
    })
    .await;

    // Over HTTP too, a co-host may run the meeting; an invitee-less stranger may not.
    let ctl = app.url(&format!("/api/v1/meetings/{id}/control"));
    let r = call("POST", &ctl, Some(&co), Some(json!({"action": "mute_all"}))).await;
    assert_eq!(r.status, 204, "{}", r.body);
    let muted = until_type(&mut guest.ws, "mute").await;
    assert_eq!(
        (muted["participant_id"].as_str(), muted["by_host"].as_bool()),
        (Some(gpid.as_str()), Some(true))
    );
    let r = call(
        "POST",
        &ctl,
        Some(&pat),
        Some(json!({"action": "mute_all"})),
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = call(
        "POST",
        &ctl,
        Some(&co),
        Some(json!({"action": "deny", "reason": "x".repeat(300)})),
    )
    .await;
    assert_eq!((r.status, r.error_code()), (400, "invalid_action"));
    // Refusals say which: the admitted guest no longer waits; nobody has that id.
    let r = call(
        "POST",
        &ctl,
        Some(&co),
        Some(json!({"action": "admit", "participant_id": gpid})),
    )
    .await;
    assert_eq!(
        (r.status, r.error_code()),
        (409, "not_waiting"),
        "{}",
        r.body
    );
    let r = call(
        "POST",
        &ctl,
        Some(&co),
        Some(json!({"action": "mute", "participant_id": "p-nobody"})),
    )
    .await;
    assert_eq!(
        (r.status, r.error_code()),
        (409, "not_in_meeting"),
        "{}",
        r.body
    );
    // A participant's signaling host action is refused.
    guest
        .ws
        .send(Message::text(
            json!({"type": "host", "action": {"action": "end"}}).to_string(),
        ))
        .await
        .expect("send");
    let e = until_type(&mut guest.ws, "error").await;
    assert_eq!(e["code"], "not_host");
    // Removal by the co-host over signaling reaches the apiserver: no rejoin, no notes.
    cohost
        .ws
        .send(Message::text(
            json!({"type": "host", "action": {"action": "remove", "participant_id": gpid}})
                .to_string(),
        ))
        .await
        .expect("remove");
    let closed = until_type(&mut guest.ws, "closed").await;
    assert_eq!(closed["reason"], "removed");
    support::api::eventually("the removed guest loses notes", || async {
        notes_as_guest().await != 200
    })
    .await;
    // Host actions taken over signaling are in the audit log, under the participant.
    {
        use meeting_appliance::db::entities::audit;
        use sea_orm::{ColumnTrait, Database, EntityTrait, QueryFilter};
        let db = app.data_dir().join("meeting.db");
        let conn = Database::connect(format!("sqlite://{}?mode=ro", db.display()))
            .await
            .expect("open the database");
        let cpid = ja.body["participant_id"].as_str().expect("pid").to_string();
        support::api::eventually("host actions over signaling in the audit log", || async {
            let rows = audit::Entity::find()
                .filter(audit::Column::MeetingId.eq(id.as_i64()))
                .all(&conn)
                .await
                .unwrap_or_default();
            ["host.admit", "host.remove"].iter().all(|a| {
                rows.iter().any(|r| {
                    r.action == *a
                        && r.result == "ok"
                        && r.actor == format!("co ({cpid})")
                        && r.target.contains(&gpid)
                })
            })
        })
        .await;
    }
}

/// Whether a browser scenario writes its screenshots to docs/screenshots (the one-box runs)
/// or none (the same scenario again on the split deployment).
#[derive(Clone, Copy, PartialEq)]
enum Shots {
    Docs,
    None,
}

/// A screenshot the scenario wrote (docs/screenshots), not empty.
fn shot_written(shots: Shots, name: &str) {
    if shots == Shots::None {
        return;
    }
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs/screenshots")
        .join(name);
    let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
    assert!(len > 10_000, "{} written ({len} bytes)", p.display());
}

/// Runs `controls.cjs` `scenario` against `app`, signing people in with codes from `sink`,
/// answering invitation-link questions from the mails.
fn run_browser(app: &Appliance, sink: &SmtpSink, scenario: &str, shots: Shots) -> Value {
    let base = app.base_url();
    let shots = match shots {
        Shots::Docs => concat!(env!("CARGO_MANIFEST_DIR"), "/docs/screenshots"),
        Shots::None => "",
    };
    let mut sc = Scenario::start(
        "controls.cjs",
        scenario,
        &[("BASE", base.as_str()), ("SHOTS", shots)],
    );
    let ctx = || {
        let log = app.log_lines();
        log[log.len().saturating_sub(60)..].join("\n")
    };
    let mut codes_used = std::collections::HashMap::<String, usize>::new();
    loop {
        match sc.next(&["NEED_CODE ", "NEED_INVITE ", "RESULT "], &ctx) {
            ("NEED_CODE ", email) => {
                // The next sign-in code mail to them (invitations arrive in between).
                let used = codes_used.entry(email.clone()).or_default();
                let mail =
                    support::wait_until(Duration::from_secs(30), "a sign-in code mail", || {
                        mails_to(sink, &email)
                            .into_iter()
                            .filter(|m| m.text_body().contains("Your sign-in code is "))
                            .nth(*used)
                    });
                *used += 1;
                sc.cue(&support::api::code_in(&mail));
            }
            ("NEED_INVITE ", email) => {
                let mail = mails_to(sink, &email)
                    .into_iter()
                    .rev()
                    .find(|m| m.text_body().contains("Join: "))
                    .expect("an invitation");
                let body = mail.text_body();
                let link = body
                    .lines()
                    .find_map(|l| l.strip_prefix("Join: "))
                    .expect("a join line")
                    .trim()
                    .to_string();
                sc.cue(&link);
            }
            (_, r) => return serde_json::from_str(&r).expect("RESULT is JSON"),
        }
    }
}

/// A guest by link waits in the lobby (the waiting screen shows the meeting's title, also in
/// Chinese; its own signaling, notes and files are refused); both hosts hear the knock; the
/// co-host, not the owner, lets her in; a second guest is denied and sees why; a third is let
/// in with everyone waiting; the owner leaves and the co-host mutes everyone: both guests'
/// audio stops at every other browser and they see who muted them; asking to unmute does not
/// unmute; the co-host promotes a guest (who gets the host tools) and turns participants'
/// cameras off: the other guest's camera stops, the promoted one's does not.
#[test]
fn web_lobby_cohost_and_mute_all() {
    if !enter_private_netns("web_lobby_cohost_and_mute_all") {
        return;
    }
    let sink = SmtpSink::start();
    let app = start(&sink);
    let r = run_browser(&app, &sink, "lobby", Shots::Docs);
    check_lobby(&r, Shots::Docs);
}

/// The same lobby scenario on the split deployment (tests/support/split.rs): the lobby, the
/// co-host's actions and mute-all are the sfuserver's on its own address, the refusals and
/// admissions the apiserver learns over the bridge.
#[test]
fn web_lobby_cohost_and_mute_all_on_the_split_deployment() {
    if !enter_private_netns("web_lobby_cohost_and_mute_all_on_the_split_deployment") {
        return;
    }
    let d = loopback_deployment(PRODUCT_LOBBY.1);
    let r = run_browser(&d.api, &d.sink, "lobby", Shots::None);
    check_lobby(&r, Shots::None);
}

fn check_lobby(r: &Value, shots: Shots) {
    eprintln!("{r:#}");
    assert_eq!(r["default_lobby"], "guests");
    assert_eq!(r["cohost_role"], "cohost");
    assert_eq!(r["waiting"]["title"], "Board review");
    assert_eq!(r["waiting_zh"], "你在等候室中，主持人很快会允许你进入。");
    let refusals = &r["lobby_refusals"];
    assert_eq!(
        refusals["errs"],
        json!(["in_lobby", "in_lobby", "in_lobby", "in_lobby"]),
        "{refusals}"
    );
    assert_eq!(
        (refusals["notes"].as_u64(), refusals["files"].as_u64()),
        (Some(403), Some(403))
    );
    assert_eq!(
        (refusals["people"].as_u64(), refusals["remote"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(r["knock_owner"]["ok"], true);
    assert_eq!(r["knock_cohost"]["ok"], true);
    assert_eq!(r["admitted_notes"]["ok"], true);
    assert_eq!(r["denied"]["reason"], "denied");
    assert_eq!(
        r["denied"]["text"],
        "A host did not let you in. Invite only today"
    );
    // Both guests' audio at the co-host and at each other: flowing, then stopped.
    let flows = |k: &str| -> Vec<u64> {
        r[k].as_array()
            .map(|a| a.iter().map(|x| x.as_u64().unwrap_or(u64::MAX)).collect())
            .unwrap_or_default()
    };
    let (before, after) = (flows("audio_before"), flows("audio_after"));
    // Flowing: more than 20 packets in the 3 s window (a quiet fake microphone may send
    // only ~17 a second with Opus DTX); stopped is at most 2 (below).
    assert!(
        before.len() == 4 && before.iter().all(|&n| n > 20),
        "audio flowed: {before:?}"
    );
    assert_eq!(r["gina_muted"]["ok"], true);
    assert_eq!(r["gus_muted"], true);
    assert!(
        after.len() == 4 && after.iter().all(|&n| n <= 2),
        "audio stopped: {after:?}"
    );
    for f in [
        "lobby-waiting.png",
        "lobby-waiting-zh.png",
        "lobby-host.png",
        "meeting-settings.png",
    ] {
        shot_written(shots, f);
    }
    assert_eq!(r["cohost_sees_muted"], true);
    assert_eq!(r["still_muted"], true);
    assert_eq!(r["gus_promoted"]["ok"], true);
    assert_eq!(r["gina_camera_off"]["ok"], true);
    let video = &r["video_after_off"];
    assert!(
        video[0].as_i64().unwrap_or(1) <= 0 && video[1].as_i64().unwrap_or(0) > 20,
        "Gina's camera stopped, the promoted Gus's did not: {video}"
    );
}

/// The passcode from the settings page reaches the invitee's mail; a guest guessing it is
/// refused five times and then limited even with the right one; the invitee's mailed link
/// gets her straight in. Chat: a private message reaches only its reader (the owner, a
/// third browser, never sees it), links are safe and markup stays text, the late joiner gets
/// the history. Hands raised by three people show to the owner in raise order; lower all.
#[test]
fn web_passcode_chat_and_hands() {
    if !enter_private_netns("web_passcode_chat_and_hands") {
        return;
    }
    let sink = SmtpSink::start();
    let app = start(&sink);
    let r = run_browser(&app, &sink, "hands_chat_passcode", Shots::Docs);
    check_passcode_chat_and_hands(&r, &app.base_url(), Shots::Docs);
}

/// The same passcode, chat and hands scenario on the split deployment: the chat history and
/// the private messages cross the sfuserver, the passcode limit is the apiserver's.
#[test]
fn web_passcode_chat_and_hands_on_the_split_deployment() {
    if !enter_private_netns("web_passcode_chat_and_hands_on_the_split_deployment") {
        return;
    }
    let d = loopback_deployment(PRODUCT_LOBBY.1);
    let r = run_browser(&d.api, &d.sink, "hands_chat_passcode", Shots::None);
    check_passcode_chat_and_hands(&r, &d.api.base_url(), Shots::None);
}

fn check_passcode_chat_and_hands(r: &Value, base: &str, shots: Shots) {
    eprintln!("{r:#}");
    let code = r["code"].as_str().expect("code");
    assert_eq!(r["invite_link"], format!("{base}/m/{code}?pwd=Blue42"));
    assert_eq!(r["passcode_first"], "passcode_required");
    assert_eq!(
        r["passcode_tries"],
        json!([
            "wrong_passcode",
            "wrong_passcode",
            "wrong_passcode",
            "wrong_passcode",
            "wrong_passcode",
            "rate_limited"
        ])
    );
    assert_eq!(r["mallory_in"], false);
    assert_eq!(r["ivy_prompted"], false);
    let owner_log = r["owner_log"].as_str().unwrap_or("");
    assert!(
        owner_log.contains("Agenda:") && !owner_log.contains("psst"),
        "{owner_log}"
    );
    assert_eq!(r["gus_private_marked"], true);
    assert_eq!(r["link"]["href"], "https://example.com/agenda?x=1");
    assert_eq!(r["link"]["target"], "_blank");
    let rel = r["link"]["rel"].as_str().unwrap_or("");
    assert!(
        rel.contains("noopener") && rel.contains("noreferrer"),
        "{rel}"
    );
    assert_eq!(r["markup_elements"], 0);
    assert_eq!(r["markup_text"], true);
    let ivy_log = r["ivy_log"].as_str().unwrap_or("");
    assert!(
        ivy_log.contains("Agenda:") && !ivy_log.contains("psst"),
        "{ivy_log}"
    );
    assert_eq!(r["queue"], json!(["Gail", "ivy", "Gus"]));
    shot_written(shots, "hand-queue.png");
    assert_eq!(r["lowered"]["ok"], true);
}

/// Chat is reported by the sfuserver and stored per meeting; with `chat_in_notes` the mailed
/// notes carry the messages to everyone (never private ones), without it they carry none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mailed_notes_include_the_chat_when_chosen() {
    let sink = SmtpSink::start();
    let app = start(&sink);
    let owner = sign_in(&app, &sink, "owner@corp.test").await;
    // A meeting that began a few minutes ago and has just ended.
    let now = meeting_appliance::util::now();
    let m = call(
        "POST",
        &app.url("/api/v1/meetings"),
        Some(&owner),
        Some(
            json!({"title": "Retro", "begin_at": now - 240, "end_at": now - 230,
                    "invitees": ["ivy@corp.test"], "lobby": "off", "chat_in_notes": true}),
        ),
    )
    .await;
    assert_eq!(m.status, 201, "{}", m.body);
    let (id, code) = (
        m.body["id"].as_i64().expect("id"),
        m.body["code"].as_str().expect("code").to_string(),
    );
    let jo = join(&app, &code, Some(&owner), json!({})).await;
    let (mut o, first) = signal(&jo.body).await;
    assert_eq!(first["type"], "joined");
    let jg = join(&app, &code, None, json!({"display_name": "Gina"})).await;
    let (mut g, first) = signal(&jg.body).await;
    assert_eq!(first["type"], "joined", "{first}");
    let opid = jo.body["participant_id"].as_str().expect("pid");
    for msg in [
        json!({"type": "chat", "text": "Decision: ship <it> on Friday"}),
        json!({"type": "chat", "text": "between us, owner", "to": opid}),
        json!({"type": "chat", "text": "hosts, a secret", "to_hosts": true}),
    ] {
        g.ws.send(Message::text(msg.to_string()))
            .await
            .expect("chat");
    }
    for _ in 0..3 {
        until_type(&mut o.ws, "chat").await;
    }
    // Stored (the recorder writes in the background).
    {
        use meeting_appliance::db::entities::chat_message;
        use sea_orm::{ColumnTrait, Database, EntityTrait, PaginatorTrait, QueryFilter};
        let db = app.data_dir().join("meeting.db");
        let conn = Database::connect(format!("sqlite://{}?mode=ro", db.display()))
            .await
            .expect("open the database");
        support::api::eventually("the chat stored", || async {
            chat_message::Entity::find()
                .filter(chat_message::Column::MeetingId.eq(id))
                .count(&conn)
                .await
                .unwrap_or(0)
                == 3
        })
        .await;
    }
    let notes_url = app.url(&format!("/api/v1/meetings/{id}/notes"));
    let cur = call("GET", &notes_url, Some(&owner), None).await;
    let put = call(
        "PUT",
        &notes_url,
        Some(&owner),
        Some(json!({"text": "# Retro\n\nWe talked.", "version": cur.body["version"]})),
    )
    .await;
    assert!(put.status < 300, "{}", put.body);
    let send = app.url(&format!("/api/v1/meetings/{id}/notes/send"));
    let r = call("POST", &send, Some(&owner), None).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let notes_mail = |n: usize| support::api::nth_mail_to(&sink, "ivy@corp.test", n);
    let mail = notes_mail(2);
    let text = mail.text_body();
    assert!(
        text.contains("Chat:") && text.contains("Gina: Decision: ship <it> on Friday"),
        "{text}"
    );
    assert!(
        !text.contains("between us") && !text.contains("a secret"),
        "{text}"
    );
    let html = mail.part("text/html").map(|(_, b)| b).unwrap_or_default();
    assert!(
        html.contains("ship &lt;it&gt; on Friday") && !html.contains("<it>"),
        "{html}"
    );
    // Not chosen: no chat.
    let p = call(
        "PATCH",
        &app.url(&format!("/api/v1/meetings/{id}")),
        Some(&owner),
        Some(json!({"chat_in_notes": false})),
    )
    .await;
    assert_eq!(p.status, 200, "{}", p.body);
    let r = call("POST", &send, Some(&owner), None).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let again = notes_mail(3).text_body();
    assert!(
        again.contains("We talked.") && !again.contains("Chat:"),
        "{again}"
    );
}
