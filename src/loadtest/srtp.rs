//! The minimal per-packet work of an SFU, for the raw-forwarder ceiling
//! (`examples/raw_forwarder.rs`) and the micro-benchmarks (`benches/hot_path.rs`): SRTP
//! AEAD_AES_256_GCM (RFC 7714; str0m prefers it, so the sfuserver and the load generator
//! negotiate it) with the same crypto provider as the sfuserver (str0m's aws-lc-rs), and the
//! RTP header rewrite a forwarder does per subscriber (SSRC, sequence number, timestamp).

use str0m::config::CryptoProvider;

pub const TAG_LEN: usize = 16;
pub const HEADER_LEN: usize = 12;

/// One direction of one SRTP stream: a cipher with its salt.
pub struct SrtpContext {
    cipher: Box<dyn str0m::crypto::AeadAes256GcmCipher>,
    salt: [u8; 12],
    encrypt: bool,
}

pub fn provider() -> CryptoProvider {
    str0m::crypto::from_feature_flags()
}

impl SrtpContext {
    pub fn new(p: &CryptoProvider, key: [u8; 32], salt: [u8; 12], encrypt: bool) -> SrtpContext {
        SrtpContext {
            cipher: p
                .srtp_provider
                .aead_aes_256_gcm()
                .create_cipher(key, encrypt),
            salt,
            encrypt,
        }
    }

    fn iv(&self, ssrc: u32, roc: u32, seq: u16) -> [u8; 12] {
        let mut iv = [0u8; 12];
        iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
        iv[6..10].copy_from_slice(&roc.to_be_bytes());
        iv[10..12].copy_from_slice(&seq.to_be_bytes());
        for (a, b) in iv.iter_mut().zip(self.salt) {
            *a ^= b;
        }
        iv
    }

    /// RTP (12-byte header, no extensions) in `pkt` → SRTP into `out`; returns its length.
    pub fn protect(&mut self, pkt: &[u8], out: &mut [u8]) -> Option<usize> {
        debug_assert!(self.encrypt);
        let (hdr, body) = pkt.split_at_checked(HEADER_LEN)?;
        let n = pkt.len() + TAG_LEN;
        if out.len() < n {
            return None;
        }
        let (ssrc, seq) = ssrc_seq(hdr);
        let iv = self.iv(ssrc, 0, seq);
        out[..HEADER_LEN].copy_from_slice(hdr);
        self.cipher
            .encrypt(&iv, hdr, body, &mut out[HEADER_LEN..n])
            .ok()?;
        Some(n)
    }

    /// SRTP in `pkt` → RTP into `out`; returns its length (None: not authentic).
    pub fn unprotect(&mut self, pkt: &[u8], out: &mut [u8]) -> Option<usize> {
        debug_assert!(!self.encrypt);
        if pkt.len() < HEADER_LEN + TAG_LEN || out.len() < pkt.len() {
            return None;
        }
        let (hdr, body) = pkt.split_at(HEADER_LEN);
        let (ssrc, seq) = ssrc_seq(hdr);
        let iv = self.iv(ssrc, 0, seq);
        out[..HEADER_LEN].copy_from_slice(hdr);
        let n = self
            .cipher
            .decrypt(&iv, &[hdr], body, &mut out[HEADER_LEN..])
            .ok()?;
        Some(HEADER_LEN + n)
    }
}

fn ssrc_seq(hdr: &[u8]) -> (u32, u16) {
    (
        u32::from_be_bytes([hdr[8], hdr[9], hdr[10], hdr[11]]),
        u16::from_be_bytes([hdr[2], hdr[3]]),
    )
}

/// A subscriber's view of a forwarded stream: its own SSRC, and offsets so that its sequence
/// numbers and timestamps run on without jumps.
#[derive(Clone, Copy)]
pub struct Rewrite {
    pub ssrc: u32,
    pub seq_offset: u16,
    pub ts_offset: u32,
    pub pt: u8,
}

impl Rewrite {
    /// Rewrites PT, sequence number, timestamp and SSRC of the RTP header in place.
    #[inline]
    pub fn apply(&self, pkt: &mut [u8]) {
        if pkt.len() < HEADER_LEN {
            return;
        }
        pkt[1] = (pkt[1] & 0x80) | (self.pt & 0x7f);
        let seq = u16::from_be_bytes([pkt[2], pkt[3]]).wrapping_add(self.seq_offset);
        pkt[2..4].copy_from_slice(&seq.to_be_bytes());
        let ts = u32::from_be_bytes([pkt[4], pkt[5], pkt[6], pkt[7]]).wrapping_add(self.ts_offset);
        pkt[4..8].copy_from_slice(&ts.to_be_bytes());
        pkt[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
    }
}

/// A plain RTP packet: header (V=2, PT 96, `seq`, `ts`, `ssrc`) and `len - 12` bytes of payload.
pub fn rtp_packet(seq: u16, ts: u32, ssrc: u32, len: usize) -> Vec<u8> {
    let mut p = vec![0x80, 96];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.resize(len.max(HEADER_LEN), 0xab);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protect_unprotect_round_trip_and_tamper() {
        let p = provider();
        let mut tx = SrtpContext::new(&p, [7; 32], [3; 12], true);
        let mut rx = SrtpContext::new(&p, [7; 32], [3; 12], false);
        let pkt = rtp_packet(1000, 90_000, 0x1234, 1200);
        let mut s = vec![0; 1300];
        let n = tx.protect(&pkt, &mut s).expect("protect");
        assert_eq!(n, 1200 + TAG_LEN);
        assert_ne!(&s[12..1200], &pkt[12..]);
        let mut back = vec![0; 1300];
        let m = rx.unprotect(&s[..n], &mut back).expect("unprotect");
        assert_eq!(&back[..m], &pkt[..]);
        s[100] ^= 1;
        assert!(rx.unprotect(&s[..n], &mut back).is_none());
        let mut q = pkt.clone();
        Rewrite {
            ssrc: 9,
            seq_offset: 10,
            ts_offset: 5,
            pt: 100,
        }
        .apply(&mut q);
        assert_eq!(&q[2..4], &1010u16.to_be_bytes());
        assert_eq!(&q[8..12], &9u32.to_be_bytes());
        assert_eq!(q[1], 100);
    }
}
