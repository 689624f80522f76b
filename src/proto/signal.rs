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
}

impl ServerMsg {
    pub fn error(code: &str, message: impl Into<String>) -> ServerMsg {
        ServerMsg::Error {
            code: code.into(),
            message: message.into(),
        }
    }
}
