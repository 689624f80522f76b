//! The current notes (minutes) of a meeting, with a version for optimistic concurrency.
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notes")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub meeting_id: i64,
    pub text: String,
    pub version: i64,
    pub updated_at: i64,
    pub updated_by: Option<i64>,
}

impl ActiveModelBehavior for ActiveModel {}
