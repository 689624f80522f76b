//! Audio top-K: in a large meeting only the K loudest microphones are forwarded, the rest
//! are received (and answered with feedback) but not copied to anyone.
//!
//! The loudness comes from the audio-level header extension (RFC 6464: 0 = 0 dBov, 127 =
//! −127 dBov, silence; str0m gives it as the negative dBov value), as 127 − |level|, smoothed
//! per publisher. A room's table lives in shared memory (`Arc`, atomics)
//! because a meeting's publishers sit on several media workers and each packet is decided
//! on its publisher's worker, with no message round trip and no lock:
//!
//! - a publisher in the set is forwarded;
//! - with fewer than K in the set, any publisher joins it at its next packet;
//! - otherwise a packet whose *instant* loudness is speech and beats the quietest member's
//!   *smoothed* loudness by `MARGIN` takes that member's place at once, so a new speaker is
//!   heard from the first packet of the first syllable, while one who stops talking stays in
//!   the set until someone louder needs the place (the hysteresis: no flapping between two
//!   similar voices, no clipped word ends).
//!
//! Two workers admitting at the same moment can leave K + 1 in the set for a moment;
//! `enforce` (housekeeping, every 250 ms) trims it back.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};

/// Members a room's table can hold; a member beyond it is always forwarded.
pub const MAX_MEMBERS: usize = 1024;
/// Loudness (127 − level) a packet needs to displace someone: quieter is not speech.
pub const SPEECH: f32 = 50.0;
/// How much louder (dB) than the quietest member of the set a newcomer must be.
pub const MARGIN: f32 = 6.0;
/// Smoothing of the per-publisher loudness (per 20 ms packet).
const ALPHA: f32 = 0.2;

#[derive(Default)]
struct Slot {
    /// 0: free; else the member's key (never 0).
    owner: AtomicU64,
    /// Smoothed loudness, f32 bits.
    loud: AtomicU32,
    active: AtomicBool,
    /// Not a candidate for active speaker (muted).
    muted: AtomicBool,
}

impl std::fmt::Debug for RoomAudio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RoomAudio(k={})", self.k)
    }
}

pub struct RoomAudio {
    /// 0: top-K off (every stream forwarded).
    k: usize,
    slots: Box<[Slot]>,
    /// Slots in use are all below this.
    high: AtomicUsize,
}

/// What to do with one audio packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Forward,
    Drop,
}

impl RoomAudio {
    pub fn new(k: usize) -> RoomAudio {
        RoomAudio {
            k,
            slots: (0..MAX_MEMBERS).map(|_| Slot::default()).collect(),
            high: AtomicUsize::new(0),
        }
    }

    pub fn k(&self) -> usize {
        self.k
    }

    /// A slot for a new member (`key` ≠ 0); None when the table is full.
    pub fn alloc(&self, key: u64) -> Option<usize> {
        debug_assert!(key != 0);
        for (i, s) in self.slots.iter().enumerate() {
            if s.owner.compare_exchange(0, key, Relaxed, Relaxed).is_ok() {
                s.loud.store(0f32.to_bits(), Relaxed);
                s.active.store(false, Relaxed);
                s.muted.store(false, Relaxed);
                self.high.fetch_max(i + 1, Relaxed);
                return Some(i);
            }
        }
        None
    }

    pub fn free(&self, i: usize, key: u64) {
        if let Some(s) = self.slots.get(i) {
            s.active.store(false, Relaxed);
            let _ = s.owner.compare_exchange(key, 0, Relaxed, Relaxed);
        }
    }

    pub fn set_muted(&self, i: usize, muted: bool) {
        if let Some(s) = self.slots.get(i) {
            s.muted.store(muted, Relaxed);
        }
    }

    pub fn loudness(&self, i: usize) -> f32 {
        self.slots
            .get(i)
            .map_or(0.0, |s| f32::from_bits(s.loud.load(Relaxed)))
    }

    pub fn is_active(&self, i: usize) -> bool {
        self.slots.get(i).is_some_and(|s| s.active.load(Relaxed))
    }

    /// One audio packet of the member in slot `i` with audio level `level` (dBov, ≤ 0; None:
    /// the publisher sends no level, so it cannot be ranked and is always forwarded).
    pub fn packet(&self, i: usize, level: Option<i8>) -> Verdict {
        let Some(level) = level else {
            return Verdict::Forward;
        };
        let Some(me) = self.slots.get(i) else {
            return Verdict::Forward;
        };
        let inst = f32::from(127 - level.unsigned_abs().min(127));
        let old = f32::from_bits(me.loud.load(Relaxed));
        me.loud
            .store((old * (1.0 - ALPHA) + inst * ALPHA).to_bits(), Relaxed);
        if self.k == 0 || me.active.load(Relaxed) {
            return Verdict::Forward;
        }
        let (count, quietest) = self.scan(Some(i));
        let admit = count < self.k
            || matches!(quietest, Some((_, ql)) if inst >= SPEECH && inst > ql + MARGIN);
        if !admit {
            return Verdict::Drop;
        }
        if count >= self.k
            && let Some((q, _)) = quietest
        {
            self.slots[q].active.store(false, Relaxed);
        }
        // A newcomer enters with the loudness it came in with, so it is not the quietest
        // (and out again) at the next packet of someone else.
        me.loud.store(inst.max(old).to_bits(), Relaxed);
        me.active.store(true, Relaxed);
        Verdict::Forward
    }

    /// Members in the set (besides `except`) and the quietest of them.
    fn scan(&self, except: Option<usize>) -> (usize, Option<(usize, f32)>) {
        let mut count = 0;
        let mut quietest: Option<(usize, f32)> = None;
        for (j, s) in self.slots[..self.high.load(Relaxed).min(MAX_MEMBERS)]
            .iter()
            .enumerate()
        {
            if Some(j) == except || s.owner.load(Relaxed) == 0 || !s.active.load(Relaxed) {
                continue;
            }
            count += 1;
            let l = f32::from_bits(s.loud.load(Relaxed));
            if quietest.is_none_or(|(_, ql)| l < ql) {
                quietest = Some((j, l));
            }
        }
        (count, quietest)
    }

    /// Trims a set that concurrent admissions left larger than K.
    pub fn enforce(&self) {
        if self.k == 0 {
            return;
        }
        loop {
            let (count, quietest) = self.scan(None);
            match quietest {
                Some((q, _)) if count > self.k => self.slots[q].active.store(false, Relaxed),
                _ => return,
            }
        }
    }

    /// The loudest unmuted member above `floor`, by slot.
    pub fn loudest(&self, floor: f32) -> Option<usize> {
        let mut best: Option<(usize, f32)> = None;
        for (j, s) in self.slots[..self.high.load(Relaxed).min(MAX_MEMBERS)]
            .iter()
            .enumerate()
        {
            if s.owner.load(Relaxed) == 0 || s.muted.load(Relaxed) {
                continue;
            }
            let l = f32::from_bits(s.loud.load(Relaxed));
            if l > floor && best.is_none_or(|(_, b)| l > b) {
                best = Some((j, l));
            }
        }
        best.map(|(j, _)| j)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The level (negative dBov, as str0m parses it) for a loudness.
    fn lvl(loud: u8) -> Option<i8> {
        Some(-((127 - loud) as i8))
    }

    #[test]
    fn the_set_fills_then_a_new_speaker_displaces_the_quietest_at_once() {
        let room = RoomAudio::new(3);
        let s: Vec<usize> = (1..=5).map(|k| room.alloc(k).expect("slot")).collect();
        // Three people talking fill the set as they send.
        for _ in 0..50 {
            for (i, loud) in [(0, 60), (1, 70), (2, 65)] {
                assert_eq!(room.packet(s[i], lvl(loud)), Verdict::Forward);
            }
        }
        // A fourth, quieter, is not forwarded: the set is full and it is no louder.
        assert_eq!(room.packet(s[3], lvl(58)), Verdict::Drop);
        // It speaks up: its first loud packet is forwarded and the quietest (60) leaves.
        assert_eq!(room.packet(s[3], lvl(90)), Verdict::Forward);
        assert!(!room.is_active(s[0]) && room.is_active(s[3]));
        assert_eq!(room.packet(s[0], lvl(60)), Verdict::Drop);
        // Hysteresis: someone barely louder than the quietest member does not get in.
        let quietest = room.loudness(s[2]);
        assert_eq!(
            room.packet(s[4], lvl((quietest + MARGIN - 1.0) as u8)),
            Verdict::Drop
        );
        // The speaker stops talking but stays in the set (no clipped ends) …
        for _ in 0..100 {
            assert_eq!(room.packet(s[3], lvl(0)), Verdict::Forward);
        }
        // … until someone talks: then the quietest, now the former speaker, makes room.
        assert_eq!(room.packet(s[4], lvl(80)), Verdict::Forward);
        assert!(!room.is_active(s[3]));
        let active = s.iter().filter(|&&i| room.is_active(i)).count();
        assert_eq!(active, 3);
    }

    #[test]
    fn no_level_or_k_zero_forwards_everything_and_enforce_trims() {
        let off = RoomAudio::new(0);
        let a = off.alloc(1).expect("slot");
        assert_eq!(off.packet(a, lvl(0)), Verdict::Forward);
        let room = RoomAudio::new(1);
        let (a, b) = (room.alloc(1).expect("a"), room.alloc(2).expect("b"));
        assert_eq!(room.packet(a, lvl(60)), Verdict::Forward);
        // Without an audio level the publisher cannot be ranked: forwarded.
        assert_eq!(room.packet(b, None), Verdict::Forward);
        // Two members active in a set of one (as concurrent admissions can leave it).
        room.slots[b].active.store(true, Relaxed);
        room.enforce();
        assert_eq!(
            [room.is_active(a), room.is_active(b)]
                .iter()
                .filter(|x| **x)
                .count(),
            1
        );
        // A freed slot leaves the set and is reused.
        room.free(a, 1);
        assert_eq!(room.alloc(3), Some(a));
        assert!(!room.is_active(a));
        // Active speaker: loudest unmuted above the floor.
        for _ in 0..30 {
            room.packet(a, lvl(100));
            room.packet(b, lvl(70));
        }
        assert_eq!(room.loudest(30.0), Some(a));
        room.set_muted(a, true);
        assert_eq!(room.loudest(30.0), Some(b));
    }
}
