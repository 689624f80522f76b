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
}

impl ActiveModelBehavior for ActiveModel {}
