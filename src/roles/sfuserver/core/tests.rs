//! The core on simulated time: real str0m clients (ICE, DTLS, SRTP, RTCP, SDP through the
//! signaling messages) talk to one or two `Core`s over an in-memory network; the clock is
//! a variable. Each test drives a meeting scenario and checks what the clients receive.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{
    Direction, Frequency, KeyframeRequestKind, MediaKind as StrKind, MediaTime, Mid, Pt, Rid,
    Simulcast, SimulcastLayer,
};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input as RtcInput, Output, Rtc, RtcConfig};
use tokio::sync::mpsc::Receiver;

use super::*;
use crate::ids::{MeetingId, ParticipantId};
use crate::proto::signal::{ClientMsg, MediaKind, ServerMsg, Source};
use crate::proto::RoomAction;
use crate::tokens::JoinClaims;

const MEETING: MeetingId = MeetingId(7);

struct Sink {
    buf: Vec<u8>,
    out: Vec<(SocketAddr, Vec<u8>)>,
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
struct Frame {
    from: u32,
    layer: u8,
    n: u32,
    key: bool,
}

struct Client {
    index: u32,
    pid: ParticipantId,
    worker: usize,
    rtc: Rtc,
    addr: SocketAddr,
    rx: Receiver<ServerMsg>,
    pending: Option<SdpPendingOffer>,
    publish_audio: bool,
    publish_video: bool,
    simulcast: bool,
    audio_mid: Option<Mid>,
    video_mid: Option<Mid>,
    audio_pt: Option<Pt>,
    video_pt: Option<Pt>,
    active_layers: Vec<Rid>,
    /// Loudness sent in the audio-level extension (127 − |level|).
    loudness: u8,
    connected: bool,
    closed: Option<String>,
    force_key: bool,
    frame_no: u32,
    audio_no: u32,
    next_timeout: Instant,
    /// Received frames by our mid.
    frames: HashMap<Mid, Vec<Frame>>,
    /// Mid → (publisher id, kind) from the `tracks` messages.
    tracks: HashMap<String, (String, MediaKind)>,
    msgs: Vec<ServerMsg>,
    keyframe_requests: u32,
    joined: bool,
}

impl Client {
    fn mid_of(&self, publisher: &ParticipantId, kind: MediaKind) -> Option<Mid> {
        self.tracks
            .iter()
            .find(|(_, (p, k))| *p == publisher.0 && *k == kind)
            .map(|(m, _)| Mid::from(m.as_str()))
    }

    fn frames_from(&self, publisher: u32, video: bool) -> Vec<Frame> {
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

struct Sim {
    now: Instant,
    cores: Vec<Core>,
    sink: Sink,
    links: Vec<HashMap<usize, ClientTx>>,
    clients: Vec<Client>,
    /// (to, bytes)
    net: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>,
    inbox: Vec<VecDeque<Ctl>>,
    fwd: Vec<VecDeque<Fwd>>,
    replies: Vec<Result<(), String>>,
    /// Drop every n-th RTP datagram to this client index.
    lossy: Option<(usize, u32)>,
    dropped: u32,
    counter: u32,
    tick: u64,
    /// Last RTP sequence number per (client, SSRC), and streams whose numbering jumped.
    last_seq: HashMap<(usize, u32), u16>,
    jumps: Vec<(usize, u32, u16, u16)>,
}

fn core_addr(w: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], 5000 + w as u16))
}

impl Sim {
    fn new(workers: usize, top_k: usize) -> Sim {
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
                })
            })
            .collect();
        Sim {
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
            dropped: 0,
            counter: 0,
            tick: 0,
            last_seq: HashMap::new(),
            jumps: Vec::new(),
        }
    }

    /// A participant joins on `worker`, publishing what is asked.
    fn join(&mut self, worker: usize, audio: bool, video: bool, simulcast: bool, host: bool) -> usize {
        let index = self.clients.len() as u32;
        let addr = SocketAddr::from(([10, 0, 1, index as u8 + 1], 40000));
        let mut rtc = RtcConfig::new()
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(self.now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
        let (tx, rx) = tokio::sync::mpsc::channel(512);
        let pid = ParticipantId(format!("p{index}"));
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
        });
        let claims = JoinClaims {
            meeting: MEETING,
            participant: pid,
            sfu: "sfu".into(),
            name: format!("Client {index}"),
            host,
            exp: i64::MAX,
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

    fn cmd(&mut self, worker: usize, c: WorkerCmd) {
        self.core_input(worker, Input::Cmd(c));
    }

    fn signal(&mut self, client: usize, msg: ClientMsg) {
        let (w, pid) = (self.clients[client].worker, self.clients[client].pid.clone());
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
    fn control(&mut self, action: RoomAction) -> Result<(), String> {
        let mut rxs = Vec::new();
        for w in 0..self.cores.len() {
            let (reply, rx) = tokio::sync::oneshot::channel();
            self.cmd(
                w,
                WorkerCmd::Control {
                    meeting: MEETING,
                    action: action.clone(),
                    reply,
                },
            );
            rxs.push(rx);
        }
        let results: Vec<Result<(), String>> = rxs
            .into_iter()
            .map(|mut r| r.try_recv().unwrap_or(Err("no reply".into())))
            .collect();
        let r = if results.iter().any(Result::is_ok) {
            Ok(())
        } else {
            results.into_iter().next().unwrap_or(Ok(()))
        };
        self.replies.push(r.clone());
        r
    }

    fn core_input(&mut self, w: usize, input: Input) {
        let mut out = Outputs::default();
        self.sink.out.clear();
        self.cores[w].handle(self.now, input, &mut self.sink, &mut out);
        let from = core_addr(w);
        for (to, d) in self.sink.out.drain(..) {
            self.net.push_back((from, to, d));
        }
        self.route(w, out);
    }

    fn route(&mut self, w: usize, out: Outputs) {
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
            if let CoreEvent::ControlReply(reply, r) = e {
                let _ = reply.send(r);
            }
        }
    }

    /// Delivers everything in flight (instantly) until nothing moves.
    fn settle(&mut self) {
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
                    self.core_input(
                        w,
                        Input::Datagram {
                            from,
                            data: &d,
                            received: self.now,
                        },
                    );
                } else if let Some(c) = self.clients.iter().position(|c| c.addr == to) {
                    if let Some((lc, n)) = self.lossy
                        && lc == c
                        && is_rtp(&d)
                    {
                        self.counter += 1;
                        if self.counter % n == 0 {
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
    fn run(&mut self, ms: u64) {
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
                if t % 20 == 0 {
                    self.send_audio(c);
                }
                if t % 40 == 0 {
                    self.send_video(c);
                }
            }
            self.settle();
        }
    }

    fn send_audio(&mut self, c: usize) {
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

    fn send_video(&mut self, c: usize) {
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
            vec![(None, 1, 2500)]
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
    fn client_step(&mut self, c: usize) -> bool {
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
                    self.net.push_back((cl.addr, t.destination, t.contents.to_vec()));
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

    fn on_server_msg(&mut self, c: usize, m: ServerMsg) {
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
                self.clients[c].active_layers = active.iter().map(|r| Rid::from(r.as_str())).collect();
                self.clients[c].force_key = true;
            }
            ServerMsg::Closed { reason, .. } => self.clients[c].closed = Some(reason),
            _ => {}
        }
    }

    fn offer(&mut self, c: usize) {
        let cl = &mut self.clients[c];
        if !cl.publish_audio && !cl.publish_video {
            return;
        }
        let mut change = cl.rtc.sdp_api();
        let mut sources = std::collections::HashMap::new();
        let stream = format!("s{}", cl.index);
        if cl.publish_audio {
            let mid = change.add_media(StrKind::Audio, Direction::SendOnly, Some(stream.clone()), None, None);
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
            let mid = change.add_media(StrKind::Video, Direction::SendOnly, Some(stream), None, sim);
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

    fn errors(&self, c: usize) -> Vec<&ServerMsg> {
        self.clients[c]
            .msgs
            .iter()
            .filter(|m| matches!(m, ServerMsg::Error { .. }))
            .collect()
    }
}

/// Counters from `first` on follow each other (no frame lost or repeated).
fn complete(frames: &[Frame]) -> bool {
    frames.windows(2).all(|w| w[1].n == w[0].n + 1)
}

#[test]
fn one_meeting_on_two_workers_carries_audio_and_video_both_ways() {
    let mut sim = Sim::new(2, 0);
    let a = sim.join(0, true, true, false, true);
    let b = sim.join(1, true, true, false, false);
    let c = sim.join(0, false, false, false, false);
    sim.run(3000);
    for (viewer, publisher) in [(b, a), (c, a), (a, b), (c, b)] {
        let v = sim.clients[viewer].frames_from(publisher as u32, true);
        let au = sim.clients[viewer].frames_from(publisher as u32, false);
        assert!(v.len() > 40, "{viewer} sees {publisher}'s video: {}", v.len());
        assert!(au.len() > 100, "{viewer} hears {publisher}: {}", au.len());
        assert!(v[0].key, "video starts at a keyframe");
        assert!(complete(&v) && complete(&au), "{viewer} from {publisher}: complete");
    }
    for x in [a, b, c] {
        assert!(sim.errors(x).is_empty(), "{:?}", sim.errors(x));
    }
    // Everyone learns of everyone else exactly once, whichever worker they are on (from
    // the `joined` list or a later `participant_joined`).
    for x in [a, b, c] {
        let mut known: Vec<String> = Vec::new();
        for m in &sim.clients[x].msgs {
            match m {
                ServerMsg::Joined { participants, .. } => {
                    known.extend(participants.iter().map(|p| p.participant_id.clone()))
                }
                ServerMsg::ParticipantJoined { participant } => {
                    known.push(participant.participant_id.clone())
                }
                _ => {}
            }
        }
        known.sort();
        let mut others: Vec<String> = [a, b, c]
            .iter()
            .filter(|&&y| y != x)
            .map(|&y| sim.clients[y].pid.0.clone())
            .collect();
        others.sort();
        assert_eq!(known, others, "client {x}");
    }
    // B leaves: A and C (on the other worker) are told, B's tracks stop.
    sim.signal(b, ClientMsg::Leave);
    sim.run(200);
    for x in [a, c] {
        assert!(sim.clients[x].msgs.iter().any(|m| matches!(
            m,
            ServerMsg::ParticipantLeft { participant_id, .. } if *participant_id == sim.clients[b].pid.0
        )));
    }
    let before = sim.clients[c].frames_from(b as u32, true).len();
    sim.run(500);
    assert_eq!(sim.clients[c].frames_from(b as u32, true).len(), before);
    // A newcomer takes over the m-lines B left in C's session (same send streams): C
    // decodes its media completely (the numbering went on from B's).
    let d = sim.join(1, true, true, false, false);
    sim.run(3000);
    let v = sim.clients[c].frames_from(d as u32, true);
    let au = sim.clients[c].frames_from(d as u32, false);
    assert!(v.len() > 40 && complete(&v), "C sees D: {}", v.len());
    assert!(au.len() > 100 && complete(&au), "C hears D: {}", au.len());
    let offered = sim.clients[c]
        .msgs
        .iter()
        .filter_map(|m| match m {
            ServerMsg::Tracks { tracks } => Some(tracks.len()),
            _ => None,
        })
        .max();
    assert_eq!(offered, Some(4), "C's received m-lines were reused, not added");
    assert!(sim.jumps.is_empty(), "sequence numbers jumped: {:?}", sim.jumps);
}

#[test]
fn crossing_offers_glare_is_resolved_and_media_flows() {
    let mut sim = Sim::new(1, 0);
    let a = sim.join(0, true, true, false, false);
    sim.run(500);
    // B joins and offers at the same moment as the server offers it A's tracks: B ignores
    // the server's offer (impolite), the server answers B's and offers again.
    let b = sim.join(0, true, true, false, false);
    sim.run(3000);
    let offers_to_b = sim.clients[b]
        .msgs
        .iter()
        .filter(|m| matches!(m, ServerMsg::Offer { .. }))
        .count();
    assert!(offers_to_b >= 2, "the crossed offer was made again: {offers_to_b}");
    for (viewer, publisher) in [(a, b), (b, a)] {
        let v = sim.clients[viewer].frames_from(publisher as u32, true);
        assert!(v.len() > 30 && complete(&v), "{viewer} sees {publisher}: {}", v.len());
    }
    assert!(sim.errors(a).is_empty() && sim.errors(b).is_empty());
    assert!(sim.jumps.is_empty(), "{:?}", sim.jumps);
}

#[test]
fn host_locks_mutes_removes_and_ends_across_workers() {
    let mut sim = Sim::new(2, 0);
    let host = sim.join(0, false, false, false, true);
    let a = sim.join(1, true, false, false, false);
    let b = sim.join(0, false, false, false, false);
    sim.run(1500);
    assert!(sim.clients[b].frames_from(a as u32, false).len() > 20);
    // Lock: a newcomer on either worker is refused, the host is not.
    assert_eq!(sim.control(RoomAction::Lock), Ok(()));
    let late = sim.join(1, false, false, false, false);
    sim.run(50);
    assert_eq!(sim.clients[late].closed.as_deref(), Some("locked"));
    assert!(sim.clients[b].msgs.contains(&ServerMsg::Locked { locked: true }));
    // Mute A (on worker 1) from the host: everyone hears of it, A's audio stops.
    assert_eq!(
        sim.control(RoomAction::Mute {
            participant_id: sim.clients[a].pid.clone()
        }),
        Ok(())
    );
    sim.run(100);
    let heard = sim.clients[b].frames_from(a as u32, false).len();
    sim.run(1000);
    assert_eq!(sim.clients[b].frames_from(a as u32, false).len(), heard);
    for x in [host, a, b] {
        assert!(sim.clients[x].msgs.iter().any(|m| matches!(
            m,
            ServerMsg::Mute { by_host: true, muted: true, .. }
        )));
    }
    // A unmutes itself: heard again.
    sim.signal(
        a,
        ClientMsg::Mute {
            kind: MediaKind::Audio,
            muted: false,
        },
    );
    sim.run(1000);
    assert!(sim.clients[b].frames_from(a as u32, false).len() > heard + 20);
    // An unknown participant is an error; removing A closes its session only.
    assert!(
        sim.control(RoomAction::Remove {
            participant_id: ParticipantId("nobody".into())
        })
        .is_err()
    );
    assert_eq!(
        sim.control(RoomAction::Remove {
            participant_id: sim.clients[a].pid.clone()
        }),
        Ok(())
    );
    sim.run(100);
    assert_eq!(sim.clients[a].closed.as_deref(), Some("removed"));
    assert!(sim.clients[b].closed.is_none());
    assert_eq!(sim.control(RoomAction::End), Ok(()));
    sim.run(100);
    assert_eq!(sim.clients[host].closed.as_deref(), Some("ended"));
    assert_eq!(sim.clients[b].closed.as_deref(), Some("ended"));
}

#[test]
fn simulcast_follows_the_tile_size_with_dynacast_and_switches_at_keyframes() {
    let mut sim = Sim::new(2, 0);
    let a = sim.join(0, false, true, true, false);
    let v = sim.join(1, false, false, false, false);
    sim.run(1500);
    let pid_a = sim.clients[a].pid.clone();
    let mid = sim.clients[v]
        .mid_of(&pid_a, MediaKind::Video)
        .expect("a video track from A");
    // A small tile: the low layer, and A is asked to send only that one.
    sim.signal(
        v,
        ClientMsg::Layer {
            mid: mid.to_string(),
            width: 320,
            height: 180,
        },
    );
    sim.run(1500);
    assert_eq!(
        sim.clients[a].active_layers,
        vec![Rid::from("q")],
        "dynacast: only q is watched"
    );
    let seen = |sim: &Sim| sim.clients[v].frames.get(&mid).cloned().unwrap_or_default();
    let small = seen(&sim);
    assert_eq!(small.last().map(|f| f.layer), Some(1), "layer q");
    // A large tile: A is asked for f, the viewer switches to it at a keyframe, with no
    // frame lost on the viewer's side (its decoder saw continuous numbering).
    sim.signal(
        v,
        ClientMsg::Layer {
            mid: mid.to_string(),
            width: 1280,
            height: 720,
        },
    );
    sim.run(2000);
    // The layer for 720 rows, or "h" if the estimate towards the viewer is not yet above
    // 1 Mbit/s (`wanted_rank`); either way larger than "q", and the only one asked for.
    let frames = seen(&sim);
    let big = frames.last().map_or(0, |f| f.layer);
    assert!(big >= 2, "a larger layer: {big}");
    assert_eq!(
        sim.clients[a].active_layers,
        vec![Rid::from(["q", "h", "f"][usize::from(big) - 1])]
    );
    let first = frames
        .iter()
        .position(|f| f.layer == big)
        .expect("switched");
    assert!(frames[first].key, "the switch happens at a keyframe");
    assert!(frames[first..].iter().all(|f| f.layer == big));
    assert!(complete(&frames[first..]));
    // Not shown (0×0): nothing is forwarded and A is told nobody watches.
    sim.signal(
        v,
        ClientMsg::Layer {
            mid: mid.to_string(),
            width: 0,
            height: 0,
        },
    );
    sim.run(600);
    let paused_at = seen(&sim).len();
    sim.run(1000);
    assert_eq!(seen(&sim).len(), paused_at, "a hidden tile gets no video");
    assert!(sim.clients[a].active_layers.is_empty());
    assert!(sim.errors(v).is_empty());
    assert!(sim.jumps.is_empty(), "{:?}", sim.jumps);
}

#[test]
fn viewer_keyframe_requests_reach_the_publisher_on_another_worker() {
    let mut sim = Sim::new(2, 0);
    let a = sim.join(0, false, true, false, false);
    let v = sim.join(1, false, false, false, false);
    sim.run(1500);
    let mid = sim.clients[v]
        .mid_of(&sim.clients[a].pid.clone(), MediaKind::Video)
        .expect("track");
    let before = sim.clients[a].keyframe_requests;
    for _ in 0..3 {
        let mut w = sim.clients[v].rtc.writer(mid).expect("writer");
        w.request_keyframe(None, KeyframeRequestKind::Pli)
            .expect("pli");
        sim.run(600);
    }
    assert!(
        sim.clients[a].keyframe_requests >= before + 3,
        "{} → {}",
        before,
        sim.clients[a].keyframe_requests
    );
    let keys = sim.clients[v]
        .frames
        .get(&mid)
        .map_or(0, |f| f.iter().filter(|f| f.key).count());
    assert!(keys >= 4, "keyframes arrived: {keys}");
}

#[test]
fn nack_is_answered_from_the_shared_cache_across_workers() {
    let mut sim = Sim::new(2, 0);
    let a = sim.join(0, false, true, false, false);
    let v = sim.join(1, false, false, false, false);
    sim.run(1000);
    // Every 10th RTP datagram to the viewer is lost; NACK repairs every frame.
    sim.lossy = Some((v, 10));
    sim.run(4000);
    assert!(sim.dropped > 20, "{}", sim.dropped);
    assert!(sim.cores[0].counts.retransmitted + sim.cores[1].counts.retransmitted > 0);
    let frames = sim.clients[v].frames_from(a as u32, true);
    assert!(frames.len() > 100 && complete(&frames), "{}", frames.len());
}

#[test]
fn active_speaker_and_top_k_audio() {
    // K = 1: only the loudest of three publishers is heard.
    let mut sim = Sim::new(2, 1);
    let a = sim.join(0, true, false, false, false);
    let b = sim.join(1, true, false, false, false);
    let c = sim.join(0, true, false, false, false);
    let l = sim.join(1, false, false, false, false);
    sim.clients[a].loudness = 90;
    sim.clients[b].loudness = 20;
    sim.clients[c].loudness = 20;
    sim.run(2000);
    let pid_a = sim.clients[a].pid.0.clone();
    for x in [b, l] {
        assert!(
            sim.clients[x].msgs.iter().any(|m| matches!(
                m,
                ServerMsg::ActiveSpeaker { participant_id: Some(p) } if *p == pid_a
            )),
            "{x} is told A speaks"
        );
    }
    let heard = |sim: &Sim, from: usize| sim.clients[l].frames_from(from as u32, false).len();
    assert!(heard(&sim, a) > 50);
    assert_eq!((heard(&sim, b), heard(&sim, c)), (0, 0), "only the loudest");
    // C starts talking: heard from its first loud packet on, and continuously.
    sim.clients[c].loudness = 100;
    let c_sent = sim.clients[c].audio_no;
    sim.run(1000);
    let from_c = sim.clients[l].frames_from(c as u32, false);
    assert_eq!(from_c.first().map(|f| f.n), Some(c_sent + 1), "first syllable");
    assert!(complete(&from_c));
    assert_eq!(heard(&sim, b), 0);
    assert!(sim.jumps.is_empty(), "{:?}", sim.jumps);
}
