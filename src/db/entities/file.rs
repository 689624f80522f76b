//! Files of meeting notes: metadata here, bytes on the meeting's fsserver.
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "files")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub meeting_id: i64,
    pub name: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    pub fs: String,
    pub uploaded_by: Option<i64>,
    pub created_at: i64,
}

impl ActiveModelBehavior for ActiveModel {}
