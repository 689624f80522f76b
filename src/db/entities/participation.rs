//! Participation history: one row per join, closed when the participant leaves.
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "participations")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub meeting_id: i64,
    #[sea_orm(unique)]
    pub participant_id: String,
    pub user_id: Option<i64>,
    pub display_name: String,
    pub joined_at: i64,
    pub left_at: Option<i64>,
    /// When the sfuserver reported the participant in the media session (None: only the join
    /// answer was issued). Notes and files follow presence, not the join answer.
    pub entered_at: Option<i64>,
    /// When a host removed them: they may not come back (same account or browser).
    pub removed_at: Option<i64>,
    /// A guest's browser key (SHA-256 of the `meeting_guest` cookie), to keep a removed guest out.
    pub guest_key: Option<String>,
}

impl ActiveModelBehavior for ActiveModel {}
