//! One simulated participant: a str0m `Rtc` (real ICE, DTLS, SRTP), its own UDP socket and
//! the signaling WebSocket, driven as one tokio task. Speaks `proto::signal` as the web
//! client does: joins, offers its own tracks (impolite: a server offer that crosses ours is
//! ignored; the server offers again), answers the server's offers.
//!
//! Publishers send synthetic media: an "Opus" packet (TOC byte + marker + filler, ~100 B) every
//! 20 ms and VP8-framed video (a valid VP8 frame tag, keyframes with the start code) at the
//! chosen bitrate, packetized by str0m into ~1 200 B RTP packets; keyframes every few seconds
//! and on PLI/FIR. str0m answers NACKs from its send buffer. Every frame carries a marker with
//! the publisher, a counter and the send time on the process's one clock.
//!
//! Subscribers are either *full* (every packet goes through str0m: SRTP, NACK, depacketizing;
//! each frame's marker gives latency and counter gaps give loss after retransmission) or
//! *light* (str0m in RTP mode: every packet is decrypted and acknowledged — receiver
//! reports, NACKs, transport-wide congestion control feedback, as a browser sends them — but
//! not depacketized; loss is counted from the RTP sequence numbers after retransmission), so
//! the server does the same work as with browsers while the generator stays cheaper.
//!
//! Audio carries the audio-level header extension: a publisher is quiet (−90 dBov) except
//! while it "talks" (−30 dBov); with `talkers` set, publishers take turns in groups of that
//! many, a few seconds each, so a server that forwards only the loudest has a speaker change
//! to follow.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use str0m::change::SdpPendingOffer;
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, MediaTime, Mid, Pt, Rid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use super::janus::{JanusLink, JanusRole};
use super::stats::{Shared, clock_ns};
use crate::proto::signal::{ClientMsg, ServerMsg, Source};

pub const MAGIC: [u8; 4] = *b"LT01";
/// Marker: magic, publisher, counter, send time (ns), kind/layer.
const MARKER_LEN: usize = 4 + 4 + 4 + 8 + 1;
const AUDIO_INTERVAL: Duration = Duration::from_millis(20);
const LAYERS: [&str; 3] = ["q", "h", "f"];

#[derive(Clone, Debug)]
pub struct PeerSpec {
    pub index: u32,
    pub signal_url: String,
    pub token: String,
    pub local_ip: std::net::IpAddr,
    pub audio: bool,
    pub video: bool,
    pub simulcast: bool,
    pub video_kbps: u32,
    pub fps: u32,
    pub audio_bytes: usize,
    pub keyframe_every: Duration,
    /// Decrypt and check everything (else count packets only).
    pub full: bool,
    /// Distinct incoming streams to see before this participant counts as ready.
    pub expect_streams: usize,
    /// Drive a Janus videoroom at `signal_url` (its HTTP API) instead of our signaling.
    pub janus: Option<JanusRole>,
    /// Talking turns: (this publisher's number among the audio publishers, how many talk at
    /// once, how many publishers take turns). None: always talking.
    pub talk: Option<(usize, usize, usize)>,
    /// The server holds back quiet audio streams (top-K): a gap between a publisher's audio
    /// frames is a held stretch, not loss.
    pub audio_held: bool,
}

/// How long one group of talkers talks before the next group's turn.
const TURN: Duration = Duration::from_secs(3);

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Ws = tokio_tungstenite::WebSocketStream<Box<dyn Io>>;

/// The participant's signaling: ours (the WebSocket of `proto::signal`) or a Janus session
/// translated to the same messages.
enum Link {
    Ours(Box<Ws>),
    Janus(Box<JanusLink>),
}

impl Link {
    /// Connects and joins: `joined` from our sfuserver, or the videoroom join in Janus.
    async fn connect(spec: &PeerSpec) -> Result<Link, String> {
        if let Some(role) = &spec.janus {
            let name = format!("lt-{}", spec.index);
            return Ok(Link::Janus(Box::new(
                JanusLink::connect(&spec.signal_url, role, &name).await?,
            )));
        }
        let mut ws = ws_connect(&spec.signal_url).await?;
        send(
            &mut ws,
            &ClientMsg::Join {
                token: spec.token.clone(),
            },
        )
        .await?;
        let deadline = tokio::time::sleep(Duration::from_secs(15));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                m = ws.next() => match parse(m)? {
                    Some(ServerMsg::Joined { .. }) => return Ok(Link::Ours(Box::new(ws))),
                    Some(ServerMsg::Closed { reason, message }) => return Err(format!("join refused: {reason}: {message}")),
                    _ => {}
                },
                _ = &mut deadline => return Err("no `joined` within 15 s".into()),
            }
        }
    }

    async fn send(&mut self, m: &ClientMsg) -> Result<(), String> {
        match self {
            Link::Ours(ws) => send(ws, m).await,
            Link::Janus(j) => j.send(m).await,
        }
    }

    /// The next signaling message (cancel-safe).
    async fn next(&mut self) -> Result<Option<ServerMsg>, String> {
        match self {
            Link::Ours(ws) => parse(ws.next().await),
            Link::Janus(j) => j.next().await,
        }
    }

    async fn close(&mut self) {
        match self {
            Link::Ours(ws) => {
                let _ = send(ws, &ClientMsg::Leave).await;
                let _ = tokio_tungstenite::WebSocketStream::close(&mut **ws, None).await;
            }
            Link::Janus(j) => j.close().await,
        }
    }
}

async fn ws_connect(url: &str) -> Result<Ws, String> {
    let u = url::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
    let host = u.host_str().ok_or("signal URL without host")?.to_string();
    let port = u.port_or_known_default().unwrap_or(80);
    let tcp = TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|e| format!("connect {url}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn Io> = match u.scheme() {
        "ws" => Box::new(tcp),
        "wss" => {
            crate::util::install_ring_provider();
            // A load generator aimed at the operator's own server: any certificate.
            let connector = tokio_rustls::TlsConnector::from(Arc::new(
                crate::bridge::client::client_tls_config(),
            ));
            let name =
                rustls::pki_types::ServerName::try_from(host.trim_matches(['[', ']']).to_string())
                    .map_err(|e| format!("{url}: {e}"))?;
            Box::new(
                connector
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS to {url}: {e}"))?,
            )
        }
        s => return Err(format!("{url}: scheme {s} is not ws or wss")),
    };
    let (ws, _) = tokio_tungstenite::client_async(url, io)
        .await
        .map_err(|e| format!("WebSocket {url}: {e}"))?;
    Ok(ws)
}

struct Peer {
    spec: PeerSpec,
    rtc: Rtc,
    sock: UdpSocket,
    local: SocketAddr,
    link: Link,
    shared: Arc<Mutex<Shared>>,
    pending: Option<SdpPendingOffer>,
    audio_mid: Option<Mid>,
    video_mid: Option<Mid>,
    audio_pt: Option<Pt>,
    video_pt: Option<Pt>,
    /// Simulcast layers the server wants (dynacast); all until told.
    active_layers: Vec<Rid>,
    connected: bool,
    ready: bool,
    force_key: bool,
    last_key: Instant,
    audio_seq: u32,
    video_seq: [u32; 3],
    frame_no: u64,
    /// Full check: last counter seen per (publisher, kind/layer).
    last_seen: HashMap<(u32, u8), u32>,
    /// Light: per SSRC, the next sequence number to account for and which of those after it
    /// arrived (str0m drops duplicates and turns retransmissions back into the original).
    light_seq: HashMap<u32, (u64, std::collections::VecDeque<bool>)>,
    started: Instant,
    streams: HashSet<u64>,
    /// Batched counts, flushed into `shared` every few ms.
    rtp_packets: u64,
    rtp_bytes: u64,
    light_packets: u64,
    light_gaps: u64,
    /// (µs, is video) per received frame.
    lat: Vec<(u64, bool)>,
    frames_rx: u64,
    frames_lost: u64,
    frames_sent: u64,
    keyframes_sent: u64,
    keyframe_requests: u64,
}

fn lock(m: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs one participant until `stop` turns true; failures are recorded in `shared`.
pub async fn run(spec: PeerSpec, shared: Arc<Mutex<Shared>>, stop: watch::Receiver<bool>) {
    let index = spec.index;
    if let Err(e) = run_inner(spec, shared.clone(), stop).await {
        lock(&shared)
            .failures
            .push(format!("participant {index}: {e}"));
    }
}

async fn run_inner(
    spec: PeerSpec,
    shared: Arc<Mutex<Shared>>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let sock = UdpSocket::bind((spec.local_ip, 0))
        .await
        .map_err(|e| format!("bind UDP: {e}"))?;
    let local = sock.local_addr().map_err(|e| e.to_string())?;
    let now = Instant::now();
    // Light subscribers run str0m in RTP mode: packets are decrypted and acknowledged (RR,
    // NACK, TWCC) but not reassembled into frames. A publisher writes frames (str0m
    // packetizes them), which RTP mode does not offer: publishers are always full.
    let mut spec = spec;
    spec.full |= spec.audio || spec.video;
    let mut rtc = RtcConfig::new().set_rtp_mode(!spec.full).build(now);
    let cand = Candidate::host(local, "udp").map_err(|e| format!("candidate: {e}"))?;
    rtc.add_local_candidate(cand);

    let link = Link::connect(&spec).await?;
    let mut p = Peer {
        spec,
        rtc,
        sock,
        local,
        link,
        shared,
        pending: None,
        audio_mid: None,
        video_mid: None,
        audio_pt: None,
        video_pt: None,
        active_layers: LAYERS.iter().map(|l| Rid::from(*l)).collect(),
        connected: false,
        ready: false,
        force_key: true,
        last_key: now,
        audio_seq: 0,
        video_seq: [0; 3],
        frame_no: 0,
        last_seen: HashMap::new(),
        light_seq: HashMap::new(),
        started: now,
        streams: HashSet::new(),
        rtp_packets: 0,
        rtp_bytes: 0,
        light_packets: 0,
        light_gaps: 0,
        lat: Vec::with_capacity(256),
        frames_rx: 0,
        frames_lost: 0,
        frames_sent: 0,
        keyframes_sent: 0,
        keyframe_requests: 0,
    };
    if p.spec.audio || p.spec.video {
        p.offer().await?;
    }
    let mut buf = vec![0u8; 2048];
    let frame_interval = Duration::from_secs_f64(1.0 / f64::from(p.spec.fps.max(1)));
    let start = Instant::now();
    let mut next_audio = start + AUDIO_INTERVAL;
    let mut next_video = start + frame_interval;
    let mut next_flush = start + Duration::from_millis(50);
    let mut timeout = p.drain().await?;
    loop {
        let media_due = match (p.spec.audio, p.spec.video) {
            (true, true) => next_audio.min(next_video),
            (true, false) => next_audio,
            (false, true) => next_video,
            (false, false) => next_flush,
        };
        let wake = timeout.min(media_due).min(next_flush);
        tokio::select! {
            r = p.sock.recv_from(&mut buf) => {
                let (n, from) = r.map_err(|e| format!("UDP receive: {e}"))?;
                p.on_datagram(&buf[..n], from)?;
            }
            m = p.link.next() => {
                if let Some(m) = m? { p.on_signal(m).await?; }
                p.add_trickled();
            }
            _ = tokio::time::sleep_until(wake.into()) => {
                let now = Instant::now();
                if now >= timeout {
                    p.rtc.handle_input(Input::Timeout(now)).map_err(|e| format!("str0m timeout: {e}"))?;
                }
                if p.spec.audio && now >= next_audio {
                    p.send_audio(now);
                    next_audio += AUDIO_INTERVAL;
                    if next_audio < now { next_audio = now + AUDIO_INTERVAL; }
                }
                if p.spec.video && now >= next_video {
                    p.send_video(now);
                    next_video += frame_interval;
                    if next_video < now { next_video = now + frame_interval; }
                }
                if now >= next_flush {
                    p.flush();
                    next_flush = now + Duration::from_millis(50);
                }
            }
            _ = stop.changed() => {
                p.flush();
                p.link.close().await;
                return Ok(());
            }
        }
        timeout = p.drain().await?;
    }
}

fn parse(
    m: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
) -> Result<Option<ServerMsg>, String> {
    match m {
        None => Err("signaling closed".into()),
        Some(Err(e)) => Err(format!("signaling: {e}")),
        Some(Ok(Message::Text(t))) => match serde_json::from_str::<ServerMsg>(&t) {
            Ok(ServerMsg::Closed { reason, message }) => {
                Err(format!("session closed: {reason}: {message}"))
            }
            Ok(m) => Ok(Some(m)),
            // Messages this generator does not know are ignored.
            Err(_) => Ok(None),
        },
        Some(Ok(Message::Close(c))) => Err(format!("signaling closed: {c:?}")),
        Some(Ok(_)) => Ok(None),
    }
}

async fn send(ws: &mut Ws, m: &ClientMsg) -> Result<(), String> {
    let text = serde_json::to_string(m).map_err(|e| e.to_string())?;
    ws.send(Message::text(text))
        .await
        .map_err(|e| format!("signaling send: {e}"))
}

/// SRTP media (RTP, not RTCP) by its first two bytes (RFC 7983, RFC 5761).
fn is_rtp(d: &[u8]) -> bool {
    d.len() >= 12 && (128..192).contains(&d[0]) && !(64..96).contains(&(d[1] & 0x7f))
}

impl Peer {
    /// Remote candidates Janus trickled (ours puts them in the SDP).
    fn add_trickled(&mut self) {
        if let Link::Janus(j) = &mut self.link {
            for c in j.candidates.drain(..) {
                let line = c.trim_start_matches("a=");
                match Candidate::from_sdp_string(line) {
                    Ok(c) => self.rtc.add_remote_candidate(c),
                    Err(e) => tracing::debug!("Janus candidate {line}: {e}"),
                }
            }
        }
    }

    async fn offer(&mut self) -> Result<(), String> {
        let mut change = self.rtc.sdp_api();
        let mut sources = HashMap::new();
        let stream = format!("lt{}", self.spec.index);
        if self.spec.audio {
            let mid = change.add_media(
                MediaKind::Audio,
                Direction::SendOnly,
                Some(stream.clone()),
                Some(format!("{stream}a")),
                None,
            );
            sources.insert(mid.to_string(), Source::Microphone);
            self.audio_mid = Some(mid);
        }
        if self.spec.video {
            let sim = self.spec.simulcast.then(|| {
                let mut s = Simulcast::new();
                for l in LAYERS {
                    s.add_send_layer(SimulcastLayer::new(l));
                }
                s
            });
            let mid = change.add_media(
                MediaKind::Video,
                Direction::SendOnly,
                Some(stream.clone()),
                Some(format!("{stream}v")),
                sim,
            );
            sources.insert(mid.to_string(), Source::Camera);
            self.video_mid = Some(mid);
        }
        let Some((offer, pending)) = change.apply() else {
            return Ok(());
        };
        self.pending = Some(pending);
        self.link
            .send(&ClientMsg::Offer {
                sdp: offer.to_sdp_string(),
                sources,
            })
            .await
    }

    async fn on_signal(&mut self, m: ServerMsg) -> Result<(), String> {
        match m {
            ServerMsg::Offer { sdp } => {
                if self.pending.is_some() {
                    // Impolite: our offer stands; the server offers again after answering it.
                    return Ok(());
                }
                let offer = SdpOffer::from_sdp_string(&sdp).map_err(|e| format!("offer: {e}"))?;
                let answer = self
                    .rtc
                    .sdp_api()
                    .accept_offer(offer)
                    .map_err(|e| format!("accept offer: {e}"))?;
                self.link
                    .send(&ClientMsg::Answer {
                        sdp: answer.to_sdp_string(),
                    })
                    .await?;
            }
            ServerMsg::Answer { sdp } => {
                let Some(pending) = self.pending.take() else {
                    return Err("an answer without an offer".into());
                };
                let answer =
                    SdpAnswer::from_sdp_string(&sdp).map_err(|e| format!("answer: {e}"))?;
                self.rtc
                    .sdp_api()
                    .accept_answer(pending, answer)
                    .map_err(|e| format!("accept answer: {e}"))?;
                self.find_pts();
            }
            ServerMsg::Layers { mid, active }
                if self.video_mid.is_some_and(|m| m.to_string() == mid) =>
            {
                self.active_layers = active.iter().map(|r| Rid::from(r.as_str())).collect();
                self.force_key = true;
            }
            ServerMsg::Error { code, message } => {
                return Err(format!("server error {code}: {message}"));
            }
            _ => {}
        }
        Ok(())
    }

    fn find_pts(&mut self) {
        let find = |rtc: &mut Rtc, mid: Option<Mid>, codec: Codec| {
            let w = rtc.writer(mid?)?;
            w.payload_params()
                .find(|p| p.spec().codec == codec)
                .map(|p| p.pt())
        };
        self.audio_pt = find(&mut self.rtc, self.audio_mid, Codec::Opus);
        self.video_pt = find(&mut self.rtc, self.video_mid, Codec::Vp8);
    }

    fn marker(&self, out: &mut Vec<u8>, seq: u32, kind_layer: u8) {
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.spec.index.to_be_bytes());
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(&clock_ns().to_be_bytes());
        out.push(kind_layer);
    }

    fn send_audio(&mut self, now: Instant) {
        let (Some(mid), Some(pt), true) = (self.audio_mid, self.audio_pt, self.connected) else {
            return;
        };
        self.audio_seq = self.audio_seq.wrapping_add(1);
        let mut d = Vec::with_capacity(self.spec.audio_bytes.max(MARKER_LEN + 1));
        d.push(0xf8); // Opus TOC: config 31 (CELT FB 20 ms), mono, one frame.
        self.marker(&mut d, self.audio_seq, 0);
        d.resize(self.spec.audio_bytes.max(d.len()), 0x55);
        let rtp_time = MediaTime::new(
            u64::from(self.audio_seq) * 960,
            str0m::media::Frequency::FORTY_EIGHT_KHZ,
        );
        let talking = match self.spec.talk {
            None => true,
            Some((me, at_once, of)) => {
                let groups = of.div_ceil(at_once.max(1)).max(1);
                let turn = (now.duration_since(self.started).as_secs_f64() / TURN.as_secs_f64())
                    as usize
                    % groups;
                me / at_once.max(1) == turn
            }
        };
        // Audio level: negative dBov (RFC 6464, as str0m takes it).
        let level: i8 = if talking { -30 } else { -90 };
        if let Some(w) = self.rtc.writer(mid)
            && w.audio_level(level, talking)
                .write(pt, now, rtp_time, d)
                .is_ok()
        {
            self.frames_sent += 1;
        }
    }

    fn send_video(&mut self, now: Instant) {
        let (Some(mid), Some(pt), true) = (self.video_mid, self.video_pt, self.connected) else {
            return;
        };
        self.frame_no += 1;
        let key = self.force_key || now.duration_since(self.last_key) >= self.spec.keyframe_every;
        if key {
            self.force_key = false;
            self.last_key = now;
            self.keyframes_sent += 1;
        }
        let rtp_time = MediaTime::new(
            self.frame_no * u64::from(90_000 / self.spec.fps.max(1)),
            str0m::media::Frequency::NINETY_KHZ,
        );
        let full =
            (u64::from(self.spec.video_kbps) * 1000 / 8 / u64::from(self.spec.fps.max(1))) as usize;
        let layers: Vec<(Option<Rid>, usize, u8)> = if self.spec.simulcast {
            // Each layer a quarter of the next one's bitrate.
            LAYERS
                .iter()
                .enumerate()
                .map(|(i, l)| (Some(Rid::from(*l)), full >> (2 * (2 - i)), i as u8))
                .filter(|(r, _, _)| r.is_some_and(|r| self.active_layers.contains(&r)))
                .collect()
        } else {
            vec![(None, full, 0)]
        };
        for (rid, size, layer) in layers {
            let size = if key { size * 2 } else { size }.max(MARKER_LEN + 16);
            self.video_seq[layer as usize] = self.video_seq[layer as usize].wrapping_add(1);
            let mut d = Vec::with_capacity(size);
            let first_partition = (size as u32 / 2) & 0x7_ffff;
            let tag = (first_partition << 5) | (1 << 4) | u32::from(!key);
            d.extend_from_slice(&tag.to_le_bytes()[..3]);
            if key {
                d.extend_from_slice(&[0x9d, 0x01, 0x2a]);
                d.extend_from_slice(&640u16.to_le_bytes());
                d.extend_from_slice(&480u16.to_le_bytes());
            }
            self.marker(&mut d, self.video_seq[layer as usize], 1 + layer);
            d.resize(size, 0xaa);
            let Some(mut w) = self.rtc.writer(mid) else {
                return;
            };
            if let Some(r) = rid {
                w = w.rid(r);
            }
            if w.write(pt, now, rtp_time, d).is_ok() {
                self.frames_sent += 1;
            }
        }
    }

    fn on_datagram(&mut self, d: &[u8], from: SocketAddr) -> Result<(), String> {
        if is_rtp(d) {
            self.rtp_packets += 1;
            self.rtp_bytes += d.len() as u64;
        }
        let contents = d.try_into().map_err(|e| format!("datagram: {e:?}"))?;
        self.rtc
            .handle_input(Input::Receive(
                Instant::now(),
                Receive {
                    proto: Protocol::Udp,
                    source: from,
                    destination: self.local,
                    contents,
                },
            ))
            .map_err(|e| format!("str0m input: {e}"))
    }

    fn check_ready(&mut self) {
        if !self.ready && self.connected && self.streams.len() >= self.spec.expect_streams {
            self.ready = true;
            lock(&self.shared).ready += 1;
        }
    }

    fn on_frame(&mut self, data: &[u8]) {
        let Some(at) = data.windows(4).take(16).position(|w| w == MAGIC) else {
            return;
        };
        let m = &data[at + 4..];
        if m.len() < MARKER_LEN - 4 {
            return;
        }
        let publisher = u32::from_be_bytes([m[0], m[1], m[2], m[3]]);
        let seq = u32::from_be_bytes([m[4], m[5], m[6], m[7]]);
        let mut t = [0u8; 8];
        t.copy_from_slice(&m[8..16]);
        let sent = u64::from_be_bytes(t);
        let kind = m[16];
        self.lat
            .push((clock_ns().saturating_sub(sent) / 1000, kind != 0));
        self.frames_rx += 1;
        let key = (publisher, kind);
        match self.last_seen.insert(key, seq) {
            Some(last) => {
                let gap = seq.wrapping_sub(last);
                let held = kind == 0 && self.spec.audio_held;
                if (2..0x8000_0000).contains(&gap) && !held {
                    self.frames_lost += u64::from(gap - 1);
                }
            }
            None => {
                // A stream is (publisher, audio|video), whatever the layer.
                if self
                    .streams
                    .insert((u64::from(publisher) << 8) | u64::from(kind.min(1)))
                {
                    self.check_ready();
                }
            }
        }
    }

    /// A packet a light subscriber's str0m decrypted (repaired ones included, duplicates
    /// not).
    fn on_rtp(&mut self, ssrc: u32, seq: u64) {
        let (base, got) = self
            .light_seq
            .entry(ssrc)
            .or_insert((seq, std::collections::VecDeque::new()));
        if seq >= *base {
            let at = (seq - *base) as usize;
            if at > 50_000 {
                // A restarted stream: start over there.
                *base = seq;
                got.clear();
            }
            let at = (seq - *base) as usize;
            if got.len() <= at {
                got.resize(at + 1, false);
            }
            got[at] = true;
        }
        if self.streams.insert(u64::from(ssrc)) {
            self.check_ready();
        }
    }

    fn flush(&mut self) {
        // Light subscribers: packets that arrived and that never did (loss after
        // retransmission), except the most recent of each stream, which a retransmission
        // may still fill.
        const OPEN: usize = 128;
        for (base, got) in self.light_seq.values_mut() {
            while got.len() > OPEN {
                if got.pop_front() == Some(true) {
                    self.light_packets += 1;
                } else {
                    self.light_gaps += 1;
                }
                *base += 1;
            }
        }
        let mut s = lock(&self.shared);
        let w = &mut s.window;
        w.rtp_packets += std::mem::take(&mut self.rtp_packets);
        w.rtp_bytes += std::mem::take(&mut self.rtp_bytes);
        w.light_packets += std::mem::take(&mut self.light_packets);
        w.light_gaps += std::mem::take(&mut self.light_gaps);
        w.frames_received += std::mem::take(&mut self.frames_rx);
        w.frames_lost += std::mem::take(&mut self.frames_lost);
        w.frames_sent += std::mem::take(&mut self.frames_sent);
        w.keyframes_sent += std::mem::take(&mut self.keyframes_sent);
        w.keyframe_requests += std::mem::take(&mut self.keyframe_requests);
        for (us, video) in self.lat.drain(..) {
            w.latency.record_us(us);
            if video {
                w.latency_video.record_us(us);
            } else {
                w.latency_audio.record_us(us);
            }
        }
    }

    /// Sends what str0m wants sent and handles its events; returns its next timeout.
    async fn drain(&mut self) -> Result<Instant, String> {
        loop {
            match self.rtc.poll_output().map_err(|e| format!("str0m: {e}"))? {
                Output::Timeout(t) => return Ok(t),
                Output::Transmit(t) => {
                    // A full socket buffer drops the datagram, as a network would.
                    let _ = self.sock.try_send_to(&t.contents, t.destination);
                }
                Output::Event(e) => match e {
                    Event::Connected => {
                        self.connected = true;
                        self.force_key = true;
                        lock(&self.shared).connected += 1;
                        self.check_ready();
                    }
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                        return Err("ICE disconnected".into());
                    }
                    Event::MediaData(d) => self.on_frame(&d.data),
                    Event::RtpPacket(p) => self.on_rtp(*p.header.ssrc, *p.seq_no),
                    Event::KeyframeRequest(_) => {
                        self.force_key = true;
                        self.keyframe_requests += 1;
                    }
                    _ => {}
                },
            }
        }
    }
}
