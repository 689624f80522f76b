//! Per viewer and forwarded track: the RTP sequence numbers, timestamps and (VP8) picture
//! ids the viewer sees, continuous across simulcast layer switches and across stretches the
//! forwarder skipped for it, and the record of which packet each sequence number carried so
//! a NACK can be answered from the shared packet cache.
//!
//! A stretch with the same offsets is an *epoch*. A new one starts at the first packet, at
//! a switch to another layer (which must be a keyframe: the caller checks), and where the
//! viewer's stream resumes after packets were deliberately not sent to it (audio top-K,
//! a paused video tile): sequence numbers continue at last + 1, so the viewer sees no loss
//! where there was none. Within an epoch, gaps are real loss and stay visible (NACK).

use std::time::Instant;

use str0m::rtp::Vp8Patch;

use super::packet::Pkt;

/// Where one copy goes in the viewer's stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutHeader {
    /// Extended sequence number in the viewer's stream (its low 16 bits go on the wire).
    pub seq: u64,
    pub time: u32,
    /// VP8 picture id / TL0PICIDX rewrite, when the offsets are not zero.
    pub vp8: Option<Vp8Patch>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Epoch {
    id: u32,
    layer: u8,
    /// out = src + seq_off (wrapping).
    seq_off: u64,
    /// The first source sequence number of the epoch: earlier ones (late, reordered) are
    /// not forwarded, they would land on numbers the previous epoch used.
    first_src: u64,
    ts_off: u32,
    pid_off: u16,
    tl0_off: u8,
}

/// What a sequence number of the viewer's stream carried: its epoch (whose offset gives the
/// source sequence number back) and its own low 32 bits, to tell it from a number that
/// shares the slot. 8 bytes: a viewer of 24 video tracks keeps 24 × `HISTORY` of these.
#[derive(Clone, Copy, Debug, Default)]
struct Sent {
    out_lo: u32,
    id: u32,
}

const EPOCHS: usize = 16;
/// Sequence numbers remembered for NACKs (a power of two).
pub const HISTORY: usize = 512;

pub struct Rewriter {
    started: bool,
    epoch: Epoch,
    epochs: [Epoch; EPOCHS],
    last_out_seq: u64,
    last_out_time: u32,
    last_received: Option<Instant>,
    last_pid: Option<u16>,
    last_tl0: Option<u8>,
    /// The next packet starts an epoch even on the same layer (stream resumed).
    rebase: bool,
    /// The next packet starts an epoch as at a layer switch (another source now).
    force_switch: bool,
    history: Option<Box<[Sent]>>,
}

impl Rewriter {
    /// `nackable`: keep the history NACKs are answered from (video).
    pub fn new(nackable: bool) -> Rewriter {
        Rewriter {
            started: false,
            epoch: Epoch::default(),
            epochs: [Epoch::default(); EPOCHS],
            last_out_seq: 0,
            last_out_time: 0,
            last_received: None,
            last_pid: None,
            last_tl0: None,
            rebase: false,
            force_switch: false,
            history: nackable.then(|| vec![Sent::default(); HISTORY].into_boxed_slice()),
        }
    }

    /// The viewer's stream skipped packets on purpose: continue at last + 1 next time.
    pub fn skipped(&mut self) {
        self.rebase = true;
    }

    /// The same send stream (SSRC) now carries another track (a reused m-line): its
    /// sequence numbers, timestamps and picture ids go on from where they are.
    pub fn continued(mut self) -> Rewriter {
        self.force_switch = self.started;
        self
    }

    pub fn started(&self) -> bool {
        self.started
    }

    /// The layer the current epoch forwards.
    pub fn layer(&self) -> Option<u8> {
        self.started.then_some(self.epoch.layer)
    }

    /// Where `p` (of simulcast `layer`, 0 without simulcast) goes; None: drop it (it
    /// belongs before the current epoch). `clock_rate` converts the wall-clock gap at a
    /// layer switch into timestamp ticks.
    pub fn rewrite(&mut self, p: &Pkt, layer: u8, clock_rate: u32) -> Option<OutHeader> {
        let switch = self.started && (layer != self.epoch.layer || self.force_switch);
        if !self.started || switch || self.rebase || p.resumed {
            self.new_epoch(p, layer, switch, clock_rate);
        } else if p.seq < self.epoch.first_src {
            return None;
        }
        let e = self.epoch;
        let h = header(p, &e);
        if h.seq > self.last_out_seq || !self.started {
            self.started = true;
            self.last_out_seq = h.seq;
            self.last_out_time = h.time;
            self.last_received = Some(p.received);
            if let Some(d) = &p.video.vp8 {
                self.last_pid = d.picture_id().map(|v| v.wrapping_add(e.pid_off) & 0x7fff);
                self.last_tl0 = d.tl0_pic_idx().map(|v| v.wrapping_add(e.tl0_off));
            }
        }
        if let Some(hist) = self.history.as_mut() {
            hist[(h.seq as usize) % HISTORY] = Sent {
                out_lo: h.seq as u32,
                id: e.id,
            };
        }
        Some(h)
    }

    fn new_epoch(&mut self, p: &Pkt, layer: u8, switch: bool, clock_rate: u32) {
        let mut e = self.epoch;
        e.id = e.id.wrapping_add(1);
        e.layer = layer;
        e.first_src = p.seq;
        let out_seq = if self.started {
            self.last_out_seq + 1
        } else {
            // Start below 2^16 so the viewer's SRTP rollover counter starts at 0.
            p.seq & 0xFFFF
        };
        e.seq_off = out_seq.wrapping_sub(p.seq);
        if !self.started {
            e.ts_off = 0;
            e.pid_off = 0;
            e.tl0_off = 0;
        } else if switch {
            // Another layer has its own timestamp base and picture ids: continue the
            // viewer's from where they were, advanced by the time that passed.
            let elapsed = self
                .last_received
                .map(|t| p.received.saturating_duration_since(t))
                .unwrap_or_default();
            let ticks = (elapsed.as_secs_f64() * f64::from(clock_rate)).round() as u32;
            let out_time = self.last_out_time.wrapping_add(ticks.max(1));
            e.ts_off = out_time.wrapping_sub(p.time);
            if let Some(d) = &p.video.vp8 {
                if let (Some(src), Some(last)) = (d.picture_id(), self.last_pid) {
                    e.pid_off = last.wrapping_add(1).wrapping_sub(src) & 0x7fff;
                }
                if let (Some(src), Some(last)) = (d.tl0_pic_idx(), self.last_tl0) {
                    e.tl0_off = last.wrapping_add(1).wrapping_sub(src);
                }
            }
        }
        self.epochs[e.id as usize % EPOCHS] = e;
        self.epoch = e;
        self.rebase = false;
        self.force_switch = false;
    }

    /// A NACKed sequence number of the viewer's stream: the source packet (layer, source
    /// sequence number) it carried, if still known.
    pub fn lookup(&self, out_seq: u64) -> Option<(u8, u64)> {
        let e = self.sent_in(out_seq)?;
        Some((e.layer, out_seq.wrapping_sub(e.seq_off)))
    }

    /// The epoch `out_seq` was sent in, if it is still remembered.
    fn sent_in(&self, out_seq: u64) -> Option<&Epoch> {
        let s = self.history.as_ref()?[(out_seq as usize) % HISTORY];
        let e = &self.epochs[s.id as usize % EPOCHS];
        (self.started && s.out_lo == out_seq as u32 && s.id != 0 && e.id == s.id).then_some(e)
    }

    /// The header `p` had when sent as `out_seq` (for a retransmission).
    pub fn header_for(&self, out_seq: u64, p: &Pkt) -> Option<OutHeader> {
        let e = self.sent_in(out_seq)?;
        (out_seq.wrapping_sub(e.seq_off) == p.seq).then(|| header(p, e))
    }
}

fn header(p: &Pkt, e: &Epoch) -> OutHeader {
    let vp8 = match &p.video.vp8 {
        Some(d) if e.pid_off != 0 || e.tl0_off != 0 => {
            let mut b = d.patch();
            if let Some(pid) = d.picture_id() {
                let v = pid.wrapping_add(e.pid_off) & 0x7fff;
                // A 7-bit picture id wraps at 128.
                b = b.picture_id(if pid <= 0x7f && v > 0x7f { v & 0x7f } else { v });
            }
            if let Some(t) = d.tl0_pic_idx() {
                b = b.tl0_pic_idx(t.wrapping_add(e.tl0_off));
            }
            b.build()
                .or_else(|_| {
                    // A 7-bit id that happened to be small: retry within 7 bits.
                    let mut b = d.patch();
                    if let Some(pid) = d.picture_id() {
                        b = b.picture_id(pid.wrapping_add(e.pid_off) & 0x7f);
                    }
                    if let Some(t) = d.tl0_pic_idx() {
                        b = b.tl0_pic_idx(t.wrapping_add(e.tl0_off));
                    }
                    b.build()
                })
                .ok()
        }
        _ => None,
    };
    OutHeader {
        seq: p.seq.wrapping_add(e.seq_off),
        time: p.time.wrapping_add(e.ts_off),
        vp8,
    }
}

#[cfg(test)]
mod tests {
    use super::super::codec::{Kind, inspect};
    use super::super::packet::test_pkt;
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    /// A VP8 packet with a 15-bit picture id and TL0PICIDX.
    fn vp8(seq: u64, time: u32, pid: u16, tl0: u8, key: bool, at: Instant) -> Pkt {
        let payload = [
            0x90,
            0xE0,
            0x80 | (pid >> 8) as u8,
            pid as u8,
            tl0,
            0x20,
            if key { 0x10 } else { 0x11 },
            0,
        ];
        let mut p = test_pkt(seq, time, at);
        p.video = inspect(Kind::Vp8, &payload);
        p.payload = Arc::from(&payload[..]);
        p
    }

    /// The patch a copy of `p` must carry to show picture id `pid` and TL0PICIDX `tl0`
    /// (`Vp8Patch` compares by value; str0m applies it when it writes the packet).
    fn expect_patch(p: &Pkt, pid: u16, tl0: u8) -> Option<Vp8Patch> {
        let d = p.video.vp8.expect("vp8");
        d.patch().picture_id(pid).tl0_pic_idx(tl0).build().ok()
    }

    #[test]
    fn sequence_numbers_continue_across_a_layer_switch_and_nack_finds_the_packet() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(true);
        // Layer 0 from source seq 1000..1003 (starts at a keyframe).
        let a: Vec<Pkt> = (0..4)
            .map(|i| {
                vp8(
                    1000 + i,
                    90_000 + 3000 * i as u32,
                    500 + i as u16,
                    20,
                    i == 0,
                    t0 + Duration::from_millis(33 * i),
                )
            })
            .collect();
        let ha: Vec<OutHeader> = a
            .iter()
            .map(|p| r.rewrite(p, 0, 90_000).expect("forwarded"))
            .collect();
        assert_eq!(ha[0].seq, 1000);
        assert_eq!(ha[3].seq, 1003);
        assert!(ha.iter().all(|h| h.vp8.is_none()), "no offsets, no patch");
        // Switch to layer 2 at its keyframe: other numbering, other timestamp base.
        let at = t0 + Duration::from_millis(33 * 4);
        let b = vp8(77_000, 5_000_000, 9000, 3, true, at);
        let hb = r.rewrite(&b, 2, 90_000).expect("forwarded");
        assert_eq!(hb.seq, 1004, "sequence numbers continue");
        assert_eq!(hb.time, 90_000 + 3000 * 3 + 2970, "33 ms later at 90 kHz");
        assert_eq!(
            hb.vp8,
            expect_patch(&b, 504, 21),
            "picture id and TL0PICIDX continue"
        );
        let b2 = vp8(
            77_001,
            5_003_000,
            9001,
            3,
            false,
            at + Duration::from_millis(33),
        );
        let hb2 = r.rewrite(&b2, 2, 90_000).expect("forwarded");
        assert_eq!((hb2.seq, hb2.time), (1005, hb.time + 3000));
        assert_eq!(hb2.vp8, expect_patch(&b2, 505, 21));
        // NACKs: each viewer sequence number leads back to its layer and source packet.
        assert_eq!(r.lookup(1002), Some((0, 1002)));
        assert_eq!(r.lookup(1005), Some((2, 77_001)));
        assert_eq!(r.header_for(1005, &b2), Some(hb2));
        assert_eq!(r.lookup(999), None);
        assert_eq!(r.lookup(1005 + HISTORY as u64), None);
    }

    #[test]
    fn a_reused_stream_continues_its_numbering_for_the_next_track() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(true);
        let a = vp8(5000, 1_000, 40, 1, true, t0);
        assert_eq!(r.rewrite(&a, 0, 90_000).map(|h| h.seq), Some(5000));
        // Another publisher's track on the same m-line (and SSRC), 2 s later.
        let mut r = r.continued();
        let b = vp8(60_000, 7_777_777, 900, 9, true, t0 + Duration::from_secs(2));
        let h = r.rewrite(&b, 0, 90_000).expect("forwarded");
        assert_eq!(h.seq, 5001);
        assert_eq!(h.time, 1_000 + 180_000);
        assert_eq!(h.vp8, expect_patch(&b, 41, 2));
    }

    #[test]
    fn late_packets_within_an_epoch_keep_their_place_and_skips_leave_no_gap() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(false);
        let h = |r: &mut Rewriter, s: u64| r.rewrite(&test_pkt(s, s as u32 * 960, t0), 0, 48_000);
        assert_eq!(h(&mut r, 70_000).map(|h| h.seq), Some(70_000 & 0xFFFF));
        let base = 70_000 & 0xFFFF;
        assert_eq!(h(&mut r, 70_002).map(|h| h.seq), Some(base + 2));
        // 70_001 arrives late: same epoch, keeps its number (the gap was loss).
        assert_eq!(h(&mut r, 70_001).map(|h| h.seq), Some(base + 1));
        // The forwarder skipped 70_003..70_009 for this viewer: no gap.
        r.skipped();
        assert_eq!(h(&mut r, 70_010).map(|h| h.seq), Some(base + 3));
        // Packets from before the new epoch are dropped.
        assert_eq!(h(&mut r, 70_004), None);
        // A publisher-side resume marks the packet itself.
        let mut p = test_pkt(70_050, 0, t0);
        p.resumed = true;
        assert_eq!(r.rewrite(&p, 0, 48_000).map(|h| h.seq), Some(base + 4));
        // Timestamps are untouched on the same layer.
        assert_eq!(h(&mut r, 70_051).map(|h| h.time), Some(70_051 * 960));
    }
}
