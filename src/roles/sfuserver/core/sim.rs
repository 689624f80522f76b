//! The core on simulated time: real str0m clients (ICE, DTLS, SRTP, RTCP, SDP through the
//! signaling messages) talk to one or more `Core`s over an in-memory network; the clock is
//! a variable. The unit tests (`tests.rs`) drive meeting scenarios with it and check what
//! the clients receive; the forward-path benchmark (`benches/forward.rs`) replays a
//! publisher's packets into it. Not part of the server.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{
    Direction, Frequency, MediaKind as StrKind, MediaTime, Mid, Pt, Rid, Simulcast, SimulcastLayer,
};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input as RtcInput, Output, Rtc, RtcConfig};
use tokio::sync::mpsc::Receiver;

use super::*;
use crate::ids::{MeetingId, ParticipantId};
use crate::proto::RoomAction;
use crate::proto::signal::ClientMsg;
use crate::proto::signal::{MediaKind, ServerMsg, Source};
use crate::tokens::JoinClaims;

pub const MEETING: MeetingId = MeetingId(7);

pub struct Sink {
    pub buf: Vec<u8>,
    pub out: Vec<(SocketAddr, Vec<u8>)>,
}

impl NetSink for Sink {
    fn buffer(&mut self) -> &mut [u8] {
        &mut self.buf
    }
    fn commit(&mut self, len: usize, to: SocketAddr, _received: Option<Instant>) {
        self.out.push((to, self.buf[..len].to_vec()));
    }
}

/// A frame as a client received it: (publisher index, kind/layer, counter, keyframe).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    pub from: u32,
    pub layer: u8,
    pub n: u32,
    pub key: bool,
}

pub struct Client {
    pub index: u32,
    pub pid: ParticipantId,
    pub worker: usize,
    pub rtc: Rtc,
    pub addr: SocketAddr,
    pub rx: Receiver<ServerMsg>,
    pub pending: Option<SdpPendingOffer>,
    pub publish_audio: bool,
    pub publish_video: bool,
    pub simulcast: bool,
    pub audio_mid: Option<Mid>,
    pub video_mid: Option<Mid>,
    pub audio_pt: Option<Pt>,
    pub video_pt: Option<Pt>,
    pub active_layers: Vec<Rid>,
    /// Loudness sent in the audio-level extension (127 − |level|).
    pub loudness: u8,
    pub connected: bool,
    pub closed: Option<CloseReason>,
    pub force_key: bool,
    pub frame_no: u32,
    pub audio_no: u32,
    pub next_timeout: Instant,
    /// Received frames by our mid.
    pub frames: HashMap<Mid, Vec<Frame>>,
    /// Mid → (publisher id, kind) from the `tracks` messages.
    pub tracks: HashMap<String, (ParticipantId, MediaKind)>,
    pub msgs: Vec<ServerMsg>,
    pub keyframe_requests: u32,
    pub joined: bool,
    /// Bytes of each video frame (without simulcast).
    pub video_bytes: usize,
}

impl Client {
    pub fn mid_of(&self, publisher: &ParticipantId, kind: MediaKind) -> Option<Mid> {
        self.tracks
            .iter()
            .find(|(_, (p, k))| *p == *publisher && *k == kind)
            .map(|(m, _)| Mid::from(m.as_str()))
    }

    pub fn frames_from(&self, publisher: u32, video: bool) -> Vec<Frame> {
        let mut v: Vec<Frame> = self
            .frames
            .values()
            .flatten()
            .filter(|f| f.from == publisher && (f.layer > 0) == video)
            .copied()
            .collect();
        v.sort_by_key(|f| (f.layer, f.n));
        v
    }
}

pub struct Sim {
    /// Whether the next joins' tokens say "wait in the lobby".
    pub lobby_next: bool,
    /// The role the next joins' tokens give (default: owner for hosts, else participant).
    pub role_next: Option<crate::proto::signal::Role>,
    /// Whether the next joins' tokens let them claim host when no host is left.
    pub may_claim_next: bool,
    /// Participation events the cores reported.
    pub events: Vec<crate::proto::ParticipationChanged>,
    pub now: Instant,
    pub cores: Vec<Core>,
    pub sink: Sink,
    pub links: Vec<HashMap<usize, ClientTx>>,
    pub clients: Vec<Client>,
    /// (to, bytes)
    pub net: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>,
    pub inbox: Vec<VecDeque<Ctl>>,
    pub fwd: Vec<VecDeque<Fwd>>,
    pub replies: Vec<Result<(), crate::proto::ControlRefused>>,
    /// Drop every n-th RTP datagram to this client index.
    pub lossy: Option<(usize, u32)>,
    /// RTP from this client to a core is kept in `captured` instead of delivered.
    pub capture: Option<usize>,
    pub captured: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>,
    /// Datagrams to this client index wait until this time (a slow path: its DTLS, and so
    /// its connection, completes only then), kept in `held`.
    pub hold: Option<(usize, Instant)>,
    pub held: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>,
    pub dropped: u32,
    pub counter: u32,
    pub tick: u64,
    /// Last RTP sequence number per (client, SSRC), and streams whose numbering jumped.
    pub last_seq: HashMap<(usize, u32), u16>,
    pub jumps: Vec<(usize, u32, u16, u16)>,
}

pub fn core_addr(w: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], 5000 + w as u16))
}

impl Sim {
    pub fn new(workers: usize, top_k: usize) -> Sim {
        let now = Instant::now();
        let rooms = Arc::new(Rooms::new(top_k));
        let crypto = Arc::new(str0m::crypto::from_feature_flags());
        let cores = (0..workers)
            .map(|w| {
                Core::new(CoreConfig {
                    worker: w as u8,
                    workers: workers as u8,
                    advertised: core_addr(w),
                    crypto: crypto.clone(),
                    room_grace: Duration::from_secs(5),
                    rooms: rooms.clone(),
                    removed_for: Duration::from_secs(300),
                })
            })
            .collect();
        Sim {
            lobby_next: false,
            role_next: None,
            may_claim_next: false,
            events: Vec::new(),
            now,
            cores,
            sink: Sink {
                buf: vec![0; MAX_DATAGRAM],
                out: Vec::new(),
            },
            links: vec![HashMap::new(); workers],
            clients: Vec::new(),
            net: VecDeque::new(),
            inbox: vec![VecDeque::new(); workers],
            fwd: (0..workers).map(|_| VecDeque::new()).collect(),
            replies: Vec::new(),
            lossy: None,
            capture: None,
            captured: VecDeque::new(),
            hold: None,
            held: VecDeque::new(),
            dropped: 0,
            counter: 0,
            tick: 0,
            last_seq: HashMap::new(),
            jumps: Vec::new(),
        }
    }

    /// A participant joins on `worker`, publishing what is asked.
    pub fn join(
        &mut self,
        worker: usize,
        audio: bool,
        video: bool,
        simulcast: bool,
        host: bool,
    ) -> usize {
        self.join_as(None, worker, audio, video, simulcast, host)
    }

    /// As [`Sim::join`], with the join token of client `again` (its participant id) when
    /// given: that participant comes back with its old token.
    pub fn join_as(
        &mut self,
        again: Option<usize>,
        worker: usize,
        audio: bool,
        video: bool,
        simulcast: bool,
        host: bool,
    ) -> usize {
        let index = self.clients.len() as u32;
        let addr = SocketAddr::from(([10, 0, 1, index as u8 + 1], 40000));
        let mut rtc = RtcConfig::new()
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(self.now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
        let (tx, rx) = tokio::sync::mpsc::channel(512);
        let pid = match again {
            Some(c) => self.clients[c].pid.clone(),
            None => ParticipantId(format!("p{index}")),
        };
        self.clients.push(Client {
            index,
            pid: pid.clone(),
            worker,
            rtc,
            addr,
            rx,
            pending: None,
            publish_audio: audio,
            publish_video: video,
            simulcast,
            audio_mid: None,
            video_mid: None,
            audio_pt: None,
            video_pt: None,
            active_layers: ["q", "h", "f"].iter().map(|l| Rid::from(*l)).collect(),
            loudness: 0,
            connected: false,
            closed: None,
            force_key: true,
            frame_no: 0,
            audio_no: 0,
            next_timeout: self.now,
            frames: HashMap::new(),
            tracks: HashMap::new(),
            msgs: Vec::new(),
            keyframe_requests: 0,
            joined: false,
            video_bytes: 2500,
        });
        let claims = JoinClaims {
            meeting: MEETING,
            participant: pid,
            sfu: "sfu".into(),
            name: format!("Client {index}"),
            host,
            exp: i64::MAX,
            role: self.role_next.unwrap_or(if host {
                crate::proto::signal::Role::Owner
            } else {
                crate::proto::signal::Role::Participant
            }),
            lobby: self.lobby_next,
            screens_hosts_only: false,
            may_claim_host: self.may_claim_next,
        };
        self.cmd(
            worker,
            WorkerCmd::Join {
                claims,
                tx,
                session: u64::from(index) + 1,
            },
        );
        index as usize
    }

    pub fn cmd(&mut self, worker: usize, c: WorkerCmd) {
        self.core_input(worker, Input::Cmd(c));
    }

    pub fn signal(&mut self, client: usize, msg: ClientMsg) {
        let (w, pid) = (
            self.clients[client].worker,
            self.clients[client].pid.clone(),
        );
        self.cmd(
            w,
            WorkerCmd::Signal {
                participant: pid,
                session: client as u64 + 1,
                msg,
            },
        );
    }

    /// A host action, given to every worker as the `SfuServer` does; the replies are kept.
    pub fn control(&mut self, action: RoomAction) -> Result<(), crate::proto::ControlRefused> {
        let mut rxs = Vec::new();
        for w in 0..self.cores.len() {
            let (reply, rx) = tokio::sync::oneshot::channel();
            self.cmd(
                w,
                WorkerCmd::Control {
                    meeting: MEETING,
                    action: action.clone(),
                    by: None,
                    reply,
                },
            );
            rxs.push(rx);
        }
        let results: Vec<Result<(), crate::proto::ControlRefused>> = rxs
            .into_iter()
            .map(|mut r| {
                r.try_recv()
                    .unwrap_or(Err(crate::proto::ControlRefused::WorkerGone))
            })
            .collect();
        let r = if results.iter().any(Result::is_ok) {
            Ok(())
        } else {
            results.into_iter().next().unwrap_or(Ok(()))
        };
        self.replies.push(r.clone());
        r
    }

    pub fn core_input(&mut self, w: usize, input: Input) {
        let mut out = Outputs::default();
        self.sink.out.clear();
        self.cores[w].handle(self.now, input, &mut self.sink, &mut out);
        let from = core_addr(w);
        for (to, d) in self.sink.out.drain(..) {
            self.net.push_back((from, to, d));
        }
        self.route(w, out);
    }

    pub fn route(&mut self, w: usize, out: Outputs) {
        for c in out.clients {
            match c {
                ToClient::Attach { slot, tx } => {
                    self.links[w].insert(slot, tx);
                }
                ToClient::Msg { slot, msg } => {
                    if let Some(tx) = self.links[w].get(&slot) {
                        tx.try_send(msg).expect("the client reads");
                    }
                }
                ToClient::Detach { slot } => {
                    self.links[w].remove(&slot);
                }
                ToClient::Refuse { tx, msg } => {
                    let _ = tx.try_send(msg);
                }
            }
        }
        for (to, f) in out.fwd {
            self.fwd[usize::from(to)].push_back(f);
        }
        for (dest, c) in out.ctl {
            match dest {
                Dest::All => {
                    for x in 0..self.cores.len() {
                        if x != w {
                            self.inbox[x].push_back(c.clone());
                        }
                    }
                }
                Dest::Worker(x) => self.inbox[usize::from(x)].push_back(c),
            }
        }
        for e in out.events {
            match e {
                CoreEvent::ControlReply(reply, r) => {
                    let _ = reply.send(r);
                }
                CoreEvent::Participation(p) => self.events.push(p),
                _ => {}
            }
        }
    }

    /// Delivers everything in flight (instantly) until nothing moves.
    pub fn settle(&mut self) {
        if self.hold.is_some_and(|(_, until)| self.now >= until) {
            self.hold = None;
            self.net.extend(self.held.drain(..));
        }
        for _ in 0..200 {
            let mut moved = false;
            for w in 0..self.cores.len() {
                while let Some(c) = self.inbox[w].pop_front() {
                    moved = true;
                    self.core_input(w, Input::Ctl(c));
                }
                while let Some(f) = self.fwd[w].pop_front() {
                    moved = true;
                    self.core_input(w, Input::Forwarded(f));
                }
            }
            while let Some((from, to, d)) = self.net.pop_front() {
                moved = true;
                if let Some(w) = (0..self.cores.len()).find(|&w| core_addr(w) == to) {
                    if self.capture.is_some_and(|c| self.clients[c].addr == from) && is_rtp(&d) {
                        self.captured.push_back((from, to, d));
                        continue;
                    }
                    self.core_input(
                        w,
                        Input::Datagram {
                            from,
                            data: &d,
                            received: self.now,
                        },
                    );
                } else if let Some(c) = self.clients.iter().position(|c| c.addr == to) {
                    if self.hold.is_some_and(|(hc, _)| hc == c) {
                        self.held.push_back((from, to, d));
                        continue;
                    }
                    if let Some((lc, n)) = self.lossy
                        && lc == c
                        && is_rtp(&d)
                    {
                        self.counter += 1;
                        if self.counter.is_multiple_of(n) {
                            self.dropped += 1;
                            continue;
                        }
                    }
                    if is_rtp(&d) {
                        // Every stream a viewer gets is numbered without gaps (no loss here):
                        // across layer switches, skipped stretches and reused m-lines.
                        let ssrc = u32::from_be_bytes([d[8], d[9], d[10], d[11]]);
                        let seq = u16::from_be_bytes([d[2], d[3]]);
                        if let Some(last) = self.last_seq.insert((c, ssrc), seq)
                            && seq != last.wrapping_add(1)
                        {
                            self.jumps.push((c, ssrc, last, seq));
                        }
                    }
                    let cl = &mut self.clients[c];
                    let input = RtcInput::Receive(
                        self.now,
                        Receive {
                            proto: Protocol::Udp,
                            source: from,
                            destination: to,
                            contents: d.as_slice().try_into().expect("datagram"),
                        },
                    );
                    let _ = cl.rtc.handle_input(input);
                }
            }
            for c in 0..self.clients.len() {
                moved |= self.client_step(c);
            }
            if !moved {
                return;
            }
        }
    }

    /// Advances the clock in 1 ms steps, generating media (audio every 20 ms, video frames
    /// every 40 ms) and firing every timer that is due.
    pub fn run(&mut self, ms: u64) {
        for _ in 0..ms {
            self.now += Duration::from_millis(1);
            self.tick += 1;
            let t = self.tick;
            for w in 0..self.cores.len() {
                if self.cores[w].poll_timeout().is_some_and(|t| t <= self.now) {
                    self.core_input(w, Input::Timeout);
                }
            }
            for c in 0..self.clients.len() {
                let cl = &mut self.clients[c];
                if cl.next_timeout <= self.now && cl.closed.is_none() {
                    let _ = cl.rtc.handle_input(RtcInput::Timeout(self.now));
                }
                if t.is_multiple_of(20) {
                    self.send_audio(c);
                }
                if t.is_multiple_of(40) {
                    self.send_video(c);
                }
            }
            self.settle();
        }
    }

    pub fn send_audio(&mut self, c: usize) {
        let now = self.now;
        let cl = &mut self.clients[c];
        let (Some(mid), Some(pt), true) = (cl.audio_mid, cl.audio_pt, cl.connected) else {
            return;
        };
        if !cl.publish_audio {
            return;
        }
        cl.audio_no += 1;
        let mut d = vec![0xf8];
        d.extend_from_slice(&cl.index.to_be_bytes());
        d.push(0);
        d.extend_from_slice(&cl.audio_no.to_be_bytes());
        d.resize(60, 0x55);
        let t = MediaTime::new(u64::from(cl.audio_no) * 960, Frequency::FORTY_EIGHT_KHZ);
        let level = -(127 - cl.loudness.min(127) as i8);
        if let Some(w) = cl.rtc.writer(mid) {
            let _ = w.audio_level(level, cl.loudness > 40).write(pt, now, t, d);
        }
    }

    pub fn send_video(&mut self, c: usize) {
        let now = self.now;
        let cl = &mut self.clients[c];
        let (Some(mid), Some(pt), true) = (cl.video_mid, cl.video_pt, cl.connected) else {
            return;
        };
        if !cl.publish_video {
            return;
        }
        cl.frame_no += 1;
        let key = std::mem::take(&mut cl.force_key) || cl.frame_no % 50 == 1;
        let t = MediaTime::new(u64::from(cl.frame_no) * 3600, Frequency::NINETY_KHZ);
        let layers: Vec<(Option<Rid>, u8, usize)> = if cl.simulcast {
            ["q", "h", "f"]
                .iter()
                .enumerate()
                .map(|(i, l)| (Some(Rid::from(*l)), i as u8 + 1, 300 << i))
                .filter(|(r, _, _)| r.is_some_and(|r| cl.active_layers.contains(&r)))
                .collect()
        } else {
            vec![(None, 1, cl.video_bytes)]
        };
        for (rid, layer, size) in layers {
            // VP8 frame tag: P bit 0 for a keyframe, then our marker.
            let mut d = vec![if key { 0x10 } else { 0x11 }, 0, 0];
            d.extend_from_slice(&cl.index.to_be_bytes());
            d.push(layer);
            d.extend_from_slice(&cl.frame_no.to_be_bytes());
            d.push(u8::from(key));
            d.resize(size, 0xaa);
            let Some(mut w) = cl.rtc.writer(mid) else {
                return;
            };
            if let Some(r) = rid {
                w = w.rid(r);
            }
            let _ = w.write(pt, now, t, d);
        }
    }

    /// Signaling and str0m output of one client; true if anything happened.
    pub fn client_step(&mut self, c: usize) -> bool {
        let mut moved = false;
        while let Ok(m) = self.clients[c].rx.try_recv() {
            moved = true;
            self.on_server_msg(c, m);
        }
        let cl = &mut self.clients[c];
        if cl.closed.is_some() {
            return moved;
        }
        loop {
            match cl.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    cl.next_timeout = t;
                    break;
                }
                Ok(Output::Transmit(t)) => {
                    moved = true;
                    self.net
                        .push_back((cl.addr, t.destination, t.contents.to_vec()));
                }
                Ok(Output::Event(e)) => {
                    moved = true;
                    match e {
                        Event::Connected => {
                            cl.connected = true;
                            cl.force_key = true;
                        }
                        Event::MediaData(d) => {
                            let b = &d.data;
                            let f = if b.first() == Some(&0xf8) && b.len() >= 10 {
                                Frame {
                                    from: u32::from_be_bytes([b[1], b[2], b[3], b[4]]),
                                    layer: b[5],
                                    n: u32::from_be_bytes([b[6], b[7], b[8], b[9]]),
                                    key: false,
                                }
                            } else if b.len() >= 13 {
                                Frame {
                                    from: u32::from_be_bytes([b[3], b[4], b[5], b[6]]),
                                    layer: b[7],
                                    n: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
                                    key: b[12] == 1,
                                }
                            } else {
                                continue;
                            };
                            cl.frames.entry(d.mid).or_default().push(f);
                        }
                        Event::KeyframeRequest(_) => {
                            cl.force_key = true;
                            cl.keyframe_requests += 1;
                        }
                        _ => {}
                    }
                }
                Err(e) => panic!("client {c}: {e}"),
            }
        }
        moved
    }

    pub fn on_server_msg(&mut self, c: usize, m: ServerMsg) {
        self.clients[c].msgs.push(m.clone());
        match m {
            ServerMsg::Joined { .. } => {
                self.clients[c].joined = true;
                self.offer(c);
            }
            ServerMsg::Offer { sdp } => {
                let cl = &mut self.clients[c];
                if cl.pending.is_some() {
                    // Impolite client: our offer stands; the server offers again.
                    return;
                }
                let offer = SdpOffer::from_sdp_string(&sdp).expect("offer");
                let answer = cl.rtc.sdp_api().accept_offer(offer).expect("accept offer");
                self.signal(
                    c,
                    ClientMsg::Answer {
                        sdp: answer.to_sdp_string(),
                    },
                );
            }
            ServerMsg::Answer { sdp } => {
                let cl = &mut self.clients[c];
                let pending = cl.pending.take().expect("an answer to our offer");
                let answer = SdpAnswer::from_sdp_string(&sdp).expect("answer");
                cl.rtc
                    .sdp_api()
                    .accept_answer(pending, answer)
                    .expect("accept answer");
                let find = |rtc: &mut Rtc, mid: Option<Mid>, codec: Codec| {
                    let w = rtc.writer(mid?)?;
                    w.payload_params()
                        .find(|p| p.spec().codec == codec)
                        .map(|p| p.pt())
                };
                cl.audio_pt = find(&mut cl.rtc, cl.audio_mid, Codec::Opus);
                cl.video_pt = find(&mut cl.rtc, cl.video_mid, Codec::Vp8);
            }
            ServerMsg::Tracks { tracks } => {
                for t in tracks {
                    self.clients[c]
                        .tracks
                        .insert(t.mid, (t.participant_id, t.kind));
                }
            }
            ServerMsg::Layers { active, .. } => {
                self.clients[c].active_layers =
                    active.iter().map(|r| Rid::from(r.as_str())).collect();
                self.clients[c].force_key = true;
            }
            ServerMsg::Closed { reason, .. } => self.clients[c].closed = Some(reason),
            _ => {}
        }
    }

    pub fn offer(&mut self, c: usize) {
        let cl = &mut self.clients[c];
        if !cl.publish_audio && !cl.publish_video {
            return;
        }
        let mut change = cl.rtc.sdp_api();
        let mut sources = std::collections::HashMap::new();
        let stream = format!("s{}", cl.index);
        if cl.publish_audio {
            let mid = change.add_media(
                StrKind::Audio,
                Direction::SendOnly,
                Some(stream.clone()),
                None,
                None,
            );
            sources.insert(mid.to_string(), Source::Microphone);
            cl.audio_mid = Some(mid);
        }
        if cl.publish_video {
            let sim = cl.simulcast.then(|| {
                let mut s = Simulcast::new();
                for l in ["q", "h", "f"] {
                    s.add_send_layer(SimulcastLayer::new(l));
                }
                s
            });
            let mid =
                change.add_media(StrKind::Video, Direction::SendOnly, Some(stream), None, sim);
            sources.insert(mid.to_string(), Source::Camera);
            cl.video_mid = Some(mid);
        }
        let (offer, pending) = change.apply().expect("an offer");
        cl.pending = Some(pending);
        self.signal(
            c,
            ClientMsg::Offer {
                sdp: offer.to_sdp_string(),
                sources,
            },
        );
    }

    pub fn errors(&self, c: usize) -> Vec<&ServerMsg> {
        self.clients[c]
            .msgs
            .iter()
            .filter(|m| matches!(m, ServerMsg::Error { .. }))
            .collect()
    }
}

/// The forward path on its own, for `benches/forward.rs`: one publisher (video only) and
/// `subscribers` viewers spread over `workers` cores, connected and negotiated on simulated
/// time; then the publisher's real SRTP packets, captured beforehand, are fed to its core
/// one by one, what a core hands to another is fed to that one, timers that come due run,
/// and every datagram goes to the caller's sink (viewers no longer read).
pub struct ForwardBench {
    pub sim: Sim,
    out: Outputs,
    pending: Vec<(u8, Fwd)>,
    fed: u64,
}

impl ForwardBench {
    pub fn new(subscribers: usize, workers: usize, frame_bytes: usize) -> ForwardBench {
        let mut sim = Sim::new(workers.max(1), 0);
        let publisher = sim.join(0, false, true, false, false);
        sim.clients[publisher].video_bytes = frame_bytes;
        for i in 0..subscribers {
            sim.join(i % workers.max(1), false, false, false, false);
        }
        sim.run(3000);
        sim.capture = Some(publisher);
        ForwardBench {
            sim,
            out: Outputs::default(),
            pending: Vec::new(),
            fed: 0,
        }
    }

    /// Packets fed so far.
    pub fn fed(&self) -> u64 {
        self.fed
    }

    /// Makes sure at least `n` publisher packets are captured (runs the simulation on).
    pub fn prepare(&mut self, n: usize) {
        while self.sim.captured.len() < n {
            self.sim.run(40);
        }
    }

    /// Feeds the next captured packet; false when none is left (`prepare` more).
    pub fn forward_next(&mut self, sink: &mut dyn NetSink) -> bool {
        let Some((from, to, d)) = self.sim.captured.pop_front() else {
            return false;
        };
        self.sim.now += Duration::from_micros(100);
        self.fed += 1;
        let now = self.sim.now;
        let Some(w) = (0..self.sim.cores.len()).find(|&w| core_addr(w) == to) else {
            return true;
        };
        self.sim.cores[w].handle(
            now,
            Input::Datagram {
                from,
                data: &d,
                received: now,
            },
            sink,
            &mut self.out,
        );
        self.pending.append(&mut self.out.fwd);
        for (to, f) in self.pending.drain(..) {
            self.sim.cores[usize::from(to)].handle(now, Input::Forwarded(f), sink, &mut self.out);
        }
        for core in self.sim.cores.iter_mut() {
            if core.poll_timeout().is_some_and(|t| t <= now) {
                core.handle(now, Input::Timeout, sink, &mut self.out);
            }
        }
        self.out.clients.clear();
        self.out.ctl.clear();
        self.out.events.clear();
        self.out.fwd.clear();
        true
    }
}
