//! A second, independent WebRTC client for media tests: webrtc-rs (`webrtc` crate) peer
//! connections that speak our signaling protocol (`src/proto/mod.rs`) the way
//! `web/static/rtc.js` does — impolite, one SDP step at a time — over a minimal RFC 6455
//! WebSocket client written here (no WebSocket client crate is in Cargo.lock).

#![allow(dead_code)]

use base64::Engine;
use serde_json::{Value, json};
use sha1::{Digest, Sha1};
use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use webrtc::api::APIBuilder;
use webrtc::api::interceptor_registry::register_default_interceptors;
use webrtc::api::media_engine::MediaEngine;
use webrtc::api::setting_engine::SettingEngine;
use webrtc::ice::network_type::NetworkType;
use webrtc::interceptor::registry::Registry;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::signaling_state::RTCSignalingState;
use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;
use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ------------------------------------------------------------------------------------------
// WebSocket (RFC 6455), client side: masked frames out, unmasked frames in.
// ------------------------------------------------------------------------------------------

/// Either side of a plain or TLS connection.
type Rd = Box<dyn tokio::io::AsyncRead + Unpin + Send>;
type Wr = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;

const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const OP_CONT: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;
const MAX_MESSAGE: u64 = 1 << 20;

/// What the server sent.
#[derive(Debug, Clone, PartialEq)]
pub enum WsMsg {
    Text(String),
    Binary(Vec<u8>),
    /// The server's close frame (code, reason); the channel ends after it.
    Close(Option<u16>, String),
    /// The connection failed (protocol violation or I/O error); the channel ends after it.
    Error(String),
}

/// Sends frames; cheap to clone. Sending after the connection ended is a no-op.
#[derive(Clone)]
pub struct WsSender {
    tx: mpsc::UnboundedSender<(u8, Vec<u8>)>,
}

impl WsSender {
    pub fn text(&self, s: String) {
        let _ = self.tx.send((OP_TEXT, s.into_bytes()));
    }
    pub fn ping(&self, payload: &[u8]) {
        let _ = self.tx.send((OP_PING, payload.to_vec()));
    }
    /// A close frame with a status code; the writer stops after it.
    pub fn close(&self, code: u16, reason: &str) {
        let mut p = code.to_be_bytes().to_vec();
        p.extend_from_slice(reason.as_bytes());
        let _ = self.tx.send((OP_CLOSE, p));
    }
}

/// Opens `ws://host:port/path` or `wss://…` (any certificate accepted: a test client that
/// plays a browser told to trust the deployment's self-signed certificates): the HTTP/1.1 upgrade with a random `Sec-WebSocket-Key`, the
/// `Sec-WebSocket-Accept` checked. Returns the sender and the stream of received messages.
pub async fn ws_connect(url: &str) -> io::Result<(WsSender, mpsc::UnboundedReceiver<WsMsg>)> {
    let bad = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
    let u = url::Url::parse(url).map_err(|e| bad(format!("{url}: {e}")))?;
    let tls = match u.scheme() {
        "ws" => false,
        "wss" => true,
        _ => return Err(bad(format!("{url}: only ws:// and wss:// are supported"))),
    };
    let host = u.host_str().ok_or_else(|| bad(format!("{url}: no host")))?;
    let port = u
        .port_or_known_default()
        .unwrap_or(if tls { 443 } else { 80 });
    let mut path = u.path().to_string();
    if let Some(q) = u.query() {
        path.push('?');
        path.push_str(q);
    }
    let stream = TcpStream::connect((host, port)).await?;
    stream.set_nodelay(true)?;
    let (rd, mut wr): (Rd, Wr) = if tls {
        meeting_appliance::util::install_ring_provider();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(
            meeting_appliance::bridge::client::client_tls_config(),
        ));
        let name = rustls::pki_types::ServerName::try_from(
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
        )
        .map_err(|e| bad(format!("{url}: {e}")))?;
        let s = connector.connect(name, stream).await?;
        let (r, w) = tokio::io::split(s);
        (Box::new(r), Box::new(w))
    } else {
        let (r, w) = stream.into_split();
        (Box::new(r), Box::new(w))
    };
    let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>());
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nUser-Agent: meeting-appliance-tests\r\n\r\n"
    );
    wr.write_all(request.as_bytes()).await?;
    let mut rd = BufReader::new(rd);
    let mut status = String::new();
    rd.read_line(&mut status).await?;
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        if rd.read_line(&mut line).await? == 0 {
            return Err(bad(
                "connection closed during the WebSocket handshake".into()
            ));
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    if status.split_whitespace().nth(1) != Some("101") {
        return Err(bad(format!(
            "WebSocket upgrade refused: {} {headers:?}",
            status.trim_end()
        )));
    }
    let expect = base64::engine::general_purpose::STANDARD
        .encode(Sha1::digest(format!("{key}{WS_GUID}").as_bytes()));
    if headers.get("sec-websocket-accept") != Some(&expect) {
        return Err(bad(format!(
            "bad Sec-WebSocket-Accept {:?} (want {expect})",
            headers.get("sec-websocket-accept")
        )));
    }
    if headers
        .get("upgrade")
        .is_none_or(|v| !v.eq_ignore_ascii_case("websocket"))
    {
        return Err(bad(format!("no `Upgrade: websocket` in {headers:?}")));
    }

    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let (in_tx, in_rx) = mpsc::unbounded_channel();
    tokio::spawn(ws_writer(wr, out_rx));
    tokio::spawn(ws_reader(rd, in_tx, WsSender { tx: out_tx.clone() }));
    Ok((WsSender { tx: out_tx }, in_rx))
}

async fn ws_writer(mut wr: Wr, mut rx: mpsc::UnboundedReceiver<(u8, Vec<u8>)>) {
    while let Some((op, payload)) = rx.recv().await {
        let mut f = Vec::with_capacity(payload.len() + 14);
        f.push(0x80 | op); // FIN, no extensions
        let n = payload.len();
        if n < 126 {
            f.push(0x80 | n as u8);
        } else if n <= 0xffff {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
        let mask: [u8; 4] = rand::random();
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        if wr.write_all(&f).await.is_err() {
            return;
        }
        if op == OP_CLOSE {
            let _ = wr.shutdown().await;
            return;
        }
    }
}

/// One frame: (fin, opcode, payload).
async fn read_frame(rd: &mut BufReader<Rd>) -> Result<(bool, u8, Vec<u8>), String> {
    let mut h = [0u8; 2];
    rd.read_exact(&mut h)
        .await
        .map_err(|e| format!("read: {e}"))?;
    let fin = h[0] & 0x80 != 0;
    if h[0] & 0x70 != 0 {
        return Err(format!("RSV bits set without an extension: {:#04x}", h[0]));
    }
    let op = h[0] & 0x0f;
    if h[1] & 0x80 != 0 {
        return Err("the server sent a masked frame (RFC 6455 section 5.1 forbids it)".into());
    }
    let mut len = u64::from(h[1] & 0x7f);
    if len == 126 {
        let mut b = [0u8; 2];
        rd.read_exact(&mut b)
            .await
            .map_err(|e| format!("read: {e}"))?;
        len = u64::from(u16::from_be_bytes(b));
    } else if len == 127 {
        let mut b = [0u8; 8];
        rd.read_exact(&mut b)
            .await
            .map_err(|e| format!("read: {e}"))?;
        len = u64::from_be_bytes(b);
    }
    if len > MAX_MESSAGE {
        return Err(format!("frame of {len} bytes"));
    }
    if op >= 0x8 && (len > 125 || !fin) {
        return Err(format!(
            "control frame {op:#x} fragmented or longer than 125 bytes"
        ));
    }
    let mut payload = vec![0u8; len as usize];
    rd.read_exact(&mut payload)
        .await
        .map_err(|e| format!("read: {e}"))?;
    Ok((fin, op, payload))
}

async fn ws_reader(mut rd: BufReader<Rd>, tx: mpsc::UnboundedSender<WsMsg>, out: WsSender) {
    // A fragmented data message being assembled: (opcode, bytes so far).
    let mut partial: Option<(u8, Vec<u8>)> = None;
    loop {
        let (fin, op, payload) = match read_frame(&mut rd).await {
            Ok(f) => f,
            Err(e) => {
                let _ = tx.send(WsMsg::Error(e));
                return;
            }
        };
        let data = match op {
            OP_PING => {
                let _ = out.tx.send((OP_PONG, payload));
                continue;
            }
            OP_PONG => continue,
            OP_CLOSE => {
                let code =
                    (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                let reason = String::from_utf8_lossy(payload.get(2..).unwrap_or(&[])).into_owned();
                // Echo the close (RFC 6455 section 5.5.1); the writer then shuts the socket.
                out.close(code.unwrap_or(1000), "");
                let _ = tx.send(WsMsg::Close(code, reason));
                return;
            }
            OP_TEXT | OP_BINARY => {
                if partial.is_some() {
                    let _ = tx.send(WsMsg::Error(
                        "a new data frame inside a fragmented message".into(),
                    ));
                    return;
                }
                if fin {
                    Some((op, payload))
                } else {
                    partial = Some((op, payload));
                    None
                }
            }
            OP_CONT => {
                let Some((first, mut buf)) = partial.take() else {
                    let _ = tx.send(WsMsg::Error("a continuation frame without a start".into()));
                    return;
                };
                buf.extend_from_slice(&payload);
                if buf.len() as u64 > MAX_MESSAGE {
                    let _ = tx.send(WsMsg::Error("message too long".into()));
                    return;
                }
                if fin {
                    Some((first, buf))
                } else {
                    partial = Some((first, buf));
                    None
                }
            }
            other => {
                let _ = tx.send(WsMsg::Error(format!("unknown opcode {other:#x}")));
                return;
            }
        };
        if let Some((op, bytes)) = data {
            let msg = if op == OP_TEXT {
                match String::from_utf8(bytes) {
                    Ok(s) => WsMsg::Text(s),
                    Err(_) => {
                        let _ = tx.send(WsMsg::Error("a text message that is not UTF-8".into()));
                        return;
                    }
                }
            } else {
                WsMsg::Binary(bytes)
            };
            if tx.send(msg).is_err() {
                return;
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// webrtc-rs peer connections
// ------------------------------------------------------------------------------------------

/// A webrtc-rs peer connection that works inside a private network namespace where only
/// loopback exists (the sfuserver advertises 127.0.0.1): loopback host candidates gathered
/// (webrtc-rs skips them by default), IPv4 UDP only, no mDNS, default codecs (Opus 111,
/// VP8 96 …) and the default interceptors (NACK, RTCP reports, TWCC).
pub async fn loopback_peer_connection() -> Arc<RTCPeerConnection> {
    peer_connection(true).await
}

/// A peer connection over UDP/IPv4 without mDNS; with loopback candidates when asked (clients
/// in a namespace with only `lo`), else on the namespace's other interfaces.
pub async fn peer_connection(include_loopback: bool) -> Arc<RTCPeerConnection> {
    let mut m = MediaEngine::default();
    m.register_default_codecs().expect("register codecs");
    let registry =
        register_default_interceptors(Registry::new(), &mut m).expect("register interceptors");
    let mut s = SettingEngine::default();
    s.set_include_loopback_candidate(include_loopback);
    s.set_network_types(vec![NetworkType::Udp4]);
    s.set_ice_multicast_dns_mode(webrtc::ice::mdns::MulticastDnsMode::Disabled);
    let api = APIBuilder::new()
        .with_media_engine(m)
        .with_interceptor_registry(registry)
        .with_setting_engine(s)
        .build();
    Arc::new(
        api.new_peer_connection(RTCConfiguration::default())
            .await
            .expect("new peer connection"),
    )
}

// ------------------------------------------------------------------------------------------
// A signaling client: join, then negotiate as the impolite peer.
// ------------------------------------------------------------------------------------------

/// What a client's negotiation has done so far.
#[derive(Default, Debug, Clone)]
pub struct NegState {
    pub awaiting_answer: bool,
    pub needs_negotiation: bool,
    pub offers_sent: u32,
    pub answers_applied: u32,
    pub server_offers_answered: u32,
    /// Server offers ignored because ours was pending (we are impolite).
    pub server_offers_ignored: u32,
    /// Local failures (webrtc-rs errors, protocol surprises). A healthy run has none.
    pub errors: Vec<String>,
    pub closed: Option<Value>,
}

enum Cmd {
    Negotiate,
    Send(Value),
}

pub struct RtcClient {
    pub name: String,
    pub pc: Arc<RTCPeerConnection>,
    /// The `joined` message.
    pub joined: Value,
    /// Every server message after `joined`, in arrival order.
    pub messages: Arc<Mutex<Vec<Value>>>,
    pub state: Arc<Mutex<NegState>>,
    cmd: mpsc::UnboundedSender<Cmd>,
    task: JoinHandle<()>,
}

impl RtcClient {
    /// Connects to `signal_url`, sends `join` and waits (10 s) for `joined`; then a task
    /// handles negotiation on `pc` until the session ends.
    pub async fn join(
        name: &str,
        signal_url: &str,
        token: &str,
        pc: Arc<RTCPeerConnection>,
    ) -> RtcClient {
        let (ws, mut rx) = ws_connect(signal_url)
            .await
            .unwrap_or_else(|e| panic!("{name}: WebSocket to {signal_url}: {e}"));
        ws.text(json!({"type": "join", "token": token}).to_string());
        let joined = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match rx.recv().await {
                    Some(WsMsg::Text(t)) => {
                        let v: Value = serde_json::from_str(&t)
                            .unwrap_or_else(|e| panic!("{name}: non-JSON message {t:?}: {e}"));
                        match v["type"].as_str() {
                            Some("joined") => return v,
                            Some("closed") => panic!("{name}: join refused: {v}"),
                            _ => {}
                        }
                    }
                    other => panic!("{name}: signaling ended before `joined`: {other:?}"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{name}: no `joined` within 10 s"));
        let messages = Arc::new(Mutex::new(Vec::new()));
        let state = Arc::new(Mutex::new(NegState::default()));
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(
            Negotiator {
                name: name.to_string(),
                pc: pc.clone(),
                ws,
                messages: messages.clone(),
                state: state.clone(),
            }
            .run(rx, cmd_rx),
        );
        RtcClient {
            name: name.to_string(),
            pc,
            joined,
            messages,
            state,
            cmd: cmd_tx,
            task,
        }
    }

    pub fn participant_id(&self) -> &str {
        self.joined["participant_id"].as_str().unwrap_or("")
    }

    /// Offers this client's own tracks (labelled camera/microphone by kind), now or as soon
    /// as the current negotiation step is over.
    pub fn negotiate(&self) {
        let _ = self.cmd.send(Cmd::Negotiate);
    }

    pub fn send(&self, v: Value) {
        let _ = self.cmd.send(Cmd::Send(v));
    }

    pub fn state(&self) -> NegState {
        lock(&self.state).clone()
    }

    /// Received server messages of one type.
    pub fn messages_of(&self, ty: &str) -> Vec<Value> {
        lock(&self.messages)
            .iter()
            .filter(|m| m["type"] == ty)
            .cloned()
            .collect()
    }

    /// Polls `f` every 20 ms until it is true; panics after `deadline` with `what` and the
    /// negotiation state.
    pub async fn wait(
        &self,
        deadline: Duration,
        what: &str,
        mut f: impl FnMut(&RtcClient) -> bool,
    ) {
        let start = Instant::now();
        while !f(self) {
            if start.elapsed() > deadline {
                panic!(
                    "{}: timed out after {deadline:?} waiting for {what}; state {:?}; pc {:?}; messages {:?}",
                    self.name,
                    self.state(),
                    self.pc.connection_state(),
                    lock(&self.messages)
                        .iter()
                        .map(|m| m["type"].as_str().unwrap_or("?").to_string())
                        .collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends `leave`, closes the WebSocket and the peer connection.
    pub async fn leave(self) {
        let _ = self.cmd.send(Cmd::Send(json!({"type": "leave"})));
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.task.abort();
        let _ = self.pc.close().await;
    }
}

struct Negotiator {
    name: String,
    pc: Arc<RTCPeerConnection>,
    ws: WsSender,
    messages: Arc<Mutex<Vec<Value>>>,
    state: Arc<Mutex<NegState>>,
}

impl Negotiator {
    fn error(&self, e: String) {
        eprintln!("[{}] negotiation error: {e}", self.name);
        lock(&self.state).errors.push(e);
    }

    async fn run(
        self,
        mut rx: mpsc::UnboundedReceiver<WsMsg>,
        mut cmds: mpsc::UnboundedReceiver<Cmd>,
    ) {
        let mut ping = tokio::time::interval(Duration::from_secs(15));
        ping.tick().await;
        loop {
            tokio::select! {
                m = rx.recv() => match m {
                    Some(WsMsg::Text(t)) => {
                        let v: Value = match serde_json::from_str(&t) {
                            Ok(v) => v,
                            Err(e) => { self.error(format!("non-JSON message {t:?}: {e}")); continue; }
                        };
                        lock(&self.messages).push(v.clone());
                        if let Err(e) = self.on_message(&v).await {
                            self.error(e);
                        }
                    }
                    Some(WsMsg::Binary(b)) => self.error(format!("unexpected binary message ({} bytes)", b.len())),
                    Some(WsMsg::Close(code, reason)) => {
                        let mut s = lock(&self.state);
                        if s.closed.is_none() {
                            s.closed = Some(json!({"type": "ws_close", "code": code, "reason": reason}));
                        }
                        return;
                    }
                    Some(WsMsg::Error(e)) => { self.error(format!("WebSocket: {e}")); return; }
                    None => return,
                },
                c = cmds.recv() => match c {
                    Some(Cmd::Negotiate) => if let Err(e) = self.offer().await { self.error(e) },
                    Some(Cmd::Send(v)) => self.ws.text(v.to_string()),
                    None => return,
                },
                _ = ping.tick() => self.ws.text(json!({"type": "ping"}).to_string()),
            }
        }
    }

    async fn on_message(&self, m: &Value) -> Result<(), String> {
        match m["type"].as_str().unwrap_or("") {
            "offer" => {
                if lock(&self.state).awaiting_answer {
                    // Impolite: our own offer wins; the server offers again afterwards.
                    lock(&self.state).server_offers_ignored += 1;
                    return Ok(());
                }
                let sdp = m["sdp"].as_str().ok_or("offer without sdp")?;
                let offer = RTCSessionDescription::offer(sdp.to_string())
                    .map_err(|e| format!("server offer unreadable: {e}"))?;
                self.pc
                    .set_remote_description(offer)
                    .await
                    .map_err(|e| format!("set_remote_description(server offer): {e}\n{sdp}"))?;
                let answer = self
                    .pc
                    .create_answer(None)
                    .await
                    .map_err(|e| format!("create_answer: {e}"))?;
                let sdp = self.set_local(answer).await?;
                self.ws
                    .text(json!({"type": "answer", "sdp": sdp}).to_string());
                let again = {
                    let mut s = lock(&self.state);
                    s.server_offers_answered += 1;
                    s.needs_negotiation
                };
                if again {
                    self.offer().await?;
                }
            }
            "answer" => {
                if !lock(&self.state).awaiting_answer {
                    return Err(format!("an answer without our offer: {m}"));
                }
                let sdp = m["sdp"].as_str().ok_or("answer without sdp")?;
                let answer = RTCSessionDescription::answer(sdp.to_string())
                    .map_err(|e| format!("server answer unreadable: {e}"))?;
                self.pc
                    .set_remote_description(answer)
                    .await
                    .map_err(|e| format!("set_remote_description(server answer): {e}\n{sdp}"))?;
                let again = {
                    let mut s = lock(&self.state);
                    s.awaiting_answer = false;
                    s.answers_applied += 1;
                    s.needs_negotiation
                };
                if again {
                    self.offer().await?;
                }
            }
            "error" => return Err(format!("server error message: {m}")),
            "closed" => lock(&self.state).closed = Some(m.clone()),
            _ => {}
        }
        Ok(())
    }

    /// Sets the local description and returns its SDP once ICE gathering is complete (the
    /// SDP then carries our candidates; we do not trickle).
    async fn set_local(&self, desc: RTCSessionDescription) -> Result<String, String> {
        let mut gathered = self.pc.gathering_complete_promise().await;
        self.pc
            .set_local_description(desc)
            .await
            .map_err(|e| format!("set_local_description: {e}"))?;
        tokio::time::timeout(Duration::from_secs(5), gathered.recv())
            .await
            .map_err(|_| "ICE gathering did not complete within 5 s".to_string())?;
        self.pc
            .local_description()
            .await
            .map(|d| d.sdp)
            .ok_or_else(|| "no local description".to_string())
    }

    async fn offer(&self) -> Result<(), String> {
        {
            let mut s = lock(&self.state);
            if s.awaiting_answer || self.pc.signaling_state() != RTCSignalingState::Stable {
                s.needs_negotiation = true;
                return Ok(());
            }
            s.needs_negotiation = false;
        }
        let offer = self
            .pc
            .create_offer(None)
            .await
            .map_err(|e| format!("create_offer: {e}"))?;
        let sdp = self.set_local(offer).await?;
        let mut sources = serde_json::Map::new();
        for t in self.pc.get_transceivers().await {
            let sending = matches!(
                t.direction(),
                RTCRtpTransceiverDirection::Sendonly | RTCRtpTransceiverDirection::Sendrecv
            );
            if !sending || t.sender().await.track().await.is_none() {
                continue;
            }
            if let Some(mid) = t.mid() {
                let source = if t.kind() == RTPCodecType::Audio {
                    "microphone"
                } else {
                    "camera"
                };
                sources.insert(mid.to_string(), json!(source));
            }
        }
        {
            let mut s = lock(&self.state);
            s.awaiting_answer = true;
            s.offers_sent += 1;
        }
        self.ws.text(
            json!({"type": "offer", "sdp": sdp, "sources": Value::Object(sources)}).to_string(),
        );
        Ok(())
    }
}
