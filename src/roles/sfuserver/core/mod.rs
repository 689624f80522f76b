//! The sfuserver's media core for one worker, sans-IO: it takes `(now, input)` — a
//! datagram, a packet handed over by another worker, a control message from another worker,
//! a command from the signaling side, a timeout — and produces outputs: datagrams (into a
//! [`NetSink`]), messages for participants, packets and control messages for other
//! workers, events for the apiserver. It reads no clock and owns no socket or channel; the
//! I/O worker (`worker.rs`) does that, and the unit tests drive it on simulated time.
//!
//! # One meeting across all workers
//!
//! A participant lives on one worker (its `Rtc`, its UDP port). Every worker keeps a replica
//! of every room's directory — members, their published tracks, the lock — kept in step by
//! control messages ([`Ctl`]) each worker broadcasts about its own participants. A
//! publisher's packet is decrypted once on its worker, which hands it (payload `Arc`ed, no
//! copy, no lock: bounded queues between workers) to each other worker that has members
//! in the room; every worker then rewrites and encrypts one copy per local viewer and sends
//! them. Viewers' feedback (NACK, PLI, TWCC, RR) stays on the viewer's worker; keyframe
//! requests and dynacast wishes travel to the publisher's worker as control messages.
//!
//! # The forward path
//!
//! str0m runs in RTP mode: no depacketizing or repacketizing. Each copy is written with
//! str0m's direct send (vendor/str0m/PATCHES.md), which puts the header (this viewer's
//! SSRC, sequence number, timestamp, extension ids, transport-wide sequence number), SRTP
//! and the TWCC/BWE bookkeeping into one call whose cost does not depend on the number of
//! streams, and writes the datagram straight into the batch `sendmmsg` sends.

pub mod audio;
pub mod codec;
mod control;
pub mod packet;
pub mod participant;
pub mod rewrite;
#[doc(hidden)]
pub mod sim;

#[cfg(test)]
mod control_tests;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use str0m::bwe::{Bitrate, BweKind};
use str0m::change::DirectSend;
use str0m::config::CryptoProvider;
use str0m::format::PayloadParams;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind as StrKind};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpPacket, RtpWrite};
use str0m::{Candidate, Event, IceConnectionState, Output, RtcConfig};
use tokio::sync::oneshot;

use self::audio::{RoomAudio, Verdict};
use self::codec::{Kind, inspect};
use self::packet::{PacketRing, Pkt};
use self::participant::{
    LAYERS, OutState, Participant, SdpError, TrackOut, choose_layer, layer_bps, wanted_rank,
};
use crate::ids::{MeetingId, ParticipantId};
use crate::proto::signal::{
    ChatLine, ClientMsg, CloseReason, LobbyEntry, MediaKind, ParticipantInfo, QUALITY_INTERVAL_MS,
    QualityReport, REACTION_INTERVAL_MS, REACTIONS, Role, ServerMsg, Source,
};
use crate::proto::{ParticipationChanged, RoomAction};
use crate::tokens::JoinClaims;

/// The largest datagram a [`NetSink`] buffer must hold.
pub const MAX_DATAGRAM: usize = 2048;
/// Housekeeping: dynacast, active speaker, top-K trim, cache sweep, room closing, stats.
pub const HOUSEKEEPING: Duration = Duration::from_millis(250);
/// Keyframe requests a worker sends for one source layer, at most this often (the
/// publisher's worker rate-limits again per publisher).
const KEYFRAME_ASK: Duration = Duration::from_millis(200);
/// How long a worker presents one DTLS certificate before it makes a new one.
const DTLS_CERT_FOR: Duration = Duration::from_secs(24 * 3600);
/// A simulcast layer not heard from for this long is not available.
const LAYER_GONE: Duration = Duration::from_secs(1);
/// A viewer that has just connected starts on a keyframe already here if it is at most this
/// old (the one asked for while it connected); else it asks the publisher. As long as the
/// publisher's own limit on keyframe requests, so a keyframe that limit would hold a new
/// ask back for is always young enough to start on.
const REPLAY_AGE: Duration = participant::KEYFRAME_INTERVAL;

/// The channel to a participant's signaling session (bounded; the I/O side delivers to it
/// with `try_send` and reports a full one as [`Input::SlowReader`]).
pub type ClientTx = tokio::sync::mpsc::Sender<ServerMsg>;

/// Where datagrams go: the I/O worker batches them for `sendmmsg`, tests collect them.
pub trait NetSink {
    /// A buffer for the next datagram, at least `MAX_DATAGRAM` bytes.
    fn buffer(&mut self) -> &mut [u8];
    /// The first `len` bytes of `buffer()` go to `to`. `received`: when the datagram that
    /// caused this one was received (a forwarded copy), for the added-latency histogram.
    fn commit(&mut self, len: usize, to: SocketAddr, received: Option<Instant>);
}

/// A participant, unique in the box (slots are reused; `gen` tells the uses apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerKey {
    pub worker: u8,
    pub slot: u32,
    pub generation: u32,
}

impl PeerKey {
    /// Never 0 (the audio table's "free").
    pub fn packed(&self) -> u64 {
        ((u64::from(self.worker) + 1) << 56)
            | (u64::from(self.generation & 0xFF_FFFF) << 32)
            | u64::from(self.slot)
    }
}

/// A published track: its publisher and its index in the publisher's `tracks_in`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TrackKey {
    pub peer: PeerKey,
    pub track: u16,
}

/// A packet handed to another worker.
pub struct Fwd {
    pub track: TrackKey,
    pub layer: u8,
    pub pkt: Pkt,
}

/// Commands from the signaling side and the `SfuServer` actor.
pub enum WorkerCmd {
    /// `session` tells this signaling session apart from an earlier or later one of the
    /// same participant (a reconnect): `Signal` and `Leave` act only on their own session.
    Join {
        claims: JoinClaims,
        tx: ClientTx,
        session: u64,
    },
    Signal {
        participant: ParticipantId,
        session: u64,
        msg: ClientMsg,
    },
    Leave {
        participant: ParticipantId,
        session: u64,
        reason: CloseReason,
    },
    /// A host action; every worker gets it and applies what concerns its participants.
    Control {
        meeting: MeetingId,
        action: RoomAction,
        /// The host's name, if the apiserver knows it.
        by: Option<String>,
        reply: oneshot::Sender<Result<(), crate::proto::ControlRefused>>,
    },
    /// The server stops: every session is told (`closed`, reason `server_shutdown`, so clients
    /// rejoin through the apiserver, which sends them to an sfuserver that is up) and ended.
    Shutdown { reply: oneshot::Sender<()> },
}

/// A published track as every worker's replica knows it.
#[derive(Clone, Debug)]
pub struct TrackDesc {
    pub key: TrackKey,
    pub kind: MediaKind,
    pub source: Source,
    pub simulcast: bool,
    /// The publisher's payload types (to match them to each viewer's).
    pub params: Arc<[PayloadParams]>,
}

/// Between workers (control plane: joins, leaves, tracks, broadcasts, keyframe requests,
/// dynacast). Per sending worker, in order.
#[derive(Clone, Debug)]
pub enum Ctl {
    MemberUp {
        meeting: MeetingId,
        key: PeerKey,
        info: ParticipantInfo,
        audio_slot: Option<usize>,
        audio: Arc<RoomAudio>,
    },
    MemberDown {
        meeting: MeetingId,
        key: PeerKey,
        reason: CloseReason,
    },
    MemberInfo {
        meeting: MeetingId,
        key: PeerKey,
        info: ParticipantInfo,
    },
    TrackUp {
        meeting: MeetingId,
        track: TrackDesc,
    },
    TrackDown {
        meeting: MeetingId,
        track: TrackKey,
    },
    /// A message for the room's participants on the receiving worker.
    Broadcast {
        meeting: MeetingId,
        except: Option<PeerKey>,
        msg: ServerMsg,
    },
    Keyframe {
        track: TrackKey,
        layer: u8,
    },
    /// Dynacast: the layers (bit i = `LAYERS[i]`) a worker's viewers want of a track.
    Wants {
        track: TrackKey,
        worker: u8,
        mask: u8,
    },
    /// Someone on the sending worker waits in the lobby.
    WaiterUp {
        meeting: MeetingId,
        key: PeerKey,
        entry: LobbyEntry,
    },
    /// They left the lobby: admitted (`admitted`: their participant id may enter from now
    /// on, on any worker), denied, or gone.
    WaiterDown {
        meeting: MeetingId,
        key: PeerKey,
        pid: ParticipantId,
        admitted: bool,
        /// A host turned them away: every worker refuses their token from now on.
        denied: bool,
    },
    /// A host action a participant of the sending worker asked for over signaling; every
    /// worker applies what concerns its own participants.
    Control {
        meeting: MeetingId,
        action: RoomAction,
        by: String,
    },
    /// A chat message: kept in the room's history and given to the local readers.
    Chat {
        meeting: MeetingId,
        line: ChatLine,
    },
    /// End a participant (it joined again elsewhere).
    Kick {
        key: PeerKey,
        reason: CloseReason,
        message: &'static str,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dest {
    All,
    Worker(u8),
}

/// To participants' signaling sessions, in order.
pub enum ToClient {
    Attach {
        slot: usize,
        tx: ClientTx,
    },
    Msg {
        slot: usize,
        msg: ServerMsg,
    },
    /// The session ends (the I/O side drops the sender, which ends its loop).
    Detach {
        slot: usize,
    },
    /// A join refused before it got a slot.
    Refuse {
        tx: ClientTx,
        msg: ServerMsg,
    },
}

pub enum CoreEvent {
    Participation(ParticipationChanged),
    /// A chat message sent by a participant of this worker (reported once, by its worker).
    Chat(crate::proto::ChatPosted),
    /// A host action over signaling (for the audit log), reported by the host's worker.
    HostActed(crate::proto::HostActed),
    RoomClosed(MeetingId),
    ControlReply(
        oneshot::Sender<Result<(), crate::proto::ControlRefused>>,
        Result<(), crate::proto::ControlRefused>,
    ),
    ShutdownDone(oneshot::Sender<()>),
}

/// Everything one `handle` call produced besides datagrams.
#[derive(Default)]
pub struct Outputs {
    pub clients: Vec<ToClient>,
    pub fwd: Vec<(u8, Fwd)>,
    pub ctl: Vec<(Dest, Ctl)>,
    pub events: Vec<CoreEvent>,
}

pub enum Input<'a> {
    Datagram {
        from: SocketAddr,
        data: &'a [u8],
        /// When the kernel received it (≤ now).
        received: Instant,
    },
    Forwarded(Fwd),
    Ctl(Ctl),
    Cmd(WorkerCmd),
    /// The participant's signaling session cannot keep up (its queue is full).
    SlowReader {
        slot: usize,
    },
    Timeout,
}

/// Counters the I/O worker adds to `/metrics`.
#[derive(Default, Clone, Copy, Debug)]
pub struct Counts {
    pub rtp_in: u64,
    pub rtp_out: u64,
    pub garbage_in: u64,
    pub nacks_received: u64,
    pub retransmitted: u64,
    pub keyframe_requests: u64,
    /// Viewers that started on a keyframe already here instead of asking for one.
    pub keyframes_replayed: u64,
    pub audio_held: u64,
    pub fwd_dropped: u64,
}

/// Room directories shared by the workers of one box: the audio table of each meeting
/// (looked up only when someone joins).
pub struct Rooms {
    k: usize,
    map: Mutex<HashMap<MeetingId, Weak<RoomAudio>>>,
}

impl Rooms {
    pub fn new(audio_top_k: usize) -> Rooms {
        Rooms {
            k: audio_top_k,
            map: Mutex::new(HashMap::new()),
        }
    }

    pub fn audio(&self, meeting: MeetingId) -> Arc<RoomAudio> {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = m.get(&meeting).and_then(Weak::upgrade) {
            return a;
        }
        m.retain(|_, w| w.strong_count() > 0);
        let a = Arc::new(RoomAudio::new(self.k));
        m.insert(meeting, Arc::downgrade(&a));
        a
    }
}

pub struct CoreConfig {
    pub worker: u8,
    pub workers: u8,
    /// The one address we advertise and that peers send to.
    pub advertised: SocketAddr,
    pub crypto: Arc<CryptoProvider>,
    pub room_grace: Duration,
    pub rooms: Arc<Rooms>,
    /// How long a participant a host removed is refused if it comes back with its join
    /// token (which names that one join): at least the token's lifetime.
    pub removed_for: Duration,
}

/// Removed participants remembered per meeting at most (the oldest are forgotten first).
pub const MAX_REMOVED_PER_MEETING: usize = 1024;

struct Member {
    key: PeerKey,
    info: ParticipantInfo,
    audio_slot: Option<usize>,
    tracks: Vec<TrackDesc>,
}

/// A worker's replica of a room.
struct Room {
    members: Vec<Member>,
    /// Local participants (slots), a subset of `members`.
    local: Vec<usize>,
    /// Members per worker.
    on_worker: Vec<u32>,
    locked: bool,
    speaker: Option<ParticipantId>,
    /// Who a host put in the spotlight for everyone, and which host.
    spotlight: Option<(ParticipantId, ParticipantId)>,
    empty_since: Option<Instant>,
    audio: Arc<RoomAudio>,
    /// The lobby (people on any worker), in arrival order.
    waiting: Vec<(PeerKey, LobbyEntry)>,
    /// Participant ids a host admitted: their reconnects skip the lobby.
    admitted: std::collections::HashSet<ParticipantId>,
    /// The chat so far, private messages included (each reader gets what is theirs).
    chat: std::collections::VecDeque<ChatLine>,
    /// Whether participants who are not hosts may publish cameras and screens.
    cameras: bool,
    screens: bool,
}

impl Room {
    fn member(&self, key: PeerKey) -> Option<&Member> {
        self.members.iter().find(|m| m.key == key)
    }
}

/// A published track this worker forwards to local viewers.
struct SourceTrack {
    meeting: MeetingId,
    desc: TrackDesc,
    /// Local viewers: (slot, index in its `tracks_out`).
    subs: Vec<(usize, usize)>,
    /// Per layer: recent packets (video, for NACKs) and when last heard from.
    cache: [Option<Box<PacketRing>>; 3],
    seen: [Option<Instant>; 3],
    last_ask: [Option<Instant>; 3],
    /// Dynacast mask last reported to the publisher's worker.
    wants_sent: u8,
}

pub struct Core {
    cfg: CoreConfig,
    /// This worker's DTLS certificate and when it was made: every participant's connection
    /// presents it (as a browser presents one per peer connection), instead of a key pair
    /// and a certificate generated inside each join (~1 ms of the worker's thread per join).
    /// A new one is made after `DTLS_CERT_FOR` (the generated certificate is valid for a
    /// year; peers check only its fingerprint, but a server should not present an expired
    /// one).
    dtls_cert: Option<(str0m::config::DtlsCert, Instant)>,
    peers: Vec<Option<Participant>>,
    gens: Vec<u32>,
    free: Vec<usize>,
    by_addr: HashMap<SocketAddr, usize>,
    by_pid: HashMap<ParticipantId, usize>,
    rooms: HashMap<MeetingId, Room>,
    sources: HashMap<TrackKey, SourceTrack>,
    dirty: Vec<usize>,
    next_housekeeping: Option<Instant>,
    /// A viewer's wishes changed (a new subscription, an answer, a tile size): dynacast is
    /// reported at the end of this input rather than at the next housekeeping, so that a
    /// publisher resumes a layer a new viewer needs while the viewer is still connecting.
    wants_dirty: bool,
    /// When the rooms' participants are next told everyone's connection quality.
    next_quality: Option<Instant>,
    /// Per meeting, participants a host removed and when (oldest first): their join tokens
    /// are still valid for a while and must not bring them back.
    removed: HashMap<MeetingId, std::collections::VecDeque<(ParticipantId, Instant)>>,
    /// Per meeting, people a host turned away from the lobby (their token must not bring
    /// them back to knock again).
    denied: HashMap<MeetingId, std::collections::VecDeque<(ParticipantId, Instant)>>,
    /// An instant and the unix time (ms) it was: wall-clock times (raised hands) follow
    /// the `now` the core is given, so they order events on simulated time too.
    clock: (Instant, i64),
    pub counts: Counts,
}

enum Next {
    Timeout(Instant),
    More,
    Gone,
}

impl Core {
    pub fn new(cfg: CoreConfig) -> Core {
        Core {
            dtls_cert: None,
            cfg,
            peers: Vec::new(),
            gens: Vec::new(),
            free: Vec::new(),
            by_addr: HashMap::new(),
            by_pid: HashMap::new(),
            rooms: HashMap::new(),
            sources: HashMap::new(),
            dirty: Vec::new(),
            next_housekeeping: None,
            wants_dirty: false,
            next_quality: None,
            removed: HashMap::new(),
            denied: HashMap::new(),
            clock: (Instant::now(), crate::util::now_ms()),
            counts: Counts::default(),
        }
    }

    pub fn worker(&self) -> u8 {
        self.cfg.worker
    }

    /// When `handle(Timeout)` is due next. A time at or before `now` means at once.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.next_housekeeping;
        for p in self.peers.iter().flatten() {
            t = Some(t.map_or(p.next_timeout, |t| t.min(p.next_timeout)));
        }
        t
    }

    /// Participants, rooms with local participants, active published tracks, summed
    /// bandwidth estimates (gauges for `/metrics`).
    pub fn gauges(&self) -> (u64, u64, u64, u64) {
        let (mut n, mut tracks, mut bwe) = (0u64, 0u64, 0u64);
        for p in self.peers.iter().flatten() {
            n += 1;
            tracks += p.tracks_in.iter().filter(|t| t.active).count() as u64;
            bwe += p.bwe_bps.unwrap_or(0);
        }
        let rooms = self.rooms.values().filter(|r| !r.local.is_empty()).count() as u64;
        (n, rooms, tracks, bwe)
    }

    pub fn handle(&mut self, now: Instant, input: Input, net: &mut dyn NetSink, out: &mut Outputs) {
        if self.next_housekeeping.is_none() {
            self.next_housekeeping = Some(now + HOUSEKEEPING);
        }
        match input {
            Input::Datagram {
                from,
                data,
                received,
            } => self.on_datagram(now, from, data, received, net, out),
            Input::Forwarded(f) => self.forward_local(now, f.track, f.layer, &f.pkt, net, out),
            Input::Ctl(c) => self.on_ctl(now, c, out),
            Input::Cmd(c) => self.on_cmd(now, c, out),
            Input::SlowReader { slot } => {
                if self.peers.get(slot).is_some_and(Option::is_some) {
                    self.remove_peer(now, slot, CloseReason::SlowReader, out);
                }
            }
            Input::Timeout => self.on_timeout(now, net, out),
        }
        self.drive_dirty(now, net, out);
        if std::mem::take(&mut self.wants_dirty) {
            self.report_wants(out);
        }
    }

    // ---- network input -------------------------------------------------------------

    fn on_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &[u8],
        received: Instant,
        net: &mut dyn NetSink,
        out: &mut Outputs,
    ) {
        self.counts.rtp_in += u64::from(is_rtp(data));
        let Ok(contents) = data.try_into() else {
            self.counts.garbage_in += 1;
            return;
        };
        let input = str0m::Input::Receive(
            received,
            Receive {
                proto: Protocol::Udp,
                source: from,
                destination: self.cfg.advertised,
                contents,
            },
        );
        let slot = match self.by_addr.get(&from) {
            Some(&s)
                if self.peers[s]
                    .as_ref()
                    .is_some_and(|p| p.rtc.accepts(&input)) =>
            {
                Some(s)
            }
            _ => {
                let found = self
                    .peers
                    .iter()
                    .position(|p| p.as_ref().is_some_and(|p| p.rtc.accepts(&input)));
                if let Some(s) = found {
                    self.by_addr.insert(from, s);
                }
                found
            }
        };
        let Some(slot) = slot else {
            // STUN for nobody, or RTP/DTLS garbage: dropped, counted.
            self.counts.garbage_in += 1;
            return;
        };
        let Some(p) = self.peers[slot].as_mut() else {
            return;
        };
        if let Err(e) = p.rtc.handle_input(input) {
            tracing::info!(participant = %p.pid, error = %e, "dropping participant after a media error");
            self.remove_peer(now, slot, CloseReason::MediaError, out);
            return;
        }
        self.poll_peer(now, slot, net, out);
    }

    fn on_timeout(&mut self, now: Instant, net: &mut dyn NetSink, out: &mut Outputs) {
        for slot in 0..self.peers.len() {
            let Some(p) = self.peers[slot].as_mut() else {
                continue;
            };
            if p.next_timeout <= now {
                if let Err(e) = p.rtc.handle_input(str0m::Input::Timeout(now)) {
                    tracing::info!(participant = %p.pid, error = %e, "dropping participant after a timer error");
                    self.remove_peer(now, slot, CloseReason::MediaError, out);
                    continue;
                }
                self.poll_peer(now, slot, net, out);
            }
        }
        if self.next_housekeeping.is_some_and(|t| t <= now) {
            self.next_housekeeping = Some(now + HOUSEKEEPING);
            self.housekeeping(now, out);
        }
    }

    fn mark(&mut self, slot: usize) {
        if let Some(p) = self.peers[slot].as_mut()
            && !p.dirty
        {
            p.dirty = true;
            self.dirty.push(slot);
        }
    }

    fn drive_dirty(&mut self, now: Instant, net: &mut dyn NetSink, out: &mut Outputs) {
        while let Some(slot) = self.dirty.pop() {
            self.poll_peer(now, slot, net, out);
        }
    }

    /// Polls a participant until str0m has nothing more than a timeout.
    fn poll_peer(&mut self, now: Instant, slot: usize, net: &mut dyn NetSink, out: &mut Outputs) {
        loop {
            match self.poll_once(now, slot, net, out) {
                Next::More => {}
                Next::Timeout(t) => {
                    let Some(p) = self.peers[slot].as_mut() else {
                        return;
                    };
                    p.next_timeout = t;
                    // Connected, and everything str0m had to send is out: the handshake's last
                    // flight goes before any media (sent earlier, from the `Connected` event,
                    // media reached Chromium ahead of our DTLS Finished and was dropped).
                    if p.connected && !p.media_ready {
                        p.media_ready = true;
                        self.start_viewing(now, slot, net, out);
                    }
                    return;
                }
                Next::Gone => return,
            }
        }
    }

    fn poll_once(
        &mut self,
        now: Instant,
        slot: usize,
        net: &mut dyn NetSink,
        out: &mut Outputs,
    ) -> Next {
        let Some(p) = self.peers[slot].as_mut() else {
            return Next::Gone;
        };
        p.dirty = false;
        if !p.rtc.is_alive() {
            self.remove_peer(now, slot, CloseReason::ConnectionLost, out);
            return Next::Gone;
        }
        if let Some(msgs) = p.negotiate_if_needed() {
            for msg in msgs {
                out.clients.push(ToClient::Msg { slot, msg });
            }
        }
        match p.rtc.poll_output() {
            Ok(Output::Timeout(t)) => Next::Timeout(t),
            Ok(Output::Transmit(t)) => {
                let buf = net.buffer();
                if t.contents.len() <= buf.len() {
                    buf[..t.contents.len()].copy_from_slice(&t.contents);
                    net.commit(t.contents.len(), t.destination, None);
                }
                Next::More
            }
            Ok(Output::Event(e)) => {
                self.on_event(now, slot, e, net, out);
                Next::More
            }
            Err(e) => {
                tracing::info!(participant = %p.pid, error = %e, "dropping participant after an output error");
                self.remove_peer(now, slot, CloseReason::MediaError, out);
                Next::Gone
            }
        }
    }

    fn on_event(
        &mut self,
        now: Instant,
        slot: usize,
        e: Event,
        net: &mut dyn NetSink,
        out: &mut Outputs,
    ) {
        let Some(p) = self.peers[slot].as_mut() else {
            return;
        };
        match e {
            Event::RtpPacket(rp) => self.ingest(now, slot, rp, net, out),
            Event::Connected => {
                // Media starts once str0m's last handshake flight is out (`poll_peer`).
                p.connected = true;
                tracing::info!(participant = %p.pid, "media connected");
            }
            // A brief Disconnected is survivable (the client may restart ICE); the
            // signaling session decides when the participant is gone.
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                tracing::info!(participant = %p.pid, "ICE disconnected; waiting for recovery");
            }
            Event::MediaAdded(m) => {
                if matches!(m.direction, Direction::RecvOnly | Direction::SendRecv) {
                    let kind = if m.kind == StrKind::Audio {
                        MediaKind::Audio
                    } else {
                        MediaKind::Video
                    };
                    let ti = p.add_track_in(m.mid, kind, m.simulcast.is_some());
                    self.track_up(now, slot, ti, out);
                }
            }
            Event::MediaChanged(m) => {
                let Some(ti) = p.tracks_in.iter().position(|t| t.mid == m.mid) else {
                    return;
                };
                let active = matches!(m.direction, Direction::RecvOnly | Direction::SendRecv);
                if active != p.tracks_in[ti].active {
                    p.tracks_in[ti].active = active;
                    if active {
                        self.track_up(now, slot, ti, out);
                    } else {
                        let key = TrackKey {
                            peer: p.key,
                            track: ti as u16,
                        };
                        let meeting = p.meeting;
                        self.broadcast_ctl(
                            Ctl::TrackDown {
                                meeting,
                                track: key,
                            },
                            out,
                        );
                        self.apply_track_down(now, meeting, key, out);
                    }
                }
            }
            Event::KeyframeRequest(req) => {
                // A viewer lost a picture: ask the publisher of what it sees there.
                let Some((_, t)) = p.outs().find(|(_, t)| t.mid() == Some(req.mid)) else {
                    return;
                };
                let layer = t.rewriter.layer().or(t.target).unwrap_or(0);
                let track = t.src;
                self.ask_keyframe(now, track, layer, true, out);
            }
            Event::NackRequest(req) => {
                self.counts.nacks_received += 1;
                self.resend(now, slot, req.ssrc, *req.seq_no, net);
            }
            Event::EgressBitrateEstimate(BweKind::Twcc { estimate, .. }) => {
                p.bwe_bps = Some(estimate.as_u64());
            }
            Event::PeerStats(s) => {
                let loss = s
                    .ingress_loss_fraction
                    .unwrap_or(0.0)
                    .max(s.egress_loss_fraction.unwrap_or(0.0));
                p.loss_pct = (loss * 100.0).clamp(0.0, 100.0);
                if let Some(rtt) = s.rtt {
                    p.rtt_ms = rtt.as_millis().min(u32::MAX as u128) as u32;
                }
                p.receiving = s.peer_bytes_rx > p.peer_bytes_rx;
                p.peer_bytes_rx = s.peer_bytes_rx;
            }
            _ => {}
        }
    }

    // ---- forwarding ----------------------------------------------------------------

    /// A packet from a local publisher: decide, describe once, hand to the room's other
    /// workers and to local viewers.
    fn ingest(
        &mut self,
        now: Instant,
        slot: usize,
        rp: RtpPacket,
        net: &mut dyn NetSink,
        out: &mut Outputs,
    ) {
        let Some(p) = self.peers[slot].as_mut() else {
            return;
        };
        let Some((ti, layer)) = p.rx_track(rp.header.ssrc) else {
            return;
        };
        let Some(t) = p.tracks_in.get_mut(usize::from(ti)) else {
            return;
        };
        if !t.active {
            return;
        }
        let mut resumed = false;
        if t.kind == MediaKind::Audio {
            if p.forced_mute {
                return;
            }
            let room = self.rooms.get(&p.meeting);
            let verdict = match (room, p.audio_slot) {
                (Some(r), Some(s)) => r.audio.packet(s, rp.header.ext_vals.audio_level),
                _ => Verdict::Forward,
            };
            if verdict == Verdict::Drop {
                t.held = true;
                self.counts.audio_held += 1;
                return;
            }
            resumed = std::mem::take(&mut t.held);
        }
        let pt = rp.header.payload_type;
        let kind = p
            .params
            .iter()
            .find(|x| x.pt() == pt)
            .map_or(Kind::OtherVideo, |x| Kind::of(x.spec().codec));
        let pkt = Pkt {
            seq: *rp.seq_no,
            time: rp.header.timestamp,
            marker: rp.header.marker,
            pt,
            video: inspect(kind, &rp.payload),
            payload: rp.payload,
            audio_level: rp.header.ext_vals.audio_level,
            voice_activity: rp.header.ext_vals.voice_activity,
            video_orientation: rp.header.ext_vals.video_orientation,
            resumed,
            received: rp.timestamp,
        };
        let track = TrackKey {
            peer: p.key,
            track: ti,
        };
        if let Some(room) = self.rooms.get(&p.meeting) {
            for (w, n) in room.on_worker.iter().enumerate() {
                if *n > 0 && w != usize::from(self.cfg.worker) {
                    out.fwd.push((
                        w as u8,
                        Fwd {
                            track,
                            layer,
                            pkt: pkt.clone(),
                        },
                    ));
                }
            }
        }
        self.forward_local(now, track, layer, &pkt, net, out);
    }

    /// One copy of `pkt` to each local viewer of `track` that should get it.
    fn forward_local(
        &mut self,
        now: Instant,
        track: TrackKey,
        layer: u8,
        pkt: &Pkt,
        net: &mut dyn NetSink,
        out: &mut Outputs,
    ) {
        let Core {
            peers,
            sources,
            counts,
            ..
        } = self;
        let Some(src) = sources.get_mut(&track) else {
            return;
        };
        let l = usize::from(layer).min(2);
        src.seen[l] = Some(pkt.received);
        let video = src.desc.kind == MediaKind::Video;
        if video {
            src.cache[l].get_or_insert_with(Box::default).put(pkt);
        }
        // Layers heard from recently, on the stack.
        let mut avail = [0u8; 3];
        let mut n_avail = 0;
        if src.desc.simulcast {
            for (i, s) in src.seen.iter().enumerate() {
                if s.is_some_and(|t| pkt.received.saturating_duration_since(t) < LAYER_GONE) {
                    avail[n_avail] = i as u8;
                    n_avail += 1;
                }
            }
        }
        let avail = &avail[..n_avail];
        let mut want_key: [bool; 3] = [false; 3];
        for &(s, oi) in &src.subs {
            let Some(p) = peers[s].as_mut() else { continue };
            let bwe = p.bwe_bps;
            let Some(Some(t)) = p.tracks_out.get_mut(oi) else {
                continue;
            };
            let (OutState::Open(_), Some(ssrc)) = (t.state, t.ssrc) else {
                continue;
            };
            if t.paused {
                if t.rewriter.started() {
                    t.rewriter.skipped();
                }
                t.need_keyframe = video;
                continue;
            }
            if !p.media_ready {
                // Nothing reaches it before its connection is up. The layer it will start on
                // is chosen, and that layer's keyframe asked for now, once: it waits in the
                // cache and is sent the moment the viewer is connected (`start_viewing`).
                if src.desc.simulcast {
                    t.target = choose_layer(t.wanted_height, bwe, avail).or(Some(layer));
                }
                // With simulcast, only for the layer it wants (dynacast asked the publisher
                // for it at the subscription); a smaller one standing in until then is not
                // worth a keyframe. If that layer never comes, the ask is made at connection.
                let settled = !src.desc.simulcast
                    || t.target == Some(wanted_rank(t.wanted_height, bwe) as u8);
                if video && settled {
                    let tl = t.target.unwrap_or(0);
                    if t.asked_early != Some(tl) {
                        t.asked_early = Some(tl);
                        // Not if one has just come (a layer dynacast resumed starts with one).
                        let fresh = src.cache[usize::from(tl).min(2)]
                            .as_deref()
                            .is_some_and(|c| c.since_keyframe(now, REPLAY_AGE / 2).is_some());
                        want_key[usize::from(tl).min(2)] |= !fresh;
                    }
                }
                continue;
            }
            if src.desc.simulcast {
                // Forward one layer; switch only at a keyframe of the new one.
                let target = choose_layer(t.wanted_height, bwe, avail).or(Some(layer));
                if target != t.target {
                    t.target = target;
                    if let Some(tl) = target {
                        want_key[usize::from(tl).min(2)] = true;
                    }
                }
                let current = t.rewriter.layer();
                if Some(layer) == t.target {
                    if current != t.target || t.need_keyframe {
                        if !pkt.video.keyframe {
                            want_key[l] = true;
                            // Until the new layer's keyframe, the current one goes on.
                            continue;
                        }
                        t.need_keyframe = false;
                    }
                } else if Some(layer) != current || t.need_keyframe {
                    continue;
                }
            } else if t.need_keyframe {
                if !pkt.video.keyframe {
                    want_key[l] = true;
                    continue;
                }
                t.need_keyframe = false;
            }
            if send_copy(
                now,
                &mut p.rtc,
                t,
                ssrc,
                pkt,
                layer,
                &src.desc.params,
                net,
                Some(pkt.received),
            ) {
                counts.rtp_out += 1;
            }
        }
        for (i, k) in want_key.iter().enumerate() {
            if *k {
                self.ask_keyframe(now, track, i as u8, false, out);
            }
        }
    }

    /// A viewer's connection is up (`Participant::media_ready`): each video it views starts on the latest keyframe
    /// of its layer already here and every packet after it, sent now — the one asked for
    /// while it was connecting (`forward_local`), or another viewer's. A video without a
    /// recent one asks the publisher, and starts at the next keyframe forwarded.
    fn start_viewing(
        &mut self,
        now: Instant,
        slot: usize,
        net: &mut dyn NetSink,
        out: &mut Outputs,
    ) {
        let mut asks: Vec<(TrackKey, u8)> = Vec::new();
        let Core {
            peers,
            sources,
            counts,
            ..
        } = self;
        let Some(p) = peers[slot].as_mut() else {
            return;
        };
        for t in p.tracks_out.iter_mut().flatten() {
            if t.kind != MediaKind::Video || t.paused {
                continue;
            }
            let layer = t.target.unwrap_or(0);
            let start = match (t.state, t.ssrc, sources.get(&t.src)) {
                (OutState::Open(_), Some(ssrc), Some(src))
                    if t.need_keyframe && !t.rewriter.started() =>
                {
                    src.cache[usize::from(layer).min(2)]
                        .as_deref()
                        .and_then(|c| Some((c, c.since_keyframe(now, REPLAY_AGE)?)))
                        .map(|(c, seqs)| (c, seqs, ssrc, src))
                }
                _ => None,
            };
            let Some((cache, seqs, ssrc, src)) = start else {
                asks.push((t.src, layer));
                continue;
            };
            t.need_keyframe = false;
            for pkt in seqs.filter_map(|s| cache.get(s)) {
                if send_copy(
                    now,
                    &mut p.rtc,
                    t,
                    ssrc,
                    pkt,
                    layer,
                    &src.desc.params,
                    net,
                    None,
                ) {
                    counts.rtp_out += 1;
                }
            }
            counts.keyframes_replayed += 1;
        }
        for (track, layer) in asks {
            self.ask_keyframe(now, track, layer, true, out);
        }
    }

    /// A viewer NACKed `seq` of its stream `ssrc`: send that packet again from the cache.
    fn resend(
        &mut self,
        now: Instant,
        slot: usize,
        ssrc: str0m::rtp::Ssrc,
        seq: u64,
        net: &mut dyn NetSink,
    ) {
        let Core {
            peers,
            sources,
            counts,
            ..
        } = self;
        let Some(p) = peers[slot].as_mut() else {
            return;
        };
        let Participant {
            tracks_out, rtc, ..
        } = p;
        let Some(t) = tracks_out
            .iter_mut()
            .flatten()
            .find(|t| t.ssrc == Some(ssrc))
        else {
            return;
        };
        let Some((layer, src_seq)) = t.rewriter.lookup(seq) else {
            return;
        };
        let Some(src) = sources.get(&t.src) else {
            return;
        };
        let Some(pkt) = src.cache[usize::from(layer).min(2)]
            .as_ref()
            .and_then(|c| c.get(src_seq))
        else {
            return;
        };
        let Some(h) = t.rewriter.header_for(seq, pkt) else {
            return;
        };
        let Some((pt, _, _)) = t.map_pt(pkt.pt, &src.desc.params, rtc) else {
            return;
        };
        let mut w = RtpWrite::new(pt, h.seq.into(), h.time, pkt.received, pkt.payload.clone())
            .marker(pkt.marker)
            .ext_vals(pkt.ext_vals());
        if let Some(v) = h.vp8 {
            w = w.vp8_patch(v);
        }
        if let Some(d) =
            rtc.direct_api()
                .send_rtp_now(now, ssrc, w, Some(h.seq.into()), net.buffer())
        {
            net.commit(d.len, d.destination, None);
            counts.retransmitted += 1;
            counts.rtp_out += 1;
        }
    }

    /// Asks a publisher for a keyframe of `track`'s `layer` (local: its `Rtc`; else through
    /// its worker). `pli`: on a viewer's request (always passed on, rate-limited by the
    /// publisher's side only); else for a switch or a start, at most every `KEYFRAME_ASK`.
    fn ask_keyframe(
        &mut self,
        now: Instant,
        track: TrackKey,
        layer: u8,
        pli: bool,
        out: &mut Outputs,
    ) {
        let l = usize::from(layer).min(2);
        if !pli && let Some(src) = self.sources.get_mut(&track) {
            if src.last_ask[l].is_some_and(|t| now.saturating_duration_since(t) < KEYFRAME_ASK) {
                return;
            }
            src.last_ask[l] = Some(now);
        }
        if track.peer.worker == self.cfg.worker {
            self.keyframe_local(now, track, layer);
        } else {
            out.ctl.push((
                Dest::Worker(track.peer.worker),
                Ctl::Keyframe { track, layer },
            ));
        }
    }

    fn keyframe_local(&mut self, now: Instant, track: TrackKey, layer: u8) {
        let slot = track.peer.slot as usize;
        if let Some(p) = self.peers.get_mut(slot).and_then(Option::as_mut)
            && p.key == track.peer
            && p.request_keyframe(
                usize::from(track.track),
                layer,
                KeyframeRequestKind::Pli,
                now,
            )
        {
            self.counts.keyframe_requests += 1;
            self.mark(slot);
        }
    }

    // ---- tracks --------------------------------------------------------------------

    /// A local publisher's track opened: tell every worker and offer it locally.
    fn track_up(&mut self, now: Instant, slot: usize, ti: usize, out: &mut Outputs) {
        let Some(p) = self.peers[slot].as_mut() else {
            return;
        };
        let t = &p.tracks_in[ti];
        let desc = TrackDesc {
            key: TrackKey {
                peer: p.key,
                track: ti as u16,
            },
            kind: t.kind,
            source: t.source,
            simulcast: t.simulcast,
            params: p.params.clone(),
        };
        let meeting = p.meeting;
        if p.audio_slot.is_some() && t.kind == MediaKind::Audio {
            // A publisher starts outside the top-K set: its first forwarded packet resumes.
            p.tracks_in[ti].held = false;
        }
        self.broadcast_ctl(
            Ctl::TrackUp {
                meeting,
                track: desc.clone(),
            },
            out,
        );
        self.apply_track_up(now, meeting, desc);
    }

    /// A track (of any worker's participant) is published: record it in the replica and
    /// give it to every local participant of the room.
    fn apply_track_up(&mut self, _now: Instant, meeting: MeetingId, desc: TrackDesc) {
        let Some(room) = self.rooms.get_mut(&meeting) else {
            return;
        };
        let Some(m) = room.members.iter_mut().find(|m| m.key == desc.key.peer) else {
            return;
        };
        match m.tracks.iter_mut().find(|t| t.key == desc.key) {
            Some(t) => *t = desc.clone(),
            None => m.tracks.push(desc.clone()),
        }
        let from_pid = m.info.participant_id.clone();
        let local = room.local.clone();
        for s in local {
            self.subscribe(s, meeting, &desc, &from_pid);
        }
    }

    /// Gives participant `s` a received track for `desc` (to be negotiated).
    fn subscribe(
        &mut self,
        s: usize,
        meeting: MeetingId,
        desc: &TrackDesc,
        from_pid: &ParticipantId,
    ) {
        let Some(p) = self.peers[s].as_mut() else {
            return;
        };
        if p.key == desc.key.peer {
            return;
        }
        if p.outs().any(|(_, o)| {
            o.src == desc.key
                && matches!(
                    o.state,
                    OutState::ToOpen | OutState::Negotiating(_) | OutState::Open(_)
                )
        }) {
            return;
        }
        let oi = p.add_out(TrackOut::new(
            desc.key,
            from_pid.clone(),
            desc.kind,
            desc.source,
            desc.simulcast,
        ));
        let src = self.sources.entry(desc.key).or_insert_with(|| SourceTrack {
            meeting,
            desc: desc.clone(),
            subs: Vec::new(),
            cache: [None, None, None],
            seen: [None; 3],
            last_ask: [None; 3],
            wants_sent: 0,
        });
        src.desc = desc.clone();
        src.subs.push((s, oi));
        self.wants_dirty = true;
        self.mark(s);
    }

    /// A track is gone: its m-lines are stopped in every local viewer.
    fn apply_track_down(
        &mut self,
        _now: Instant,
        meeting: MeetingId,
        key: TrackKey,
        _out: &mut Outputs,
    ) {
        if let Some(m) = self
            .rooms
            .get_mut(&meeting)
            .and_then(|r| r.members.iter_mut().find(|m| m.key == key.peer))
        {
            m.tracks.retain(|t| t.key != key);
        }
        let Some(src) = self.sources.remove(&key) else {
            return;
        };
        for (s, oi) in src.subs {
            if let Some(p) = self.peers[s].as_mut() {
                p.stop_out(oi);
                self.mark(s);
            }
        }
    }

    /// Removes participant `s`'s subscriptions (it leaves) from the source lists; a source
    /// nobody here watches any more stops being wanted from its publisher.
    fn unsubscribe_all(&mut self, s: usize, out: &mut Outputs) {
        let mut unwanted = Vec::new();
        self.sources.retain(|key, src| {
            src.subs.retain(|(x, _)| *x != s);
            if src.subs.is_empty() && src.wants_sent != 0 {
                unwanted.push(*key);
            }
            !src.subs.is_empty()
        });
        for track in unwanted {
            if track.peer.worker == self.cfg.worker {
                self.apply_wants(track, self.cfg.worker, 0, out);
            } else {
                out.ctl.push((
                    Dest::Worker(track.peer.worker),
                    Ctl::Wants {
                        track,
                        worker: self.cfg.worker,
                        mask: 0,
                    },
                ));
            }
        }
    }

    // ---- control plane -------------------------------------------------------------

    fn broadcast_ctl(&self, c: Ctl, out: &mut Outputs) {
        if self.cfg.workers > 1 {
            out.ctl.push((Dest::All, c));
        }
    }

    fn on_ctl(&mut self, now: Instant, c: Ctl, out: &mut Outputs) {
        match c {
            Ctl::MemberUp {
                meeting,
                key,
                info,
                audio_slot,
                audio,
            } => {
                let room = self.room_entry(meeting, Some(audio));
                room.empty_since = None;
                if room.member(key).is_none() {
                    room.members.push(Member {
                        key,
                        info: info.clone(),
                        audio_slot,
                        tracks: Vec::new(),
                    });
                    bump(&mut room.on_worker, key.worker, 1);
                }
                let local = room.local.clone();
                for s in local {
                    out.clients.push(ToClient::Msg {
                        slot: s,
                        msg: ServerMsg::ParticipantJoined {
                            participant: info.clone(),
                        },
                    });
                }
            }
            Ctl::MemberDown {
                meeting,
                key,
                reason,
            } => self.apply_member_down(now, meeting, key, reason, out),
            Ctl::MemberInfo { meeting, key, info } => {
                if let Some(m) = self
                    .rooms
                    .get_mut(&meeting)
                    .and_then(|r| r.members.iter_mut().find(|m| m.key == key))
                {
                    m.info = info;
                }
            }
            Ctl::TrackUp { meeting, track } => self.apply_track_up(now, meeting, track),
            Ctl::TrackDown { meeting, track } => self.apply_track_down(now, meeting, track, out),
            Ctl::Broadcast {
                meeting,
                except,
                msg,
            } => {
                self.note_spotlight(meeting, &msg);
                self.broadcast_local(meeting, except, &msg, out)
            }
            Ctl::Keyframe { track, layer } => self.keyframe_local(now, track, layer),
            Ctl::WaiterUp {
                meeting,
                key,
                entry,
            } => {
                let room = self.room_entry(meeting, None);
                room.empty_since = None;
                if !room.waiting.iter().any(|(k, _)| *k == key) {
                    room.waiting.push((key, entry));
                }
                self.send_lobby(meeting, out);
            }
            Ctl::WaiterDown {
                meeting,
                key,
                pid,
                admitted,
                denied,
            } => self.apply_waiter_down(now, meeting, key, pid, admitted, denied, out),
            Ctl::Control {
                meeting,
                action,
                by,
            } => {
                let _ = self.apply_action(now, meeting, action, Some(&by), out);
            }
            Ctl::Chat { meeting, line } => self.deliver_chat(meeting, line, out),
            Ctl::Wants {
                track,
                worker,
                mask,
            } => self.apply_wants(track, worker, mask, out),
            Ctl::Kick {
                key,
                reason,
                message,
            } => {
                let slot = key.slot as usize;
                if self
                    .peers
                    .get(slot)
                    .and_then(Option::as_ref)
                    .is_some_and(|p| p.key == key)
                {
                    self.close_peer(now, slot, reason, message, out);
                }
            }
        }
    }

    /// Every worker's replica of the room keeps the spotlight, for newcomers.
    fn note_spotlight(&mut self, meeting: MeetingId, msg: &ServerMsg) {
        if let ServerMsg::Spotlight { participant_id, by } = msg
            && let Some(room) = self.rooms.get_mut(&meeting)
        {
            room.spotlight = participant_id.clone().map(|p| (p, by.clone()));
        }
    }

    fn room_entry(&mut self, meeting: MeetingId, audio: Option<Arc<RoomAudio>>) -> &mut Room {
        let workers = usize::from(self.cfg.workers.max(1));
        let rooms = &self.cfg.rooms;
        self.rooms.entry(meeting).or_insert_with(|| Room {
            members: Vec::new(),
            local: Vec::new(),
            on_worker: vec![0; workers],
            locked: false,
            speaker: None,
            spotlight: None,
            empty_since: None,
            audio: audio.unwrap_or_else(|| rooms.audio(meeting)),
            waiting: Vec::new(),
            admitted: Default::default(),
            chat: Default::default(),
            cameras: true,
            screens: true,
        })
    }

    /// A member left (on any worker): its tracks end, the others are told.
    fn apply_member_down(
        &mut self,
        now: Instant,
        meeting: MeetingId,
        key: PeerKey,
        reason: CloseReason,
        out: &mut Outputs,
    ) {
        let Some(room) = self.rooms.get_mut(&meeting) else {
            return;
        };
        let Some(i) = room.members.iter().position(|m| m.key == key) else {
            return;
        };
        let m = room.members.remove(i);
        bump(&mut room.on_worker, key.worker, -1);
        if room.members.is_empty() {
            room.empty_since = Some(now);
        }
        if room
            .speaker
            .as_ref()
            .is_some_and(|s| *s == m.info.participant_id)
        {
            room.speaker = None;
        }
        // Whoever was in the spotlight left: it ends (each worker tells its own people).
        let spotlight_ended = room
            .spotlight
            .as_ref()
            .is_some_and(|(p, _)| *p == m.info.participant_id);
        if spotlight_ended {
            room.spotlight = None;
        }
        for t in &m.tracks {
            self.apply_track_down(now, meeting, t.key, out);
        }
        // Sources of that member without a TrackDown yet (a track still being set up).
        let gone: Vec<TrackKey> = self
            .sources
            .keys()
            .filter(|k| k.peer == key)
            .copied()
            .collect();
        for k in gone {
            self.apply_track_down(now, meeting, k, out);
        }
        self.broadcast_local(
            meeting,
            Some(key),
            &ServerMsg::ParticipantLeft {
                participant_id: m.info.participant_id.clone(),
                reason,
            },
            out,
        );
        if spotlight_ended {
            let end = ServerMsg::Spotlight {
                participant_id: None,
                by: m.info.participant_id.clone(),
            };
            self.broadcast_local(meeting, Some(key), &end, out);
        }
    }

    fn broadcast_local(
        &self,
        meeting: MeetingId,
        except: Option<PeerKey>,
        msg: &ServerMsg,
        out: &mut Outputs,
    ) {
        let Some(room) = self.rooms.get(&meeting) else {
            return;
        };
        for &s in &room.local {
            if let Some(p) = self.peers[s].as_ref()
                && Some(p.key) != except
            {
                out.clients.push(ToClient::Msg {
                    slot: s,
                    msg: msg.clone(),
                });
            }
        }
    }

    /// To every participant of the room on every worker.
    fn broadcast(
        &self,
        meeting: MeetingId,
        except: Option<PeerKey>,
        msg: ServerMsg,
        out: &mut Outputs,
    ) {
        self.broadcast_local(meeting, except, &msg, out);
        self.broadcast_ctl(
            Ctl::Broadcast {
                meeting,
                except,
                msg,
            },
            out,
        );
    }

    // ---- commands ------------------------------------------------------------------

    fn on_cmd(&mut self, now: Instant, cmd: WorkerCmd, out: &mut Outputs) {
        match cmd {
            WorkerCmd::Join {
                claims,
                tx,
                session,
            } => self.join(now, claims, tx, session, out),
            WorkerCmd::Signal {
                participant,
                session,
                msg,
            } => {
                if let Some(slot) = self.session_slot(&participant, session) {
                    self.signal(now, slot, msg, out);
                }
            }
            WorkerCmd::Leave {
                participant,
                session,
                reason,
            } => {
                if let Some(slot) = self.session_slot(&participant, session) {
                    self.remove_peer(now, slot, reason, out);
                }
            }
            WorkerCmd::Control {
                meeting,
                action,
                by,
                reply,
            } => {
                let r = self.apply_action(now, meeting, action, by.as_deref(), out);
                out.events.push(CoreEvent::ControlReply(reply, r));
            }
            WorkerCmd::Shutdown { reply } => {
                let slots: Vec<usize> = (0..self.peers.len())
                    .filter(|&s| self.peers[s].is_some())
                    .collect();
                for s in slots {
                    self.close_peer(
                        now,
                        s,
                        CloseReason::ServerShutdown,
                        "This media server is restarting; reconnecting.",
                        out,
                    );
                }
                out.events.push(CoreEvent::ShutdownDone(reply));
            }
        }
    }

    /// The slot of `participant` if signaling `session` still owns it.
    fn session_slot(&self, participant: &ParticipantId, session: u64) -> Option<usize> {
        let &slot = self.by_pid.get(participant)?;
        self.peers[slot]
            .as_ref()
            .is_some_and(|p| p.session == session)
            .then_some(slot)
    }

    fn rtc_config(&self) -> RtcConfig {
        // ICE-lite: the server never sends connectivity checks, it only answers them. A full
        // agent would probe every candidate a client names, private and link-local addresses
        // (cloud metadata) included, at the client's command.
        let config = RtcConfig::new()
            .set_ice_lite(true)
            .set_crypto_provider(self.cfg.crypto.clone())
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .enable_h264(true)
            .enable_bwe(Some(Bitrate::kbps(800)))
            // Per-participant loss and RTT for `ServerMsg::Quality`.
            .set_stats_interval(Some(Duration::from_millis(QUALITY_INTERVAL_MS)));
        match &self.dtls_cert {
            Some((c, _)) => config.set_dtls_cert(c.clone()),
            None => config,
        }
    }

    /// Makes this worker's DTLS certificate if it has none or the one it has has served
    /// `DTLS_CERT_FOR`. (Without one, str0m makes one per connection.)
    fn refresh_dtls_cert(&mut self, now: Instant) {
        if self
            .dtls_cert
            .as_ref()
            .is_some_and(|(_, made)| now.saturating_duration_since(*made) < DTLS_CERT_FOR)
        {
            return;
        }
        self.dtls_cert = self
            .cfg
            .crypto
            .dtls_provider
            .generate_certificate()
            .map(|c| (c, now));
    }

    /// The fingerprint a participant joining at `now` is shown; None if this worker has no
    /// certificate of its own (str0m would then make one per connection).
    #[cfg(test)]
    pub fn dtls_fingerprint(&mut self, now: Instant) -> Option<String> {
        self.refresh_dtls_cert(now);
        self.dtls_cert.as_ref()?;
        Some(format!(
            "{}",
            self.rtc_config()
                .build(now)
                .direct_api()
                .local_dtls_fingerprint()
        ))
    }

    fn join(
        &mut self,
        now: Instant,
        claims: JoinClaims,
        tx: ClientTx,
        session: u64,
        out: &mut Outputs,
    ) {
        let meeting = claims.meeting;
        // A removed participant's join token stays valid for minutes; the participant id
        // it names is refused on every worker (each one got the host's action).
        if self
            .removed
            .get(&meeting)
            .is_some_and(|r| r.iter().any(|(pid, _)| *pid == claims.participant))
        {
            tracing::info!(%meeting, participant = %claims.participant, "a removed participant tried to come back");
            out.clients.push(ToClient::Refuse {
                tx,
                msg: ServerMsg::Closed {
                    reason: CloseReason::Removed,
                    message: "The host removed you from this meeting.".into(),
                },
            });
            return;
        }
        if self
            .denied
            .get(&meeting)
            .is_some_and(|r| r.iter().any(|(pid, _)| *pid == claims.participant))
        {
            out.clients.push(ToClient::Refuse {
                tx,
                msg: ServerMsg::Closed {
                    reason: CloseReason::Denied,
                    message: "A host did not let you in.".into(),
                },
            });
            return;
        }
        if self.rooms.get(&meeting).is_some_and(|r| r.locked) && !claims.host {
            out.clients.push(ToClient::Refuse {
                tx,
                msg: ServerMsg::Closed {
                    reason: CloseReason::Locked,
                    message: "The host has locked this meeting.".into(),
                },
            });
            return;
        }
        // The same participant again (a reconnect with a fresh signaling session): replace,
        // wherever the old session is.
        let old = self
            .rooms
            .get(&meeting)
            .and_then(|r| {
                r.members
                    .iter()
                    .find(|m| m.info.participant_id == claims.participant)
            })
            .map(|m| m.key);
        let old = old.or_else(|| {
            self.rooms.get(&meeting).and_then(|r| {
                r.waiting
                    .iter()
                    .find(|(_, e)| e.participant_id == claims.participant)
                    .map(|(k, _)| *k)
            })
        });
        if let Some(old) = old {
            if old.worker == self.cfg.worker {
                let slot = old.slot as usize;
                self.close_peer(
                    now,
                    slot,
                    CloseReason::Replaced,
                    "You joined from another connection.",
                    out,
                );
            } else {
                out.ctl.push((
                    Dest::Worker(old.worker),
                    Ctl::Kick {
                        key: old,
                        reason: CloseReason::Replaced,
                        message: "You joined from another connection.",
                    },
                ));
                // Our replica forgets it now; its worker's MemberDown follows.
                self.apply_member_down(now, meeting, old, CloseReason::Replaced, out);
            }
        }
        self.refresh_dtls_cert(now);
        let mut rtc = self.rtc_config().build(now);
        match Candidate::host(self.cfg.advertised, "udp") {
            Ok(c) => {
                rtc.add_local_candidate(c);
            }
            Err(e) => {
                tracing::error!(addr = %self.cfg.advertised, error = %e, "cannot advertise this address");
                out.clients.push(ToClient::Refuse {
                    tx,
                    msg: ServerMsg::Closed {
                        reason: CloseReason::ServerError,
                        message: "The media server is misconfigured.".into(),
                    },
                });
                return;
            }
        }
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.peers.push(None);
                self.gens.push(0);
                self.peers.len() - 1
            }
        };
        self.gens[slot] = self.gens[slot].wrapping_add(1);
        let key = PeerKey {
            worker: self.cfg.worker,
            slot: slot as u32,
            generation: self.gens[slot],
        };
        let mut peer = Participant::new(
            key,
            claims.participant.clone(),
            meeting,
            claims.name.clone(),
            claims.host,
            rtc,
            now,
        );
        peer.session = session;
        peer.role = if claims.host && claims.role == Role::Participant {
            // A token from before roles: the host was the owner.
            Role::Owner
        } else {
            claims.role
        };
        peer.base_role = match claims.role {
            Role::Guest => Role::Guest,
            _ => Role::Participant,
        };
        peer.screens_hosts_only = claims.screens_hosts_only;
        peer.may_claim_host = claims.may_claim_host;
        let room = self.room_entry(meeting, None);
        room.empty_since = None;
        let lobby = claims.lobby && !claims.host && !room.admitted.contains(&claims.participant);
        self.peers[slot] = Some(peer);
        self.by_pid.insert(claims.participant.clone(), slot);
        out.clients.push(ToClient::Attach { slot, tx });
        if lobby {
            self.wait_in_lobby(now, slot, out);
        } else {
            self.enter(now, slot, out);
        }
    }

    /// A participant (just joined, or admitted from the lobby) enters the room: it becomes a
    /// member, is told who is here and what was said, and gets what is published.
    fn enter(&mut self, _now: Instant, slot: usize, out: &mut Outputs) {
        let Some(peer) = self.peers[slot].as_mut() else {
            return;
        };
        peer.lobby = false;
        let (meeting, key) = (peer.meeting, peer.key);
        let (pid, name, host) = (peer.pid.clone(), peer.name.clone(), peer.host);
        let Some(room) = self.rooms.get_mut(&meeting) else {
            return;
        };
        peer.audio_slot = room.audio.alloc(key.packed());
        let info = peer.info();
        let audio_slot = peer.audio_slot;
        let audio = room.audio.clone();
        room.empty_since = None;
        let others: Vec<ParticipantInfo> = room.members.iter().map(|m| m.info.clone()).collect();
        let tracks: Vec<(TrackDesc, ParticipantId)> = room
            .members
            .iter()
            .flat_map(|m| {
                m.tracks
                    .iter()
                    .map(|t| (t.clone(), m.info.participant_id.clone()))
            })
            .collect();
        let (locked, speaker, spotlight) =
            (room.locked, room.speaker.clone(), room.spotlight.clone());
        let (cameras, screens) = (room.cameras, room.screens);
        let history: Vec<ChatLine> = room
            .chat
            .iter()
            .filter(|l| control::may_read(l, &pid.0, host))
            .cloned()
            .collect();
        room.members.push(Member {
            key,
            info: info.clone(),
            audio_slot,
            tracks: Vec::new(),
        });
        room.local.push(slot);
        bump(&mut room.on_worker, key.worker, 1);
        out.clients.push(ToClient::Msg {
            slot,
            msg: ServerMsg::Joined {
                participant_id: pid.clone(),
                name,
                host,
                meeting: meeting.0,
                participants: others,
            },
        });
        if !history.is_empty() {
            out.clients.push(ToClient::Msg {
                slot,
                msg: ServerMsg::ChatHistory { messages: history },
            });
        }
        if !cameras || !screens {
            out.clients.push(ToClient::Msg {
                slot,
                msg: ServerMsg::Permissions {
                    cameras,
                    screens,
                    by: None,
                },
            });
        }
        if host {
            self.send_lobby_to(meeting, slot, out);
        }
        if locked {
            out.clients.push(ToClient::Msg {
                slot,
                msg: ServerMsg::Locked { locked },
            });
        }
        if speaker.is_some() {
            out.clients.push(ToClient::Msg {
                slot,
                msg: ServerMsg::ActiveSpeaker {
                    participant_id: speaker,
                },
            });
        }
        if let Some((participant_id, by)) = spotlight {
            out.clients.push(ToClient::Msg {
                slot,
                msg: ServerMsg::Spotlight {
                    participant_id: Some(participant_id),
                    by,
                },
            });
        }
        self.broadcast_local(
            meeting,
            Some(key),
            &ServerMsg::ParticipantJoined {
                participant: info.clone(),
            },
            out,
        );
        self.broadcast_ctl(
            Ctl::MemberUp {
                meeting,
                key,
                info,
                audio_slot,
                audio,
            },
            out,
        );
        // Everything already published in the room is offered to the newcomer.
        for (desc, from) in tracks {
            self.subscribe(slot, meeting, &desc, &from);
        }
        out.events
            .push(CoreEvent::Participation(ParticipationChanged {
                meeting,
                participant: pid.clone(),
                joined: true,
                at: crate::util::now(),
                reason: None,
            }));
        self.mark(slot);
        tracing::info!(worker = self.cfg.worker, %meeting, participant = %pid, "participant joined");
    }

    /// Unix milliseconds at `now`.
    fn unix_ms(&self, now: Instant) -> i64 {
        let (at, ms) = self.clock;
        let d = |a: Instant, b: Instant| {
            i64::try_from(a.saturating_duration_since(b).as_millis()).unwrap_or(i64::MAX)
        };
        ms.saturating_add(d(now, at)).saturating_sub(d(at, now))
    }

    fn signal(&mut self, now: Instant, slot: usize, msg: ClientMsg, out: &mut Outputs) {
        let now_ms = self.unix_ms(now);
        let Some(p) = self.peers[slot].as_mut() else {
            return;
        };
        let (meeting, key) = (p.meeting, p.key);
        if p.lobby {
            // The lobby: no media, no presence, no chat; only waiting or leaving.
            match msg {
                ClientMsg::Leave => self.remove_peer(now, slot, CloseReason::Left, out),
                ClientMsg::Ping => out.clients.push(ToClient::Msg {
                    slot,
                    msg: ServerMsg::Pong,
                }),
                _ => out.clients.push(ToClient::Msg {
                    slot,
                    msg: ServerMsg::error(
                        "in_lobby",
                        "You are in the lobby; wait until a host lets you in.",
                    ),
                }),
            }
            return;
        }
        match msg {
            ClientMsg::Offer { sdp, sources } => {
                // Each offer declares the sources of all the client's send m-lines: it
                // replaces the previous declaration, and only once the SDP is accepted.
                if let Err(e) = check_sources(&sources) {
                    out.clients.push(ToClient::Msg {
                        slot,
                        msg: ServerMsg::error("bad_offer", e),
                    });
                    return;
                }
                if let Some(e) = self.forbidden_source(slot, &sources) {
                    out.clients.push(ToClient::Msg {
                        slot,
                        msg: ServerMsg::error("not_allowed", e),
                    });
                    return;
                }
                let Some(p) = self.peers[slot].as_mut() else {
                    return;
                };
                let previous = std::mem::replace(&mut p.sources, sources);
                match p.accept_offer(&sdp) {
                    Ok(answer) => out.clients.push(ToClient::Msg { slot, msg: answer }),
                    Err(SdpError::Refused(e)) => {
                        p.sources = previous;
                        tracing::info!(participant = %p.pid, error = %e, "client offer refused");
                        out.clients.push(ToClient::Msg {
                            slot,
                            msg: ServerMsg::error("bad_sdp", e),
                        });
                    }
                    Err(e @ SdpError::Broken(_)) => {
                        self.drop_broken(now, slot, "offer", &e, out);
                        return;
                    }
                }
            }
            ClientMsg::Answer { sdp } => match p.accept_answer(&sdp) {
                Ok(opened) => {
                    p.params = Arc::from(p.rtc.codec_config().params().to_vec());
                    // Not ready yet (a join): the keyframes are asked for by the first
                    // packets (`forward_local`) and sent once it is (`start_viewing`).
                    let asks: Vec<(TrackKey, u8)> = opened
                        .iter()
                        .filter(|_| p.media_ready)
                        .filter_map(|&i| p.tracks_out[i].as_ref())
                        .filter(|t| t.kind == MediaKind::Video)
                        .map(|t| (t.src, t.target.unwrap_or(0)))
                        .collect();
                    for (track, layer) in asks {
                        self.ask_keyframe(now, track, layer, true, out);
                    }
                    self.update_desired(slot);
                    self.wants_dirty = true;
                }
                Err(SdpError::Refused(e)) => {
                    tracing::info!(participant = %p.pid, error = %e, "client answer refused; renegotiating");
                    out.clients.push(ToClient::Msg {
                        slot,
                        msg: ServerMsg::error("bad_sdp", e),
                    });
                }
                Err(e @ SdpError::Broken(_)) => {
                    self.drop_broken(now, slot, "answer", &e, out);
                    return;
                }
            },
            // An ICE-lite server needs no remote candidates: the client's checks reveal its
            // address. Candidates are accepted (the protocol allows trickling) and ignored.
            ClientMsg::Candidate { .. } => {}
            ClientMsg::Mute { kind, muted } => {
                match kind {
                    MediaKind::Audio => {
                        p.audio_muted = muted;
                        if !muted {
                            p.forced_mute = false;
                        }
                    }
                    MediaKind::Video => p.video_muted = muted,
                }
                let m = ServerMsg::Mute {
                    participant_id: p.pid.clone(),
                    kind,
                    muted,
                    by_host: false,
                    by: None,
                };
                self.member_changed(slot, out);
                self.broadcast(meeting, Some(key), m, out);
            }
            ClientMsg::Layer { mid, width, height } => {
                for (_, t) in p.outs_mut() {
                    if t.mid().is_some_and(|m| m.to_string() == mid) {
                        t.paused = width == 0 || height == 0;
                        t.wanted_height = Some(height);
                    }
                }
                self.update_desired(slot);
                self.wants_dirty = true;
            }
            ClientMsg::Chat { text, to, to_hosts } => {
                self.chat(slot, text, to, to_hosts, out);
                return;
            }
            ClientMsg::Hand { raised } => {
                if raised && p.hand {
                    return;
                }
                p.hand = raised;
                p.hand_at = if raised { now_ms } else { 0 };
                let m = ServerMsg::Hand {
                    participant_id: p.pid.clone(),
                    raised,
                    at: p.hand_at,
                    by: None,
                };
                self.member_changed(slot, out);
                self.broadcast(meeting, None, m, out);
            }
            ClientMsg::Host { action } => {
                self.host_action(now, slot, action, out);
                return;
            }
            ClientMsg::ClaimHost => {
                self.claim_host(slot, out);
                return;
            }
            ClientMsg::Reaction { emoji } => {
                if !REACTIONS.contains(&emoji.as_str()) {
                    out.clients.push(ToClient::Msg {
                        slot,
                        msg: ServerMsg::error("bad_reaction", "Not one of the reactions."),
                    });
                    return;
                }
                let gap = Duration::from_millis(REACTION_INTERVAL_MS);
                if p.last_reaction
                    .is_some_and(|t| now.saturating_duration_since(t) < gap)
                {
                    out.clients.push(ToClient::Msg {
                        slot,
                        msg: ServerMsg::error("rate_limited", "One reaction a second at most."),
                    });
                    return;
                }
                p.last_reaction = Some(now);
                let m = ServerMsg::Reaction {
                    participant_id: p.pid.clone(),
                    emoji,
                    at: crate::util::now(),
                };
                self.broadcast(meeting, None, m, out);
            }
            ClientMsg::Spotlight { participant_id } => {
                if !p.host {
                    out.clients.push(ToClient::Msg {
                        slot,
                        msg: ServerMsg::error(
                            "not_host",
                            "Only a host can spotlight for everyone.",
                        ),
                    });
                    return;
                }
                let by = p.pid.clone();
                let present = |id: &ParticipantId| {
                    self.rooms
                        .get(&meeting)
                        .is_some_and(|r| r.members.iter().any(|m| &m.info.participant_id == id))
                };
                if participant_id.as_ref().is_some_and(|id| !present(id)) {
                    out.clients.push(ToClient::Msg {
                        slot,
                        msg: ServerMsg::error(
                            "not_in_meeting",
                            "That participant is not in this meeting.",
                        ),
                    });
                    return;
                }
                let m = ServerMsg::Spotlight { participant_id, by };
                self.note_spotlight(meeting, &m);
                self.broadcast(meeting, None, m, out);
            }
            ClientMsg::Leave => self.remove_peer(now, slot, CloseReason::Left, out),
            ClientMsg::Ping => out.clients.push(ToClient::Msg {
                slot,
                msg: ServerMsg::Pong,
            }),
            ClientMsg::Join { .. } => out.clients.push(ToClient::Msg {
                slot,
                msg: ServerMsg::error("already_joined", "This session has joined already."),
            }),
        }
        self.mark(slot);
    }

    /// str0m panicked on this participant's SDP (caught): its `Rtc` is in an unknown state,
    /// so the participant is told and dropped (reason `bad_sdp`); nobody else is touched.
    fn drop_broken(
        &mut self,
        now: Instant,
        slot: usize,
        what: &str,
        e: &SdpError,
        out: &mut Outputs,
    ) {
        if let Some(p) = self.peers[slot].as_ref() {
            tracing::warn!(participant = %p.pid, error = %e, "the media engine panicked on a client {what}; dropping that participant");
        }
        out.clients.push(ToClient::Msg {
            slot,
            msg: ServerMsg::Closed {
                reason: CloseReason::BadSdp,
                message: format!("The media server cannot use this {what}: {e}."),
            },
        });
        self.remove_peer(now, slot, CloseReason::BadSdp, out);
    }

    /// A local participant's state (mute, hand) changed: update replicas and the audio table.
    fn member_changed(&mut self, slot: usize, out: &mut Outputs) {
        let Some(p) = self.peers[slot].as_ref() else {
            return;
        };
        let (meeting, key, info) = (p.meeting, p.key, p.info());
        if let Some(room) = self.rooms.get_mut(&meeting) {
            if let Some(s) = p.audio_slot {
                room.audio.set_muted(s, info.audio_muted);
            }
            if let Some(m) = room.members.iter_mut().find(|m| m.key == key) {
                m.info = info.clone();
            }
        }
        self.broadcast_ctl(Ctl::MemberInfo { meeting, key, info }, out);
    }

    /// Tells str0m what this viewer should get, so its estimator probes up to it.
    fn update_desired(&mut self, slot: usize) {
        let Some(p) = self.peers[slot].as_mut() else {
            return;
        };
        let mut want = 0u64;
        for (_, t) in p.outs() {
            if !matches!(t.state, OutState::Open(_) | OutState::Negotiating(_)) || t.paused {
                continue;
            }
            want += match t.kind {
                MediaKind::Audio => 50_000,
                MediaKind::Video if t.simulcast => layer_bps(wanted_rank(t.wanted_height, None)),
                MediaKind::Video => layer_bps(2),
            };
        }
        let want = want.max(300_000);
        if want != p.desired_bps {
            p.desired_bps = want;
            p.rtc
                .bwe()
                .set_bitrate(Bitrate::kbps(300), Bitrate::bps(want));
        }
    }

    /// Tells a participant why its session ends, then removes it.
    fn close_peer(
        &mut self,
        now: Instant,
        slot: usize,
        reason: CloseReason,
        message: impl Into<String>,
        out: &mut Outputs,
    ) {
        out.clients.push(ToClient::Msg {
            slot,
            msg: ServerMsg::Closed {
                reason,
                message: message.into(),
            },
        });
        self.remove_peer(now, slot, reason, out);
    }

    fn remove_peer(&mut self, now: Instant, slot: usize, reason: CloseReason, out: &mut Outputs) {
        let Some(mut p) = self.peers[slot].take() else {
            return;
        };
        p.rtc.disconnect();
        self.free.push(slot);
        if p.lobby {
            // Never a member: only the lobby forgets them.
            self.by_pid.remove(&p.pid);
            self.dirty.retain(|s| *s != slot);
            out.clients.push(ToClient::Detach { slot });
            self.broadcast_ctl(
                Ctl::WaiterDown {
                    meeting: p.meeting,
                    key: p.key,
                    pid: p.pid.clone(),
                    admitted: false,
                    denied: reason == CloseReason::Denied,
                },
                out,
            );
            self.apply_waiter_down(
                now,
                p.meeting,
                p.key,
                p.pid.clone(),
                false,
                reason == CloseReason::Denied,
                out,
            );
            tracing::info!(worker = self.cfg.worker, meeting = %p.meeting, participant = %p.pid, %reason, "left the lobby");
            return;
        }
        self.by_pid.remove(&p.pid);
        self.by_addr.retain(|_, s| *s != slot);
        self.dirty.retain(|s| *s != slot);
        self.unsubscribe_all(slot, out);
        let meeting = p.meeting;
        if let Some(room) = self.rooms.get_mut(&meeting) {
            room.local.retain(|s| *s != slot);
            if let Some(s) = p.audio_slot {
                room.audio.free(s, p.key.packed());
            }
        }
        self.broadcast_ctl(
            Ctl::MemberDown {
                meeting,
                key: p.key,
                reason,
            },
            out,
        );
        self.apply_member_down(now, meeting, p.key, reason, out);
        out.clients.push(ToClient::Detach { slot });
        out.events
            .push(CoreEvent::Participation(ParticipationChanged {
                meeting,
                participant: p.pid.clone(),
                joined: false,
                at: crate::util::now(),
                reason: (reason == CloseReason::Removed).then_some(reason),
            }));
        tracing::info!(worker = self.cfg.worker, %meeting, participant = %p.pid, %reason, "participant left");
    }

    // ---- dynacast ------------------------------------------------------------------

    /// The layers each local viewer wants of each source, reported to the publisher's
    /// worker when they change.
    fn report_wants(&mut self, out: &mut Outputs) {
        let mut changed: Vec<(TrackKey, u8)> = Vec::new();
        for (key, src) in self.sources.iter_mut() {
            if !src.desc.simulcast {
                continue;
            }
            let mut mask = 0u8;
            for &(s, oi) in &src.subs {
                let Some(p) = self.peers[s].as_ref() else {
                    continue;
                };
                // A track still being negotiated counts: its viewer is connecting, and the
                // layer it will start on should be flowing (with its keyframe) by then.
                if let Some(Some(t)) = p.tracks_out.get(oi)
                    && matches!(
                        t.state,
                        OutState::ToOpen | OutState::Negotiating(_) | OutState::Open(_)
                    )
                    && !t.paused
                {
                    mask |= 1 << wanted_rank(t.wanted_height, p.bwe_bps);
                }
            }
            if mask != src.wants_sent {
                src.wants_sent = mask;
                changed.push((*key, mask));
            }
        }
        for (track, mask) in changed {
            if track.peer.worker == self.cfg.worker {
                self.apply_wants(track, self.cfg.worker, mask, out);
            } else {
                out.ctl.push((
                    Dest::Worker(track.peer.worker),
                    Ctl::Wants {
                        track,
                        worker: self.cfg.worker,
                        mask,
                    },
                ));
            }
        }
    }

    /// Dynacast at the publisher's worker: ask it for exactly the layers someone watches.
    fn apply_wants(&mut self, track: TrackKey, worker: u8, mask: u8, out: &mut Outputs) {
        let slot = track.peer.slot as usize;
        let Some(p) = self.peers.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if p.key != track.peer {
            return;
        }
        let Some(t) = p.tracks_in.get_mut(usize::from(track.track)) else {
            return;
        };
        let w = usize::from(worker);
        if t.wants.len() <= w {
            t.wants.resize(w + 1, 0);
        }
        t.wants[w] = mask;
        let all = t.wants.iter().fold(0u8, |a, m| a | m);
        let layers: Vec<&'static str> = LAYERS
            .iter()
            .enumerate()
            .filter(|(i, _)| all & (1 << i) != 0)
            .map(|(_, l)| *l)
            .collect();
        if t.layers_requested.as_ref() != Some(&layers) {
            t.layers_requested = Some(layers.clone());
            out.clients.push(ToClient::Msg {
                slot,
                msg: ServerMsg::Layers {
                    mid: t.mid.to_string(),
                    active: layers.iter().map(|l| l.to_string()).collect(),
                },
            });
        }
    }

    fn housekeeping(&mut self, now: Instant, out: &mut Outputs) {
        self.report_wants(out);
        if self.next_quality.is_none_or(|t| t <= now) {
            self.next_quality = Some(now + Duration::from_millis(QUALITY_INTERVAL_MS));
            self.report_quality(out);
        }
        for slot in 0..self.peers.len() {
            self.update_desired(slot);
        }
        // Active speaker per room: the loudest unmuted member above a floor, from the
        // room's shared audio table; each worker tells its own participants.
        let mut changes = Vec::new();
        for (meeting, room) in &mut self.rooms {
            room.audio.enforce();
            let loudest = room.audio.loudest(30.0).and_then(|s| {
                room.members
                    .iter()
                    .find(|m| m.audio_slot == Some(s))
                    .map(|m| m.info.participant_id.clone())
            });
            if loudest.is_some() && loudest != room.speaker {
                room.speaker = loudest.clone();
                changes.push((*meeting, loudest));
            }
        }
        for (meeting, speaker) in changes {
            self.broadcast_local(
                meeting,
                None,
                &ServerMsg::ActiveSpeaker {
                    participant_id: speaker,
                },
                out,
            );
        }
        for src in self.sources.values_mut() {
            for c in src.cache.iter_mut().flatten() {
                c.sweep(now);
            }
        }
        let keep = self.cfg.removed_for;
        self.denied.retain(|_, list| {
            while list
                .front()
                .is_some_and(|(_, at)| now.saturating_duration_since(*at) >= keep)
            {
                list.pop_front();
            }
            !list.is_empty()
        });
        self.removed.retain(|_, list| {
            while list
                .front()
                .is_some_and(|(_, at)| now.saturating_duration_since(*at) >= keep)
            {
                list.pop_front();
            }
            !list.is_empty()
        });
        let grace = self.cfg.room_grace;
        let closed: Vec<MeetingId> = self
            .rooms
            .iter()
            .filter(|(_, r)| {
                r.members.is_empty()
                    && r.waiting.is_empty()
                    && r.empty_since
                        .is_some_and(|t| now.saturating_duration_since(t) >= grace)
            })
            .map(|(m, _)| *m)
            .collect();
        for m in closed {
            self.rooms.remove(&m);
            self.sources.retain(|_, s| s.meeting != m);
            if self.cfg.worker == 0 {
                out.events.push(CoreEvent::RoomClosed(m));
                tracing::info!(meeting = %m, "room closed");
            }
        }
    }
}

impl Core {
    /// Each worker reports the connection quality of its own participants to their whole
    /// room (clients merge the partial lists by participant).
    fn report_quality(&mut self, out: &mut Outputs) {
        let mut reports = Vec::new();
        for (meeting, room) in &self.rooms {
            let participants: Vec<QualityReport> = room
                .local
                .iter()
                .filter_map(|&s| self.peers[s].as_ref())
                .filter(|p| p.connected)
                .map(|p| QualityReport {
                    participant_id: p.pid.clone(),
                    level: QualityReport::level_for(p.loss_pct, p.rtt_ms, p.receiving),
                    loss_pct: (p.loss_pct * 10.0).round() / 10.0,
                    rtt_ms: p.rtt_ms,
                })
                .collect();
            if !participants.is_empty() {
                reports.push((*meeting, participants));
            }
        }
        for (meeting, participants) in reports {
            self.broadcast(meeting, None, ServerMsg::Quality { participants }, out);
        }
    }
}

/// One copy of `pkt` (of simulcast `layer`) to viewer track `t` on stream `ssrc`; false if
/// it is not sent (no matching payload type, before the current epoch, or str0m refused).
/// `received`: the original datagram's arrival, for the added-latency histogram (None for
/// a copy sent later than its arrival, e.g. to a viewer that has just connected).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn send_copy(
    now: Instant,
    rtc: &mut str0m::Rtc,
    t: &mut TrackOut,
    ssrc: str0m::rtp::Ssrc,
    pkt: &Pkt,
    layer: u8,
    params: &[PayloadParams],
    net: &mut dyn NetSink,
    received: Option<Instant>,
) -> bool {
    let Some((pt, clock, _)) = t.map_pt(pkt.pt, params, rtc) else {
        return false;
    };
    let Some(h) = t.rewriter.rewrite(pkt, layer, clock) else {
        return false;
    };
    let mut w = RtpWrite::new(pt, h.seq.into(), h.time, pkt.received, pkt.payload.clone())
        .marker(pkt.marker)
        .ext_vals(pkt.ext_vals());
    if let Some(v) = h.vp8 {
        w = w.vp8_patch(v);
    }
    let Some(DirectSend {
        len, destination, ..
    }) = rtc
        .direct_api()
        .send_rtp_now(now, ssrc, w, None, net.buffer())
    else {
        return false;
    };
    net.commit(len, destination, received);
    true
}

/// A client sends at most camera, microphone, screen and screen audio, each on its own
/// m-line; a few more allow for m-lines being replaced. Anything beyond is not a client.
pub const MAX_SOURCES: usize = 16;

/// Checks an offer's `sources` before anything of it is kept.
fn check_sources(sources: &HashMap<String, Source>) -> Result<(), String> {
    if sources.len() > MAX_SOURCES {
        return Err(format!(
            "An offer declares at most {MAX_SOURCES} sources, not {}.",
            sources.len()
        ));
    }
    if let Some(bad) = sources
        .keys()
        .find(|mid| mid.is_empty() || mid.len() > 16 || !mid.bytes().all(|b| b.is_ascii_graphic()))
    {
        return Err(format!(
            "`{}` is not an m-line id.",
            bad.chars().take(20).collect::<String>()
        ));
    }
    Ok(())
}

fn bump(v: &mut Vec<u32>, worker: u8, d: i32) {
    let w = usize::from(worker);
    if v.len() <= w {
        v.resize(w + 1, 0);
    }
    v[w] = v[w].saturating_add_signed(d);
}

/// RTP, not RTCP (RFC 5761: RTCP packet types 192–223 sit where RTP's marker+PT would), and
/// not STUN/DTLS (their first byte is below 128). Headers are clear text under SRTP.
pub fn is_rtp(b: &[u8]) -> bool {
    b.len() >= 12 && b[0] & 0xC0 == 0x80 && !(192..=223).contains(&b[1])
}
