//! Attacks, run against the real binary: each test performs the abuse and shows the limit
//! holding, the attacker refused or disconnected, and everyone else unharmed.

mod support;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::api::{call, code_in, mail_args, nth_mail_to};
use support::files::rss_kib;
use support::media::sign_in_from_log;
use support::{Appliance, SmtpSink};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

type Ws = WebSocketStream<TcpStream>;

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

/// A joined signaling session.
struct Session {
    ws: Ws,
    participant: String,
}

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

/// Opens signaling with a join answer over `tcp` and waits for `joined`.
async fn open_with(tcp: TcpStream, answer: &Value) -> Session {
    let url = answer["sfu"]["signal_url"].as_str().expect("signal_url");
    let (mut ws, _) = tokio_tungstenite::client_async(url, tcp)
        .await
        .expect("websocket upgrade");
    let join = json!({"type": "join", "token": answer["token"]});
    ws.send(Message::text(join.to_string()))
        .await
        .expect("send join");
    let mut s = Session {
        ws,
        participant: answer["participant_id"]
            .as_str()
            .expect("participant_id")
            .to_string(),
    };
    s.until("joined", Duration::from_secs(10)).await;
    s
}

async fn open(app: &Appliance, code: &str, name: &str) -> Session {
    let answer = join_answer(app, code, name).await;
    let url = url::Url::parse(answer["sfu"]["signal_url"].as_str().expect("url")).expect("url");
    let addr = format!(
        "{}:{}",
        url.host_str().expect("host"),
        url.port_or_known_default().expect("port")
    );
    let tcp = TcpStream::connect(addr).await.expect("connect");
    open_with(tcp, &answer).await
}

impl Session {
    async fn send(&mut self, v: Value) -> bool {
        self.ws.send(Message::text(v.to_string())).await.is_ok()
    }

    /// The next JSON message, or None when the session ended.
    async fn next(&mut self, deadline: Duration) -> Option<Value> {
        loop {
            match tokio::time::timeout(deadline, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    return Some(serde_json::from_str(&t).expect("server sends JSON"));
                }
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => return None,
                Ok(Some(Ok(_))) => continue,
                Err(_) => panic!("nothing from the server for {deadline:?}"),
            }
        }
    }

    /// Reads until a message of type `ty` (panics if the session ends first).
    async fn until(&mut self, ty: &str, deadline: Duration) -> Value {
        let end = Instant::now() + deadline;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let m = self
                .next(left.max(Duration::from_millis(1)))
                .await
                .unwrap_or_else(|| panic!("session ended while waiting for {ty}"));
            if m["type"] == ty {
                return m;
            }
        }
    }

    /// Reads until the session ends; returns the `closed` reason if one came.
    async fn until_closed(&mut self, deadline: Duration) -> Option<String> {
        let end = Instant::now() + deadline;
        let mut reason = None;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "the session was not closed within {deadline:?}"
            );
            match self.next(left).await {
                None => return reason,
                Some(m) if m["type"] == "closed" => {
                    reason = m["reason"].as_str().map(str::to_string);
                }
                Some(_) => {}
            }
        }
    }

    /// A ping answered: the session works.
    async fn alive(&mut self) {
        assert!(self.send(json!({"type": "ping"})).await, "send ping");
        self.until("pong", Duration::from_secs(10)).await;
    }
}

/// The `reason` of the `participant_left` for `who` that `s` sees.
async fn left_reason(s: &mut Session, who: &str, deadline: Duration) -> String {
    let end = Instant::now() + deadline;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let m = s.until("participant_left", left).await;
        if m["participant_id"] == who {
            return m["reason"].as_str().unwrap_or("").to_string();
        }
    }
}

/// An appliance with one signed-in host and its instant meeting: (app, meeting code).
async fn meeting() -> (Appliance, String) {
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
    let reason = attacker.until_closed(Duration::from_secs(30)).await;
    assert_eq!(
        reason.as_deref(),
        Some("rate_limited"),
        "after {sent} offers"
    );
    let pid = attacker.participant.clone();
    assert_eq!(
        left_reason(&mut bystander, &pid, Duration::from_secs(10)).await,
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
    let reason = attacker.until_closed(Duration::from_secs(30)).await;
    assert_eq!(
        reason.as_deref(),
        Some("rate_limited"),
        "after {sent} chats"
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
    let mut sleeper = open_with(tcp, &answer).await;
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
    let mut first = open_with(TcpStream::connect(&addr).await.expect("tcp"), &answer).await;
    let mut second = open_with(TcpStream::connect(&addr).await.expect("tcp"), &answer).await;
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
