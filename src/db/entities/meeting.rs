//! Meetings: each user's one instant room (begin_at = 0) and scheduled meetings.
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "meetings")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub code: String,
    pub owner_id: i64,
    pub title: String,
    pub kind: Kind,
    pub begin_at: i64,
    pub end_at: i64,
    /// iCalendar UID: stable across updates and the cancellation.
    pub ical_uid: String,
    /// iCalendar SEQUENCE: +1 on every change sent to invitees.
    pub sequence: i32,
    pub status: Status,
    pub guests_allowed: bool,
    /// Assigned servers (host:port), from the allocator.
    pub sfu: Option<String>,
    pub turn: Option<String>,
    pub fs: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Locked by a host: nobody new may join (hosts still may).
    pub locked: bool,
    /// Participations with an id up to this give no access (and no ban): set to the newest
    /// participation's id when the owner changes the code.
    pub access_since: i64,
    /// Who waits in the lobby until a host lets them in.
    pub lobby: Lobby,
    /// Argon2 PHC string of the passcode (None: no passcode).
    pub passcode_hash: Option<String>,
    /// The passcode sealed under a key from the deployment secret, for invitation mails.
    pub passcode_sealed: Option<String>,
    /// Who may share a screen.
    pub screen_share: ScreenShare,
    /// Mailed notes include the chat (messages to everyone).
    pub chat_in_notes: bool,
}

impl ActiveModelBehavior for ActiveModel {}

// The enums below are stored as the same strings the columns always held, and serialize to
// them in JSON: the database contents and the API stay what they were.

/// An owner's one permanent instant room, or a meeting with a time and invitees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum, serde::Serialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    #[sea_orm(string_value = "instant")]
    Instant,
    #[sea_orm(string_value = "scheduled")]
    Scheduled,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Instant => "instant",
            Kind::Scheduled => "scheduled",
        }
    }
}

/// A cancelled meeting stays (its notes are kept) but can no longer be joined or changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum, serde::Serialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "snake_case")]
pub enum Status {
    #[sea_orm(string_value = "active")]
    Active,
    #[sea_orm(string_value = "cancelled")]
    Cancelled,
}

/// Who waits in a meeting's lobby until a host lets them in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum, serde::Serialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "snake_case")]
pub enum Lobby {
    #[sea_orm(string_value = "off")]
    Off,
    /// People who are neither invited nor co-hosts: guests and other signed-in people.
    #[sea_orm(string_value = "guests")]
    Guests,
    /// All but hosts.
    #[sea_orm(string_value = "everyone")]
    Everyone,
}

/// The deployment's default for new meetings (`meetings.lobby`) is the same choice.
impl From<crate::config::LobbyMode> for Lobby {
    fn from(m: crate::config::LobbyMode) -> Lobby {
        use crate::config::LobbyMode;
        match m {
            LobbyMode::Off => Lobby::Off,
            LobbyMode::Guests => Lobby::Guests,
            LobbyMode::Everyone => Lobby::Everyone,
        }
    }
}

/// Who may share a screen in the meeting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum, serde::Serialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "snake_case")]
pub enum ScreenShare {
    #[sea_orm(string_value = "everyone")]
    Everyone,
    #[sea_orm(string_value = "hosts")]
    Hosts,
}

impl ScreenShare {
    pub fn parse(s: &str) -> Option<ScreenShare> {
        match s {
            "everyone" => Some(ScreenShare::Everyone),
            "hosts" => Some(ScreenShare::Hosts),
            _ => None,
        }
    }
}
