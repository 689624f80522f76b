//! The signaling protocol between a browser (or any client) and its meeting's sfuserver.
//! See the module doc of `proto` for the conversation in prose.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// What a published track carries; the client says so when it offers the track.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Camera,
    Microphone,
    Screen,
    ScreenAudio,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    Audio,
    Video,
}

/// Client → sfuserver. One JSON object per WebSocket text message.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMsg {
    /// First message, within 10 s: the join token from `POST /api/v1/join/{code}`.
    Join {
        token: String,
    },
    /// An SDP offer for the client's own tracks; `sources` labels its send m-lines by mid.
    Offer {
        sdp: String,
        #[serde(default)]
        sources: HashMap<String, Source>,
    },
    /// The answer to the server's last offer.
    Answer {
        sdp: String,
    },
    /// A trickled ICE candidate (`a=candidate` line without the `a=`). Optional: the server
    /// also learns the client's addresses from its connectivity checks.
    Candidate {
        candidate: String,
    },
    /// My microphone or camera is (un)muted.
    Mute {
        kind: MediaKind,
        muted: bool,
    },
    /// The size a received video (by the client's mid) is shown at; 0×0 = not shown (paused).
    Layer {
        mid: String,
        width: u32,
        height: u32,
    },
    Chat {
        text: String,
    },
    Hand {
        raised: bool,
    },
    /// Relayed as [`ServerMsg::Reaction`] to everyone (the sender too), if `emoji` is one of
    /// [`REACTIONS`] and the sender's last reaction is [`REACTION_INTERVAL_MS`] old (else
    /// `error` `bad_reaction` or `rate_limited`).
    Reaction {
        emoji: String,
    },
    /// From a host only: relayed as [`ServerMsg::Spotlight`] to everyone; `None` ends it.
    /// Others get `error` `not_host`. A newcomer gets the current spotlight after `joined`.
    Spotlight {
        participant_id: Option<String>,
    },
    Leave,
    Ping,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ParticipantInfo {
    pub participant_id: String,
    pub name: String,
    pub host: bool,
    pub audio_muted: bool,
    pub video_muted: bool,
    pub hand_raised: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TrackInfo {
    /// The mid of this track in the receiving client's session.
    pub mid: String,
    pub participant_id: String,
    pub kind: MediaKind,
    pub source: Source,
}

/// Sfuserver → client.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    Joined {
        participant_id: String,
        name: String,
        host: bool,
        meeting: i64,
        participants: Vec<ParticipantInfo>,
    },
    ParticipantJoined {
        participant: ParticipantInfo,
    },
    ParticipantLeft {
        participant_id: String,
        reason: String,
    },
    /// Which participant and source each received mid carries. Sent before every offer.
    Tracks {
        tracks: Vec<TrackInfo>,
    },
    Offer {
        sdp: String,
    },
    Answer {
        sdp: String,
    },
    Mute {
        participant_id: String,
        kind: MediaKind,
        muted: bool,
        by_host: bool,
    },
    ActiveSpeaker {
        participant_id: Option<String>,
    },
    Chat {
        participant_id: String,
        name: String,
        text: String,
        at: i64,
    },
    Hand {
        participant_id: String,
        raised: bool,
    },
    /// Dynacast: send only these simulcast layers (rids) of your track `mid`; nobody
    /// watches the others. Empty: nobody watches this track at all.
    Layers {
        mid: String,
        active: Vec<String>,
    },
    /// The room is locked: nobody new may join until the host unlocks it.
    Locked {
        locked: bool,
    },
    /// Something the client sent was refused; the session goes on.
    Error {
        code: String,
        message: String,
    },
    /// The session ends; the WebSocket closes right after.
    Closed {
        reason: String,
        message: String,
    },
    Pong,
    /// Every participant's network quality as the server measures it on their connection
    /// (loss and round-trip time of what it receives from and sends to them). Sent to
    /// everyone in the room every [`QUALITY_INTERVAL_MS`]; one message may list only some of
    /// the room (each media worker reports its own participants), so clients merge by id.
    Quality {
        participants: Vec<QualityReport>,
    },
    /// Someone reacted (one of [`REACTIONS`]); clients show it briefly on their tile.
    Reaction {
        participant_id: String,
        emoji: String,
        at: i64,
    },
    /// A host put someone in the spotlight for everyone (`None`: spotlight off).
    Spotlight {
        participant_id: Option<String>,
        by: String,
    },
}

/// How often the sfuserver sends [`ServerMsg::Quality`].
pub const QUALITY_INTERVAL_MS: u64 = 2000;

/// The reactions a client may send (anything else is refused with `error` `bad_reaction`).
pub const REACTIONS: &[&str] = &["👍", "👏", "😂", "🎉", "❤️", "😮", "✋"];

/// At most one reaction per participant per this many milliseconds; more are refused with
/// `error` `rate_limited` (the client limits itself to the same pace).
pub const REACTION_INTERVAL_MS: u64 = 1000;

/// One participant's line in [`ServerMsg::Quality`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct QualityReport {
    pub participant_id: String,
    /// 3 good, 2 fair, 1 poor, 0 no media from them for a whole interval.
    pub level: u8,
    /// Packets lost on their upstream in the last interval, percent.
    pub loss_pct: f32,
    /// Round-trip time to them (ICE consent checks or RTCP), milliseconds.
    pub rtt_ms: u32,
}

impl QualityReport {
    /// The level for a loss and RTT, as the client's own indicator grades them.
    pub fn level_for(loss_pct: f32, rtt_ms: u32, receiving: bool) -> u8 {
        if !receiving {
            0
        } else if loss_pct < 2.0 && rtt_ms < 200 {
            3
        } else if loss_pct < 8.0 && rtt_ms < 500 {
            2
        } else {
            1
        }
    }
}

impl ServerMsg {
    pub fn error(code: &str, message: impl Into<String>) -> ServerMsg {
        ServerMsg::Error {
            code: code.into(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod room_extras_tests {
    use super::*;

    #[test]
    fn reaction_and_spotlight_parse_as_the_web_client_sends_them() {
        let r: ClientMsg =
            serde_json::from_str(r#"{"type":"reaction","emoji":"👍"}"#).expect("reaction parses");
        assert_eq!(
            r,
            ClientMsg::Reaction {
                emoji: "👍".into()
            }
        );
        let s: ClientMsg = serde_json::from_str(r#"{"type":"spotlight","participant_id":null}"#)
            .expect("spotlight parses");
        assert_eq!(
            s,
            ClientMsg::Spotlight {
                participant_id: None
            }
        );
    }

    #[test]
    fn quality_serializes_as_the_web_client_reads_it() {
        let q = ServerMsg::Quality {
            participants: vec![QualityReport {
                participant_id: "p1".into(),
                level: QualityReport::level_for(0.5, 40, true),
                loss_pct: 0.5,
                rtt_ms: 40,
            }],
        };
        let v = serde_json::to_value(&q).expect("json");
        assert_eq!(v["type"], "quality");
        assert_eq!(v["participants"][0]["level"], 3);
        assert_eq!(QualityReport::level_for(5.0, 40, true), 2);
        assert_eq!(QualityReport::level_for(20.0, 40, true), 1);
        assert_eq!(QualityReport::level_for(0.0, 0, false), 0);
    }
}
