//! What the forwarder needs to know about a video payload without decoding it: whether a
//! packet starts a keyframe (to switch simulcast layers and start a new viewer there) and,
//! for VP8, the payload descriptor whose picture id and TL0PICIDX are rewritten per viewer.

use str0m::format::Codec;
use str0m::rtp::Vp8Descriptor;

/// The codecs the sfuserver negotiates (`Peer::rtc_config`): Opus, VP8 and H.264. Anything
/// else is forwarded without keyframe knowledge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Audio,
    Vp8,
    H264,
    OtherVideo,
}

impl Kind {
    pub fn of(codec: Codec) -> Kind {
        match codec {
            Codec::Vp8 => Kind::Vp8,
            Codec::H264 => Kind::H264,
            c if c.is_audio() => Kind::Audio,
            _ => Kind::OtherVideo,
        }
    }

    pub fn is_video(self) -> bool {
        self != Kind::Audio
    }
}

/// Parsed once when a packet arrives, used for every copy.
#[derive(Clone, Copy, Debug)]
pub struct VideoInfo {
    /// The packet starts a keyframe (the first packet of an independently decodable
    /// picture, with its parameter sets for H.264).
    pub keyframe: bool,
    /// VP8: the payload descriptor (picture id, TL0PICIDX and where they are).
    pub vp8: Option<Vp8Descriptor>,
}

pub fn inspect(kind: Kind, payload: &[u8]) -> VideoInfo {
    match kind {
        Kind::Vp8 => match Vp8Descriptor::parse(payload) {
            Ok(d) => VideoInfo {
                keyframe: d.starts_keyframe(payload),
                vp8: Some(d),
            },
            Err(_) => VideoInfo {
                keyframe: false,
                vp8: None,
            },
        },
        Kind::H264 => VideoInfo {
            keyframe: h264_starts_keyframe(payload),
            vp8: None,
        },
        Kind::Audio | Kind::OtherVideo => VideoInfo {
            keyframe: false,
            vp8: None,
        },
    }
}

const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const STAP_A: u8 = 24;
const FU_A: u8 = 28;

/// RFC 6184: a single NAL unit packet carrying an IDR slice or a sequence parameter set, a
/// STAP-A aggregating one of those, or the first fragment (FU-A, S bit) of an IDR slice.
pub fn h264_starts_keyframe(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    match first & 0x1F {
        NAL_IDR | NAL_SPS => true,
        STAP_A => {
            let mut rest = &payload[1..];
            while rest.len() > 2 {
                let size = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                let Some(nal) = rest.get(2..2 + size) else {
                    return false;
                };
                if nal
                    .first()
                    .is_some_and(|h| matches!(h & 0x1F, NAL_IDR | NAL_SPS))
                {
                    return true;
                }
                rest = &rest[2 + size..];
            }
            false
        }
        FU_A => payload
            .get(1)
            .is_some_and(|fu| fu & 0x80 != 0 && fu & 0x1F == NAL_IDR),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h264_keyframes_in_every_packetization() {
        // Single NAL units: IDR (type 5) and SPS (7) start a keyframe, a P slice (1) does not.
        assert!(h264_starts_keyframe(&[0x65, 0x88, 0x84]));
        assert!(h264_starts_keyframe(&[0x67, 0x42, 0x00]));
        assert!(!h264_starts_keyframe(&[0x41, 0x9a]));
        // STAP-A with SPS + PPS, and one with only a PPS and an SEI.
        assert!(h264_starts_keyframe(&[
            0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce
        ]));
        assert!(!h264_starts_keyframe(&[
            0x78, 0x00, 0x02, 0x68, 0xce, 0x00, 0x01, 0x06
        ]));
        // A truncated STAP-A is not a keyframe (and does not panic).
        assert!(!h264_starts_keyframe(&[0x78, 0x00, 0x09, 0x67]));
        // FU-A: the first fragment of an IDR slice, a later fragment, a P-slice start.
        assert!(h264_starts_keyframe(&[0x7c, 0x85, 0x88]));
        assert!(!h264_starts_keyframe(&[0x7c, 0x05, 0x88]));
        assert!(!h264_starts_keyframe(&[0x7c, 0x81, 0x9a]));
        assert!(!h264_starts_keyframe(&[]));
    }

    #[test]
    fn vp8_keyframe_and_descriptor() {
        // X=1, S=1, PID=0; I=1, L=1, T=1; 15-bit picture id 0x1234; TL0PICIDX 7; TID byte;
        // then the VP8 payload header with P=0 (keyframe).
        let key = [0x90, 0xE0, 0x92, 0x34, 0x07, 0x20, 0x10, 0x02, 0x00];
        let i = inspect(Kind::Vp8, &key);
        assert!(i.keyframe);
        let d = i.vp8.expect("descriptor");
        assert_eq!(d.picture_id(), Some(0x1234));
        assert_eq!(d.tl0_pic_idx(), Some(7));
        // The same with P=1 is a delta frame; a continuation packet (S=0) is neither.
        let delta = [0x90, 0xE0, 0x92, 0x34, 0x07, 0x20, 0x11, 0x02, 0x00];
        assert!(!inspect(Kind::Vp8, &delta).keyframe);
        let cont = [0x80, 0xE0, 0x92, 0x34, 0x07, 0x20, 0x10, 0x02, 0x00];
        assert!(!inspect(Kind::Vp8, &cont).keyframe);
        // Garbage is neither a keyframe nor a descriptor.
        let bad = inspect(Kind::Vp8, &[0x80]);
        assert!(!bad.keyframe && bad.vp8.is_none());
    }
}
