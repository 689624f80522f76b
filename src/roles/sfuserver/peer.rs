//! One participant inside a media worker: its str0m `Rtc`, its negotiation state, the tracks
//! it publishes (`TrackIn`) and the others' tracks it receives (`TrackOut`).
//!
//! Sans-IO like str0m itself: nothing here touches a socket; the worker feeds inputs in and
//! takes transmits out. Negotiation rule (see `proto` module doc): the server is polite.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use std::cell::Cell;
use str0m::Rtc;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, KeyframeRequestKind, MediaKind as StrKind, Mid, Rid};
use tokio::sync::mpsc::Sender;
use tokio::sync::mpsc::error::TrySendError;

use crate::ids::{MeetingId, ParticipantId};
use crate::proto::signal::{MediaKind, ParticipantInfo, ServerMsg, Source, TrackInfo};

/// Simulcast layers our client sends, smallest first ("quarter", "half", "full").
pub const LAYERS: [&str; 3] = ["q", "h", "f"];

/// At most one keyframe request per publisher track and layer in this interval.
const KEYFRAME_INTERVAL: Duration = Duration::from_millis(500);

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
    /// Layers seen recently (simulcast), with when.
    pub layers_seen: Vec<(Rid, Instant)>,
    last_keyframe_request: Vec<(Option<Rid>, Instant)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutState {
    ToOpen,
    Negotiating(Mid),
    Open(Mid),
    ToStop(Mid),
    NegotiatingStop(Mid),
}

/// Another participant's track that this participant receives.
pub struct TrackOut {
    /// Worker slot of the publisher, and its id (slots are reused; the id is not).
    pub from: usize,
    pub from_pid: ParticipantId,
    pub src_mid: Mid,
    pub kind: MediaKind,
    pub source: Source,
    pub state: OutState,
    /// Simulcast: the layer being forwarded, and the one we want (switch at its keyframe).
    pub current: Option<Rid>,
    pub target: Option<Rid>,
    /// The size the client shows this video at (from `layer`); None = not told yet.
    pub wanted_height: Option<u32>,
    pub paused: bool,
    /// The mid being negotiated was taken from `Peer::free_mids`.
    pub reused: bool,
}

impl TrackOut {
    pub fn mid(&self) -> Option<Mid> {
        match self.state {
            OutState::ToOpen => None,
            OutState::Negotiating(m)
            | OutState::Open(m)
            | OutState::ToStop(m)
            | OutState::NegotiatingStop(m) => Some(m),
        }
    }
}

pub struct Peer {
    pub pid: ParticipantId,
    pub meeting: MeetingId,
    pub name: String,
    pub host: bool,
    pub rtc: Rtc,
    /// This participant's signaling session: bounded, so a client that stops reading cannot
    /// make the server queue without end.
    pub tx: Sender<ServerMsg>,
    /// Which signaling session (of this participant id) owns the peer: a replaced session's
    /// late `Leave` must not remove its successor.
    pub session: u64,
    /// Set when a message did not fit in `tx`: the session is not reading; the worker drops
    /// the participant (reason `slow_reader`) at its next housekeeping.
    pub overflowed: Cell<bool>,
    pub pending: Option<SdpPendingOffer>,
    pub tracks_in: Vec<TrackIn>,
    pub tracks_out: Vec<TrackOut>,
    /// Inactive m-lines (after a track went away) ready to carry a new track of their kind.
    pub free_mids: Vec<(Mid, MediaKind)>,
    /// Sources the client declared for its send m-lines, by mid.
    pub sources: HashMap<String, Source>,
    pub audio_muted: bool,
    pub video_muted: bool,
    /// Muted by the host: its audio is dropped until it unmutes itself.
    pub forced_mute: bool,
    pub hand: bool,
    pub next_timeout: Instant,
    pub dirty: bool,
    /// Smoothed loudness (0 = silence … 127 = loudest) from the audio-level extension.
    pub loudness: f32,
    /// Latest egress bandwidth estimate towards this participant, bits per second.
    pub bwe_bps: Option<u64>,
    pub connected: bool,
    /// Last reported NACK totals per outgoing stream (for deltas into the counters).
    pub egress_nacks: Vec<((Mid, Option<Rid>), u64)>,
}

impl Peer {
    pub fn new(
        claims: &crate::tokens::JoinClaims,
        rtc: Rtc,
        tx: Sender<ServerMsg>,
        session: u64,
        now: Instant,
    ) -> Peer {
        Peer {
            pid: claims.participant.clone(),
            meeting: claims.meeting,
            name: claims.name.clone(),
            host: claims.host,
            rtc,
            tx,
            session,
            overflowed: Cell::new(false),
            pending: None,
            tracks_in: Vec::new(),
            tracks_out: Vec::new(),
            free_mids: Vec::new(),
            sources: HashMap::new(),
            audio_muted: false,
            video_muted: false,
            forced_mute: false,
            hand: false,
            next_timeout: now,
            dirty: false,
            loudness: 0.0,
            bwe_bps: None,
            connected: false,
            egress_nacks: Vec::new(),
        }
    }

    pub fn info(&self) -> ParticipantInfo {
        ParticipantInfo {
            participant_id: self.pid.0.clone(),
            name: self.name.clone(),
            host: self.host,
            audio_muted: self.audio_muted || self.forced_mute,
            video_muted: self.video_muted,
            hand_raised: self.hand,
        }
    }

    /// Sends to this participant's signaling session. A closed session is noticed by the
    /// worker through `Leave`; a full one marks the participant as a slow reader.
    pub fn send(&self, m: ServerMsg) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(m) {
            self.overflowed.set(true);
        }
    }

    /// Our offer is void (the client's crossing offer replaced it, or the answer was refused):
    /// what it was changing must be offered again. Reused mids go back to the free list.
    fn revert_negotiation(&mut self) {
        for t in &mut self.tracks_out {
            t.state = match t.state {
                OutState::Negotiating(m) => {
                    if t.reused {
                        self.free_mids.push((m, t.kind));
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
    pub fn accept_offer(&mut self, sdp: &str) -> Result<(), String> {
        let offer =
            SdpOffer::from_sdp_string(sdp).map_err(|e| format!("unreadable SDP offer: {e}"))?;
        let answer = self
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| format!("offer refused: {e}"))?;
        if self.pending.take().is_some() {
            self.revert_negotiation();
        }
        tracing::debug!(participant = %self.pid, "answered a client offer");
        self.send(ServerMsg::Answer {
            sdp: answer.to_sdp_string(),
        });
        Ok(())
    }

    /// The client's answer to our offer. Returns the (publisher slot, publisher mid, layer)
    /// of each track that just opened: each needs a keyframe from its publisher.
    pub fn accept_answer(&mut self, sdp: &str) -> Result<Vec<(usize, Mid, Option<Rid>)>, String> {
        let Some(pending) = self.pending.take() else {
            return Err("there is no offer to answer".into());
        };
        let answer =
            SdpAnswer::from_sdp_string(sdp).map_err(|e| format!("unreadable SDP answer: {e}"))?;
        if let Err(e) = self.rtc.sdp_api().accept_answer(pending, answer) {
            // Never give up on a participant for one bad round: offer everything again.
            self.revert_negotiation();
            return Err(format!("answer refused: {e}"));
        }
        let mut opened = Vec::new();
        for t in &mut self.tracks_out {
            if let OutState::Negotiating(m) = t.state {
                t.state = OutState::Open(m);
                t.reused = false;
                // A new video subscriber needs a keyframe to start decoding; audio does not.
                if t.kind == MediaKind::Video {
                    opened.push((t.from, t.src_mid, t.target));
                }
            }
        }
        // Deactivated m-lines stay in the session (inactive, still BUNDLEd) for reuse.
        let free = &mut self.free_mids;
        self.tracks_out.retain(|t| match t.state {
            OutState::NegotiatingStop(m) => {
                free.push((m, t.kind));
                false
            }
            _ => true,
        });
        Ok(opened)
    }

    /// If tracks must be added or removed and no offer is outstanding, makes and sends one
    /// (preceded by the `tracks` map). Returns whether an offer went out.
    pub fn negotiate_if_needed(&mut self) -> bool {
        if self.pending.is_some() {
            return false;
        }
        let mut change = self.rtc.sdp_api();
        for t in &mut self.tracks_out {
            match t.state {
                OutState::ToOpen => {
                    // Reuse an inactive m-line of the same kind: the SDP does not grow as
                    // people come and go.
                    let mid = match self.free_mids.iter().position(|(_, k)| *k == t.kind) {
                        Some(i) => {
                            let (mid, _) = self.free_mids.swap_remove(i);
                            change.set_direction(mid, Direction::SendOnly);
                            t.reused = true;
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
            return false;
        }
        let Some((offer, pending)) = change.apply() else {
            return false;
        };
        self.pending = Some(pending);
        tracing::debug!(participant = %self.pid, "sending an offer");
        self.send(ServerMsg::Tracks {
            tracks: self.track_map(),
        });
        self.send(ServerMsg::Offer {
            sdp: offer.to_sdp_string(),
        });
        true
    }

    fn track_map(&self) -> Vec<TrackInfo> {
        self.tracks_out
            .iter()
            .filter(|t| !matches!(t.state, OutState::ToStop(_) | OutState::NegotiatingStop(_)))
            .filter_map(|t| {
                t.mid().map(|m| TrackInfo {
                    mid: m.to_string(),
                    participant_id: t.from_pid.0.clone(),
                    kind: t.kind,
                    source: t.source,
                })
            })
            .collect()
    }

    /// Asks this (publishing) participant for a keyframe on `mid`/`rid`, at most every
    /// `KEYFRAME_INTERVAL`. Returns whether a request went out.
    pub fn request_keyframe(
        &mut self,
        mid: Mid,
        rid: Option<Rid>,
        kind: KeyframeRequestKind,
        now: Instant,
    ) -> bool {
        let Some(t) = self.tracks_in.iter_mut().find(|t| t.mid == mid) else {
            return false;
        };
        if let Some((_, at)) = t.last_keyframe_request.iter_mut().find(|(r, _)| *r == rid) {
            if now.duration_since(*at) < KEYFRAME_INTERVAL {
                return false;
            }
            *at = now;
        } else {
            t.last_keyframe_request.push((rid, now));
        }
        match self.rtc.writer(mid) {
            Some(mut w) => w.request_keyframe(rid, kind).is_ok(),
            None => false,
        }
    }

    pub fn add_track_in(&mut self, mid: Mid, kind: MediaKind, simulcast: bool) -> &TrackIn {
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
            layers_seen: Vec::new(),
            last_keyframe_request: Vec::new(),
        });
        let last = self.tracks_in.len() - 1;
        &self.tracks_in[last]
    }
}

/// The simulcast layer for a video shown `height` pixels high, capped by the bandwidth
/// estimate towards the viewer, among the layers the publisher actually sends.
pub fn choose_layer(height: Option<u32>, bwe_bps: Option<u64>, available: &[Rid]) -> Option<Rid> {
    if available.is_empty() {
        return None;
    }
    let want = wanted_rank(height, bwe_bps);
    // The best available layer not above what we want; else the smallest available.
    let mut best: Option<(usize, Rid)> = None;
    for r in available {
        let Some(rank) = LAYERS.iter().position(|l| **r == **l) else {
            continue;
        };
        if rank <= want && best.is_none_or(|(b, _)| rank > b) {
            best = Some((rank, *r));
        }
    }
    best.map(|(_, r)| r).or_else(|| {
        available
            .iter()
            .filter_map(|r| LAYERS.iter().position(|l| **r == **l).map(|p| (p, *r)))
            .min_by_key(|(p, _)| *p)
            .map(|(_, r)| r)
            .or_else(|| available.first().copied())
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rids(v: &[&str]) -> Vec<Rid> {
        v.iter().map(|s| Rid::from(*s)).collect()
    }

    #[test]
    fn layer_follows_size_bandwidth_and_availability() {
        let all = rids(&["q", "h", "f"]);
        assert_eq!(choose_layer(Some(180), None, &all), Some(Rid::from("q")));
        assert_eq!(choose_layer(Some(360), None, &all), Some(Rid::from("h")));
        assert_eq!(choose_layer(Some(720), None, &all), Some(Rid::from("f")));
        assert_eq!(
            choose_layer(Some(720), Some(500_000), &all),
            Some(Rid::from("h"))
        );
        assert_eq!(
            choose_layer(Some(720), Some(100_000), &all),
            Some(Rid::from("q"))
        );
        // The publisher dropped its top layer: the best below is used.
        assert_eq!(
            choose_layer(Some(720), None, &rids(&["q", "h"])),
            Some(Rid::from("h"))
        );
        // Only a bigger layer exists: use the smallest available.
        assert_eq!(
            choose_layer(Some(100), None, &rids(&["h", "f"])),
            Some(Rid::from("h"))
        );
        assert_eq!(choose_layer(None, None, &[]), None);
    }
}
