//! Room control and participation messages between apiserver and sfuserver.

use actix::Message;
use serde::{Deserialize, Serialize};

use crate::ids::{MeetingId, ParticipantId};

/// A host action the apiserver asks the meeting's sfuserver to enforce.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum RoomAction {
    Mute {
        participant_id: ParticipantId,
    },
    Remove {
        participant_id: ParticipantId,
    },
    Lock,
    Unlock,
    End,
    /// Mutes every participant who is not a host (their audio is dropped until they unmute).
    MuteAll,
    /// Asks every participant who is not a host to unmute.
    AskUnmute,
    /// Lowers every raised hand.
    LowerHands,
    /// Lowers one hand.
    LowerHand {
        participant_id: ParticipantId,
    },
    /// Lets one person (or, without `participant_id`, everyone) in from the lobby.
    Admit {
        #[serde(default)]
        participant_id: Option<ParticipantId>,
    },
    /// Turns one person (or everyone) in the lobby away; `reason` is shown to them.
    Deny {
        #[serde(default)]
        participant_id: Option<ParticipantId>,
        #[serde(default)]
        reason: Option<String>,
    },
    /// Promotes a participant to co-host (`cohost: true`) or demotes a co-host.
    SetRole {
        participant_id: ParticipantId,
        cohost: bool,
    },
    /// What participants who are not hosts may publish besides their microphone.
    Permissions {
        cameras: bool,
        screens: bool,
    },
}

impl RoomAction {
    /// Checks what a client may put in an action (sizes of free text).
    pub fn check(&self) -> Result<(), String> {
        if let RoomAction::Deny {
            reason: Some(r), ..
        } = self
            && (r.chars().count() > 200 || r.chars().any(char::is_control))
        {
            return Err("A reason has at most 200 characters.".into());
        }
        Ok(())
    }
}

/// Why an sfuserver did not carry out a host action ([`ControlRoom`]); it crosses the bridge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "refused", content = "message", rename_all = "snake_case")]
pub enum ControlRefused {
    /// Nobody is in the meeting on this sfuserver.
    #[error("nobody is in this meeting")]
    NoMeeting,
    /// The participant the action names is not in the meeting.
    #[error("no such participant in this meeting")]
    NoParticipant,
    /// The action names someone who is not waiting in the lobby.
    #[error("nobody by that id waits in the lobby")]
    NotWaiting,
    /// The action may not be done to this person (the owner cannot be removed or demoted).
    #[error("{0}")]
    NotAllowed(String),
    /// The action itself is unacceptable (a reason too long).
    #[error("{0}")]
    BadAction(String),
    /// The sfuserver's media workers did not take or answer it.
    #[error("the media worker did not answer")]
    WorkerGone,
}

impl ControlRefused {
    /// The API's error code for it.
    pub fn code(&self) -> &'static str {
        match self {
            ControlRefused::NoMeeting | ControlRefused::NoParticipant => "not_in_meeting",
            ControlRefused::NotWaiting => "not_waiting",
            ControlRefused::NotAllowed(_) => "not_allowed",
            ControlRefused::BadAction(_) => "invalid_action",
            ControlRefused::WorkerGone => "sfu_unavailable",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Message)]
#[rtype(result = "Result<(), ControlRefused>")]
pub struct ControlRoom {
    pub meeting: MeetingId,
    pub action: RoomAction,
    /// The host's name, shown to the people it concerns ("Ann muted you").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// A chat message of a meeting (sfuserver → apiserver), kept per meeting (bounded) for the
/// mailed notes. Private messages are reported too (they are part of the meeting's record)
/// but never mailed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Message)]
#[rtype(result = "()")]
pub struct ChatPosted {
    pub meeting: MeetingId,
    pub line: crate::proto::signal::ChatLine,
}

/// A host action someone took over signaling (sfuserver → apiserver), for the audit log:
/// the apiserver records actions through its own API itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Message)]
#[rtype(result = "()")]
pub struct HostActed {
    pub meeting: MeetingId,
    pub by: ParticipantId,
    pub by_name: String,
    pub action: RoomAction,
    /// Why it was not done (None: done).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// A participant entered or left a meeting's media session (for participation history).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Message)]
#[rtype(result = "()")]
pub struct ParticipationChanged {
    pub meeting: MeetingId,
    pub participant: ParticipantId,
    pub joined: bool,
    /// Unix seconds.
    pub at: i64,
    /// Why they left (`removed`: a host removed them; they may not come back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<crate::proto::signal::CloseReason>,
}
