//! Co-hosts a meeting's owner named in advance, by email (they need not have an account yet).
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "meeting_cohosts")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub meeting_id: i64,
    pub email: String,
    pub created_at: i64,
}

impl ActiveModelBehavior for ActiveModel {}
