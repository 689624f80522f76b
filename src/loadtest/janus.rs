//! Driving a Janus videoroom (the reference SFU of BENCHMARKS.md) with the same simulated
//! participants, through Janus' plain HTTP API: a session and a videoroom handle per
//! participant, events from a long poll. Only the signaling differs from our sfuserver; the
//! media, the checks and the figures are the same `peer` code.
//!
//! Janus carries one direction per PeerConnection: a publisher `join`s with a fixed feed id
//! (its participant index + 1) and sends a `publish` with its offer; a subscriber `join`s
//! with the feeds it wants, is sent Janus' offer and answers with `start`. A participant that
//! both publishes and subscribes (the `meeting` scenario) is therefore two peers here.

use std::collections::VecDeque;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::proto::signal::{ClientMsg, ServerMsg};

/// A Janus server's HTTP API (e.g. `http://10.99.0.1:8088/janus`).
#[derive(Clone)]
pub struct Janus {
    http: reqwest::Client,
    base: String,
}

fn txn() -> String {
    format!("lt{:x}", rand::random::<u64>())
}

impl Janus {
    pub fn new(base: &str) -> Result<Janus, String> {
        let http = reqwest::Client::builder()
            // Longer than Janus' 30 s long poll.
            .timeout(Duration::from_secs(45))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Janus {
            http,
            base: base.trim_end_matches('/').to_string(),
        })
    }

    /// A request to `path` (relative to the API root); Janus' own `error` answers become
    /// errors with its code and reason.
    async fn post(&self, path: &str, mut body: Value) -> Result<Value, String> {
        body["transaction"] = json!(txn());
        let url = format!("{}{path}", self.base);
        let r = self
            .http
            .post(&url)
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("POST {url}: {e}"))?;
        let v: Value = r
            .json()
            .await
            .map_err(|e| format!("POST {url}: answer is not JSON: {e}"))?;
        if v["janus"] == "error" {
            return Err(format!(
                "Janus {}: error {}: {}",
                body["janus"], v["error"]["code"], v["error"]["reason"]
            ));
        }
        Ok(v)
    }

    async fn session(&self) -> Result<u64, String> {
        let v = self.post("", json!({"janus": "create"})).await?;
        v["data"]["id"]
            .as_u64()
            .ok_or_else(|| format!("Janus create: no session id in {v}"))
    }

    async fn attach(&self, session: u64) -> Result<u64, String> {
        let v = self
            .post(
                &format!("/{session}"),
                json!({"janus": "attach", "plugin": "janus.plugin.videoroom"}),
            )
            .await?;
        v["data"]["id"]
            .as_u64()
            .ok_or_else(|| format!("Janus attach: no handle id in {v}"))
    }

    /// A fresh videoroom for one step (Opus + VP8, no bitrate cap, room for `publishers`).
    pub async fn create_room(&self, publishers: usize) -> Result<u64, String> {
        let session = self.session().await?;
        let handle = self.attach(session).await?;
        let v = self
            .post(
                &format!("/{session}/{handle}"),
                json!({"janus": "message", "body": {
                    "request": "create",
                    "publishers": publishers.max(1),
                    "bitrate": 0,
                    "audiocodec": "opus",
                    "videocodec": "vp8",
                    "notify_joining": false,
                }}),
            )
            .await?;
        let _ = self
            .post(&format!("/{session}"), json!({"janus": "destroy"}))
            .await;
        let data = &v["plugindata"]["data"];
        if let Some(e) = data["error"].as_str() {
            return Err(format!("Janus videoroom create: {e}"));
        }
        data["room"]
            .as_u64()
            .ok_or_else(|| format!("Janus videoroom create: no room in {v}"))
    }
}

/// What a participant is in the Janus room.
#[derive(Clone, Debug)]
pub struct JanusRole {
    pub room: u64,
    /// Publish under this feed id (None: subscribe only).
    pub feed: Option<u64>,
    /// Subscribe to these feeds (empty: publish only).
    pub subscribe: Vec<u64>,
}

/// One participant's Janus session, seen by the peer as our signaling.
pub struct JanusLink {
    janus: Janus,
    path: String,
    session: u64,
    events: mpsc::Receiver<Value>,
    poller: tokio::task::JoinHandle<()>,
    queued: VecDeque<ServerMsg>,
    /// Remote candidates trickled by Janus (SDP `candidate:` lines), for the peer to add.
    pub candidates: Vec<String>,
}

impl JanusLink {
    /// Session, handle, the long poll, and the videoroom `join` (a subscriber waits until its
    /// feeds publish; Janus' offer is then the first message).
    pub async fn connect(base: &str, role: &JanusRole, name: &str) -> Result<JanusLink, String> {
        let janus = Janus::new(base)?;
        let session = janus.session().await?;
        let handle = janus.attach(session).await?;
        let (tx, events) = mpsc::channel(256);
        let poll = janus.clone();
        let poller = tokio::spawn(async move {
            let url = format!("{}/{session}?maxev=16", poll.base);
            loop {
                let got = match poll.http.get(&url).send().await {
                    Ok(r) => r.json::<Value>().await,
                    Err(_) => break,
                };
                let Ok(v) = got else { break };
                let list = match v {
                    Value::Array(a) => a,
                    v => vec![v],
                };
                for e in list {
                    if e["janus"] == "keepalive" {
                        continue;
                    }
                    if tx.send(e).await.is_err() {
                        return;
                    }
                }
            }
        });
        let mut link = JanusLink {
            janus,
            path: format!("/{session}/{handle}"),
            session,
            events,
            poller,
            queued: VecDeque::new(),
            candidates: Vec::new(),
        };
        if let Some(feed) = role.feed {
            link.message(
                json!({"request": "join", "ptype": "publisher", "room": role.room,
                "id": feed, "display": name}),
                None,
            )
            .await?;
            link.until(|d| d["videoroom"] == "joined").await?;
        } else {
            let streams: Vec<Value> = role.subscribe.iter().map(|f| json!({"feed": f})).collect();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                link.message(
                    json!({"request": "join", "ptype": "subscriber", "room": role.room,
                        "streams": streams}),
                    None,
                )
                .await?;
                match link.until(|d| d["videoroom"] == "attached").await {
                    Ok(Some(sdp)) => {
                        link.queued.push_back(ServerMsg::Offer { sdp });
                        break;
                    }
                    Ok(None) => return Err("Janus attached the subscriber without an offer".into()),
                    // The feeds are not publishing yet: ask again.
                    Err(e) if tokio::time::Instant::now() < deadline => {
                        tracing::debug!("Janus subscriber join: {e}; again");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(link)
    }

    async fn message(&self, body: Value, jsep: Option<Value>) -> Result<(), String> {
        let mut m = json!({"janus": "message", "body": body});
        if let Some(j) = jsep {
            m["jsep"] = j;
        }
        self.janus.post(&self.path, m).await.map(|_| ())
    }

    /// Waits for the videoroom event `want` accepts (returns its JSEP SDP, if any); a
    /// videoroom error is an error. Other events are handled as usual.
    async fn until(&mut self, want: impl Fn(&Value) -> bool) -> Result<Option<String>, String> {
        let deadline = tokio::time::sleep(Duration::from_secs(15));
        tokio::pin!(deadline);
        loop {
            let e = tokio::select! {
                e = self.events.recv() => e.ok_or("Janus long poll ended")?,
                _ = &mut deadline => return Err("no answer from Janus within 15 s".into()),
            };
            let data = &e["plugindata"]["data"];
            if let Some(err) = data["error"].as_str() {
                return Err(format!(
                    "Janus videoroom: error {}: {err}",
                    data["error_code"]
                ));
            }
            if want(data) {
                return Ok(e["jsep"]["sdp"].as_str().map(str::to_string));
            }
            if let Some(m) = self.translate(e)? {
                self.queued.push_back(m);
            }
        }
    }

    /// A Janus event as our signaling message (None: nothing for the peer).
    fn translate(&mut self, e: Value) -> Result<Option<ServerMsg>, String> {
        match e["janus"].as_str().unwrap_or("") {
            "event" => {
                let data = &e["plugindata"]["data"];
                if let Some(err) = data["error"].as_str() {
                    return Err(format!(
                        "Janus videoroom: error {}: {err}",
                        data["error_code"]
                    ));
                }
                let sdp = e["jsep"]["sdp"].as_str().map(str::to_string);
                Ok(match (e["jsep"]["type"].as_str(), sdp) {
                    (Some("offer"), Some(sdp)) => Some(ServerMsg::Offer { sdp }),
                    (Some("answer"), Some(sdp)) => Some(ServerMsg::Answer { sdp }),
                    _ => None,
                })
            }
            "trickle" => {
                if let Some(c) = e["candidate"]["candidate"].as_str() {
                    self.candidates.push(c.to_string());
                }
                Ok(None)
            }
            "hangup" => Err(format!("Janus hung up: {}", e["reason"])),
            "detached" => Err("Janus detached the handle".into()),
            "timeout" => Err("Janus timed the session out".into()),
            _ => Ok(None),
        }
    }

    /// The next message for the peer (cancel-safe).
    pub async fn next(&mut self) -> Result<Option<ServerMsg>, String> {
        if let Some(m) = self.queued.pop_front() {
            return Ok(Some(m));
        }
        let e = self.events.recv().await.ok_or("Janus long poll ended")?;
        self.translate(e)
    }

    /// Our signaling message as a Janus request.
    pub async fn send(&mut self, m: &ClientMsg) -> Result<(), String> {
        match m {
            ClientMsg::Offer { sdp, .. } => {
                self.message(
                    json!({"request": "publish"}),
                    Some(json!({"type": "offer", "sdp": sdp})),
                )
                .await
            }
            ClientMsg::Answer { sdp } => {
                self.message(
                    json!({"request": "start"}),
                    Some(json!({"type": "answer", "sdp": sdp})),
                )
                .await
            }
            _ => Ok(()),
        }
    }

    /// Ends the session (Janus tears its handles down).
    pub async fn close(&mut self) {
        self.poller.abort();
        let _ = self
            .janus
            .post(&format!("/{}", self.session), json!({"janus": "destroy"}))
            .await;
    }
}
