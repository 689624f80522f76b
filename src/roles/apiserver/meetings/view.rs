//! A meeting as its owner, co-hosts and invitees see it (`GET /api/v1/meetings`, and the
//! answer to create and patch).

use serde::Serialize;

use crate::db::entities::meeting::{self, Kind, Lobby, ScreenShare, Status};
use crate::db::entities::user;
use crate::db::models;
use crate::error::ApiError;
use crate::roles::apiserver::ApiState;
use crate::roles::apiserver::controls;

#[derive(Serialize)]
pub struct Person {
    pub email: String,
    pub display_name: String,
}

#[derive(Serialize)]
pub struct MeetingView {
    pub id: i64,
    pub code: String,
    pub join_url: String,
    pub kind: Kind,
    pub title: String,
    pub begin_at: i64,
    pub end_at: i64,
    pub status: Status,
    pub sequence: i32,
    pub guests_allowed: bool,
    pub owner: Person,
    pub is_owner: bool,
    pub invitees: Vec<String>,
    /// Owner or co-host.
    pub is_host: bool,
    pub cohosts: Vec<String>,
    pub lobby: Lobby,
    pub has_passcode: bool,
    /// The passcode itself, for the owner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passcode: Option<String>,
    pub screen_share: ScreenShare,
    pub chat_in_notes: bool,
}

pub(super) async fn views(
    st: &ApiState,
    me: &user::Model,
    ms: Vec<meeting::Model>,
) -> Result<Vec<MeetingView>, ApiError> {
    let models::meeting::People {
        owners,
        mut invitees,
        mut cohosts,
    } = models::meeting::people_of(&st.db, &ms).await?;
    Ok(ms
        .into_iter()
        .map(|m| {
            let owner = owners.get(&m.owner_id);
            let inv = invitees.remove(&m.id).unwrap_or_default();
            let co = cohosts.remove(&m.id).unwrap_or_default();
            let is_owner = m.owner_id == me.id;
            let passcode = if is_owner {
                controls::passcode_of(st, &m)
            } else {
                None
            };
            MeetingView {
                is_host: is_owner || co.contains(&me.email),
                cohosts: co,
                lobby: m.lobby,
                has_passcode: m.passcode_hash.is_some(),
                passcode,
                screen_share: m.screen_share,
                chat_in_notes: m.chat_in_notes,
                id: m.id,
                join_url: st.join_url(&m.code),
                code: m.code,
                kind: m.kind,
                title: m.title,
                begin_at: m.begin_at,
                end_at: m.end_at,
                status: m.status,
                sequence: m.sequence,
                guests_allowed: m.guests_allowed,
                owner: Person {
                    email: owner.map(|o| o.email.clone()).unwrap_or_default(),
                    display_name: owner.map(|o| o.display_name.clone()).unwrap_or_default(),
                },
                is_owner,
                invitees: inv,
            }
        })
        .collect())
}

pub(super) async fn view(
    st: &ApiState,
    me: &user::Model,
    m: meeting::Model,
) -> Result<MeetingView, ApiError> {
    views(st, me, vec![m])
        .await?
        .pop()
        .ok_or_else(|| ApiError::internal("view of one meeting is empty"))
}
