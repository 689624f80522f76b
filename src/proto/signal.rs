//! The signaling protocol between a browser (or any client) and its meeting's sfuserver.
//! See the module doc of `proto` for the conversation in prose.

use crate::ids::ParticipantId;
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
    /// A chat message: to everyone, or privately to one participant (`to`) or to the
    /// meeting's hosts (`to_hosts`). Stored in the room's history (late joiners get it).
    Chat {
        text: String,
        #[serde(default)]
        to: Option<ParticipantId>,
        #[serde(default)]
        to_hosts: bool,
    },
    Hand {
        raised: bool,
    },
    /// A host action (owner or co-host only; others get `error` `not_host`), enforced by the
    /// sfuserver on every worker: `{"type":"host","action":{"action":"mute_all"}}`.
    Host {
        action: crate::proto::RoomAction,
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
        participant_id: Option<ParticipantId>,
    },
    /// An invitee takes host powers (as a co-host) when no host is in the meeting and the
    /// meeting allows it (`meetings.claim_host`); else `error` `not_allowed` or `host_present`.
    ClaimHost,
    Leave,
    Ping,
}

/// What a person is in a meeting. Owner and co-hosts are hosts: they may do everything in
/// the meeting (co-hosts cannot delete or reschedule it; that is the apiserver's business).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Owner,
    Cohost,
    #[default]
    Participant,
    Guest,
}

impl Role {
    pub fn is_host(self) -> bool {
        matches!(self, Role::Owner | Role::Cohost)
    }
}

/// Someone waiting in the lobby, as hosts see them.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LobbyEntry {
    pub participant_id: ParticipantId,
    pub name: String,
    pub role: Role,
    /// Unix seconds when they started waiting.
    pub since: i64,
}

/// One chat message, as delivered live and in the history.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ChatLine {
    pub participant_id: ParticipantId,
    pub name: String,
    pub text: String,
    pub at: i64,
    /// A private message to this participant (only they and the sender get it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<ParticipantId>,
    /// A private message to the hosts (only hosts and the sender get it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub to_hosts: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ParticipantInfo {
    pub participant_id: ParticipantId,
    pub name: String,
    pub host: bool,
    pub audio_muted: bool,
    pub video_muted: bool,
    pub hand_raised: bool,
    #[serde(default)]
    pub role: Role,
    /// When the hand went up (unix milliseconds; 0: down): hosts see hands in raise order.
    #[serde(default)]
    pub hand_at: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TrackInfo {
    /// The mid of this track in the receiving client's session.
    pub mid: String,
    pub participant_id: ParticipantId,
    pub kind: MediaKind,
    pub source: Source,
}

/// Declares [`CloseReason`]: each variant with its wire name, once.
macro_rules! close_reasons {
    ($($(#[$doc:meta])* $variant:ident => $wire:literal,)*) => {
        /// Why a participant's session ended: `closed.reason` to them, `participant_left.reason`
        /// to the others, and the participation record's reason at the apiserver.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum CloseReason {
            $($(#[$doc])* #[serde(rename = $wire)] $variant,)*
        }

        impl CloseReason {
            /// Every reason (tests, documentation).
            pub const ALL: &[CloseReason] = &[$(CloseReason::$variant,)*];

            /// The wire name (`"slow_reader"`), also the WebSocket close frame's description.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(CloseReason::$variant => $wire,)*
                }
            }
        }
    };
}

close_reasons! {
    /// They left (the `leave` message, or their socket closed).
    Left => "left",
    /// A host removed them; they may not join again.
    Removed => "removed",
    /// A host did not let them in from the lobby.
    Denied => "denied",
    /// The room is locked.
    Locked => "locked",
    /// A host ended the meeting for everyone.
    Ended => "ended",
    /// The same participant joined again from another connection.
    Replaced => "replaced",
    /// The lobby is full.
    LobbyFull => "lobby_full",
    /// The sfuserver stops; clients rejoin (perhaps elsewhere).
    ServerShutdown => "server_shutdown",
    ServerError => "server_error",
    /// The connection did not read what the server sent.
    SlowReader => "slow_reader",
    /// The connection sent more than a client may.
    RateLimited => "rate_limited",
    /// Their media connection failed.
    MediaError => "media_error",
    /// No media or signaling from them for too long.
    ConnectionLost => "connection_lost",
    /// An offer or answer that could not be applied.
    BadSdp => "bad_sdp",
    /// The WebSocket broke its protocol.
    ProtocolError => "protocol_error",
    /// No join message in time, or no sign of life on the socket.
    Timeout => "timeout",
    /// The first message was not a readable `join`.
    BadJoin => "bad_join",
    /// The join token was refused.
    BadToken => "bad_token",
    /// The join token names another sfuserver.
    WrongServer => "wrong_server",
    /// The server closed the session itself (a `closed` was sent before).
    Closed => "closed",
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Sfuserver → client.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    Joined {
        participant_id: ParticipantId,
        name: String,
        host: bool,
        meeting: i64,
        participants: Vec<ParticipantInfo>,
    },
    ParticipantJoined {
        participant: ParticipantInfo,
    },
    ParticipantLeft {
        participant_id: ParticipantId,
        reason: CloseReason,
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
        participant_id: ParticipantId,
        kind: MediaKind,
        muted: bool,
        by_host: bool,
        /// The host's name when `by_host`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    ActiveSpeaker {
        participant_id: Option<ParticipantId>,
    },
    Chat(ChatLine),
    /// The chat so far (what this participant may read), right after `joined`.
    ChatHistory {
        messages: Vec<ChatLine>,
    },
    Hand {
        participant_id: ParticipantId,
        raised: bool,
        /// When it went up (unix ms; 0 when lowered).
        #[serde(default)]
        at: i64,
        /// Lowered by a host (their name).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// You are in the lobby: no media and no other messages until a host admits you
    /// (`joined` follows) or denies you (`closed`, reason `denied`).
    Waiting {
        participant_id: ParticipantId,
        name: String,
    },
    /// To hosts: who waits in the lobby now (sent whenever it changes, and after `joined`).
    Lobby {
        waiting: Vec<LobbyEntry>,
    },
    /// Someone's role changed (promoted to co-host or demoted).
    Role {
        participant_id: ParticipantId,
        role: Role,
        host: bool,
        by: String,
    },
    /// A host asks everyone to unmute (nobody is unmuted by force).
    AskUnmute {
        by: String,
    },
    /// What participants (not hosts) may publish; offers with other sources are refused.
    Permissions {
        cameras: bool,
        screens: bool,
        by: Option<String>,
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
        reason: CloseReason,
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
        participant_id: ParticipantId,
        emoji: String,
        at: i64,
    },
    /// A host put someone in the spotlight for everyone (`None`: spotlight off).
    Spotlight {
        participant_id: Option<ParticipantId>,
        by: ParticipantId,
    },
}

/// The signaling WebSocket's path on an sfuserver, up to the meeting id.
macro_rules! signal_prefix {
    () => {
        "/sfu/v1/signal/"
    };
}

/// The route of the signaling WebSocket on an sfuserver's listener.
pub const SIGNAL_ROUTE: &str = concat!(signal_prefix!(), "{meeting}");

/// The path of `meeting`'s signaling WebSocket (the join answer's `signal_url` ends so).
pub fn signal_path(meeting: crate::ids::MeetingId) -> String {
    format!(concat!(signal_prefix!(), "{}"), meeting)
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
    pub participant_id: ParticipantId,
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

#[cfg(test)]
mod close_reason_tests {
    use super::CloseReason;

    /// `as_str` (close frames, logs) and serde (messages, the bridge) say the same name.
    #[test]
    fn wire_names_agree() {
        for &r in CloseReason::ALL {
            assert_eq!(
                serde_json::to_string(&r).expect("serializes"),
                format!("\"{}\"", r.as_str())
            );
            assert_eq!(
                serde_json::from_str::<CloseReason>(&format!("\"{r}\"")).expect("parses"),
                r
            );
        }
        assert_eq!(CloseReason::SlowReader.as_str(), "slow_reader");
    }

    #[test]
    fn the_signal_path_fits_its_route() {
        use super::{SIGNAL_ROUTE, signal_path};
        assert_eq!(SIGNAL_ROUTE, "/sfu/v1/signal/{meeting}");
        assert_eq!(signal_path(crate::ids::MeetingId(7)), "/sfu/v1/signal/7");
    }
}
