//! Who is invited to a scheduled meeting (by email; they need not have an account).
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "invitations")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub meeting_id: i64,
    pub email: String,
    pub created_at: i64,
}

impl ActiveModelBehavior for ActiveModel {}
