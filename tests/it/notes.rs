//! Meeting notes over real HTTP and WebSocket against the real binary. The notes are a CRDT
//! document (yrs on both sides here: the test's editors are y-sync clients written with
//! yrs, the same protocol the browser's Yjs speaks): people typing into the same line at
//! the same moment all keep their text, offline edits merge on reconnect, an acknowledged
//! change survives `kill -9`, REST saves on stale versions merge (or 409 when too old),
//! history stays under its budget, floods are refused while others go on, and the notes are
//! mailed rendered with file links that work.

use crate::support;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use support::api::{Answer, call, mail_args, mails_to, sign_in};
use support::files::{get_hashed, pattern_bytes, sha256_hex, upload};
use support::media::sign_in_from_log;
use support::rtc_client::{WsMsg, ws_connect};
use support::{Appliance, SmtpSink, wait_until};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use yrs::encoding::read::Cursor;
use yrs::sync::awareness::{AwarenessUpdate, AwarenessUpdateEntry};
use yrs::sync::protocol::MessageReader;
use yrs::sync::{Message, SyncMessage};
use yrs::updates::decoder::{Decode, DecoderV1};
use yrs::updates::encoder::Encode;
use yrs::{
    Assoc, Doc, GetString, IndexedSequence, ReadTxn, StateVector, Text, TextRef, Transact,
    TransactionMut, Update,
};

fn now() -> i64 {
    meeting_appliance::util::now()
}

fn start_env(extra: &[String], envs: &[(&str, &str)]) -> Appliance {
    let mut args: Vec<String> = ["--udpPort", "0", "--port", "0", "--sfuWorkers", "1"]
        .map(String::from)
        .to_vec();
    args.extend_from_slice(extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Appliance::start(&args, envs)
}

fn start(extra: &[String]) -> Appliance {
    start_env(extra, &[])
}

/// How an editor proves who it is.
#[derive(Clone)]
enum Cred {
    Session(String),
    Guest(String),
}

/// A y-sync client with its own copy of the document, like a browser tab.
struct Editor {
    name: &'static str,
    url: String,
    cred: Cred,
    doc: Doc,
    text: TextRef,
    ws: Option<WebSocketStream<TcpStream>>,
    /// Change messages sent on this connection, and how many the server acknowledged.
    sent: u64,
    acked: u64,
    version: i64,
    hello: Value,
    closed: Option<(String, String)>,
    /// Others' awareness states by client id.
    awareness: HashMap<u64, Value>,
    /// Where this editor's own last typed character is (it types after it).
    caret: Option<yrs::StickyIndex>,
}

impl Editor {
    async fn connect(app: &Appliance, meeting: i64, name: &'static str, cred: Cred) -> Editor {
        let doc = Doc::new();
        let text = doc.get_or_insert_text("notes");
        let mut e = Editor {
            name,
            url: format!("ws://{}/api/v1/meetings/{meeting}/notes/live", app.addr()),
            cred,
            doc,
            text,
            ws: None,
            sent: 0,
            acked: 0,
            version: 0,
            hello: Value::Null,
            closed: None,
            awareness: HashMap::new(),
            caret: None,
        };
        e.open().await;
        e
    }

    /// (Re)connects and syncs: the server's step 1 is answered with what it lacks (edits made
    /// offline), and our step 1 brings what we lack.
    async fn open(&mut self) {
        self.sent = 0;
        self.acked = 0;
        self.closed = None;
        let mut url = self.url.clone();
        if let Cred::Guest(t) = &self.cred {
            url.push_str(&format!("?join_token={t}"));
        }
        let mut req = url.as_str().into_client_request().expect("request");
        if let Cred::Session(t) = &self.cred {
            req.headers_mut().insert(
                "authorization",
                format!("Bearer {t}").parse().expect("header"),
            );
        }
        let u = url::Url::parse(&url).expect("url");
        let tcp = TcpStream::connect((u.host_str().expect("host"), u.port().expect("port")))
            .await
            .expect("connect");
        let (ws, _) = tokio_tungstenite::client_async(req, tcp)
            .await
            .unwrap_or_else(|e| panic!("{}: notes WebSocket: {e}", self.name));
        self.ws = Some(ws);
        let mine = self.doc.transact().state_vector();
        self.send(Message::Sync(SyncMessage::SyncStep1(mine)).encode_v1())
            .await;
        self.until("hello and the first sync", |e| {
            !e.hello.is_null() && e.sent > 0 && e.acked == e.sent
        })
        .await;
    }

    async fn send(&mut self, b: Vec<u8>) {
        if let Some(ws) = self.ws.as_mut() {
            let _ = ws.send(WsMessage::Binary(b.into())).await;
        }
    }

    /// Handles one incoming message; false when the connection ended.
    async fn step(&mut self, wait: Duration) -> bool {
        let Some(ws) = self.ws.as_mut() else {
            return false;
        };
        let m = match tokio::time::timeout(wait, ws.next()).await {
            Err(_) => return true,
            Ok(None) | Ok(Some(Err(_))) => {
                self.ws = None;
                return false;
            }
            Ok(Some(Ok(m))) => m,
        };
        match m {
            WsMessage::Text(t) => {
                let v: Value = serde_json::from_str(&t).expect("JSON text message");
                match v["type"].as_str() {
                    Some("hello") => {
                        self.version = v["version"].as_i64().unwrap_or(0);
                        self.hello = v;
                    }
                    Some("ack") => {
                        self.acked = v["n"].as_u64().expect("n");
                        self.version = v["version"].as_i64().expect("version");
                    }
                    Some("closed") => {
                        self.closed = Some((
                            v["reason"].as_str().unwrap_or("").into(),
                            v["message"].as_str().unwrap_or("").into(),
                        ))
                    }
                    _ => {}
                }
            }
            WsMessage::Binary(b) => {
                let mut dec = DecoderV1::new(Cursor::new(&b));
                let msgs: Vec<Message> = MessageReader::new(&mut dec)
                    .collect::<Result<_, _>>()
                    .expect("y-sync messages from the server");
                for msg in msgs {
                    match msg {
                        Message::Sync(SyncMessage::SyncStep1(sv)) => {
                            let diff = self.doc.transact().encode_diff_v1(&sv);
                            self.send(Message::Sync(SyncMessage::SyncStep2(diff)).encode_v1())
                                .await;
                            self.sent += 1;
                        }
                        Message::Sync(SyncMessage::SyncStep2(u) | SyncMessage::Update(u)) => {
                            let u = Update::decode_v1(&u).expect("server update decodes");
                            self.doc
                                .transact_mut()
                                .apply_update(u)
                                .expect("server update applies");
                        }
                        Message::Awareness(a) => {
                            for (id, e) in a.clients {
                                let v: Value = serde_json::from_str(&e.json).expect("json");
                                if v.is_null() {
                                    self.awareness.remove(&id.get());
                                } else {
                                    self.awareness.insert(id.get(), v);
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            WsMessage::Close(_) => {
                self.ws = None;
                return false;
            }
            _ => {}
        }
        true
    }

    /// Handles messages until `pred` holds (10 s at most).
    async fn until(&mut self, what: &str, pred: impl Fn(&Editor) -> bool) {
        let end = Instant::now() + Duration::from_secs(20);
        while !pred(self) {
            assert!(
                Instant::now() < end,
                "{}: timed out waiting for {what}; text {:?}, sent {} acked {} closed {:?}",
                self.name,
                self.text(),
                self.sent,
                self.acked,
                self.closed
            );
            if !self.step(Duration::from_millis(200)).await && !pred(self) {
                panic!(
                    "{}: connection ended waiting for {what}: {:?}",
                    self.name, self.closed
                );
            }
        }
    }

    /// Handles whatever arrives within `d`.
    async fn drain(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end && self.ws.is_some() {
            self.step(Duration::from_millis(20)).await;
        }
    }

    fn text(&self) -> String {
        self.text.get_string(&self.doc.transact())
    }

    /// A local edit, sent as one update (when connected).
    async fn edit(&mut self, f: impl FnOnce(&TextRef, &mut TransactionMut)) {
        let u = {
            let mut txn = self.doc.transact_mut();
            f(&self.text, &mut txn);
            txn.encode_update_v1()
        };
        if self.ws.is_some() {
            self.send(Message::Sync(SyncMessage::Update(u)).encode_v1())
                .await;
            self.sent += 1;
        }
    }

    /// Types one character after this editor's own last one (or at `start` the first time),
    /// as a person's caret would.
    async fn type_char(&mut self, start: u32, c: char) {
        let at = match &self.caret {
            Some(s) => s.get_offset(&self.doc.transact()).expect("caret").index + 1,
            None => start,
        };
        self.edit(|t, txn| t.insert(txn, at, &c.to_string())).await;
        let txn = self.doc.transact();
        self.caret = self.text.sticky_index(&txn, at, Assoc::After);
    }

    async fn settle(&mut self) {
        self.until("all changes acknowledged", |e| e.acked == e.sent)
            .await;
    }

    async fn disconnect(&mut self) {
        if let Some(mut ws) = self.ws.take() {
            let _ = ws.close(None).await;
        }
    }

    /// Publishes an awareness state for this editor's client id.
    async fn announce(&mut self, json: Value) {
        let id = self.doc.client_id();
        let u = AwarenessUpdate {
            clients: [(
                id,
                AwarenessUpdateEntry {
                    clock: 1,
                    json: json.to_string().into(),
                },
            )]
            .into(),
        };
        self.send(Message::Awareness(u).encode_v1()).await;
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

async fn get_notes(app: &Appliance, id: i64, token: &str) -> Answer {
    call(
        "GET",
        &app.url(&format!("/api/v1/meetings/{id}/notes")),
        Some(token),
        None,
    )
    .await
}

async fn history(app: &Appliance, id: i64, token: &str) -> Vec<Value> {
    let h = call(
        "GET",
        &app.url(&format!("/api/v1/meetings/{id}/notes/versions")),
        Some(token),
        None,
    )
    .await;
    assert_eq!(h.status, 200, "{:?}", h.body);
    h.body.as_array().expect("list").clone()
}

fn history_bytes(list: &[Value]) -> u64 {
    list.iter()
        .map(|v| v["bytes"].as_u64().expect("bytes"))
        .sum()
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

async fn put_as_guest(
    app: &Appliance,
    id: i64,
    join_token: &str,
    text: &str,
    v: i64,
) -> reqwest::Response {
    support::api::client()
        .put(app.url(&format!("/api/v1/meetings/{id}/notes")))
        .header("X-Join-Token", join_token)
        .json(&json!({"text": text, "version": v}))
        .send()
        .await
        .expect("guest PUT")
}

/// A scheduled meeting of ann's with bob invited: (id, code).
async fn meeting(app: &Appliance, owner: &str) -> (i64, String) {
    let begin = now() + 3600;
    let m = call(
        "POST",
        &app.url("/api/v1/meetings"),
        Some(owner),
        Some(json!({"title": "Plan", "begin_at": begin, "end_at": begin + 1800, "invitees": ["bob@corp.test"]})),
    )
    .await;
    assert_eq!(m.status, 201, "{:?}", m.body);
    (
        m.body["id"].as_i64().expect("id"),
        m.body["code"].as_str().expect("code").to_string(),
    )
}

/// Two people type 200 characters each into the same line at the same moment (their changes
/// cross on the wire): both see both texts, whole, in the same document, which is what the
/// server stored. Then one is offline while both edit: on reconnect both edits are in both.
/// Cursors carry the server's name for each person, not the one they claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_editors_typing_into_one_line_converge_and_offline_edits_merge() {
    let app = start(&[]);
    let ann = sign_in_from_log(&app, "ann@corp.test").await;
    let bob = sign_in_from_log(&app, "bob@corp.test").await;
    let (id, _) = meeting(&app, &ann).await;
    let a0 = put_notes(&app, id, &ann, "# Plan\nAgenda: \nEnd\n", 0).await;
    assert_eq!(a0.status, 200, "{:?}", a0.body);

    let mut a = Editor::connect(&app, id, "ann", Cred::Session(ann.clone())).await;
    let mut b = Editor::connect(&app, id, "bob", Cred::Session(bob.clone())).await;
    assert_eq!(a.text(), "# Plan\nAgenda: \nEnd\n");
    assert_eq!(b.text(), a.text());
    assert_eq!(a.hello["version"], 1);

    // Both type at the end of "Agenda: ", interleaved, without waiting for each other.
    let start = "# Plan\nAgenda: ".len() as u32;
    let ta: String = (0..200)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let tb: String = (0..200)
        .map(|i| char::from(b'A' + (i % 26) as u8))
        .collect();
    for (ca, cb) in ta.chars().zip(tb.chars()) {
        a.type_char(start, ca).await;
        b.type_char(start, cb).await;
    }
    a.settle().await;
    b.settle().await;
    let both = |e: &Editor| e.text().len() == "# Plan\nAgenda: \nEnd\n".len() + 400;
    a.until("bob's typing", both).await;
    b.until("ann's typing", both).await;
    assert_eq!(a.text(), b.text(), "the two copies are the same");
    let line = a.text().lines().nth(1).expect("line").to_string();
    assert!(line.contains(&ta) && line.contains(&tb), "{line}");
    assert!(line.starts_with("Agenda: "), "{line}");
    let stored = get_notes(&app, id, &ann).await;
    assert_eq!(stored.body["text"], a.text().as_str(), "stored as shown");
    assert_eq!(
        stored.body["version"].as_i64(),
        Some(a.version.max(b.version))
    );
    assert!(stored.body["version"].as_i64() >= Some(401));

    // Cursors: ann claims to be "Mallory"; bob sees ann's real name.
    a.announce(json!({"user": {"name": "Mallory", "color": "#30bced"}, "cursor": null}))
        .await;
    b.until("ann's cursor", |e| !e.awareness.is_empty()).await;
    let me = call("GET", &app.url("/api/v1/me"), Some(&ann), None).await;
    let st = b.awareness.values().next().expect("state");
    assert_eq!(st["user"]["name"], me.body["display_name"]);
    assert_eq!(st["user"]["color"], "#30bced");
    // When ann goes, so does her cursor.
    a.disconnect().await;
    b.until("ann's cursor gone", |e| e.awareness.is_empty())
        .await;

    // Offline: ann edits while disconnected, bob meanwhile too.
    a.edit(|t, txn| t.insert(txn, 0, "Offline by ann. ")).await;
    let len = b.text().len() as u32;
    b.edit(|t, txn| t.insert(txn, len, "Online by bob.\n"))
        .await;
    b.settle().await;
    a.open().await; // the sync sends ann's edit and brings bob's
    a.settle().await;
    b.until("ann's offline edit", |e| {
        e.text().starts_with("Offline by ann. ")
    })
    .await;
    assert!(a.text().ends_with("Online by bob.\n"), "{}", a.text());
    assert_eq!(a.text(), b.text());
    assert_eq!(
        get_notes(&app, id, &bob).await.body["text"],
        a.text().as_str()
    );
}

/// Kill -9 the appliance right after a change was acknowledged: after a restart it is there,
/// once, and the editor that made it syncs again without duplicating anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_change_survives_kill_9() {
    let dir = tempfile::tempdir().expect("data dir");
    let listen = format!("127.0.0.1:{}", support::free_port());
    let args = ["--listen", listen.as_str(), "--udpPort", "0", "--port", "0"];
    let mut app = Appliance::start_bin(support::appliance_bin!(), dir.path(), &args, &[]);
    let ann = sign_in_from_log(&app, "ann@corp.test").await;
    let (id, _) = meeting(&app, &ann).await;
    let mut a = Editor::connect(&app, id, "ann", Cred::Session(ann.clone())).await;
    for (i, c) in "durable keystrokes".chars().enumerate() {
        a.type_char(0, c).await;
        if i == 8 {
            a.settle().await;
        }
    }
    a.settle().await; // acknowledged: now kill
    app.signal(libc::SIGKILL);
    wait_until(Duration::from_secs(10), "the appliance to die", || {
        app.try_wait()
    });
    drop(app);
    let app = Appliance::start_bin(support::appliance_bin!(), dir.path(), &args, &[]);
    let got = get_notes(&app, id, &ann).await;
    assert_eq!(got.body["text"], "durable keystrokes", "{:?}", got.body);
    assert_eq!(got.body["version"], 18);
    a.open().await;
    a.settle().await;
    assert_eq!(a.text(), "durable keystrokes");
    assert_eq!(
        get_notes(&app, id, &ann).await.body["text"],
        "durable keystrokes"
    );
}

/// REST saves: one made on the current version sets the text exactly; several made on the
/// same older version all merge (each person's words kept once, none invented); one from a
/// version the server no longer has is 409 with the text to redo it on. Every save is kept
/// in history with its author; a restore is a change everyone following sees. Who may
/// read and write: owner, invitees, people who joined; guests only while in the meeting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_saves_merge_history_restores_and_access() {
    let app = start(&[]);
    let ann = sign_in_from_log(&app, "ann@corp.test").await;
    let bob = sign_in_from_log(&app, "bob@corp.test").await;
    let (id, code) = meeting(&app, &ann).await;
    let mut follower = Editor::connect(&app, id, "bob-tab", Cred::Session(bob.clone())).await;
    // The page may show images only from this box (and its fsservers): no tracking pixels.
    let (csp, _) = support::api::page(&app, "/m/abc").await;
    let img = csp
        .split(';')
        .map(str::trim)
        .find(|d| d.starts_with("img-src"))
        .unwrap_or_else(|| panic!("img-src in {csp}"));
    assert_eq!(img, "img-src 'self' data: blob:", "{csp}");

    let a = put_notes(&app, id, &ann, "Attendees: Dan, Eve\nDate: 2024-05-01\n", 0).await;
    assert_eq!((a.status, a.body["version"].as_i64()), (200, Some(1)));
    follower
        .until("the first save", |e| e.text().starts_with("Attendees"))
        .await;
    // Two saves made on version 1, both: the first applies, the second merges.
    let (ra, rb) = tokio::join!(
        put_notes(&app, id, &ann, "Attendees: Jan, Eve\nDate: 2024-06-01\n", 1),
        put_notes(
            &app,
            id,
            &bob,
            "Attendees: Dana, Eve\nDate: 2024-05-03\n",
            1
        )
    );
    assert_eq!(
        (ra.status, rb.status),
        (200, 200),
        "{:?} {:?}",
        ra.body,
        rb.body
    );
    let text = get_notes(&app, id, &ann).await.body["text"]
        .as_str()
        .expect("text")
        .to_string();
    for word in ["Jan", "Dana", "2024-06-01", "2024-05-03", "Eve"] {
        assert_eq!(text.matches(word).count(), 1, "{word} once in {text:?}");
    }
    let (open, close) = ("<".repeat(7), ">".repeat(7)); // conflict markers: none any more
    for invented in ["Jana", "2024-06-03", open.as_str(), close.as_str()] {
        assert!(!text.contains(invented), "{invented} in {text:?}");
    }
    follower.until("both saves", |e| e.text() == text).await;
    // A save on the current version sets exactly that text.
    let v = get_notes(&app, id, &ann).await.body["version"]
        .as_i64()
        .expect("v");
    let a = put_notes(&app, id, &bob, "# Minutes\n\nAll agreed.\n", v).await;
    assert_eq!(
        (
            a.status,
            a.body["text"].as_str(),
            a.body["version"].as_i64()
        ),
        (200, Some("# Minutes\n\nAll agreed.\n"), Some(v + 1))
    );
    follower
        .until("the new text", |e| e.text() == "# Minutes\n\nAll agreed.\n")
        .await;
    // A version from the future: 409 with the current text; nothing changed.
    let a = put_notes(&app, id, &ann, "overwrite!", 99).await;
    assert_eq!((a.status, a.error_code()), (409, "version_conflict"));
    assert_eq!(a.body["text"], "# Minutes\n\nAll agreed.\n");
    assert_eq!(a.body["version"].as_i64(), Some(v + 1));
    // Bad input: a negative version, a text over the limit, not JSON.
    assert_eq!(
        put_notes(&app, id, &ann, "x", -1).await.error_code(),
        "invalid_version"
    );
    let big = "x".repeat(1024 * 1024 + 1);
    let a = put_notes(&app, id, &ann, &big, v + 1).await;
    assert_eq!((a.status, a.error_code()), (413, "notes_too_large"));

    // History: every save, newest first, with who wrote it.
    let h = history(&app, id, &ann).await;
    let versions: Vec<i64> = h.iter().filter_map(|v| v["version"].as_i64()).collect();
    assert_eq!(versions, [v + 1, 3, 2, 1], "{h:?}");
    assert!(h.iter().all(|v| v["kind"] == "save"));
    assert_eq!(h[0]["authors"].as_array().map(Vec::len), Some(1));
    let v1 = call(
        "GET",
        &app.url(&format!("/api/v1/meetings/{id}/notes/versions/1")),
        Some(&bob),
        None,
    )
    .await;
    assert_eq!(v1.body["text"], "Attendees: Dan, Eve\nDate: 2024-05-01\n");
    // Restore: the old text comes back, live for the follower, kept as a restore.
    let a = call(
        "POST",
        &app.url(&format!("/api/v1/meetings/{id}/notes/versions/1/restore")),
        Some(&bob),
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["text"], "Attendees: Dan, Eve\nDate: 2024-05-01\n");
    follower
        .until("the restore", |e| {
            e.text() == "Attendees: Dan, Eve\nDate: 2024-05-01\n"
        })
        .await;
    let h = history(&app, id, &ann).await;
    assert_eq!(h[0]["kind"], "restore");
    let a = call(
        "GET",
        &app.url(&format!("/api/v1/meetings/{id}/notes/versions/999")),
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
    let (tx, mut rx) = ws_connect(&format!(
        "ws://{}/api/v1/meetings/{id}/notes/live",
        app.addr()
    ))
    .await
    .expect("ws");
    tx.text(json!({"type": "auth", "token": cy}).to_string());
    let m = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
    let Ok(Some(WsMsg::Text(t))) = m else {
        panic!("expected the closed message, got {m:?}")
    };
    let m: Value = serde_json::from_str(&t).expect("json");
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
    // A join answer alone is not enough: Dan must be in the meeting once.
    assert_eq!(call("GET", &notes_url, Some(&dan), None).await.status, 404);
    let dan_present = support::api::enter(&j.body).await;
    support::api::eventually("Dan's entry", || async {
        call("GET", &notes_url, Some(&dan), None).await.status == 200
    })
    .await;
    drop(dan_present);

    // A guest reads and writes while in the meeting, live too.
    let g = call(
        "POST",
        &app.url(&format!("/api/v1/join/{code}")),
        None,
        Some(json!({"display_name": "Gus"})),
    )
    .await;
    assert_eq!(g.status, 200, "{:?}", g.body);
    let gtok = g.body["token"].as_str().expect("join token").to_string();
    // Not before the guest is in the media session.
    assert_eq!(get_as_guest(&app, id, &gtok).await, 403);
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
    support::api::eventually("the guest's entry", || async {
        get_as_guest(&app, id, &gtok).await == 200
    })
    .await;
    let forged = {
        let (body, _) = gtok.split_once('.').expect("dot");
        format!("{body}.AAAA")
    };
    assert_eq!(get_as_guest(&app, id, &forged).await, 401);
    let mut gus = Editor::connect(&app, id, "gus", Cred::Guest(gtok.clone())).await;
    assert_eq!(gus.text(), "Attendees: Dan, Eve\nDate: 2024-05-01\n");
    gus.edit(|t, txn| t.insert(txn, 0, "Gus was here. ")).await;
    gus.settle().await;
    follower
        .until("the guest's edit", |e| {
            e.text().starts_with("Gus was here. ")
        })
        .await;

    // The guest leaves the media session: from then on, no notes.
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
    gus.until("being closed", |e| e.closed.is_some()).await;
    assert_eq!(
        gus.closed.as_ref().map(|c| c.0.as_str()),
        Some("left_meeting")
    );
    assert_eq!(
        put_as_guest(&app, id, &gtok, "x", 0)
            .await
            .status()
            .as_u16(),
        403
    );
    // Signed-in people keep the notes after the meeting.
    assert_eq!(call("GET", &notes_url, Some(&dan), None).await.status, 200);
}

/// Live messages that are not acceptable end that connection with a reason; the others
/// go on: garbage, a change in another person's name, notes over the size limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_live_messages_are_refused_and_others_unharmed() {
    let app = start(&[]);
    let ann = sign_in_from_log(&app, "ann@corp.test").await;
    let bob = sign_in_from_log(&app, "bob@corp.test").await;
    let (id, _) = meeting(&app, &ann).await;
    let mut a = Editor::connect(&app, id, "ann", Cred::Session(ann.clone())).await;
    a.edit(|t, txn| t.insert(txn, 0, "ann's line\n")).await;
    a.settle().await;

    // Garbage.
    let mut m = Editor::connect(&app, id, "mallory", Cred::Session(bob.clone())).await;
    m.send(vec![0, 2, 0xff, 0xff, 0xff, 0xff, 0xff]).await;
    m.until("being closed", |e| e.closed.is_some()).await;
    assert_eq!(m.closed.as_ref().map(|c| c.0.as_str()), Some("bad_update"));

    // Content in ann's name (her client id), made by bob.
    let forged = {
        let d = Doc::with_client_id(a.doc.client_id().get());
        let t = d.get_or_insert_text("notes");
        let u = a
            .doc
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        d.transact_mut()
            .apply_update(Update::decode_v1(&u).expect("u"))
            .expect("apply");
        let mut txn = d.transact_mut();
        t.insert(&mut txn, 0, "ann never wrote this ");
        txn.encode_update_v1()
    };
    let mut m = Editor::connect(&app, id, "mallory", Cred::Session(bob.clone())).await;
    m.send(Message::Sync(SyncMessage::Update(forged)).encode_v1())
        .await;
    m.until("being closed", |e| e.closed.is_some()).await;
    assert_eq!(m.closed.as_ref().map(|c| c.0.as_str()), Some("bad_update"));

    // Over the size limit (1 MiB of text).
    let mut m = Editor::connect(&app, id, "bob", Cred::Session(bob.clone())).await;
    let big = "y".repeat(1024 * 1024);
    m.edit(|t, txn| t.insert(txn, 0, &big)).await;
    m.until("being closed", |e| e.closed.is_some()).await;
    assert_eq!(
        m.closed.as_ref().map(|c| c.0.as_str()),
        Some("notes_too_large")
    );

    // Ann was not disturbed (or was told to reconnect, and did) and goes on.
    a.drain(Duration::from_millis(300)).await;
    if a.ws.is_none() {
        a.open().await;
    }
    let len = a.text().len() as u32;
    a.edit(|t, txn| t.insert(txn, len, "still writing\n")).await;
    a.settle().await;
    assert_eq!(
        get_notes(&app, id, &ann).await.body["text"],
        "ann's line\nstill writing\n"
    );
}

/// A 100 KB note saved 1,000 times (REST, one save after the other, each a little
/// different): the meeting's history stays under its budget, the newest and the first
/// version are kept, and the kept ones are closer together recently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_saves_of_a_100kb_note_stay_under_the_history_budget() {
    let budget: u64 = 4 * 1024 * 1024;
    let budget_s = budget.to_string();
    let app = start_env(
        &[],
        &[
            ("MEETING_NOTES__HISTORY_BUDGET", budget_s.as_str()),
            ("MEETING_NOTES__SAVES_PER_MINUTE", "1000000"),
            ("MEETING_NOTES__SAVE_BURST", "1000000"),
        ],
    );
    let ann = sign_in_from_log(&app, "ann@corp.test").await;
    let (id, _) = meeting(&app, &ann).await;
    let para = "The quarterly numbers were discussed at length and everyone agreed. ";
    let mut body = String::new();
    while body.len() < 100_000 {
        body.push_str(para);
    }
    let started = Instant::now();
    for i in 0..1000 {
        let text = format!("# Save {i}\n\n{body}\n\nLast edit: {i}\n");
        let a = put_notes(&app, id, &ann, &text, i).await;
        assert_eq!(a.status, 200, "save {i}: {:?}", a.body);
    }
    eprintln!("1000 saves of 100 KB in {:?}", started.elapsed());
    let h = history(&app, id, &ann).await;
    let used = history_bytes(&h);
    eprintln!("history: {} versions, {used} bytes of {budget}", h.len());
    assert!(used <= budget, "{used} > {budget}");
    assert!(h.len() >= 30, "most of the budget is used: {}", h.len());
    assert_eq!(h[0]["version"], 1000, "the newest is kept");
    assert_eq!(
        h.last().map(|v| v["version"].clone()),
        Some(json!(1)),
        "the first is kept"
    );
    let got = call(
        "GET",
        &app.url(&format!("/api/v1/meetings/{id}/notes/versions/1000")),
        Some(&ann),
        None,
    )
    .await;
    assert!(
        got.body["text"]
            .as_str()
            .unwrap_or("")
            .starts_with("# Save 999\n")
    );
}

/// Hardening (notes history): a guest flooding 1 MiB saves (the attack: 31 MiB of history in
/// 30 saves) is refused with 429 after a small burst, the history stays under its budget,
/// and the owner can still save; flooding live changes gets the connection closed with
/// `rate_limited` while the owner's editor goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flooding_saves_and_changes_is_limited_and_history_stays_under_budget() {
    let app = start(&[]);
    let ann = sign_in_from_log(&app, "ann@corp.test").await;
    let m = call(
        "POST",
        &app.url("/api/v1/meetings"),
        Some(&ann),
        Some(json!({})),
    )
    .await;
    let (id, code) = (
        m.body["id"].as_i64().expect("id"),
        m.body["code"].as_str().expect("code").to_string(),
    );
    let g = call(
        "POST",
        &app.url(&format!("/api/v1/join/{code}")),
        None,
        Some(json!({"display_name": "Flo"})),
    )
    .await;
    let gtok = g.body["token"].as_str().expect("token").to_string();
    // The participation opens when the guest is in the media session (hardening item 4
    // may require it); enter it so the guest counts as present either way.
    let signal = g.body["sfu"]["signal_url"]
        .as_str()
        .expect("signal")
        .to_string();
    let (stx, _srx) = ws_connect(&signal).await.expect("signaling");
    stx.text(json!({"type": "join", "token": gtok}).to_string());
    wait_until(Duration::from_secs(10), "the guest to be in", || {
        let s = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(get_as_guest(&app, id, &gtok))
        });
        (s == 200).then_some(())
    });

    let mut version = 0;
    let (mut ok, mut limited) = (0, 0);
    for i in 0..40 {
        let text = format!("{i:04}{}", "z".repeat(1024 * 1024 - 8));
        let r = put_as_guest(&app, id, &gtok, &text, version).await;
        match r.status().as_u16() {
            200 => {
                ok += 1;
                let v: Value = r.json().await.expect("json");
                version = v["version"].as_i64().expect("version");
            }
            429 => {
                limited += 1;
                let after = r.headers().get("retry-after").and_then(|v| v.to_str().ok());
                assert!(after.is_some_and(|s| s.parse::<u64>().is_ok_and(|n| n >= 1)));
            }
            s => panic!("save {i}: {s}"),
        }
    }
    eprintln!("guest flood: {ok} saves accepted, {limited} refused");
    assert!(ok <= 12, "{ok} saves accepted");
    assert!(limited >= 28, "{limited} refused");
    let used = history_bytes(&history(&app, id, &ann).await);
    assert!(used <= 16 * 1024 * 1024, "history {used} bytes");
    // The owner is not affected.
    let a = put_notes(&app, id, &ann, "# Owner's notes\n", version).await;
    assert_eq!(a.status, 200, "{:?}", a.body);

    // Live: the guest sends changes as fast as it can.
    let mut owner = Editor::connect(&app, id, "ann", Cred::Session(ann.clone())).await;
    let mut flood = Editor::connect(&app, id, "flo", Cred::Guest(gtok.clone())).await;
    for i in 0..2000 {
        flood.edit(|t, txn| t.insert(txn, 0, "!")).await;
        if i % 100 == 0 {
            flood.drain(Duration::from_millis(1)).await;
        }
        if flood.closed.is_some() || flood.ws.is_none() {
            break;
        }
    }
    flood.until("being closed", |e| e.closed.is_some()).await;
    assert_eq!(
        flood.closed.as_ref().map(|c| c.0.as_str()),
        Some("rate_limited")
    );
    owner.drain(Duration::from_millis(200)).await;
    owner.edit(|t, txn| t.insert(txn, 0, "still mine")).await;
    owner.settle().await;
    assert!(
        get_notes(&app, id, &ann).await.body["text"]
            .as_str()
            .unwrap_or("")
            .contains("still mine")
    );
    let used = history_bytes(&history(&app, id, &ann).await);
    assert!(used <= 16 * 1024 * 1024, "history {used} bytes");
}

/// Eight writers save on the same version at once: all are kept, merged, each text once.
/// Then enough live changes to fold them into the stored state (compaction); a save on a
/// version older than that is 409; a restart reads the same notes. On each database.
async fn writers_scenario(db_args: &[&str]) {
    let envs = [("MEETING_NOTES__LIVE_UPDATES_PER_SECOND", "100000")];
    let dir = tempfile::tempdir().expect("data dir");
    let mut args = vec!["--udpPort", "0", "--port", "0", "--sfuWorkers", "1"];
    args.extend_from_slice(db_args);
    let mut app = Appliance::start_bin(support::appliance_bin!(), dir.path(), &args, &envs);
    let ann = sign_in_from_log(&app, "ann@corp.test").await;
    let m = call(
        "POST",
        &app.url("/api/v1/meetings"),
        Some(&ann),
        Some(json!({})),
    )
    .await;
    let id = m.body["id"].as_i64().expect("id");
    let texts: Vec<String> = (0..8).map(|i| format!("writer-{i}-line\n")).collect();
    let answers =
        futures_util::future::join_all(texts.iter().map(|t| put_notes(&app, id, &ann, t, 0))).await;
    assert!(
        answers.iter().all(|a| a.status == 200),
        "{:?}",
        answers.iter().map(|a| &a.body).collect::<Vec<_>>()
    );
    let cur = get_notes(&app, id, &ann).await;
    let text = cur.body["text"].as_str().expect("text").to_string();
    for t in &texts {
        assert_eq!(
            text.matches(t.as_str()).count(),
            1,
            "{t:?} once in {text:?}"
        );
    }
    assert_eq!(cur.body["version"], 8);

    let mut e = Editor::connect(&app, id, "ann", Cred::Session(ann.clone())).await;
    for _ in 0..520 {
        e.edit(|t, txn| t.push(txn, ".")).await;
    }
    e.settle().await;
    let a = put_notes(&app, id, &ann, "stale", 1).await;
    assert_eq!(
        (a.status, a.error_code()),
        (409, "version_conflict"),
        "{:?}",
        a.body
    );
    let expect = e.text();
    assert_eq!(
        get_notes(&app, id, &ann).await.body["text"],
        expect.as_str()
    );
    e.disconnect().await;
    app.signal(libc::SIGKILL);
    wait_until(Duration::from_secs(10), "the appliance to die", || {
        app.try_wait()
    });
    drop(app);
    let app = Appliance::start_bin(support::appliance_bin!(), dir.path(), &args, &envs);
    let got = get_notes(&app, id, &ann).await;
    assert_eq!(got.body["text"], expect.as_str());
    assert_eq!(got.body["version"], 528);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_merge_and_compaction_on_sqlite_mariadb_and_postgresql() {
    writers_scenario(&[]).await;
    let db = support::shared_mariadb();
    let url = db.url_for(&db.unique_database("notes"));
    writers_scenario(&["--databaseUrl", &url]).await;
    let pg = support::postgres::Postgres::start();
    let url = pg.database("notes");
    writers_scenario(&["--databaseUrl", &url]).await;
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
