//! Attacks, run against the real binary: each test performs the abuse and shows the limit
//! holding, the attacker refused or disconnected, and everyone else unharmed.

use crate::support;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::api::{call, code_in, mail_args, nth_mail_to};
use support::files::rss_kib;
use support::media::{instant_meeting, sign_in_from_log};
use support::signal::{self, Session};
use support::{Appliance, SmtpSink};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

// ------------------------------------------------------------------------------------------
// Sign-in codes
// ------------------------------------------------------------------------------------------

/// Sums `sign_in_failures` samples whose reason is one of `reasons`.
async fn failures(app: &Appliance, reasons: &[&str]) -> f64 {
    let text = reqwest::get(app.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .filter(|l| l.starts_with("sign_in_failures"))
        .filter(|l| {
            reasons
                .iter()
                .any(|r| l.contains(&format!("reason=\"{r}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// 300 wrong guesses at one code, all at once: before the fix every request read the row
/// before any other's update landed, and 115–285 of them were compared against the code.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_parallel_burst_of_guesses_compares_at_most_max_attempts() {
    let sink = SmtpSink::start();
    let args = mail_args(sink.port());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let app = Appliance::start(&args, &[]);
    let a = call(
        "POST",
        &app.url("/api/v1/auth/code"),
        None,
        Some(json!({"email": "victim@corp.test"})),
    )
    .await;
    assert_eq!(a.status, 204, "{:?}", a.body);
    let right = code_in(&nth_mail_to(&sink, "victim@corp.test", 1));
    // 300 distinct wrong codes (never the right one).
    let guesses: Vec<String> = (0..301u32)
        .map(|i| format!("{:06}", i * 3331 % 1_000_000))
        .filter(|g| *g != right)
        .take(300)
        .collect();
    let url = app.url("/api/v1/auth/verify");
    let tasks: Vec<_> = guesses
        .into_iter()
        .map(|g| {
            let url = url.clone();
            tokio::spawn(async move {
                call(
                    "POST",
                    &url,
                    None,
                    Some(json!({"email": "victim@corp.test", "code": g})),
                )
                .await
            })
        })
        .collect();
    // Told "wrong, n tries left": a comparison happened. Everything else was refused
    // unseen: the code was used up (`too_many_attempts`) or already void (`invalid_code`).
    let mut told_wrong = 0;
    for t in tasks {
        let a = t.await.expect("task");
        assert_eq!(a.status, 400, "{:?}", a.body);
        assert!(
            ["invalid_code", "too_many_attempts"].contains(&a.error_code()),
            "{:?}",
            a.body
        );
        if a.body["message"]
            .as_str()
            .unwrap_or("")
            .contains("tries left")
        {
            told_wrong += 1;
        }
    }
    // Compared = told "wrong, n tries left" + the one that used the last try.
    let compared = failures(&app, &["wrong_code", "too_many_attempts"]).await;
    assert!(
        compared <= 5.0,
        "{compared} guesses were compared against one code (limit 5)"
    );
    assert!(
        told_wrong <= 4,
        "{told_wrong} guesses were told 'tries left'"
    );
    // The code is void now, even the right one.
    let a = call(
        "POST",
        &url,
        None,
        Some(json!({"email": "victim@corp.test", "code": right})),
    )
    .await;
    assert_eq!(a.status, 400, "{:?}", a.body);
}

/// A JSON POST from a chosen loopback address (another "network" for the appliance).
async fn post_from(ip: [u8; 4], url: &str, body: Value) -> (u16, Value) {
    meeting_appliance::util::install_ring_provider();
    let c = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(ip))
        .build()
        .expect("client");
    let r = c.post(url).json(&body).send().await.expect("post");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Before the fix, 5 code requests and 5 wrong guesses from anywhere locked an address out of
/// sign-in for an hour. Code requests now count per address AND client IP: the attacker uses
/// up only its own share, and the victim still signs in from theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_can_lock_someone_else_out_of_sign_in() {
    let sink = SmtpSink::start();
    let args = mail_args(sink.port());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let app = Appliance::start(&args, &[]);
    let (code_url, verify_url) = (app.url("/api/v1/auth/code"), app.url("/api/v1/auth/verify"));
    let attacker = [127, 0, 0, 2];
    for _ in 0..5 {
        let (st, b) = post_from(attacker, &code_url, json!({"email": "vic@corp.test"})).await;
        assert_eq!(st, 204, "{b}");
    }
    let (st, b) = post_from(attacker, &code_url, json!({"email": "vic@corp.test"})).await;
    assert_eq!(
        (st, b["error"].as_str()),
        (429, Some("rate_limited")),
        "{b}"
    );
    let right = code_in(&nth_mail_to(&sink, "vic@corp.test", 5));
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    for _ in 0..5 {
        let (st, _) = post_from(
            attacker,
            &verify_url,
            json!({"email": "vic@corp.test", "code": wrong}),
        )
        .await;
        assert_eq!(st, 400);
    }
    // The victim, from their own address, gets a code and signs in.
    let victim = [127, 0, 0, 1];
    let (st, b) = post_from(victim, &code_url, json!({"email": "vic@corp.test"})).await;
    assert_eq!(st, 204, "the victim was locked out: {b}");
    let code = code_in(&nth_mail_to(&sink, "vic@corp.test", 6));
    let (st, b) = post_from(
        victim,
        &verify_url,
        json!({"email": "vic@corp.test", "code": code}),
    )
    .await;
    assert_eq!(st, 200, "{b}");
    // The code is not in any subject.
    for m in sink.messages() {
        assert!(
            !m.subject().contains(&code) && !m.subject().contains(&right),
            "{}",
            m.subject()
        );
    }
}

// ------------------------------------------------------------------------------------------
// Signaling
// ------------------------------------------------------------------------------------------

/// `POST /join/{code}` as a guest named `name`: the join answer.
async fn join_answer(app: &Appliance, code: &str, name: &str) -> Value {
    let a = call(
        "POST",
        &app.url(&format!("/api/v1/join/{code}")),
        None,
        Some(json!({"display_name": name})),
    )
    .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    a.body
}

async fn open(app: &Appliance, code: &str, name: &str) -> Session {
    signal::open(&join_answer(app, code, name).await).await
}

/// An appliance with one signed-in host and its instant meeting: (app, meeting code).
async fn meeting() -> (Appliance, String) {
    let app = Appliance::start(&["--udpPort", "0", "--sfuWorkers", "1"], &[]);
    let (_, code, _) = instant_meeting(&app).await;
    (app, code)
}

/// 60 offers of ~1 MiB, each declaring ~20,000 sources: before the fix every offer's
/// `sources` was kept (36 → 258 MiB). Now sources are checked and replaced, and the flood is
/// cut off by the byte rate limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_flood_is_bounded_and_disconnected() {
    let (app, code) = meeting().await;
    let mut bystander = open(&app, &code, "Bystander").await;
    let mut attacker = open(&app, &code, "Attacker").await;
    let rss_before = rss_kib(app.pid()).expect("rss");
    let mut sources = serde_json::Map::new();
    for i in 0..20_000 {
        sources.insert(format!("m{i:05}-{}", "x".repeat(30)), json!("camera"));
    }
    let offer = json!({"type": "offer", "sdp": "v=0\r\n", "sources": sources}).to_string();
    assert!(offer.len() > 900_000, "{}", offer.len());
    let mut sent = 0;
    for _ in 0..60 {
        if !attacker
            .send(serde_json::from_str(&offer).expect("json"))
            .await
        {
            break;
        }
        sent += 1;
    }
    // The server closes while the attacker is still writing, so the kernel may reset the
    // connection before its `closed` frame is read: no reason, or `rate_limited`. The reason
    // the server recorded is what the bystander is told.
    let reason = attacker.until_closed(Duration::from_secs(30)).await;
    assert!(
        matches!(reason.as_deref(), None | Some("rate_limited")),
        "after {sent} offers: {reason:?}"
    );
    let pid = attacker.participant.clone();
    assert_eq!(
        bystander.left_reason(&pid, Duration::from_secs(10)).await,
        "rate_limited"
    );
    bystander.alive().await;
    let rss_after = rss_kib(app.pid()).expect("rss");
    let grown = rss_after.saturating_sub(rss_before);
    println!("offer flood: {sent} offers sent, RSS {rss_before} → {rss_after} KiB");
    assert!(grown <= 16 * 1024, "the process grew by {grown} KiB");
}

/// A declaration of more sources than a client has is refused, and the session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_with_too_many_sources_is_refused() {
    let (app, code) = meeting().await;
    let mut s = open(&app, &code, "Many").await;
    let mut sources = serde_json::Map::new();
    for i in 0..17 {
        sources.insert(i.to_string(), json!("camera"));
    }
    assert!(
        s.send(json!({"type": "offer", "sdp": "v=0\r\n", "sources": sources}))
            .await
    );
    let e = s.until("error", Duration::from_secs(10)).await;
    assert_eq!(e["code"], "bad_offer", "{e}");
    s.alive().await;
}

/// 15,000 chat messages as fast as the socket takes them, reading nothing: before the fix
/// every one was broadcast and queued for the attacker itself (+54 MiB). Now chat beyond the
/// chat rate is dropped, and the message rate limit disconnects the flooder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_flood_is_rate_limited_and_disconnected() {
    let (app, code) = meeting().await;
    let mut bystander = open(&app, &code, "Bystander").await;
    let mut attacker = open(&app, &code, "Attacker").await;
    let rss_before = rss_kib(app.pid()).expect("rss");
    let text = "x".repeat(3000);
    let mut sent = 0;
    for _ in 0..15_000 {
        let m = Message::text(json!({"type": "chat", "text": text}).to_string());
        if attacker.ws.feed(m).await.is_err() {
            break;
        }
        sent += 1;
    }
    let _ = attacker.ws.flush().await;
    // The flooder is cut off. It may not read the reason: the server closes a socket with
    // unread data from it, which resets the connection. The others are told why.
    let reason = attacker.until_closed(Duration::from_secs(30)).await;
    assert!(
        matches!(reason.as_deref(), Some("rate_limited") | None),
        "after {sent} chats: {reason:?}"
    );
    // The bystander got at most the chat burst, then saw the flooder leave.
    let pid = attacker.participant.clone();
    let mut chats = 0;
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let m = bystander
            .next(end.saturating_duration_since(Instant::now()))
            .await
            .expect("bystander still connected");
        match m["type"].as_str() {
            Some("chat") => chats += 1,
            Some("participant_left") if m["participant_id"] == pid.as_str() => {
                assert_eq!(m["reason"], "rate_limited");
                break;
            }
            _ => {}
        }
    }
    assert!(chats <= 20, "{chats} of the flood reached the others");
    bystander.alive().await;
    let rss_after = rss_kib(app.pid()).expect("rss");
    let grown = rss_after.saturating_sub(rss_before);
    println!("chat flood: {sent} sent, {chats} delivered, RSS {rss_before} → {rss_after} KiB");
    assert!(grown <= 16 * 1024, "the process grew by {grown} KiB");
}

/// Chat within the limits still works, and chat beyond the chat rate gets an error, not a
/// disconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_beyond_the_chat_rate_is_refused_not_disconnected() {
    let (app, code) = meeting().await;
    let mut s = open(&app, &code, "Chatty").await;
    for i in 0..15 {
        assert!(
            s.send(json!({"type": "chat", "text": format!("hello {i}")}))
                .await
        );
    }
    let e = s.until("error", Duration::from_secs(10)).await;
    assert_eq!(e["code"], "rate_limited", "{e}");
    s.alive().await;
}

/// A participant that stops reading (but keeps sending, so it never looks idle) while the
/// others talk: before the fix the relay loop blocked on its socket for good, so even the
/// liveness check never ran. Now its queue is bounded and a write that cannot complete ends
/// the session: it is disconnected (reason `slow_reader`) while the others go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_that_stops_reading_is_disconnected() {
    let (app, code) = meeting().await;
    let answer = join_answer(&app, &code, "Sleeper").await;
    let url = url::Url::parse(answer["sfu"]["signal_url"].as_str().expect("url")).expect("url");
    let addr: std::net::SocketAddr = format!(
        "{}:{}",
        url.host_str().expect("host"),
        url.port_or_known_default().expect("port")
    )
    .parse()
    .expect("address");
    // A tiny receive window, so the server's writes stall soon.
    let sock =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    sock.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    sock.connect(&addr.into()).expect("connect");
    sock.set_nonblocking(true).expect("nonblocking");
    let tcp = TcpStream::from_std(sock.into()).expect("tokio stream");
    let mut sleeper = signal::open_over(tcp, &answer).await;
    let pid = sleeper.participant.clone();
    // The sleeper now reads nothing; eight people chat as much as they may.
    let mut talkers = Vec::new();
    for i in 0..8 {
        talkers.push(open(&app, &code, &format!("Talker {i}")).await);
    }
    let rss_before = rss_kib(app.pid()).expect("rss");
    // 4000 characters of three UTF-8 bytes each: 12 KB a message.
    let text = "会".repeat(4000);
    let started = Instant::now();
    let mut watcher = open(&app, &code, "Watcher").await;
    let reason = loop {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the sleeper was never disconnected"
        );
        for t in &mut talkers {
            assert!(t.send(json!({"type": "chat", "text": text})).await);
        }
        // The sleeper still sends (so it does not look idle), it only never reads.
        let _ = tokio::time::timeout(
            Duration::from_millis(100),
            sleeper.send(json!({"type": "ping"})),
        )
        .await;
        // Drain the talkers and the watcher (they read), and look for the sleeper leaving.
        for t in &mut talkers {
            while let Ok(Some(Ok(_))) =
                tokio::time::timeout(Duration::from_millis(1), t.ws.next()).await
            {}
        }
        let mut gone = None;
        while let Ok(Some(Ok(Message::Text(m)))) =
            tokio::time::timeout(Duration::from_millis(100), watcher.ws.next()).await
        {
            let m: Value = serde_json::from_str(&m).expect("json");
            if m["type"] == "participant_left" && m["participant_id"] == pid.as_str() {
                gone = m["reason"].as_str().map(str::to_string);
            }
        }
        if let Some(r) = gone {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(900)).await;
    };
    assert_eq!(reason, "slow_reader");
    println!(
        "slow reader disconnected after {:?}; RSS {} → {} KiB",
        started.elapsed(),
        rss_before,
        rss_kib(app.pid()).expect("rss")
    );
    watcher.alive().await;
    for t in &mut talkers {
        t.alive().await;
    }
    drop(sleeper);
}

/// Reconnecting with the same join token replaces the old session; the old session's end
/// must not remove the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_session_ending_does_not_remove_its_successor() {
    let (app, code) = meeting().await;
    let mut watcher = open(&app, &code, "Watcher").await;
    let answer = join_answer(&app, &code, "Twice").await;
    let url = url::Url::parse(answer["sfu"]["signal_url"].as_str().expect("url")).expect("url");
    let addr = format!(
        "{}:{}",
        url.host_str().expect("host"),
        url.port_or_known_default().expect("port")
    );
    let mut first = signal::open_over(TcpStream::connect(&addr).await.expect("tcp"), &answer).await;
    let mut second =
        signal::open_over(TcpStream::connect(&addr).await.expect("tcp"), &answer).await;
    assert_eq!(
        first.until_closed(Duration::from_secs(10)).await.as_deref(),
        Some("replaced")
    );
    drop(first);
    // The old session is gone; the new one still works and is still in the meeting.
    second.alive().await;
    assert!(
        watcher
            .send(json!({"type": "chat", "text": "still there?"}))
            .await
    );
    let m = second.until("chat", Duration::from_secs(10)).await;
    assert_eq!(m["text"], "still there?");
    // The watcher saw `replaced` for the old session, and no second leave.
    let mut leaves = Vec::new();
    while let Ok(Some(Ok(Message::Text(m)))) =
        tokio::time::timeout(Duration::from_millis(500), watcher.ws.next()).await
    {
        let m: Value = serde_json::from_str(&m).expect("json");
        if m["type"] == "participant_left" {
            leaves.push(m["reason"].as_str().unwrap_or("").to_string());
        }
    }
    assert_eq!(leaves, vec!["replaced".to_string()], "{leaves:?}");
}

// ------------------------------------------------------------------------------------------
// Who is in the meeting
// ------------------------------------------------------------------------------------------

/// A raw POST with optional bearer token and cookie: (status, JSON body, set-cookie).
async fn post_raw_cookie(
    url: &str,
    token: Option<&str>,
    cookie: Option<&str>,
    body: Value,
) -> (u16, Value, Option<String>) {
    let c = support::api::client();
    let mut rb = c.post(url).json(&body);
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    if let Some(k) = cookie {
        rb = rb.header("Cookie", k);
    }
    let r = rb.send().await.expect("post");
    let status = r.status().as_u16();
    let set = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_string);
    (status, r.json().await.unwrap_or(Value::Null), set)
}

/// `GET /meetings/{id}/notes` as a guest with a join token: the status.
async fn guest_notes(app: &Appliance, id: i64, join_token: &str) -> u16 {
    support::api::client()
        .get(app.url(&format!("/api/v1/meetings/{id}/notes")))
        .header("X-Join-Token", join_token)
        .send()
        .await
        .expect("notes")
        .status()
        .as_u16()
}

/// An appliance with a signed-in host and its instant meeting: (app, host token, code, id).
async fn hosted() -> (Appliance, String, String, i64) {
    let app = Appliance::start(&["--udpPort", "0", "--sfuWorkers", "1"], &[]);
    let host = sign_in_from_log(&app, "host@corp.test").await;
    let m = call(
        "POST",
        &app.url("/api/v1/meetings"),
        Some(&host),
        Some(json!({})),
    )
    .await;
    assert_eq!(m.status, 201, "{:?}", m.body);
    let code = m.body["code"].as_str().expect("code").to_string();
    let id = m.body["id"].as_i64().expect("id");
    (app, host, code, id)
}

/// Before the fix a join answer alone opened 24 h of notes and files to a guest. Now access
/// follows presence: from the sfuserver's report of the guest entering until it leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_answer_alone_opens_no_notes_or_files() {
    let (app, _host, code, id) = hosted().await;
    let answer = join_answer(&app, &code, "Gina").await;
    let token = answer["token"].as_str().expect("token").to_string();
    assert_eq!(guest_notes(&app, id, &token).await, 403, "before entering");
    let files = support::api::client()
        .get(app.url(&format!("/api/v1/meetings/{id}/files")))
        .header("X-Join-Token", &token)
        .send()
        .await
        .expect("files");
    assert_eq!(files.status().as_u16(), 403, "files before entering");
    let present = support::api::enter(&answer).await;
    support::api::eventually("the guest's entry", || async {
        guest_notes(&app, id, &token).await == 200
    })
    .await;
    drop(present);
    support::api::eventually("the guest's leaving", || async {
        guest_notes(&app, id, &token).await == 403
    })
    .await;
}

/// Before the fix `/join` ignored the room lock (only the sfuserver refused, after TURN
/// credentials and a participation were handed out), and a removed guest could simply join
/// again. Now a locked meeting refuses newcomers at `/join`, and a removed person (account or
/// guest browser) is refused for good, losing notes at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_and_removal_hold_at_join() {
    let (app, host, code, id) = hosted().await;
    let join_url = app.url(&format!("/api/v1/join/{code}"));
    let control = |body: Value| {
        let (url, host) = (
            app.url(&format!("/api/v1/meetings/{id}/control")),
            host.clone(),
        );
        async move { call("POST", &url, Some(&host), Some(body)).await }
    };
    // A guest (its browser gets a guest cookie) and a signed-in participant enter.
    let (st, guest, cookie) =
        post_raw_cookie(&join_url, None, None, json!({"display_name": "Gil"})).await;
    assert_eq!(st, 200, "{guest}");
    let cookie = cookie.expect("a guest cookie");
    assert!(cookie.starts_with("meeting_guest="), "{cookie}");
    let g_present = support::api::enter(&guest).await;
    let sam = sign_in_from_log(&app, "sam@corp.test").await;
    let (st, sam_join, _) = post_raw_cookie(&join_url, Some(&sam), None, json!({})).await;
    assert_eq!(st, 200, "{sam_join}");
    let s_present = support::api::enter(&sam_join).await;
    let gtoken = guest["token"].as_str().expect("token").to_string();
    support::api::eventually("the guest's entry", || async {
        guest_notes(&app, id, &gtoken).await == 200
    })
    .await;

    // Locked: a newcomer is refused by /join itself; the host is not.
    assert_eq!(control(json!({"action": "lock"})).await.status, 204);
    let (st, b, _) = post_raw_cookie(&join_url, None, None, json!({"display_name": "Late"})).await;
    assert_eq!((st, b["error"].as_str()), (403, Some("locked")), "{b}");
    let (st, b, _) = post_raw_cookie(&join_url, Some(&host), None, json!({})).await;
    assert_eq!(st, 200, "the host joins a locked meeting: {b}");
    assert_eq!(control(json!({"action": "unlock"})).await.status, 204);
    let (st, b, _) = post_raw_cookie(&join_url, None, None, json!({"display_name": "Late"})).await;
    assert_eq!(st, 200, "unlocked: {b}");

    // Removed: notes end at once, and neither the guest's browser nor the account comes back.
    let gid = guest["participant_id"].as_str().expect("pid");
    let r = control(json!({"action": "remove", "participant_id": gid})).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert_eq!(guest_notes(&app, id, &gtoken).await, 403);
    let (st, b, _) = post_raw_cookie(
        &join_url,
        None,
        Some(&cookie),
        json!({"display_name": "Gil again"}),
    )
    .await;
    assert_eq!((st, b["error"].as_str()), (403, Some("removed")), "{b}");
    let sid = sam_join["participant_id"].as_str().expect("pid");
    let r = control(json!({"action": "remove", "participant_id": sid})).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let (st, b, _) = post_raw_cookie(&join_url, Some(&sam), None, json!({})).await;
    assert_eq!((st, b["error"].as_str()), (403, Some("removed")), "{b}");
    let notes = call(
        "GET",
        &app.url(&format!("/api/v1/meetings/{id}/notes")),
        Some(&sam),
        None,
    )
    .await;
    assert_eq!(notes.status, 404, "a removed member loses the notes");
    // Another guest browser is not affected.
    let (st, b, _) = post_raw_cookie(&join_url, None, None, json!({"display_name": "Hal"})).await;
    assert_eq!(st, 200, "{b}");
    drop((g_present, s_present));
}

/// A personal room's code is for ever; everyone who once entered kept its notes. The owner
/// can now give the room a new code: the old link stops working and those let in through
/// it lose access; the owner keeps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_code_closes_the_old_link() {
    let (app, host, code, id) = hosted().await;
    let join_url = app.url(&format!("/api/v1/join/{code}"));
    let ted = sign_in_from_log(&app, "ted@corp.test").await;
    let (st, j, _) = post_raw_cookie(&join_url, Some(&ted), None, json!({})).await;
    assert_eq!(st, 200, "{j}");
    let present = support::api::enter(&j).await;
    let notes_url = app.url(&format!("/api/v1/meetings/{id}/notes"));
    support::api::eventually("ted's entry", || async {
        call("GET", &notes_url, Some(&ted), None).await.status == 200
    })
    .await;
    drop(present);
    // A stranger cannot change the code; the owner can.
    let a = call(
        "POST",
        &app.url(&format!("/api/v1/meetings/{id}/code")),
        Some(&ted),
        None,
    )
    .await;
    assert_eq!(a.status, 404, "{:?}", a.body);
    let a = call(
        "POST",
        &app.url(&format!("/api/v1/meetings/{id}/code")),
        Some(&host),
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let new = a.body["code"].as_str().expect("code");
    assert_ne!(new, code);
    assert!(a.body["join_url"].as_str().expect("url").ends_with(new));
    let (st, _, _) = post_raw_cookie(&join_url, Some(&ted), None, json!({})).await;
    assert_eq!(st, 404, "the old code is gone");
    assert_eq!(call("GET", &notes_url, Some(&ted), None).await.status, 404);
    assert_eq!(call("GET", &notes_url, Some(&host), None).await.status, 200);
    let (st, b, _) = post_raw_cookie(
        &app.url(&format!("/api/v1/join/{new}")),
        Some(&ted),
        None,
        json!({}),
    )
    .await;
    assert_eq!(st, 200, "the new code works: {b}");
}

/// Before the fix every `/join` minted TURN credentials with no limit (512 joins exhausted the
/// relay ports). Joins are limited per person and, for guests, per client address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_are_rate_limited_per_person_and_per_guest_address() {
    let app = Appliance::start(
        &["--udpPort", "0", "--sfuWorkers", "1"],
        &[
            ("MEETING_MEETINGS__JOINS_PER_USER_PER_MINUTE", "5"),
            ("MEETING_MEETINGS__JOINS_PER_IP_PER_MINUTE", "8"),
        ],
    );
    let host = sign_in_from_log(&app, "host@corp.test").await;
    let m = call(
        "POST",
        &app.url("/api/v1/meetings"),
        Some(&host),
        Some(json!({})),
    )
    .await;
    let code = m.body["code"].as_str().expect("code");
    let url = app.url(&format!("/api/v1/join/{code}"));
    for _ in 0..5 {
        assert_eq!(
            call("POST", &url, Some(&host), Some(json!({})))
                .await
                .status,
            200
        );
    }
    let a = call("POST", &url, Some(&host), Some(json!({}))).await;
    assert_eq!(
        (a.status, a.error_code()),
        (429, "rate_limited"),
        "{:?}",
        a.body
    );
    assert!(a.headers.contains_key("retry-after"));
    let attacker = [127, 0, 0, 3];
    let mut ok = 0;
    for i in 0..20 {
        let (st, _) = post_from(attacker, &url, json!({"display_name": format!("g{i}")})).await;
        if st == 200 {
            ok += 1;
        } else {
            assert_eq!(st, 429);
        }
    }
    assert_eq!(ok, 8, "guest joins from one address");
    // Someone else, from another address, is unaffected.
    let (st, b) = post_from([127, 0, 0, 4], &url, json!({"display_name": "Other"})).await;
    assert_eq!(st, 200, "{b}");
}

// ------------------------------------------------------------------------------------------
// Mail
// ------------------------------------------------------------------------------------------

/// Rows of the SQLite outbox: (recipient, status, message length).
fn outbox(app: &Appliance) -> Vec<(String, String, usize)> {
    let db = app.data_dir().join("meeting.db");
    let out = std::process::Command::new(support::python())
        .args([
            "-c",
            "import sqlite3,sys,json; c=sqlite3.connect(sys.argv[1]); \
             print(json.dumps(c.execute('select recipient,status,length(message) from mail_outbox').fetchall()))",
        ])
        .arg(&db)
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("rows")
}

/// An SMTP server that refuses every recipient for good (550).
fn refusing_smtp(port: u16) -> support::TiedChild {
    let mut cmd = std::process::Command::new(support::python());
    cmd.args([
        "-c",
        "import sys,time\nfrom aiosmtpd.controller import Controller\n\
         class H:\n    async def handle_RCPT(self, server, session, envelope, address, opts):\n        return '550 5.1.1 no such mailbox'\n\
         c=Controller(H(), hostname='127.0.0.1', port=int(sys.argv[1])); c.start()\nwhile True: time.sleep(3600)\n",
    ])
    .arg(port.to_string());
    let child = support::TiedChild::spawn(cmd).expect("spawn the refusing SMTP server");
    support::wait_until(Duration::from_secs(15), "the refusing SMTP server", || {
        support::port_open(port).then_some(())
    });
    child
}

/// Before the fix any account could mail without limit (200 invitees per meeting, re-sent on
/// every PATCH). Now a person's actions may queue `mail.per_user_per_day` mails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_per_person_is_limited() {
    let sink = SmtpSink::start();
    let args = mail_args(sink.port());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let app = Appliance::start(&args, &[("MEETING_MAIL__PER_USER_PER_DAY", "6")]);
    let ann = support::api::sign_in(&app, &sink, "ann@corp.test").await;
    let t = meeting_appliance::util::now();
    let invitees: Vec<String> = (0..4).map(|i| format!("guest{i}@corp.test")).collect();
    let m = call(
        "POST",
        &app.url("/api/v1/meetings"),
        Some(&ann),
        Some(json!({"title": "Plan", "begin_at": t + 3600, "end_at": t + 7200, "invitees": invitees})),
    )
    .await;
    assert_eq!(m.status, 201, "{:?}", m.body);
    let id = m.body["id"].as_i64().expect("id");
    // Rescheduling would mail the four again: 8 > 6.
    let p = call(
        "PATCH",
        &app.url(&format!("/api/v1/meetings/{id}")),
        Some(&ann),
        Some(json!({"begin_at": t + 7200, "end_at": t + 9000})),
    )
    .await;
    assert_eq!(
        (p.status, p.error_code()),
        (429, "rate_limited"),
        "{:?}",
        p.body
    );
    // Nothing of the refused change happened, and others still mail.
    let g = call(
        "GET",
        &app.url(&format!("/api/v1/meetings/{id}")),
        Some(&ann),
        None,
    )
    .await;
    assert_eq!(g.body["begin_at"], t + 3600);
    let bob = support::api::sign_in(&app, &sink, "bob@corp.test").await;
    let m = call(
        "POST",
        &app.url("/api/v1/meetings"),
        Some(&bob),
        Some(json!({"title": "Bob's", "begin_at": t + 3600, "end_at": t + 7200, "invitees": invitees})),
    )
    .await;
    assert_eq!(m.status, 201, "{:?}", m.body);
}

/// Before the fix the outbox retried failed mail forever, 50 oldest first in one pass, so mail
/// to a server that never answers held up sign-in codes. Now sign-in codes have their own lane,
/// a pass is bounded in time, a permanent refusal gives up at once (shown to admins), and sent
/// or given-up bodies are purged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeliverable_mail_neither_delays_codes_nor_stays_forever() {
    // dead.test's server accepts connections and never says a word; gone.test's refuses all.
    let blackhole = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead_port = blackhole.local_addr().expect("addr").port();
    let held = std::thread::spawn(move || {
        let mut conns = Vec::new();
        for c in blackhole.incoming().flatten() {
            conns.push(c);
            if conns.len() > 200 {
                break;
            }
        }
    });
    let gone_port = support::free_port();
    let _refusing = refusing_smtp(gone_port);
    let sink = SmtpSink::start();
    let mut args: Vec<String> = Vec::new();
    for (port, domain) in [(dead_port, "dead.test"), (gone_port, "gone.test")] {
        args.extend(
            [
                "--mailServer",
                "127.0.0.1",
                "--mailPort",
                &port.to_string(),
                "--mailDomains",
                domain,
                "--mailTls",
                "none",
            ]
            .map(String::from),
        );
    }
    args.extend(mail_args(sink.port()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let app = Appliance::start(&args, &[("MEETING_AUTH__ADMIN_EMAILS", "ops@corp.test")]);
    let ops = support::api::sign_in(&app, &sink, "ops@corp.test").await;
    let t = meeting_appliance::util::now();
    let invitees: Vec<String> = (0..40)
        .map(|i| format!("p{i}@dead.test"))
        .chain((0..3).map(|i| format!("q{i}@gone.test")))
        .collect();
    let m = call(
        "POST",
        &app.url("/api/v1/meetings"),
        Some(&ops),
        Some(json!({"title": "Doomed", "begin_at": t + 3600, "end_at": t + 7200, "invitees": invitees})),
    )
    .await;
    assert_eq!(m.status, 201, "{:?}", m.body);
    // Give the outbox time to get stuck on dead.test.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let asked = Instant::now();
    let a = call(
        "POST",
        &app.url("/api/v1/auth/code"),
        None,
        Some(json!({"email": "cat@corp.test"})),
    )
    .await;
    assert_eq!(a.status, 204);
    let code = code_in(&nth_mail_to(&sink, "cat@corp.test", 1));
    println!(
        "a sign-in code behind 40 mails to a silent server arrived in {:?}",
        asked.elapsed()
    );
    assert!(
        asked.elapsed() < Duration::from_secs(15),
        "the code waited {:?} behind undeliverable mail",
        asked.elapsed()
    );
    let v = call(
        "POST",
        &app.url("/api/v1/auth/verify"),
        None,
        Some(json!({"email": "cat@corp.test", "code": code})),
    )
    .await;
    assert_eq!(v.status, 200);
    // gone.test's three are given up after one try and listed for admins.
    support::api::eventually("the refused mails given up", || async {
        let o = call("GET", &app.url("/api/v1/admin/overview"), Some(&ops), None).await;
        o.body["mail"]["given_up"].as_u64() == Some(3)
    })
    .await;
    let rows = outbox(&app);
    for (to, status, len) in &rows {
        if to.ends_with("@gone.test") {
            assert_eq!((status.as_str(), *len), ("failed", 0), "{to}");
        }
        if status == "sent" {
            assert_eq!(*len, 0, "a sent mail's body is purged ({to})");
        }
    }
    assert!(
        rows.iter()
            .any(|(to, s, _)| to == "cat@corp.test" && s == "sent"),
        "{rows:?}"
    );
    drop(app);
    drop(held);
}

// ------------------------------------------------------------------------------------------
// The deployment secret
// ------------------------------------------------------------------------------------------

/// Every key derives from the secret. Before the fix an empty or short secret file was used
/// as it was, and an 8-character `--secret` was accepted.
#[test]
fn weak_secrets_are_refused_with_how_to_fix() {
    for (content, why) in [
        ("", "empty"),
        ("hunter2", "too short"),
        (
            "abababababababababababababababababababab",
            "too few different",
        ),
    ] {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("secret"), content).expect("write");
        let o = support::run_cli(
            support::appliance_bin!(),
            &[
                "--dataDir",
                dir.path().to_str().expect("utf8"),
                "--listen",
                "127.0.0.1:0",
                "--udpPort",
                "0",
            ],
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "a {why} secret file was accepted");
        assert!(
            err.contains(why) && err.contains("32 random bytes"),
            "{err}"
        );
    }
    let dir = tempfile::tempdir().expect("tmp");
    let o = support::run_cli(
        support::appliance_bin!(),
        &[
            "--secret",
            "short-secret",
            "--dataDir",
            dir.path().to_str().expect("utf8"),
            "--listen",
            "127.0.0.1:0",
        ],
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--secret is too short"), "{err}");
}

/// `/metrics` tells a stranger how busy the box is and who runs it; it can be restricted to
/// the monitoring host and a scrape token. (Before the fix it could not be restricted.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_be_restricted_to_an_address_and_a_token() {
    let app = Appliance::start(
        &["--udpPort", "0"],
        &[
            ("MEETING_METRICS__ALLOW", "127.0.0.1/32"),
            ("MEETING_METRICS__TOKEN", "scrape-token-0123456789"),
        ],
    );
    let get = |from: [u8; 4], token: Option<&'static str>| {
        let url = app.url("/metrics");
        async move {
            meeting_appliance::util::install_ring_provider();
            let c = reqwest::Client::builder()
                .local_address(std::net::IpAddr::from(from))
                .build()
                .expect("client");
            let mut rb = c.get(url);
            if let Some(t) = token {
                rb = rb.bearer_auth(t);
            }
            let r = rb.send().await.expect("get");
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        }
    };
    let (st, body) = get([127, 0, 0, 1], Some("scrape-token-0123456789")).await;
    assert_eq!(st, 200);
    assert!(body.contains("meeting_"), "{body}");
    assert_eq!(get([127, 0, 0, 1], None).await.0, 401);
    assert_eq!(get([127, 0, 0, 1], Some("wrong")).await.0, 401);
    let (st, body) = get([127, 0, 0, 9], Some("scrape-token-0123456789")).await;
    assert_eq!(st, 403, "{body}");
    assert!(!body.contains("meeting_"), "{body}");
    // Health stays open for load balancers.
    let h = reqwest::get(app.url("/healthz")).await.expect("healthz");
    assert_eq!(h.status().as_u16(), 200);
}

/// A browser sends the session cookie whatever page opens the WebSocket: before the fix another
/// site's page could open a live notes connection in the signed-in user's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notes_websocket_refuses_other_sites() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let (app, host, _code, id) = hosted().await;
    let addr = app
        .url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let open = |origin: &'static str| {
        let (addr, host) = (addr.clone(), host.clone());
        async move {
            let mut req = format!("ws://{addr}/api/v1/meetings/{id}/notes/live")
                .into_client_request()
                .expect("request");
            req.headers_mut().insert(
                "Origin",
                origin.replace("SELF", &addr).parse().expect("hdr"),
            );
            req.headers_mut().insert(
                "Cookie",
                format!("meeting_session={host}").parse().expect("hdr"),
            );
            let tcp = TcpStream::connect(&addr).await.expect("tcp");
            tokio_tungstenite::client_async(req, tcp).await.map(|_| ())
        }
    };
    match open("http://evil.example").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            assert_eq!(r.status().as_u16(), 403)
        }
        other => panic!("a foreign page got the notes connection: {other:?}"),
    }
    open("http://SELF").await.expect("our own page connects");
}

// ------------------------------------------------------------------------------------------
// Files
// ------------------------------------------------------------------------------------------

/// Grants an upload of `len` bytes and PUTs them: (file id, PUT status, PUT body).
async fn put_only(app: &Appliance, token: &str, id: i64, len: usize) -> (Value, u16, Value) {
    let (s, g) = support::files::grant(
        &app.url(""),
        token,
        id,
        json!({"name": "x.bin", "content_type": "application/octet-stream", "size": len}),
    )
    .await;
    assert_eq!(s, 201, "{g}");
    let url = g["upload_url"].as_str().expect("upload_url").to_string();
    let put = tokio::task::spawn_blocking(move || {
        support::files::request(
            "PUT",
            &url,
            &[("Content-Type", "application/octet-stream")],
            &vec![7u8; len],
        )
    })
    .await
    .expect("PUT");
    let body = serde_json::from_slice(&put.body).unwrap_or(Value::Null);
    (g["id"].clone(), put.status, body)
}

/// Before the fix an upload nobody committed counted against the meeting's quota for ever:
/// a member could fill the quota with uploads the meeting never sees. Now the fsserver deletes
/// an upload the apiserver did not record within `fs.unclaimed_ttl`; recorded ones stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_never_committed_stop_holding_the_quota() {
    let app = Appliance::start(
        &["--udpPort", "0"],
        &[
            ("MEETING_FS__UNCLAIMED_TTL", "3s"),
            ("MEETING_FS__MEETING_QUOTA", "3000"),
        ],
    );
    let host = sign_in_from_log(&app, "host@corp.test").await;
    let m = call(
        "POST",
        &app.url("/api/v1/meetings"),
        Some(&host),
        Some(json!({})),
    )
    .await;
    let id = m.body["id"].as_i64().expect("id");
    let base = app.url("");
    let base = base.trim_end_matches('/');
    // One recorded file (1000 bytes) and one never committed (1500 bytes).
    let kept = support::files::upload(
        base,
        &host,
        id,
        "kept.bin",
        "application/octet-stream",
        vec![1u8; 1000],
    )
    .await;
    let (orphan, st, _) = put_only(&app, &host, id, 1500).await;
    assert_eq!(st, 201);
    // The quota is full: 1000 + 1500 + 1000 > 3000.
    let (_, st, body) = put_only(&app, &host, id, 1000).await;
    assert_eq!(st, 413, "{body}");
    // Once the orphan's time is up it is deleted and its bytes count no more.
    let started = Instant::now();
    loop {
        let (_, st, _) = put_only(&app, &host, id, 1000).await;
        if st == 201 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the orphan still holds the quota"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Committing the reaped orphan now fails clearly; the recorded file is still there.
    let _ = orphan;
    let list = call(
        "GET",
        &app.url(&format!("/api/v1/meetings/{id}/files")),
        Some(&host),
        None,
    )
    .await;
    let files = list.body.as_array().expect("files");
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0]["id"], kept["id"]);
    let url = files[0]["download_url"]
        .as_str()
        .expect("download_url")
        .to_string();
    let got = tokio::task::spawn_blocking(move || support::files::request("GET", &url, &[], b""))
        .await
        .expect("GET");
    assert_eq!(
        (got.status, got.body.len()),
        (200, 1000),
        "the recorded file outlived the TTL"
    );
}

/// An upload committed after its time is up is refused, not recorded as a broken file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_commit_is_refused_not_recorded() {
    let app = Appliance::start(&["--udpPort", "0"], &[("MEETING_FS__UNCLAIMED_TTL", "2s")]);
    let host = sign_in_from_log(&app, "host@corp.test").await;
    let m = call(
        "POST",
        &app.url("/api/v1/meetings"),
        Some(&host),
        Some(json!({})),
    )
    .await;
    let id = m.body["id"].as_i64().expect("id");
    let (fid, st, put) = put_only(&app, &host, id, 100).await;
    assert_eq!(st, 201);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let a = call(
        "POST",
        &app.url(&format!(
            "/api/v1/meetings/{id}/files/{}/commit",
            fid.as_str().expect("id")
        )),
        Some(&host),
        Some(json!({"receipt": put["receipt"]})),
    )
    .await;
    assert!(
        matches!(
            (a.status, a.error_code()),
            (400, "invalid_receipt") | (410, "upload_expired")
        ),
        "{} {:?}",
        a.status,
        a.body
    );
    let list = call(
        "GET",
        &app.url(&format!("/api/v1/meetings/{id}/files")),
        Some(&host),
        None,
    )
    .await;
    assert_eq!(
        list.body.as_array().map(Vec::len),
        Some(0),
        "{:?}",
        list.body
    );
}

// ------------------------------------------------------------------------------------------
// The database going away and coming back
// ------------------------------------------------------------------------------------------

/// A real MariaDB stopped and started again under a running appliance. Before the fix every API
/// call waited 10 s for a connection and then failed with a 500. Now: a 503 with Retry-After
/// within 3 s, `/readyz` names the database, a meeting in progress carries on, and who
/// entered and left meanwhile is written once the database is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_answers_fast_and_loses_nothing() {
    let db = support::MariaDb::start();
    let args = [
        "--mysqlAddress".to_string(),
        db.address(),
        "--mysqlUser".into(),
        db.user().into(),
        "--mysqlPassword".into(),
        db.password().into(),
        "--mysqlDatabase".into(),
        db.database().into(),
        "--udpPort".into(),
        "0".into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let app = Appliance::start(&args, &[]);
    let host = sign_in_from_log(&app, "host@corp.test").await;
    let m = call(
        "POST",
        &app.url("/api/v1/meetings"),
        Some(&host),
        Some(json!({})),
    )
    .await;
    let (id, code) = (
        m.body["id"].as_i64().expect("id"),
        m.body["code"].as_str().expect("code").to_string(),
    );
    // Two people in the meeting; a third has a join answer but has not entered yet.
    let mut ann = open(&app, &code, "Ann").await;
    let mut bob = open(&app, &code, "Bob").await;
    let cy = join_answer(&app, &code, "Cy").await;
    let cy_id = cy["participant_id"].as_str().expect("pid").to_string();
    let bob_id = bob.participant.clone();
    // Wait until the sfuserver's reports are written (Ann and Bob present).
    let participants = app.url(&format!("/api/v1/meetings/{id}/participants"));
    support::api::eventually("Ann and Bob recorded", || async {
        let p = call("GET", &participants, Some(&host), None).await;
        p.body
            .as_array()
            .is_some_and(|l| l.iter().filter(|r| !r["entered_at"].is_null()).count() == 2)
    })
    .await;

    db.stop();
    // The API answers at once, clearly.
    let asked = Instant::now();
    let a = call(
        "POST",
        &app.url("/api/v1/auth/code"),
        None,
        Some(json!({"email": "dee@corp.test"})),
    )
    .await;
    let took = asked.elapsed();
    println!("an API call with the database down answered in {took:?}");
    assert_eq!(
        (a.status, a.error_code()),
        (503, "database_unavailable"),
        "{:?}",
        a.body
    );
    assert!(a.headers.contains_key("retry-after"));
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let r = call("GET", &app.url("/readyz"), None, None).await;
    assert_eq!(r.status, 503);
    assert!(
        r.body["reason"].as_str().unwrap_or("").contains("database"),
        "{:?}",
        r.body
    );
    // The meeting goes on: chat flows, Cy enters, Bob leaves.
    assert!(
        ann.send(json!({"type": "chat", "text": "still here?"}))
            .await
    );
    assert_eq!(
        bob.until("chat", Duration::from_secs(10)).await["text"],
        "still here?"
    );
    let cy_in = support::api::enter(&cy).await;
    assert!(bob.send(json!({"type": "leave"})).await);
    let _ = bob.until_closed(Duration::from_secs(10)).await;
    drop(bob);
    let left = ann.left_reason(&bob_id, Duration::from_secs(10)).await;
    assert_eq!(left, "left");
    ann.alive().await;

    db.restart();
    // Recovery without a restart of the appliance; what happened meanwhile is recorded.
    support::api::eventually("ready again", || async {
        call("GET", &app.url("/readyz"), None, None).await.status == 200
    })
    .await;
    support::api::eventually("Cy's entry and Bob's leaving written", || async {
        let p = call("GET", &participants, Some(&host), None).await;
        let Some(rows) = p.body.as_array() else { return false };
        let row = |pid: &str| rows.iter().find(|r| r["participant_id"] == pid).cloned();
        matches!(
            (row(&cy_id), row(&bob_id)),
            (Some(c), Some(b)) if !c["entered_at"].is_null() && c["left_at"].is_null() && !b["left_at"].is_null()
        )
    })
    .await;
    let a = call(
        "POST",
        &app.url("/api/v1/auth/code"),
        None,
        Some(json!({"email": "dee@corp.test"})),
    )
    .await;
    assert_eq!(a.status, 204, "{:?}", a.body);
    drop(cy_in);
}

/// The session rule is one function for every way in: before, the notes WebSocket's own copy
/// of it ignored disabled accounts, and an open notes connection outlived its session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notes_connection_ends_with_its_session() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let (app, host, _code, id) = hosted().await;
    let addr = app
        .url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let mut req = format!("ws://{addr}/api/v1/meetings/{id}/notes/live")
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "Cookie",
        format!("meeting_session={host}").parse().expect("hdr"),
    );
    let tcp = TcpStream::connect(&addr).await.expect("tcp");
    let (mut ws, _) = tokio_tungstenite::client_async(req, tcp)
        .await
        .expect("notes ws");
    // The connection works (the server says hello), then the session ends.
    let hello = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;
    assert!(matches!(hello, Ok(Some(Ok(_)))), "{hello:?}");
    let out = call("POST", &app.url("/api/v1/auth/logout"), Some(&host), None).await;
    assert_eq!(out.status, 204);
    let ended = Instant::now();
    let reason = loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let m: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                if m["type"] == "closed" {
                    break m["reason"].as_str().unwrap_or("").to_string();
                }
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("the notes connection outlived its session: {other:?}"),
        }
    };
    assert_eq!(reason, "signed_out");
    println!(
        "notes connection closed {:?} after sign-out",
        ended.elapsed()
    );
}

// ------------------------------------------------------------------------------------------
// The page's scripts
// ------------------------------------------------------------------------------------------

/// The page carries its first script (boot.js) inline, and its CSP allows exactly that
/// script by its hash: no `'unsafe-inline'`, so a script injected into the page (or a page
/// changed on the way) does not run. Without the hash the browser would refuse boot.js too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_runs_only_its_own_inline_script() {
    use base64::Engine as _;
    use sha2::Digest as _;
    let app = Appliance::start(&[], &[]);
    let (csp, html) = support::api::page(&app, "/m/abc-defg-hij?name=Ann&autojoin=1").await;
    let inline: Vec<&str> = html
        .split("<script>")
        .skip(1)
        .filter_map(|s| s.split_once("</script>").map(|(script, _)| script))
        .collect();
    assert_eq!(inline.len(), 1, "one inline script (boot.js) in {html}");
    assert!(
        inline[0].contains("/api/v1/join/"),
        "the inline script is boot.js: {}",
        inline[0]
    );
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(inline[0]));
    let script_src = csp
        .split(';')
        .map(str::trim)
        .find(|d| d.starts_with("script-src"))
        .unwrap_or_else(|| panic!("script-src in {csp}"));
    assert_eq!(
        script_src,
        format!("script-src 'self' 'wasm-unsafe-eval' 'sha256-{hash}'"),
        "{csp}"
    );
}
