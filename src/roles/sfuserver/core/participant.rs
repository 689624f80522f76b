//! One participant on this worker: its str0m `Rtc` (RTP mode), its negotiation state, the
//! tracks it publishes (`TrackIn`) and the others' tracks it receives (`TrackOut`).
//!
//! Negotiation rule (see the `proto` module doc): the server is polite. Its own offers add
//! and stop the m-lines of received tracks; a client offer that crosses one wins, and what
//! the server's offer carried is offered again afterwards.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::Rtc;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::PayloadParams;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind as StrKind, Mid, Pt, Rid};
use str0m::rtp::Ssrc;

use super::codec::Kind;
use super::rewrite::Rewriter;
use super::{PeerKey, TrackKey};
use crate::ids::{MeetingId, ParticipantId};
use crate::proto::signal::{MediaKind, ParticipantInfo, Role, ServerMsg, Source, TrackInfo};

/// Simulcast layers our client sends, smallest first ("quarter", "half", "full"). A
/// layer's index here is its number in the forwarder (0 also for a track without
/// simulcast).
pub const LAYERS: [&str; 3] = ["q", "h", "f"];

/// At most one keyframe request per publisher track and layer in this interval.
pub const KEYFRAME_INTERVAL: Duration = Duration::from_millis(500);

pub fn layer_of(rid: Option<Rid>) -> u8 {
    rid.and_then(|r| LAYERS.iter().position(|l| *r == **l))
        .map_or(0, |i| i as u8)
}

/// A track this participant publishes (we receive it).
pub struct TrackIn {
    pub mid: Mid,
    pub kind: MediaKind,
    pub source: Source,
    pub active: bool,
    /// Whether the publisher offered simulcast layers for this track.
    pub simulcast: bool,
    /// The layers we last asked the publisher to send (dynacast), by rid.
    pub layers_requested: Option<Vec<&'static str>>,
    /// The layer ranks each worker's viewers want (bit i = `LAYERS[i]`), by worker.
    pub wants: Vec<u8>,
    pub last_keyframe_request: [Option<Instant>; 3],
    /// Audio top-K held this stream back; the next forwarded packet resumes it.
    pub held: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutState {
    ToOpen,
    Negotiating(Mid),
    Open(Mid),
    ToStop(Mid),
    NegotiatingStop(Mid),
}

/// A viewer's payload type for a publisher's, its clock rate and codec.
pub type OutCodec = (Pt, u32, Kind);

/// Payload types remembered per outgoing track (`TrackOut::pt_map`).
const PT_MAP: usize = 4;

/// Another participant's track that this participant receives.
pub struct TrackOut {
    pub src: TrackKey,
    pub from_pid: ParticipantId,
    pub kind: MediaKind,
    pub source: Source,
    pub simulcast: bool,
    pub state: OutState,
    /// The send stream (main SSRC) once open.
    pub ssrc: Option<Ssrc>,
    /// Simulcast: the layer we want; the rewriter knows the one being forwarded.
    pub target: Option<u8>,
    /// The size the client shows this video at (from `layer`); None = not told yet.
    pub wanted_height: Option<u32>,
    pub paused: bool,
    /// Video: wait for a keyframe before sending (a new viewer, a resumed tile).
    pub need_keyframe: bool,
    /// The layer whose keyframe was asked for while the viewer was still connecting (it is
    /// kept and sent once the viewer is connected; see `Core::start_viewing`).
    pub asked_early: Option<u8>,
    /// The mid being negotiated was taken from `Participant::free_mids`.
    pub reused: bool,
    pub rewriter: Rewriter,
    /// A reused m-line keeps its send stream (SSRC): the numbering of the track it carried
    /// before goes on with this one (`Rewriter::continued`).
    pub carried: Option<Rewriter>,
    /// Publisher payload type → ours, and its clock rate (learned per payload type). Inline:
    /// it is read for every packet forwarded, and a heap list cost a cache miss each time
    /// (2.5 % of the server's CPU in a 25×25 meeting). A track uses one or two payload types.
    pub pt_map: [Option<(Pt, Option<OutCodec>)>; PT_MAP],
}

impl TrackOut {
    pub fn new(
        src: TrackKey,
        from_pid: ParticipantId,
        kind: MediaKind,
        source: Source,
        simulcast: bool,
    ) -> TrackOut {
        TrackOut {
            src,
            from_pid,
            kind,
            source,
            simulcast,
            state: OutState::ToOpen,
            ssrc: None,
            target: None,
            wanted_height: None,
            paused: false,
            need_keyframe: kind == MediaKind::Video,
            asked_early: None,
            reused: false,
            rewriter: Rewriter::new(kind == MediaKind::Video),
            carried: None,
            pt_map: [None; PT_MAP],
        }
    }

    pub fn mid(&self) -> Option<Mid> {
        match self.state {
            OutState::ToOpen => None,
            OutState::Negotiating(m)
            | OutState::Open(m)
            | OutState::ToStop(m)
            | OutState::NegotiatingStop(m) => Some(m),
        }
    }

    /// Our payload type, clock rate and codec for the publisher's `pt`, matched once per
    /// payload type against this session's codecs (`params`: the publisher's).
    pub fn map_pt(&mut self, pt: Pt, params: &[PayloadParams], rtc: &Rtc) -> Option<OutCodec> {
        if let Some((_, m)) = self.pt_map.iter().flatten().find(|(p, _)| *p == pt) {
            return *m;
        }
        let m = params.iter().find(|p| p.pt() == pt).and_then(|src| {
            rtc.codec_config().match_params(*src).map(|ours| {
                (
                    ours.pt(),
                    ours.spec().clock_rate.get(),
                    Kind::of(ours.spec().codec),
                )
            })
        });
        // More payload types than the map holds are matched each time (not seen in practice).
        if let Some(free) = self.pt_map.iter_mut().find(|e| e.is_none()) {
            *free = Some((pt, m));
        }
        m
    }
}

pub struct Participant {
    pub key: PeerKey,
    pub pid: ParticipantId,
    pub meeting: MeetingId,
    pub name: String,
    pub host: bool,
    /// Which signaling session (of this participant id) owns it: a replaced session's late
    /// `Leave` must not remove its successor.
    pub session: u64,
    pub rtc: Rtc,
    pub pending: Option<SdpPendingOffer>,
    pub tracks_in: Vec<TrackIn>,
    /// Stable indexes (the forwarder's subscription lists point here); None = free.
    pub tracks_out: Vec<Option<TrackOut>>,
    /// Inactive m-lines (after a track went away) ready to carry a new track of their kind,
    /// with where the numbering of the stream they carried stopped.
    pub free_mids: Vec<(Mid, MediaKind, Option<Rewriter>)>,
    /// Sources the client declared for its send m-lines, by mid (replaced by each offer).
    pub sources: HashMap<String, Source>,
    pub audio_muted: bool,
    pub video_muted: bool,
    /// Muted by the host: its audio is dropped until it unmutes itself.
    pub forced_mute: bool,
    pub hand: bool,
    /// When the hand went up (unix ms; 0: down): the hand queue's order.
    pub hand_at: i64,
    /// What the person is now (a host may promote or demote them).
    pub role: Role,
    /// What they were given at join (a demoted co-host goes back to it).
    pub base_role: Role,
    /// Waiting in the lobby: not a member of the room, no media, no messages but lobby ones.
    pub lobby: bool,
    /// The meeting lets only hosts share their screen.
    pub screens_hosts_only: bool,
    /// An invitee who may claim host powers when no host is left.
    pub may_claim_host: bool,
    /// When its last reaction was relayed (one per `REACTION_INTERVAL_MS`).
    pub last_reaction: Option<Instant>,
    /// Its connection as str0m's last stats saw it: loss (percent, the worse direction),
    /// round-trip time, and whether anything arrived from it since the stats before.
    pub loss_pct: f32,
    pub rtt_ms: u32,
    pub receiving: bool,
    pub peer_bytes_rx: u64,
    pub next_timeout: Instant,
    pub dirty: bool,
    /// A track must be offered or withdrawn (some `tracks_out` is `ToOpen` or `ToStop`):
    /// `negotiate_if_needed`, called at every poll, looks at the tracks only then.
    renegotiate: bool,
    /// Latest egress bandwidth estimate towards this participant, bits per second.
    pub bwe_bps: Option<u64>,
    /// What we last told str0m this participant should get (its probing target).
    pub desired_bps: u64,
    pub connected: bool,
    /// Connected, and str0m's output of that moment (the handshake's last flight) sent:
    /// media may go (`Core::poll_peer`).
    pub media_ready: bool,
    /// Slot in the room's audio table (top-K, active speaker).
    pub audio_slot: Option<usize>,
    /// Incoming SSRC → (track index, layer), learned from str0m's receive streams.
    pub rx_map: Vec<(Ssrc, u16, u8)>,
    /// Publisher payload types → codec kind, per incoming track (from its params).
    pub params: Arc<[PayloadParams]>,
}

/// Why a client's SDP was not taken.
#[derive(Debug)]
pub enum SdpError {
    /// Refused; the participant's session is as it was (the client may try again).
    Refused(String),
    /// str0m panicked on it: the participant's `Rtc` is in an unknown state and must go
    /// (the worker and everyone else on it carry on).
    Broken(String),
}

impl std::fmt::Display for SdpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SdpError::Refused(e) => f.write_str(e),
            SdpError::Broken(e) => write!(f, "the media engine failed on it: {e}"),
        }
    }
}

/// Runs a str0m call on one participant's `Rtc`, turning a panic into [`SdpError::Broken`].
/// str0m 0.25 panics on some client offers ("Pt locked multiple times", found by the `sdp`
/// fuzz target: fuzz/known-crashes/sdp/); uncaught, that would end the media worker and
/// every meeting on it. Only the `Rtc` the closure borrows can be left half-changed, and
/// its owner drops it (hence `AssertUnwindSafe`).
pub fn contained<T>(f: impl FnOnce() -> T) -> Result<T, SdpError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|e| {
        let msg = e
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| e.downcast_ref::<&str>().copied())
            .unwrap_or("a panic")
            .to_string();
        SdpError::Broken(msg)
    })
}

impl Participant {
    pub fn new(
        key: PeerKey,
        pid: ParticipantId,
        meeting: MeetingId,
        name: String,
        host: bool,
        rtc: Rtc,
        now: Instant,
    ) -> Participant {
        Participant {
            key,
            pid,
            meeting,
            name,
            host,
            session: 0,
            rtc,
            pending: None,
            tracks_in: Vec::new(),
            tracks_out: Vec::new(),
            free_mids: Vec::new(),
            sources: HashMap::new(),
            audio_muted: false,
            video_muted: false,
            forced_mute: false,
            hand: false,
            hand_at: 0,
            role: if host { Role::Owner } else { Role::Participant },
            base_role: Role::Participant,
            lobby: false,
            screens_hosts_only: false,
            may_claim_host: false,
            last_reaction: None,
            loss_pct: 0.0,
            rtt_ms: 0,
            receiving: true,
            peer_bytes_rx: 0,
            next_timeout: now,
            dirty: false,
            renegotiate: false,
            bwe_bps: None,
            desired_bps: 0,
            connected: false,
            media_ready: false,
            audio_slot: None,
            rx_map: Vec::new(),
            params: Arc::from(Vec::new()),
        }
    }

    pub fn info(&self) -> ParticipantInfo {
        ParticipantInfo {
            participant_id: self.pid.clone(),
            name: self.name.clone(),
            host: self.host,
            audio_muted: self.audio_muted || self.forced_mute,
            video_muted: self.video_muted,
            hand_raised: self.hand,
            role: self.role,
            hand_at: self.hand_at,
        }
    }

    pub fn outs(&self) -> impl Iterator<Item = (usize, &TrackOut)> {
        self.tracks_out
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.as_ref().map(|t| (i, t)))
    }

    pub fn outs_mut(&mut self) -> impl Iterator<Item = (usize, &mut TrackOut)> {
        self.tracks_out
            .iter_mut()
            .enumerate()
            .filter_map(|(i, t)| t.as_mut().map(|t| (i, t)))
    }

    /// Stores a new received track in a free index.
    pub fn add_out(&mut self, t: TrackOut) -> usize {
        self.renegotiate = true;
        match self.tracks_out.iter().position(Option::is_none) {
            Some(i) => {
                self.tracks_out[i] = Some(t);
                i
            }
            None => {
                self.tracks_out.push(Some(t));
                self.tracks_out.len() - 1
            }
        }
    }

    /// Withdraws outgoing track `oi`: never offered, it is gone; offered or open, it is
    /// deactivated in the next offer.
    pub fn stop_out(&mut self, oi: usize) {
        let Some(slot) = self.tracks_out.get_mut(oi) else {
            return;
        };
        let Some(t) = slot.as_mut() else { return };
        match t.state {
            OutState::ToOpen => *slot = None,
            OutState::Negotiating(m) | OutState::Open(m) => {
                t.state = OutState::ToStop(m);
                self.renegotiate = true;
            }
            _ => {}
        }
    }

    /// Our offer is void (the client's crossing offer replaced it, or the answer was refused):
    /// what it was changing must be offered again. Reused mids go back to the free list.
    fn revert_negotiation(&mut self) {
        self.renegotiate = true;
        let free = &mut self.free_mids;
        for t in self.tracks_out.iter_mut().flatten() {
            t.state = match t.state {
                OutState::Negotiating(m) => {
                    if t.reused {
                        free.push((m, t.kind, t.carried.take()));
                        t.reused = false;
                    }
                    OutState::ToOpen
                }
                OutState::NegotiatingStop(m) => OutState::ToStop(m),
                s => s,
            };
        }
    }

    /// A client offer. The server is polite: a pending server offer is dropped (str0m's
    /// `accept_offer` discards it) and its changes are offered again afterwards.
    pub fn accept_offer(&mut self, sdp: &str) -> Result<ServerMsg, SdpError> {
        let offer = SdpOffer::from_sdp_string(sdp)
            .map_err(|e| SdpError::Refused(format!("unreadable SDP offer: {e}")))?;
        let rtc = &mut self.rtc;
        let answer = contained(|| rtc.sdp_api().accept_offer(offer))?
            .map_err(|e| SdpError::Refused(format!("offer refused: {e}")))?;
        if self.pending.take().is_some() {
            self.revert_negotiation();
        }
        self.params = Arc::from(self.rtc.codec_config().params().to_vec());
        tracing::debug!(participant = %self.pid, "answered a client offer");
        Ok(ServerMsg::Answer {
            sdp: answer.to_sdp_string(),
        })
    }

    /// The client's answer to our offer. Returns the indexes of the tracks that just
    /// opened (video among them needs a keyframe from its publisher).
    pub fn accept_answer(&mut self, sdp: &str) -> Result<Vec<usize>, SdpError> {
        let Some(pending) = self.pending.take() else {
            return Err(SdpError::Refused("there is no offer to answer".into()));
        };
        let answer = SdpAnswer::from_sdp_string(sdp)
            .map_err(|e| SdpError::Refused(format!("unreadable SDP answer: {e}")))?;
        let rtc = &mut self.rtc;
        if let Err(e) = contained(|| rtc.sdp_api().accept_answer(pending, answer))? {
            // Never give up on a participant for one bad round: offer everything again.
            self.revert_negotiation();
            return Err(SdpError::Refused(format!("answer refused: {e}")));
        }
        let mut opened = Vec::new();
        let mut api = self.rtc.direct_api();
        for (i, slot) in self.tracks_out.iter_mut().enumerate() {
            let Some(t) = slot else { continue };
            match t.state {
                OutState::Negotiating(m) => {
                    t.reused = false;
                    // The send stream str0m made for this m-line: we write to it directly and
                    // answer its NACKs from the shared packet cache.
                    match api.stream_tx_by_mid(m, None) {
                        Some(s) => {
                            s.set_nack_to_app(true);
                            s.set_unpaced(true);
                            t.ssrc = Some(s.ssrc());
                            t.state = OutState::Open(m);
                            t.need_keyframe = t.kind == MediaKind::Video;
                            t.rewriter = match t.carried.take() {
                                Some(r) => r.continued(),
                                None => Rewriter::new(t.kind == MediaKind::Video),
                            };
                            t.pt_map = [None; PT_MAP];
                            opened.push(i);
                        }
                        None => {
                            tracing::info!(mid = %m, "no send stream for an accepted m-line");
                            t.state = OutState::ToOpen;
                            self.renegotiate = true;
                        }
                    }
                }
                OutState::NegotiatingStop(m) => {
                    // Deactivated m-lines stay in the session (inactive, still BUNDLEd) for reuse.
                    let r = std::mem::replace(&mut t.rewriter, Rewriter::new(false));
                    self.free_mids.push((m, t.kind, Some(r)));
                    *slot = None;
                }
                _ => {}
            }
        }
        Ok(opened)
    }

    /// If tracks must be added or removed and no offer is outstanding, makes one. Returns
    /// the messages to send (the `tracks` map, then the offer).
    pub fn negotiate_if_needed(&mut self) -> Option<[ServerMsg; 2]> {
        if self.pending.is_some() || !self.renegotiate {
            return None;
        }
        // Every `ToOpen` and `ToStop` is taken up below.
        self.renegotiate = false;
        let mut change = self.rtc.sdp_api();
        for t in self.tracks_out.iter_mut().flatten() {
            match t.state {
                OutState::ToOpen => {
                    // Reuse an inactive m-line of the same kind: the SDP does not grow as
                    // people come and go.
                    let mid = match self.free_mids.iter().position(|(_, k, _)| *k == t.kind) {
                        Some(i) => {
                            let (mid, _, r) = self.free_mids.swap_remove(i);
                            change.set_direction(mid, Direction::SendOnly);
                            t.reused = true;
                            t.carried = r;
                            mid
                        }
                        None => {
                            let kind = match t.kind {
                                MediaKind::Audio => StrKind::Audio,
                                MediaKind::Video => StrKind::Video,
                            };
                            change.add_media(
                                kind,
                                Direction::SendOnly,
                                Some(t.from_pid.0.clone()),
                                None,
                                None,
                            )
                        }
                    };
                    t.state = OutState::Negotiating(mid);
                }
                OutState::ToStop(mid) => {
                    // Inactive rather than stopped: a stopped (port 0) m-line leaves the
                    // BUNDLE group, and an answer rejecting every m-line then has no group,
                    // which str0m refuses.
                    change.set_direction(mid, Direction::Inactive);
                    t.state = OutState::NegotiatingStop(mid);
                }
                _ => {}
            }
        }
        if !change.has_changes() {
            return None;
        }
        let (offer, pending) = change.apply()?;
        self.pending = Some(pending);
        tracing::debug!(participant = %self.pid, "sending an offer");
        Some([
            ServerMsg::Tracks {
                tracks: self.track_map(),
            },
            ServerMsg::Offer {
                sdp: offer.to_sdp_string(),
            },
        ])
    }

    fn track_map(&self) -> Vec<TrackInfo> {
        self.outs()
            .filter(|(_, t)| !matches!(t.state, OutState::ToStop(_) | OutState::NegotiatingStop(_)))
            .filter_map(|(_, t)| {
                t.mid().map(|m| TrackInfo {
                    mid: m.to_string(),
                    participant_id: t.from_pid.clone(),
                    kind: t.kind,
                    source: t.source,
                })
            })
            .collect()
    }

    /// Asks this (publishing) participant for a keyframe on track `ti`, layer `layer`, at
    /// most every `KEYFRAME_INTERVAL`. Returns whether a request went out.
    pub fn request_keyframe(
        &mut self,
        ti: usize,
        layer: u8,
        kind: KeyframeRequestKind,
        now: Instant,
    ) -> bool {
        let Some(t) = self.tracks_in.get_mut(ti) else {
            return false;
        };
        let l = usize::from(layer).min(2);
        if t.last_keyframe_request[l].is_some_and(|at| now.duration_since(at) < KEYFRAME_INTERVAL) {
            return false;
        }
        t.last_keyframe_request[l] = Some(now);
        let rid = t.simulcast.then(|| Rid::from(LAYERS[l]));
        let mid = t.mid;
        match self.rtc.direct_api().stream_rx_by_mid(mid, rid) {
            Some(s) => {
                s.request_keyframe(kind);
                true
            }
            None => false,
        }
    }

    pub fn add_track_in(&mut self, mid: Mid, kind: MediaKind, simulcast: bool) -> usize {
        let source = self
            .sources
            .get(&mid.to_string())
            .copied()
            .unwrap_or(match kind {
                MediaKind::Audio => Source::Microphone,
                MediaKind::Video => Source::Camera,
            });
        self.tracks_in.push(TrackIn {
            mid,
            kind,
            source,
            active: true,
            simulcast,
            layers_requested: None,
            wants: Vec::new(),
            last_keyframe_request: [None; 3],
            held: false,
        });
        self.tracks_in.len() - 1
    }

    /// The track and layer an incoming SSRC belongs to (str0m maps SSRCs to mid and rid).
    pub fn rx_track(&mut self, ssrc: Ssrc) -> Option<(u16, u8)> {
        if let Some(&(_, t, l)) = self.rx_map.iter().find(|(s, _, _)| *s == ssrc) {
            return Some((t, l));
        }
        let mut api = self.rtc.direct_api();
        let s = api.stream_rx(&ssrc)?;
        let (mid, rid) = (s.mid(), s.rid());
        let ti = self.tracks_in.iter().position(|t| t.mid == mid)?;
        let found = (u16::try_from(ti).ok()?, layer_of(rid));
        if self.rx_map.len() >= 32 {
            self.rx_map.remove(0);
        }
        self.rx_map.push((ssrc, found.0, found.1));
        Some(found)
    }
}

/// The simulcast layer for a video shown `height` pixels high, capped by the bandwidth
/// estimate towards the viewer, among the layers (`available`, indexes) the publisher
/// actually sends.
pub fn choose_layer(height: Option<u32>, bwe_bps: Option<u64>, available: &[u8]) -> Option<u8> {
    let want = wanted_rank(height, bwe_bps) as u8;
    // The best available layer not above what we want; else the smallest available.
    available
        .iter()
        .copied()
        .filter(|l| *l <= want)
        .max()
        .or_else(|| available.iter().copied().min())
}

/// The layer (index into `LAYERS`) a viewer should get for a tile `height` pixels high, given
/// the bandwidth estimate towards it — whether or not the publisher sends that layer now.
pub fn wanted_rank(height: Option<u32>, bwe_bps: Option<u64>) -> usize {
    let by_size = match height {
        Some(h) if h <= 240 => 0,
        Some(h) if h <= 480 => 1,
        Some(_) => 2,
        None => 1,
    };
    // Rough needs of each layer; a viewer whose estimate is below gets a smaller one.
    let by_bw = match bwe_bps {
        Some(b) if b < 350_000 => 0,
        Some(b) if b < 1_000_000 => 1,
        _ => 2,
    };
    by_size.min(by_bw)
}

/// What a layer needs, bits per second (the probing target for a viewer).
pub fn layer_bps(rank: usize) -> u64 {
    [250_000, 700_000, 1_800_000][rank.min(2)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_follows_size_bandwidth_and_availability() {
        let all = [0, 1, 2];
        assert_eq!(choose_layer(Some(180), None, &all), Some(0));
        assert_eq!(choose_layer(Some(360), None, &all), Some(1));
        assert_eq!(choose_layer(Some(720), None, &all), Some(2));
        assert_eq!(choose_layer(Some(720), Some(500_000), &all), Some(1));
        assert_eq!(choose_layer(Some(720), Some(100_000), &all), Some(0));
        // The publisher dropped its top layer: the best below is used.
        assert_eq!(choose_layer(Some(720), None, &[0, 1]), Some(1));
        // Only a bigger layer exists: use the smallest available.
        assert_eq!(choose_layer(Some(100), None, &[1, 2]), Some(1));
        assert_eq!(choose_layer(None, None, &[]), None);
        assert_eq!(layer_of(Some(Rid::from("f"))), 2);
        assert_eq!(layer_of(None), 0);
    }
}
