//! Meeting notes over real HTTP and WebSocket against the real binary: two editors racing on
//! the same version (one wins, the other gets 409 with the text to merge with), every
//! accepted change pushed live to everyone following, history listed and restored, who may
//! read (owner, invitees, people who joined; guests only while in the meeting), and the notes
//! mailed after a scheduled meeting, rendered, with file links that work, through a real
//! SMTP sink.

mod support;

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::api::{Answer, call, mail_args, mails_to, sign_in};
use support::files::{get_hashed, pattern_bytes, sha256_hex, upload};
use support::media::sign_in_from_log;
use support::rtc_client::{WsMsg, ws_connect};
use support::{Appliance, SmtpSink, wait_until};
use tokio::sync::mpsc::UnboundedReceiver;

fn now() -> i64 {
    meeting_appliance::util::now()
}

fn start(extra: &[String]) -> Appliance {
    let mut args: Vec<String> = ["--udpPort", "0", "--port", "0", "--sfuWorkers", "1"]
        .map(String::from)
        .to_vec();
    args.extend_from_slice(extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Appliance::start(&args, &[])
}

/// Someone following a meeting's notes over the live WebSocket.
struct Follower {
    name: &'static str,
    rx: UnboundedReceiver<WsMsg>,
}

impl Follower {
    /// Connects and authenticates with the first message (`token` = session or join token).
    async fn connect(app: &Appliance, meeting: i64, name: &'static str, auth: Value) -> Follower {
        let url = format!("ws://{}/api/v1/meetings/{meeting}/notes/live", app.addr());
        let (tx, rx) = ws_connect(&url)
            .await
            .unwrap_or_else(|e| panic!("{name}: notes WebSocket: {e}"));
        tx.text(auth.to_string());
        // Keep the sender alive for the whole connection.
        std::mem::forget(tx);
        Follower { name, rx }
    }

    /// The next JSON message, within `deadline`.
    async fn next(&mut self, deadline: Duration) -> Value {
        match tokio::time::timeout(deadline, self.rx.recv()).await {
            Ok(Some(WsMsg::Text(t))) => serde_json::from_str(&t).expect("JSON message"),
            Ok(other) => panic!("{}: expected a text message, got {other:?}", self.name),
            Err(_) => panic!("{}: nothing within {deadline:?}", self.name),
        }
    }

    /// Waits for the notes message of `version` (earlier versions may come first).
    async fn until_version(&mut self, version: i64) -> Value {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let m = self.next(left).await;
            assert_eq!(m["type"], "notes", "{}: {m}", self.name);
            if m["version"] == version {
                return m;
            }
            assert!(
                m["version"].as_i64() < Some(version),
                "{}: went past version {version}: {m}",
                self.name
            );
        }
    }
}

async fn put_notes(app: &Appliance, id: i64, token: &str, text: &str, version: i64) -> Answer {
    call(
        "PUT",
        &app.url(&format!("/api/v1/meetings/{id}/notes")),
        Some(token),
        Some(json!({"text": text, "version": version})),
    )
    .await
}

async fn get_as_guest(app: &Appliance, id: i64, join_token: &str) -> u16 {
    let r = support::api::client()
        .get(app.url(&format!("/api/v1/meetings/{id}/notes")))
        .header("X-Join-Token", join_token)
        .send()
        .await
        .expect("GET notes as guest");
    r.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_editors_one_wins_both_see_it_live_and_history_restores() {
    let app = start(&[]);
    let ann = sign_in_from_log(&app, "ann@corp.test").await;
    let bob = sign_in_from_log(&app, "bob@corp.test").await;
    let begin = now() + 3600;
    let m = call(
        "POST",
        &app.url("/api/v1/meetings"),
        Some(&ann),
        Some(json!({"title": "Plan", "begin_at": begin, "end_at": begin + 1800, "invitees": ["bob@corp.test"]})),
    )
    .await;
    assert_eq!(m.status, 201, "{:?}", m.body);
    let id = m.body["id"].as_i64().expect("id");
    let code = m.body["code"].as_str().expect("code").to_string();

    let mut ann_live =
        Follower::connect(&app, id, "ann", json!({"type": "auth", "token": ann})).await;
    let mut bob_live =
        Follower::connect(&app, id, "bob", json!({"type": "auth", "token": bob})).await;
    for f in [&mut ann_live, &mut bob_live] {
        let first = f.next(Duration::from_secs(10)).await;
        assert_eq!(
            (first["type"].as_str(), first["version"].as_i64()),
            (Some("notes"), Some(0))
        );
    }

    // Both edit version 0 at the same time: exactly one wins.
    let (ta, tb) = ("# Plan\n\n- Ann: budget", "# Plan\n\n- Bob: hiring");
    let (ra, rb) = tokio::join!(
        put_notes(&app, id, &ann, ta, 0),
        put_notes(&app, id, &bob, tb, 0)
    );
    let mut statuses = [ra.status, rb.status];
    statuses.sort();
    assert_eq!(
        statuses,
        [200, 409],
        "ann {:?} / bob {:?}",
        ra.body,
        rb.body
    );
    let (winner_text, loser, loser_answer, loser_text) = if ra.status == 200 {
        (ta, bob.clone(), rb, tb)
    } else {
        (tb, ann.clone(), ra, ta)
    };
    assert_eq!(loser_answer.error_code(), "version_conflict");
    assert_eq!(
        loser_answer.body["text"], winner_text,
        "409 carries the current text"
    );
    assert_eq!(loser_answer.body["version"], 1);
    for f in [&mut ann_live, &mut bob_live] {
        let m = f.until_version(1).await;
        assert_eq!(m["text"], winner_text, "{}", f.name);
    }

    // The loser merges and saves on the current version; both see it.
    let merged = format!(
        "{winner_text}\n{}",
        loser_text.lines().last().expect("line")
    );
    let a = put_notes(&app, id, &loser, &merged, 1).await;
    assert_eq!(
        (a.status, a.body["version"].as_i64()),
        (200, Some(2)),
        "{:?}",
        a.body
    );
    for f in [&mut ann_live, &mut bob_live] {
        assert_eq!(f.until_version(2).await["text"], merged.as_str());
    }
    // A stale version never overwrites.
    let a = put_notes(&app, id, &ann, "overwrite!", 1).await;
    assert_eq!((a.status, a.error_code()), (409, "version_conflict"));
    let got = call(
        "GET",
        &app.url(&format!("/api/v1/meetings/{id}/notes")),
        Some(&bob),
        None,
    )
    .await;
    assert_eq!(
        (got.body["text"].as_str(), got.body["version"].as_i64()),
        (Some(merged.as_str()), Some(2))
    );

    // History, and restoring an earlier version (as a new version; history only grows).
    let h = call(
        "GET",
        &app.url(&format!("/api/v1/meetings/{id}/notes/versions")),
        Some(&ann),
        None,
    )
    .await;
    let versions: Vec<i64> = h
        .body
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|v| v["version"].as_i64())
        .collect();
    assert_eq!(versions, [2, 1]);
    let v1 = call(
        "GET",
        &app.url(&format!("/api/v1/meetings/{id}/notes/versions/1")),
        Some(&bob),
        None,
    )
    .await;
    assert_eq!(v1.body["text"], winner_text);
    let restore = app.url(&format!("/api/v1/meetings/{id}/notes/versions/1/restore"));
    let a = call("POST", &restore, Some(&bob), Some(json!({"version": 1}))).await;
    assert_eq!(
        (a.status, a.error_code()),
        (409, "version_conflict"),
        "a restore on a stale version is refused"
    );
    let a = call("POST", &restore, Some(&bob), Some(json!({"version": 2}))).await;
    assert_eq!(
        (a.status, a.body["version"].as_i64()),
        (200, Some(3)),
        "{:?}",
        a.body
    );
    assert_eq!(a.body["text"], winner_text);
    for f in [&mut ann_live, &mut bob_live] {
        assert_eq!(f.until_version(3).await["text"], winner_text);
    }
    let h = call(
        "GET",
        &app.url(&format!("/api/v1/meetings/{id}/notes/versions")),
        Some(&ann),
        None,
    )
    .await;
    assert_eq!(h.body.as_array().map(Vec::len), Some(3));
    let a = call(
        "GET",
        &app.url(&format!("/api/v1/meetings/{id}/notes/versions/9")),
        Some(&ann),
        None,
    )
    .await;
    assert_eq!(a.status, 404);

    // Who may read: not a stranger, not nobody; yes someone who joined while signed in.
    let cy = sign_in_from_log(&app, "cy@corp.test").await;
    let notes_url = app.url(&format!("/api/v1/meetings/{id}/notes"));
    assert_eq!(call("GET", &notes_url, Some(&cy), None).await.status, 404);
    assert_eq!(call("GET", &notes_url, None, None).await.status, 401);
    assert_eq!(put_notes(&app, id, &cy, "x", 3).await.status, 404);
    let mut cy_live = Follower::connect(&app, id, "cy", json!({"type": "auth", "token": cy})).await;
    let m = cy_live.next(Duration::from_secs(10)).await;
    assert_eq!(
        (m["type"].as_str(), m["reason"].as_str()),
        (Some("closed"), Some("not_allowed"))
    );
    let dan = sign_in_from_log(&app, "dan@corp.test").await;
    let j = call(
        "POST",
        &app.url(&format!("/api/v1/join/{code}")),
        Some(&dan),
        Some(json!({})),
    )
    .await;
    assert_eq!(j.status, 200, "{:?}", j.body);
    assert_eq!(call("GET", &notes_url, Some(&dan), None).await.status, 200);

    // A guest reads and writes while in the meeting, and is pushed changes.
    let g = call(
        "POST",
        &app.url(&format!("/api/v1/join/{code}")),
        None,
        Some(json!({"display_name": "Gus"})),
    )
    .await;
    assert_eq!(g.status, 200, "{:?}", g.body);
    let gtok = g.body["token"].as_str().expect("join token").to_string();
    assert_eq!(get_as_guest(&app, id, &gtok).await, 200);
    let forged = {
        let (body, _) = gtok.split_once('.').expect("dot");
        format!("{body}.AAAA")
    };
    assert_eq!(get_as_guest(&app, id, &forged).await, 401);
    let mut gus_live =
        Follower::connect(&app, id, "gus", json!({"type": "auth", "join_token": gtok})).await;
    assert_eq!(gus_live.next(Duration::from_secs(10)).await["version"], 3);
    let r = support::api::client()
        .put(&notes_url)
        .header("X-Join-Token", &gtok)
        .json(&json!({"text": "guest was here", "version": 3}))
        .send()
        .await
        .expect("guest PUT");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(ann_live.until_version(4).await["by"], "Gus");
    assert_eq!(gus_live.until_version(4).await["text"], "guest was here");

    // The guest enters the media session and leaves it: from then on, no notes.
    let signal = g.body["sfu"]["signal_url"]
        .as_str()
        .expect("signal_url")
        .to_string();
    let (stx, mut srx) = ws_connect(&signal).await.expect("signaling");
    stx.text(json!({"type": "join", "token": gtok}).to_string());
    let joined = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(m) = srx.recv().await {
            if let WsMsg::Text(t) = m
                && t.contains("\"joined\"")
            {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(joined, Ok(true), "the guest joined the media session");
    stx.text(json!({"type": "leave"}).to_string());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = get_as_guest(&app, id, &gtok).await;
        if s == 403 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the guest still reads the notes after leaving ({s})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let m = gus_live.next(Duration::from_secs(20)).await;
    assert_eq!(
        (m["type"].as_str(), m["reason"].as_str()),
        (Some("closed"), Some("left_meeting"))
    );
    // Signed-in people keep the notes after the meeting.
    assert_eq!(call("GET", &notes_url, Some(&dan), None).await.status, 200);
}

/// Every `href`/`src` in the HTML pointing at the fsserver, unescaped.
fn file_links(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["href=\"", "src=\""] {
        let mut rest = html;
        while let Some(i) = rest.find(attr) {
            rest = &rest[i + attr.len()..];
            let end = rest.find('"').expect("closing quote");
            let url = rest[..end].replace("&amp;", "&");
            if url.contains("/fs/v1/files/") {
                out.push(url);
            }
            rest = &rest[end..];
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notes_mail_reaches_the_invitees_rendered_with_working_file_links() {
    let sink = SmtpSink::start();
    let app = start(&mail_args(sink.port()));
    let ann = sign_in(&app, &sink, "ann@corp.test").await;
    let bob = sign_in(&app, &sink, "bob@corp.test").await;
    // A meeting that began a few minutes ago and ends in a few seconds.
    let begin = now() - 240;
    let end = now() + 10;
    let m = call(
        "POST",
        &app.url("/api/v1/meetings"),
        Some(&ann),
        Some(json!({"title": "Quarterly review", "begin_at": begin, "end_at": end, "invitees": ["bob@corp.test", "cy@other.test"]})),
    )
    .await;
    assert_eq!(m.status, 201, "{:?}", m.body);
    let id = m.body["id"].as_i64().expect("id");
    let send_url = app.url(&format!("/api/v1/meetings/{id}/notes/send"));
    let early = call("POST", &send_url, Some(&ann), None).await;
    assert_eq!(
        (early.status, early.error_code()),
        (409, "meeting_not_ended"),
        "{:?}",
        early.body
    );

    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(pattern_bytes(21, 5000));
    let report = pattern_bytes(22, 300_000);
    let base = app.base_url();
    let img = upload(&base, &ann, id, "diagram.png", "image/png", png.clone()).await;
    let pdf = upload(
        &base,
        &bob,
        id,
        "report.pdf",
        "application/pdf",
        report.clone(),
    )
    .await;
    let (img_id, pdf_id) = (
        img["id"].as_str().expect("id"),
        pdf["id"].as_str().expect("id"),
    );
    let text = format!(
        "# Minutes\n\n- decided: ship in May\n- owner: **Bob**\n\n![diagram](/api/v1/meetings/{id}/files/{img_id})\n\n\
         See [the report]({base}/api/v1/meetings/{id}/files/{pdf_id}).\n\n<script>alert(1)</script>\n\n[bad](javascript:alert(2))\n"
    );
    let a = put_notes(&app, id, &bob, &text, 0).await;
    assert_eq!(a.status, 200, "{:?}", a.body);

    // Only the owner sends, and only once the meeting has ended.
    let a = call("POST", &send_url, Some(&bob), None).await;
    assert_eq!((a.status, a.error_code()), (403, "not_owner"));
    let sent = wait_until(Duration::from_secs(30), "the meeting to end", || {
        let r = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(call("POST", &send_url, Some(&ann), None))
        });
        match (r.status, r.error_code()) {
            (202, _) => Some(r),
            (409, "meeting_not_ended") => None,
            other => panic!("send: {other:?} {:?}", r.body),
        }
    });
    assert_eq!(
        sent.body["recipients"],
        json!(["ann@corp.test", "bob@corp.test", "cy@other.test"])
    );

    let expected = [
        (sha256_hex(&png), png.len() as u64),
        (sha256_hex(&report), report.len() as u64),
    ];
    for who in ["bob@corp.test", "cy@other.test", "ann@corp.test"] {
        let mail = wait_until(
            Duration::from_secs(30),
            &format!("the notes mail to {who}"),
            || {
                mails_to(&sink, who)
                    .into_iter()
                    .find(|m| m.subject() == "Notes: Quarterly review")
            },
        );
        let (ct, html) = mail.part("text/html").expect("an HTML part");
        assert!(ct.contains("text/html"), "{ct}");
        assert!(html.contains("<h1>Minutes</h1>"), "{html}");
        assert!(html.contains("<li>decided: ship in May</li>"), "{html}");
        assert!(html.contains("<strong>Bob</strong>"), "{html}");
        assert!(
            !html.contains("<script"),
            "raw HTML is not passed through: {html}"
        );
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("javascript:"), "{html}");
        let plain = mail.text_body();
        assert!(plain.contains("decided: ship in May"), "{plain}");
        // Every file link works without signing in and gives the uploaded bytes.
        let links = file_links(&html);
        assert!(links.len() >= 3, "image, link and the file list: {links:?}");
        assert!(
            links
                .iter()
                .any(|l| html.contains(&format!("src=\"{}\"", l.replace('&', "&amp;"))))
        );
        for link in links {
            assert!(
                plain.contains(&link),
                "the text part has the same link {link}"
            );
            let l = link.clone();
            let (resp, n, sha, _) = tokio::task::spawn_blocking(move || get_hashed(&l, &[]))
                .await
                .expect("thread");
            assert_eq!(resp.status, 200, "{link}");
            assert!(
                expected.contains(&(sha.clone(), n)),
                "{link} gave {n} bytes {sha}"
            );
        }
    }
    assert_eq!(img["sha256"], sha256_hex(&png).as_str());

    // An instant meeting has nobody to mail.
    let inst = call(
        "POST",
        &app.url("/api/v1/meetings"),
        Some(&ann),
        Some(json!({})),
    )
    .await;
    let iid = inst.body["id"].as_i64().expect("id");
    let a = call(
        "POST",
        &app.url(&format!("/api/v1/meetings/{iid}/notes/send")),
        Some(&ann),
        None,
    )
    .await;
    assert_eq!((a.status, a.error_code()), (400, "not_scheduled"));
}

/// Eight writers on the same version: exactly one is accepted, the others get 409 with the
/// winner's text. Run on each database backend: the first version is guarded by the primary
/// key (a unique violation), later ones by a conditional UPDATE.
async fn race(app: &Appliance, id: i64, token: &str, base: i64) -> String {
    let texts: Vec<String> = (0..8).map(|i| format!("writer {i} on v{base}")).collect();
    let answers =
        futures_util::future::join_all(texts.iter().map(|t| put_notes(app, id, token, t, base)))
            .await;
    let won: Vec<&Answer> = answers.iter().filter(|a| a.status == 200).collect();
    assert_eq!(
        won.len(),
        1,
        "exactly one writer wins: {:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    let winner = won[0].body["text"].as_str().expect("text").to_string();
    for a in answers.iter().filter(|a| a.status != 200) {
        assert_eq!(
            (a.status, a.error_code()),
            (409, "version_conflict"),
            "{:?}",
            a.body
        );
        assert_eq!(
            (a.body["text"].as_str(), a.body["version"].as_i64()),
            (Some(winner.as_str()), Some(base + 1))
        );
    }
    winner
}

async fn racing_scenario(app: &Appliance) {
    let ann = sign_in_from_log(app, "ann@corp.test").await;
    let m = call(
        "POST",
        &app.url("/api/v1/meetings"),
        Some(&ann),
        Some(json!({})),
    )
    .await;
    let id = m.body["id"].as_i64().expect("id");
    let first = race(app, id, &ann, 0).await;
    let second = race(app, id, &ann, 1).await;
    let h = call(
        "GET",
        &app.url(&format!("/api/v1/meetings/{id}/notes/versions/1")),
        Some(&ann),
        None,
    )
    .await;
    assert_eq!(h.body["text"], first.as_str());
    let cur = call(
        "GET",
        &app.url(&format!("/api/v1/meetings/{id}/notes")),
        Some(&ann),
        None,
    )
    .await;
    assert_eq!(
        (cur.body["text"].as_str(), cur.body["version"].as_i64()),
        (Some(second.as_str()), Some(2))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_on_sqlite_mariadb_and_postgresql() {
    let app = start(&[]);
    racing_scenario(&app).await;
    drop(app);

    let db = support::shared_mariadb();
    let name = db.unique_database("notes");
    let app = start(&["--databaseUrl".to_string(), db.url_for(&name)]);
    racing_scenario(&app).await;
    drop(app);

    let pg = support::postgres::Postgres::start();
    let app = start(&["--databaseUrl".to_string(), pg.database("notes")]);
    racing_scenario(&app).await;
}
