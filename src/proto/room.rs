//! Room control and participation messages between apiserver and sfuserver.

use actix::Message;
use serde::{Deserialize, Serialize};

use crate::ids::{MeetingId, ParticipantId};

/// A host action the apiserver asks the meeting's sfuserver to enforce.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum RoomAction {
    Mute { participant_id: ParticipantId },
    Remove { participant_id: ParticipantId },
    Lock,
    Unlock,
    End,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Message)]
#[rtype(result = "Result<(), String>")]
pub struct ControlRoom {
    pub meeting: MeetingId,
    pub action: RoomAction,
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
}
