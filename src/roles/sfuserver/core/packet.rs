//! One received RTP packet as the forwarder keeps it: decrypted once, its payload shared
//! (`Arc`) by every copy sent, by the per-worker retransmission caches and by the handoff to
//! other workers, and the few header values that each copy rewrites or repeats.

use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::media::Pt;
use str0m::rtp::{ExtensionValues, VideoOrientation};

use super::codec::VideoInfo;

/// What is forwarded of a received packet. Cloning it clones an `Arc`, nothing else.
#[derive(Clone, Debug)]
pub struct Pkt {
    /// Extended sequence number on the publisher's stream (simulcast: its layer's stream).
    pub seq: u64,
    /// RTP timestamp as the publisher sent it.
    pub time: u32,
    pub marker: bool,
    /// Payload type in the publisher's session.
    pub pt: Pt,
    pub payload: Arc<[u8]>,
    /// Header extension values repeated to viewers (transport ones are each session's own).
    pub audio_level: Option<i8>,
    pub voice_activity: Option<bool>,
    pub video_orientation: Option<VideoOrientation>,
    pub video: VideoInfo,
    /// The first packet forwarded after the publisher's worker held this stream back (audio
    /// top-K): viewers continue their sequence numbers from here instead of seeing a gap.
    pub resumed: bool,
    /// When the datagram carrying it was received (added-latency measurement, and the
    /// retransmission cache's age).
    pub received: Instant,
}

impl Pkt {
    /// The extension values a copy carries (str0m adds the session's own transport-wide
    /// sequence number, absolute send time and mid).
    pub fn ext_vals(&self) -> ExtensionValues {
        ExtensionValues {
            audio_level: self.audio_level,
            voice_activity: self.voice_activity,
            video_orientation: self.video_orientation,
            ..ExtensionValues::default()
        }
    }
}

/// Recently forwarded packets of one publisher stream (layer), by sequence number: what
/// NACKs are answered from, and what a viewer that has just connected starts on
/// (`since_keyframe`). A fixed ring, so a burst cannot grow it; entries older than
/// `CACHE_AGE` are dropped by `sweep` so the payloads do not stay alive for long.
pub struct PacketRing {
    slots: Box<[Option<Pkt>]>,
    /// The sequence number of the latest packet that starts a keyframe, and the highest one.
    key: Option<u64>,
    newest: u64,
}

pub const RING: usize = 512;
pub const CACHE_AGE: Duration = Duration::from_millis(1500);

impl Default for PacketRing {
    fn default() -> Self {
        PacketRing {
            slots: vec![None; RING].into_boxed_slice(),
            key: None,
            newest: 0,
        }
    }
}

impl PacketRing {
    pub fn put(&mut self, p: &Pkt) {
        if p.video.keyframe && self.key.is_none_or(|k| p.seq > k) {
            self.key = Some(p.seq);
        }
        self.newest = self.newest.max(p.seq);
        self.slots[(p.seq as usize) % RING] = Some(p.clone());
    }

    /// The latest keyframe and every packet received after it, when all of them are here
    /// and the keyframe arrived within `max_age`: a viewer that connects now can start on
    /// it at once instead of asking the publisher for a new one.
    pub fn since_keyframe(
        &self,
        now: Instant,
        max_age: Duration,
    ) -> Option<std::ops::RangeInclusive<u64>> {
        let k = self.key?;
        let fresh = now.saturating_duration_since(self.get(k)?.received) <= max_age;
        let complete =
            self.newest - k < RING as u64 && (k..=self.newest).all(|s| self.get(s).is_some());
        (fresh && complete).then_some(k..=self.newest)
    }

    pub fn get(&self, seq: u64) -> Option<&Pkt> {
        self.slots[(seq as usize) % RING]
            .as_ref()
            .filter(|p| p.seq == seq)
    }

    /// Drops packets received before `now - CACHE_AGE`.
    pub fn sweep(&mut self, now: Instant) {
        for s in self.slots.iter_mut() {
            if s.as_ref()
                .is_some_and(|p| now.saturating_duration_since(p.received) > CACHE_AGE)
            {
                *s = None;
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.slots.iter().all(Option::is_none)
    }
}

#[cfg(test)]
pub(crate) fn test_key(seq: u64, received: Instant) -> Pkt {
    let mut p = test_pkt(seq, 0, received);
    p.video.keyframe = true;
    p
}

#[cfg(test)]
pub(crate) fn test_pkt(seq: u64, time: u32, received: Instant) -> Pkt {
    Pkt {
        seq,
        time,
        marker: false,
        pt: Pt::from(96),
        payload: Arc::from(&[1u8, 2, 3][..]),
        audio_level: None,
        voice_activity: None,
        video_orientation: None,
        video: VideoInfo {
            keyframe: false,
            vp8: None,
        },
        resumed: false,
        received,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_answers_recent_sequence_numbers_only() {
        let t0 = Instant::now();
        let mut r = PacketRing::default();
        for s in 70_000..70_010u64 {
            r.put(&test_pkt(s, 0, t0));
        }
        assert_eq!(r.get(70_005).map(|p| p.seq), Some(70_005));
        // Not stored, and one that maps to an occupied slot but is a different packet.
        assert!(r.get(70_010).is_none());
        assert!(r.get(70_005 - RING as u64).is_none());
        // Overwritten by a packet RING later.
        r.put(&test_pkt(70_005 + RING as u64, 0, t0));
        assert!(r.get(70_005).is_none());
        // Old packets go at the sweep; the payloads are released.
        r.sweep(t0 + CACHE_AGE + Duration::from_millis(1));
        assert!(r.is_empty());
    }

    #[test]
    fn a_new_viewer_starts_on_the_latest_complete_recent_keyframe() {
        let t0 = Instant::now();
        let age = Duration::from_millis(500);
        let mut r = PacketRing::default();
        for s in 100..110u64 {
            r.put(&test_pkt(s, 0, t0));
        }
        assert_eq!(r.since_keyframe(t0, age), None, "no keyframe yet");
        r.put(&test_key(110, t0));
        for s in 111..115u64 {
            r.put(&test_pkt(s, 0, t0));
        }
        assert_eq!(r.since_keyframe(t0, age), Some(110..=114));
        // A later keyframe is the one to start on; an earlier one arriving late is not.
        r.put(&test_key(115, t0));
        r.put(&test_key(105, t0));
        r.put(&test_pkt(116, 0, t0));
        assert_eq!(r.since_keyframe(t0, age), Some(115..=116));
        // Too old to start on (the viewer would be shown the past).
        assert_eq!(
            r.since_keyframe(t0 + age + Duration::from_millis(1), age),
            None
        );
        // A packet after it missing: the viewer could not decode on; none.
        r.put(&test_pkt(118, 0, t0));
        assert_eq!(r.since_keyframe(t0, age), None);
        r.put(&test_pkt(117, 0, t0));
        assert_eq!(r.since_keyframe(t0, age), Some(115..=118));
        // More than the ring holds after the keyframe: none.
        for s in 119..(115 + RING as u64 + 1) {
            r.put(&test_pkt(s, 0, t0));
        }
        assert_eq!(r.since_keyframe(t0, age), None);
    }
}
