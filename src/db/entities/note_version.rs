//! Every accepted version of a meeting's notes, for history and restore.
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "note_versions")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub meeting_id: i64,
    pub version: i64,
    pub text: String,
    pub created_at: i64,
    pub created_by: Option<i64>,
}

impl ActiveModelBehavior for ActiveModel {}
