//! A media worker: one thread, one UDP socket, the rooms it owns and their participants.
//!
//! Every packet of every participant of this worker arrives on one socket; the source
//! address (or, for a new one, the ICE credentials in its STUN) finds the participant's
//! `Rtc`. Forwarding stays inside the thread: a publisher's frame is handed to each
//! subscriber's `Rtc` writer directly (payloads are `Arc`ed, not copied), with no lock,
//! channel or actor on the way. The signaling side talks to the worker only through
//! `WorkerCmd`s on a channel; the worker talks back through each participant's channel.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use str0m::bwe::BweKind;
use str0m::config::CryptoProvider;
use str0m::media::{Direction, KeyframeRequestKind, MediaData, MediaKind as StrKind, Mid, Rid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, RtcConfig};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc::{Sender, UnboundedReceiver};
use tokio::sync::oneshot;

use super::peer::{LAYERS, OutState, Peer, TrackOut, choose_layer, wanted_rank};
use crate::ids::{MeetingId, ParticipantId};
use crate::proto::signal::{ClientMsg, MediaKind, ServerMsg};
use crate::proto::{ParticipationChanged, RoomAction};
use crate::tokens::JoinClaims;
use crate::util::now as unix_now;

/// Commands from the signaling side.
pub enum WorkerCmd {
    /// `session` tells this signaling session apart from an earlier or later one of the
    /// same participant (a reconnect): `Signal` and `Leave` act only on their own session.
    Join {
        claims: JoinClaims,
        tx: Sender<ServerMsg>,
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
        reason: &'static str,
    },
    Control {
        meeting: MeetingId,
        action: RoomAction,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// The server stops: every session is told (`closed`, reason `server_shutdown`, so clients
    /// rejoin through the apiserver, which sends them to an sfuserver that is up) and ended.
    Shutdown { reply: oneshot::Sender<()> },
}

/// Counters shared with `/metrics`. The worker adds to them in batches, not per packet.
#[derive(Default)]
pub struct WorkerStats {
    /// RTP packets (media and retransmissions, not RTCP/STUN/DTLS) in and out.
    pub rtp_in: AtomicU64,
    pub rtp_out: AtomicU64,
    pub packets_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub packets_out: AtomicU64,
    pub bytes_out: AtomicU64,
    pub dropped_out: AtomicU64,
    pub garbage_in: AtomicU64,
    pub nacks_received: AtomicU64,
    pub keyframe_requests: AtomicU64,
    pub participants: AtomicU64,
    pub rooms: AtomicU64,
    pub tracks: AtomicU64,
    pub bwe_bps_sum: AtomicU64,
}

/// Per-packet counts kept in plain integers and flushed into `WorkerStats` periodically.
#[derive(Default)]
struct LocalCounts {
    rtp_in: u64,
    rtp_out: u64,
    packets_in: u64,
    bytes_in: u64,
    packets_out: u64,
    bytes_out: u64,
    dropped_out: u64,
    garbage_in: u64,
}

/// Events the worker reports upward (participation history, rooms closing).
pub trait Reporter: Send + 'static {
    fn participation(&self, m: ParticipationChanged);
    fn room_closed(&self, meeting: MeetingId);
}

struct Room {
    peers: Vec<usize>,
    locked: bool,
    speaker: Option<ParticipantId>,
    empty_since: Option<Instant>,
}

// `Media` is by far the most frequent variant; boxing it would allocate per packet.
#[allow(clippy::large_enum_variant)]
enum Propagated {
    TrackOpened {
        from: usize,
        mid: Mid,
    },
    TrackClosed {
        from: usize,
        mid: Mid,
    },
    Media {
        from: usize,
        data: MediaData,
    },
    Keyframe {
        to: usize,
        mid: Mid,
        rid: Option<Rid>,
        kind: KeyframeRequestKind,
    },
}

pub struct Worker {
    index: usize,
    /// The media socket (non-blocking). Sends are a plain `sendto`; receives wait for
    /// readability on a dup of it registered in the worker's own runtime (see `run`).
    socket: std::net::UdpSocket,
    /// The one address we advertise and that peers send to.
    advertised: SocketAddr,
    crypto: Arc<CryptoProvider>,
    peers: Vec<Option<Peer>>,
    free: Vec<usize>,
    by_addr: HashMap<SocketAddr, usize>,
    by_pid: HashMap<ParticipantId, usize>,
    rooms: HashMap<MeetingId, Room>,
    dirty: Vec<usize>,
    queue: VecDeque<Propagated>,
    stats: Arc<WorkerStats>,
    counts: LocalCounts,
    reporter: Box<dyn Reporter>,
    /// A room stays open this long after its last participant left.
    room_grace: Duration,
    last_housekeeping: Instant,
}

const HOUSEKEEPING: Duration = Duration::from_millis(250);

/// One datagram from a socket watched for readability (cancel-safe: nothing is read until
/// the socket is ready and `recv_from` succeeds).
async fn recv_from(
    socket: &AsyncFd<std::net::UdpSocket>,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr)> {
    loop {
        let mut ready = socket.readable().await?;
        if let Ok(r) = ready.try_io(|s| s.get_ref().recv_from(buf)) {
            return r;
        }
    }
}

impl Worker {
    pub fn new(
        index: usize,
        socket: std::net::UdpSocket,
        advertised: SocketAddr,
        crypto: Arc<CryptoProvider>,
        stats: Arc<WorkerStats>,
        reporter: Box<dyn Reporter>,
        room_grace: Duration,
    ) -> std::io::Result<Worker> {
        socket.set_nonblocking(true)?;
        Ok(Worker {
            index,
            socket,
            advertised,
            crypto,
            peers: Vec::new(),
            free: Vec::new(),
            by_addr: HashMap::new(),
            by_pid: HashMap::new(),
            rooms: HashMap::new(),
            dirty: Vec::new(),
            queue: VecDeque::new(),
            stats,
            counts: LocalCounts::default(),
            reporter,
            room_grace,
            last_housekeeping: Instant::now(),
        })
    }

    /// The worker's loop; returns when the command channel closes (shutdown).
    pub async fn run(mut self, mut rx: UnboundedReceiver<WorkerCmd>) {
        // One datagram buffer for the life of the worker: no allocation per packet here.
        let mut buf = vec![0u8; 2048];
        // Registered here, in this thread's runtime, and for readability only. A socket
        // registered by the thread that built the worker would put every packet through that
        // thread's epoll and a cross-thread wake-up; write interest would add a wake-up per
        // send (loopback frees the buffer space at once).
        let watched = self.socket.try_clone().and_then(|dup| {
            // SAFETY: the AsyncFd owns `dup` (its own fd, a dup of the media socket), so the
            // fd stays open for as long as it is registered and is closed only after the
            // AsyncFd deregisters it on drop.
            unsafe { AsyncFd::register_with_interest(dup, Interest::READABLE) }
                .map_err(std::io::Error::from)
        });
        let rx_socket = match watched {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(worker = self.index, error = %e, "cannot watch the media socket");
                return;
            }
        };
        tracing::info!(worker = self.index, addr = %self.advertised, "media worker started");
        loop {
            self.drive();
            let deadline = self.next_deadline();
            enum Ev {
                Udp(std::io::Result<(usize, SocketAddr)>),
                Cmd(Option<WorkerCmd>),
                Timer,
            }
            let ev = tokio::select! {
                biased;
                r = recv_from(&rx_socket, &mut buf) => Ev::Udp(r),
                c = rx.recv() => Ev::Cmd(c),
                _ = tokio::time::sleep_until(deadline.into()) => Ev::Timer,
            };
            match ev {
                Ev::Udp(Ok((n, src))) => self.on_datagram(&buf[..n], src),
                Ev::Udp(Err(e)) => {
                    tracing::debug!(worker = self.index, error = %e, "udp receive error")
                }
                Ev::Cmd(Some(c)) => self.on_cmd(c),
                Ev::Cmd(None) => break,
                Ev::Timer => {}
            }
            self.on_time(Instant::now());
        }
        for slot in 0..self.peers.len() {
            if self.peers[slot].is_some() {
                self.remove_peer(slot, "shutdown");
            }
        }
        self.flush_stats();
        tracing::info!(worker = self.index, "media worker stopped");
    }

    fn next_deadline(&self) -> Instant {
        let mut t = self.last_housekeeping + HOUSEKEEPING;
        for p in self.peers.iter().flatten() {
            t = t.min(p.next_timeout);
        }
        t
    }

    fn on_datagram(&mut self, data: &[u8], src: SocketAddr) {
        self.counts.packets_in += 1;
        self.counts.rtp_in += u64::from(is_rtp(data));
        self.counts.bytes_in += data.len() as u64;
        let Ok(contents) = data.try_into() else {
            self.counts.garbage_in += 1;
            return;
        };
        let input = Input::Receive(
            Instant::now(),
            Receive {
                proto: Protocol::Udp,
                source: src,
                destination: self.advertised,
                contents,
            },
        );
        let slot = match self.by_addr.get(&src) {
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
                    self.by_addr.insert(src, s);
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
            self.remove_peer(slot, "media_error");
            return;
        }
        self.mark(slot);
    }

    fn on_time(&mut self, now: Instant) {
        for slot in 0..self.peers.len() {
            let Some(p) = self.peers[slot].as_mut() else {
                continue;
            };
            if p.next_timeout <= now {
                if let Err(e) = p.rtc.handle_input(Input::Timeout(now)) {
                    tracing::info!(participant = %p.pid, error = %e, "dropping participant after a timer error");
                    self.remove_peer(slot, "media_error");
                    continue;
                }
                self.mark(slot);
            }
        }
        if now.duration_since(self.last_housekeeping) >= HOUSEKEEPING {
            self.last_housekeeping = now;
            self.housekeeping(now);
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

    /// Polls every participant that has work until each returns a timeout, then carries
    /// what they produced (media, track changes, keyframe requests) to the others.
    fn drive(&mut self) {
        loop {
            while let Some(slot) = self.dirty.pop() {
                self.poll_peer(slot);
            }
            if self.queue.is_empty() {
                break;
            }
            while let Some(p) = self.queue.pop_front() {
                self.propagate(p);
            }
        }
    }

    fn poll_peer(&mut self, slot: usize) {
        loop {
            let Some(p) = self.peers[slot].as_mut() else {
                return;
            };
            p.dirty = false;
            if !p.rtc.is_alive() {
                self.remove_peer(slot, "connection_lost");
                return;
            }
            p.negotiate_if_needed();
            let out = match p.rtc.poll_output() {
                Ok(o) => o,
                Err(e) => {
                    tracing::info!(participant = %p.pid, error = %e, "dropping participant after an output error");
                    self.remove_peer(slot, "media_error");
                    return;
                }
            };
            match out {
                Output::Timeout(t) => {
                    p.next_timeout = t;
                    return;
                }
                Output::Transmit(t) => match self.socket.send_to(&t.contents, t.destination) {
                    Ok(n) => {
                        self.counts.packets_out += 1;
                        self.counts.rtp_out += u64::from(is_rtp(&t.contents));
                        self.counts.bytes_out += n as u64;
                    }
                    Err(_) => self.counts.dropped_out += 1,
                },
                Output::Event(e) => self.on_event(slot, e),
            }
        }
    }

    fn on_event(&mut self, slot: usize, e: Event) {
        let now = Instant::now();
        let Some(p) = self.peers[slot].as_mut() else {
            return;
        };
        match e {
            Event::Connected => {
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
                    p.add_track_in(m.mid, kind, m.simulcast.is_some());
                    self.queue.push_back(Propagated::TrackOpened {
                        from: slot,
                        mid: m.mid,
                    });
                }
            }
            Event::MediaChanged(m) => {
                if let Some(t) = p.tracks_in.iter_mut().find(|t| t.mid == m.mid) {
                    let active = matches!(m.direction, Direction::RecvOnly | Direction::SendRecv);
                    if active != t.active {
                        t.active = active;
                        self.queue.push_back(if active {
                            Propagated::TrackOpened {
                                from: slot,
                                mid: m.mid,
                            }
                        } else {
                            Propagated::TrackClosed {
                                from: slot,
                                mid: m.mid,
                            }
                        });
                    }
                }
            }
            Event::MediaData(data) => {
                if data.rid.is_some()
                    && let Some(t) = p.tracks_in.iter_mut().find(|t| t.mid == data.mid)
                    && let Some(rid) = data.rid
                {
                    match t.layers_seen.iter_mut().find(|(r, _)| *r == rid) {
                        Some(e) => e.1 = now,
                        None => t.layers_seen.push((rid, now)),
                    }
                }
                if !data.contiguous {
                    // Loss on the way in that NACK could not repair: ask for a fresh picture.
                    p.request_keyframe(data.mid, data.rid, KeyframeRequestKind::Pli, now);
                }
                if let Some(level) = data.ext_vals.audio_level {
                    let loud = f32::from(127 - level.clamp(0, 127));
                    p.loudness = p.loudness * 0.8 + loud * 0.2;
                }
                self.queue.push_back(Propagated::Media { from: slot, data });
            }
            Event::KeyframeRequest(req) => {
                if let Some(t) = p.tracks_out.iter().find(|t| t.mid() == Some(req.mid)) {
                    let rid = t.current.or(t.target);
                    self.queue.push_back(Propagated::Keyframe {
                        to: t.from,
                        mid: t.src_mid,
                        rid,
                        kind: req.kind,
                    });
                }
            }
            Event::EgressBitrateEstimate(BweKind::Twcc { estimate, .. }) => {
                p.bwe_bps = Some(estimate.as_u64());
            }
            Event::MediaEgressStats(s) => {
                // The stats are running totals per stream: add what is new since the last report.
                let key = (s.mid, s.rid);
                let prev = match p.egress_nacks.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, v)) => std::mem::replace(v, s.nacks),
                    None => {
                        p.egress_nacks.push((key, s.nacks));
                        0
                    }
                };
                self.stats
                    .nacks_received
                    .fetch_add(s.nacks.saturating_sub(prev), Ordering::Relaxed);
            }
            _ => {}
        }
    }

    fn propagate(&mut self, prop: Propagated) {
        let now = Instant::now();
        match prop {
            Propagated::TrackOpened { from, mid } => {
                let Some(src) = self.peers[from].as_ref() else {
                    return;
                };
                let Some(t) = src.tracks_in.iter().find(|t| t.mid == mid) else {
                    return;
                };
                let (pid, kind, source, meeting) = (src.pid.clone(), t.kind, t.source, src.meeting);
                for s in self.room_peers(meeting) {
                    if s == from {
                        continue;
                    }
                    let Some(p) = self.peers[s].as_mut() else {
                        continue;
                    };
                    if p.tracks_out.iter().any(|o| {
                        o.from == from
                            && o.src_mid == mid
                            && matches!(
                                o.state,
                                OutState::ToOpen | OutState::Negotiating(_) | OutState::Open(_)
                            )
                    }) {
                        continue;
                    }
                    p.tracks_out.push(TrackOut {
                        from,
                        from_pid: pid.clone(),
                        src_mid: mid,
                        kind,
                        source,
                        state: OutState::ToOpen,
                        current: None,
                        target: None,
                        wanted_height: None,
                        paused: false,
                        reused: false,
                    });
                    self.mark(s);
                }
            }
            Propagated::TrackClosed { from, mid } => {
                let Some(meeting) = self.peers[from].as_ref().map(|p| p.meeting) else {
                    return;
                };
                for s in self.room_peers(meeting) {
                    let Some(p) = self.peers[s].as_mut() else {
                        continue;
                    };
                    close_tracks_from(p, from, Some(mid));
                    self.mark(s);
                }
            }
            Propagated::Keyframe { to, mid, rid, kind } => {
                if let Some(p) = self.peers[to].as_mut()
                    && p.request_keyframe(mid, rid, kind, now)
                {
                    self.stats.keyframe_requests.fetch_add(1, Ordering::Relaxed);
                    self.mark(to);
                }
            }
            Propagated::Media { from, data } => self.forward(from, data, now),
        }
    }

    /// Hands one received frame to every subscriber of its track.
    fn forward(&mut self, from: usize, data: MediaData, now: Instant) {
        let Some(src) = self.peers[from].as_ref() else {
            return;
        };
        let is_audio = data.params.spec().codec.is_audio();
        if is_audio && src.forced_mute {
            return;
        }
        let meeting = src.meeting;
        // Layers heard from in the last second, on the stack: this runs for every frame.
        let mut layers = [Rid::from("q"); 4];
        let mut n_layers = 0;
        if data.rid.is_some()
            && let Some(t) = src.tracks_in.iter().find(|t| t.mid == data.mid)
        {
            for (r, at) in &t.layers_seen {
                if n_layers < layers.len() && now.duration_since(*at) < Duration::from_secs(1) {
                    layers[n_layers] = *r;
                    n_layers += 1;
                }
            }
        }
        let layers = &layers[..n_layers];
        let Some(room) = self.rooms.get(&meeting) else {
            return;
        };
        let mut keyframes: Vec<Option<Rid>> = Vec::new();
        for i in 0..room.peers.len() {
            let s = room.peers[i];
            if s == from {
                continue;
            }
            let Some(p) = self.peers[s].as_mut() else {
                continue;
            };
            let bwe = p.bwe_bps;
            let mut wrote = false;
            for t in p.tracks_out.iter_mut() {
                if t.from != from || t.src_mid != data.mid {
                    continue;
                }
                let OutState::Open(mid) = t.state else {
                    continue;
                };
                if t.paused {
                    continue;
                }
                if data.rid.is_some() {
                    // Simulcast: forward one layer; switch only at a keyframe of the new one.
                    let target = choose_layer(t.wanted_height, bwe, layers).or(data.rid);
                    if target != t.target {
                        t.target = target;
                        keyframes.push(target);
                    }
                    if data.rid == t.target && t.current != t.target {
                        if data.is_keyframe() {
                            t.current = t.target;
                        } else {
                            keyframes.push(t.target);
                        }
                    }
                    if data.rid != t.current {
                        continue;
                    }
                }
                let Some(w) = p.rtc.writer(mid) else { continue };
                let Some(pt) = w.match_params(data.params) else {
                    continue;
                };
                if let Err(e) = w.write(pt, data.network_time, data.time, data.data.clone()) {
                    tracing::debug!(participant = %p.pid, error = %e, "write to subscriber failed");
                    continue;
                }
                wrote = true;
            }
            if wrote && !p.dirty {
                p.dirty = true;
                self.dirty.push(s);
            }
        }
        keyframes.dedup();
        for rid in keyframes {
            self.queue.push_back(Propagated::Keyframe {
                to: from,
                mid: data.mid,
                rid,
                kind: KeyframeRequestKind::Pli,
            });
        }
    }

    fn room_peers(&self, meeting: MeetingId) -> Vec<usize> {
        self.rooms
            .get(&meeting)
            .map(|r| r.peers.clone())
            .unwrap_or_default()
    }

    fn broadcast(&self, meeting: MeetingId, except: Option<usize>, msg: &ServerMsg) {
        if let Some(room) = self.rooms.get(&meeting) {
            for &s in &room.peers {
                if Some(s) != except
                    && let Some(p) = self.peers[s].as_ref()
                {
                    p.send(msg.clone());
                }
            }
        }
    }

    fn on_cmd(&mut self, cmd: WorkerCmd) {
        match cmd {
            WorkerCmd::Join {
                claims,
                tx,
                session,
            } => self.join(claims, tx, session),
            WorkerCmd::Signal {
                participant,
                session,
                msg,
            } => {
                if let Some(slot) = self.session_slot(&participant, session) {
                    self.signal(slot, msg);
                }
            }
            WorkerCmd::Leave {
                participant,
                session,
                reason,
            } => {
                if let Some(slot) = self.session_slot(&participant, session) {
                    self.remove_peer(slot, reason);
                }
            }
            WorkerCmd::Control {
                meeting,
                action,
                reply,
            } => {
                let _ = reply.send(self.control(meeting, action));
            }
            WorkerCmd::Shutdown { reply } => {
                let slots: Vec<usize> = (0..self.peers.len())
                    .filter(|&s| self.peers[s].is_some())
                    .collect();
                for s in slots {
                    if let Some(p) = self.peers[s].as_ref() {
                        p.send(ServerMsg::Closed {
                            reason: "server_shutdown".into(),
                            message: "This media server is restarting; reconnecting.".into(),
                        });
                    }
                    self.remove_peer(s, "server_shutdown");
                }
                let _ = reply.send(());
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

    fn join(&mut self, claims: JoinClaims, tx: Sender<ServerMsg>, session: u64) {
        let now = Instant::now();
        let meeting = claims.meeting;
        if self.rooms.get(&meeting).is_some_and(|r| r.locked) && !claims.host {
            let _ = tx.try_send(ServerMsg::Closed {
                reason: "locked".into(),
                message: "The host has locked this meeting.".into(),
            });
            return;
        }
        // The same participant again (a reconnect with a fresh signaling session): replace.
        if let Some(&old) = self.by_pid.get(&claims.participant) {
            if let Some(p) = self.peers[old].as_ref() {
                p.send(ServerMsg::Closed {
                    reason: "replaced".into(),
                    message: "You joined from another connection.".into(),
                });
            }
            self.remove_peer(old, "replaced");
        }
        // ICE-lite: the server never sends connectivity checks, it only answers them. A full
        // agent would probe every candidate a client names, private and link-local addresses
        // (cloud metadata) included, at the client's command.
        let mut rtc = RtcConfig::new()
            .set_ice_lite(true)
            .set_crypto_provider(self.crypto.clone())
            .enable_bwe(Some(str0m::bwe::Bitrate::kbps(800)))
            .set_stats_interval(Some(Duration::from_secs(1)))
            .build(now);
        match Candidate::host(self.advertised, "udp") {
            Ok(c) => {
                rtc.add_local_candidate(c);
            }
            Err(e) => {
                tracing::error!(addr = %self.advertised, error = %e, "cannot advertise this address");
                let _ = tx.try_send(ServerMsg::Closed {
                    reason: "server_error".into(),
                    message: "The media server is misconfigured.".into(),
                });
                return;
            }
        }
        let peer = Peer::new(&claims, rtc, tx, session, now);
        let slot = match self.free.pop() {
            Some(s) => {
                self.peers[s] = Some(peer);
                s
            }
            None => {
                self.peers.push(Some(peer));
                self.peers.len() - 1
            }
        };
        self.by_pid.insert(claims.participant.clone(), slot);
        let room = self.rooms.entry(meeting).or_insert_with(|| Room {
            peers: Vec::new(),
            locked: false,
            speaker: None,
            empty_since: None,
        });
        room.empty_since = None;
        let others: Vec<usize> = room.peers.clone();
        room.peers.push(slot);
        let participants = others
            .iter()
            .filter_map(|&s| self.peers[s].as_ref().map(Peer::info))
            .collect();
        let locked = room.locked;
        let speaker = room.speaker.clone();
        if let Some(p) = self.peers[slot].as_mut() {
            p.send(ServerMsg::Joined {
                participant_id: claims.participant.0.clone(),
                name: claims.name.clone(),
                host: claims.host,
                meeting: meeting.0,
                participants,
            });
            if locked {
                p.send(ServerMsg::Locked { locked });
            }
            if speaker.is_some() {
                p.send(ServerMsg::ActiveSpeaker {
                    participant_id: speaker.map(|s| s.0),
                });
            }
        }
        let info = self.peers[slot].as_ref().map(Peer::info);
        if let Some(info) = info {
            self.broadcast(
                meeting,
                Some(slot),
                &ServerMsg::ParticipantJoined { participant: info },
            );
        }
        // Everything already published in the room is offered to the newcomer.
        for &o in &others {
            let tracks: Vec<Mid> = self.peers[o]
                .as_ref()
                .map(|p| {
                    p.tracks_in
                        .iter()
                        .filter(|t| t.active)
                        .map(|t| t.mid)
                        .collect()
                })
                .unwrap_or_default();
            for mid in tracks {
                self.queue
                    .push_back(Propagated::TrackOpened { from: o, mid });
            }
        }
        self.reporter.participation(ParticipationChanged {
            meeting,
            participant: claims.participant,
            joined: true,
            at: unix_now(),
        });
        self.mark(slot);
        tracing::info!(worker = self.index, %meeting, participant = %self.peers[slot].as_ref().map(|p| p.pid.0.as_str()).unwrap_or(""), "participant joined");
    }

    fn signal(&mut self, slot: usize, msg: ClientMsg) {
        let Some(p) = self.peers[slot].as_mut() else {
            return;
        };
        let meeting = p.meeting;
        match msg {
            ClientMsg::Offer { sdp, sources } => {
                // Each offer declares the sources of all the client's send m-lines: it
                // replaces the previous declaration, and only once the SDP is accepted.
                if let Err(e) = check_sources(&sources) {
                    p.send(ServerMsg::error("bad_offer", e));
                } else if let Err(e) = p.accept_offer(&sdp) {
                    tracing::info!(participant = %p.pid, error = %e, "client offer refused");
                    p.send(ServerMsg::error("bad_sdp", e));
                } else {
                    p.sources = sources;
                }
            }
            ClientMsg::Answer { sdp } => match p.accept_answer(&sdp) {
                Ok(opened) => {
                    // Forwarded video goes out as it arrives, like audio (str0m's default for
                    // audio). With BWE on, str0m paces video at 1.1 × the estimate, which starts
                    // at 800 kbit/s and, as nothing asks for a desired bitrate, grows only by
                    // slow AIMD steps (no probes), while a subscriber in an N-person meeting is
                    // sent (N−1) × the publishers' rate, which the publishers chose and already
                    // paced. The pacer then held frames until its 2 s queue limit forced them
                    // out: p99 1.4–1.6 s in 5×5 and 10×10 loadtests, audio unaffected
                    // (BENCHMARKS.md). The estimate still drives simulcast layer choice.
                    for t in &p.tracks_out {
                        if let (OutState::Open(mid), MediaKind::Video) = (t.state, t.kind)
                            && let Some(s) = p.rtc.direct_api().stream_tx_by_mid(mid, None)
                        {
                            s.set_unpaced(true);
                        }
                    }
                    for (from, mid, rid) in opened {
                        self.queue.push_back(Propagated::Keyframe {
                            to: from,
                            mid,
                            rid,
                            kind: KeyframeRequestKind::Pli,
                        });
                    }
                }
                Err(e) => {
                    tracing::info!(participant = %p.pid, error = %e, "client answer refused; renegotiating");
                    p.send(ServerMsg::error("bad_sdp", e));
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
                    participant_id: p.pid.0.clone(),
                    kind,
                    muted,
                    by_host: false,
                };
                self.broadcast(meeting, Some(slot), &m);
            }
            ClientMsg::Layer { mid, width, height } => {
                for t in p.tracks_out.iter_mut() {
                    if t.mid().is_some_and(|m| m.to_string() == mid) {
                        t.paused = width == 0 || height == 0;
                        t.wanted_height = Some(height);
                    }
                }
            }
            ClientMsg::Chat { text } => {
                let text = text.trim();
                if text.is_empty() || text.chars().count() > 4000 {
                    p.send(ServerMsg::error(
                        "bad_chat",
                        "A chat message has 1 to 4000 characters.",
                    ));
                    return;
                }
                let m = ServerMsg::Chat {
                    participant_id: p.pid.0.clone(),
                    name: p.name.clone(),
                    text: text.to_string(),
                    at: unix_now(),
                };
                self.broadcast(meeting, None, &m);
            }
            ClientMsg::Hand { raised } => {
                p.hand = raised;
                let m = ServerMsg::Hand {
                    participant_id: p.pid.0.clone(),
                    raised,
                };
                self.broadcast(meeting, None, &m);
            }
            ClientMsg::Leave => self.remove_peer(slot, "left"),
            ClientMsg::Ping => p.send(ServerMsg::Pong),
            ClientMsg::Join { .. } => p.send(ServerMsg::error(
                "already_joined",
                "This session has joined already.",
            )),
        }
        self.mark(slot);
    }

    fn control(&mut self, meeting: MeetingId, action: RoomAction) -> Result<(), String> {
        let Some(room) = self.rooms.get_mut(&meeting) else {
            return Err("nobody is in this meeting".into());
        };
        let find = |this: &Self, pid: &ParticipantId| -> Result<usize, String> {
            this.by_pid
                .get(pid)
                .copied()
                .filter(|s| {
                    this.peers[*s]
                        .as_ref()
                        .is_some_and(|p| p.meeting == meeting)
                })
                .ok_or_else(|| "no such participant in this meeting".to_string())
        };
        match action {
            RoomAction::Lock | RoomAction::Unlock => {
                room.locked = matches!(action, RoomAction::Lock);
                let locked = room.locked;
                self.broadcast(meeting, None, &ServerMsg::Locked { locked });
            }
            RoomAction::Mute { participant_id } => {
                let s = find(self, &participant_id)?;
                if let Some(p) = self.peers[s].as_mut() {
                    p.forced_mute = true;
                }
                let m = ServerMsg::Mute {
                    participant_id: participant_id.0,
                    kind: MediaKind::Audio,
                    muted: true,
                    by_host: true,
                };
                self.broadcast(meeting, None, &m);
            }
            RoomAction::Remove { participant_id } => {
                let s = find(self, &participant_id)?;
                if let Some(p) = self.peers[s].as_ref() {
                    p.send(ServerMsg::Closed {
                        reason: "removed".into(),
                        message: "The host removed you from the meeting.".into(),
                    });
                }
                self.remove_peer(s, "removed");
            }
            RoomAction::End => {
                for s in room.peers.clone() {
                    if let Some(p) = self.peers[s].as_ref() {
                        p.send(ServerMsg::Closed {
                            reason: "ended".into(),
                            message: "The host ended the meeting for everyone.".into(),
                        });
                    }
                    self.remove_peer(s, "ended");
                }
            }
        }
        Ok(())
    }

    fn remove_peer(&mut self, slot: usize, reason: &str) {
        let Some(mut p) = self.peers[slot].take() else {
            return;
        };
        p.rtc.disconnect();
        self.free.push(slot);
        self.by_pid.remove(&p.pid);
        self.by_addr.retain(|_, s| *s != slot);
        let meeting = p.meeting;
        if let Some(room) = self.rooms.get_mut(&meeting) {
            room.peers.retain(|s| *s != slot);
            if room.peers.is_empty() {
                room.empty_since = Some(Instant::now());
            }
            if room.speaker.as_ref() == Some(&p.pid) {
                room.speaker = None;
            }
        }
        for s in self.room_peers(meeting) {
            if let Some(o) = self.peers[s].as_mut() {
                close_tracks_from(o, slot, None);
            }
            self.mark(s);
        }
        self.broadcast(
            meeting,
            None,
            &ServerMsg::ParticipantLeft {
                participant_id: p.pid.0.clone(),
                reason: reason.to_string(),
            },
        );
        // Dropping the sender ends the signaling session's receive loop.
        drop(p.tx);
        self.reporter.participation(ParticipationChanged {
            meeting,
            participant: p.pid.clone(),
            joined: false,
            at: unix_now(),
        });
        tracing::info!(worker = self.index, %meeting, participant = %p.pid, reason, "participant left");
    }

    /// Dynacast: asks each simulcast publisher to send only the layers someone watches.
    fn update_publisher_layers(&mut self) {
        let mut wanted: Vec<(usize, Mid, Vec<&'static str>)> = Vec::new();
        for (slot, p) in self.peers.iter().enumerate() {
            let Some(p) = p else { continue };
            for t in p.tracks_in.iter().filter(|t| t.simulcast && t.active) {
                let mut ranks = [false; 3];
                for &s in self
                    .rooms
                    .get(&p.meeting)
                    .map(|r| r.peers.as_slice())
                    .unwrap_or(&[])
                {
                    let Some(sub) = self.peers[s].as_ref() else {
                        continue;
                    };
                    for o in &sub.tracks_out {
                        if o.from == slot
                            && o.src_mid == t.mid
                            && matches!(o.state, OutState::Open(_))
                            && !o.paused
                        {
                            ranks[wanted_rank(o.wanted_height, sub.bwe_bps)] = true;
                        }
                    }
                }
                let layers: Vec<&'static str> = LAYERS
                    .iter()
                    .zip(ranks)
                    .filter(|(_, on)| *on)
                    .map(|(l, _)| *l)
                    .collect();
                if t.layers_requested.as_ref() != Some(&layers) {
                    wanted.push((slot, t.mid, layers));
                }
            }
        }
        for (slot, mid, layers) in wanted {
            let Some(p) = self.peers[slot].as_mut() else {
                continue;
            };
            if let Some(t) = p.tracks_in.iter_mut().find(|t| t.mid == mid) {
                t.layers_requested = Some(layers.clone());
            }
            p.send(ServerMsg::Layers {
                mid: mid.to_string(),
                active: layers.iter().map(|l| l.to_string()).collect(),
            });
        }
    }

    fn housekeeping(&mut self, now: Instant) {
        // A session whose queue overflowed is not reading: its client is gone or hostile.
        for slot in 0..self.peers.len() {
            if self.peers[slot]
                .as_ref()
                .is_some_and(|p| p.overflowed.get())
            {
                self.remove_peer(slot, "slow_reader");
            }
        }
        self.update_publisher_layers();
        // Active speaker per room: the loudest participant above a floor.
        let mut changes = Vec::new();
        for (meeting, room) in &mut self.rooms {
            let loudest = room
                .peers
                .iter()
                .filter_map(|&s| self.peers[s].as_ref())
                .filter(|p| p.loudness > 30.0 && !p.audio_muted && !p.forced_mute)
                .max_by(|a, b| a.loudness.total_cmp(&b.loudness))
                .map(|p| p.pid.clone());
            if loudest.is_some() && loudest != room.speaker {
                room.speaker = loudest.clone();
                changes.push((*meeting, loudest));
            }
        }
        for (meeting, speaker) in changes {
            self.broadcast(
                meeting,
                None,
                &ServerMsg::ActiveSpeaker {
                    participant_id: speaker.map(|s| s.0),
                },
            );
        }
        let grace = self.room_grace;
        let closed: Vec<MeetingId> = self
            .rooms
            .iter()
            .filter(|(_, r)| {
                r.empty_since
                    .is_some_and(|t| now.duration_since(t) >= grace)
            })
            .map(|(m, _)| *m)
            .collect();
        for m in closed {
            self.rooms.remove(&m);
            self.reporter.room_closed(m);
            tracing::info!(worker = self.index, meeting = %m, "room closed");
        }
        self.flush_stats();
    }

    fn flush_stats(&mut self) {
        let c = std::mem::take(&mut self.counts);
        let s = &self.stats;
        s.rtp_in.fetch_add(c.rtp_in, Ordering::Relaxed);
        s.rtp_out.fetch_add(c.rtp_out, Ordering::Relaxed);
        s.packets_in.fetch_add(c.packets_in, Ordering::Relaxed);
        s.bytes_in.fetch_add(c.bytes_in, Ordering::Relaxed);
        s.packets_out.fetch_add(c.packets_out, Ordering::Relaxed);
        s.bytes_out.fetch_add(c.bytes_out, Ordering::Relaxed);
        s.dropped_out.fetch_add(c.dropped_out, Ordering::Relaxed);
        s.garbage_in.fetch_add(c.garbage_in, Ordering::Relaxed);
        let live = self.peers.iter().flatten();
        let (mut n, mut tracks, mut bwe) = (0u64, 0u64, 0u64);
        for p in live {
            n += 1;
            tracks += p.tracks_in.iter().filter(|t| t.active).count() as u64;
            bwe += p.bwe_bps.unwrap_or(0);
        }
        s.participants.store(n, Ordering::Relaxed);
        s.tracks.store(tracks, Ordering::Relaxed);
        s.bwe_bps_sum.store(bwe, Ordering::Relaxed);
        s.rooms.store(self.rooms.len() as u64, Ordering::Relaxed);
    }
}

/// RTP, not RTCP (RFC 5761: RTCP packet types 192–223 sit where RTP's marker+PT would), and
/// not STUN/DTLS (their first byte is below 128). Headers are clear text under SRTP.
/// A client sends at most camera, microphone, screen and screen audio, each on its own
/// m-line; a few more allow for m-lines being replaced. Anything beyond is not a client.
pub const MAX_SOURCES: usize = 16;

/// Checks an offer's `sources` before anything of it is kept.
fn check_sources(sources: &HashMap<String, crate::proto::signal::Source>) -> Result<(), String> {
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

fn is_rtp(b: &[u8]) -> bool {
    b.len() >= 12 && b[0] & 0xC0 == 0x80 && !(192..=223).contains(&b[1])
}

/// Stops (renegotiates away) what `p` receives from the publisher in `from` (one track, or all).
fn close_tracks_from(p: &mut Peer, from: usize, mid: Option<Mid>) {
    p.tracks_out.retain_mut(|t| {
        if t.from != from || mid.is_some_and(|m| m != t.src_mid) {
            return true;
        }
        match t.state {
            OutState::ToOpen => false,
            OutState::Negotiating(m) | OutState::Open(m) => {
                t.state = OutState::ToStop(m);
                true
            }
            _ => true,
        }
    });
}
