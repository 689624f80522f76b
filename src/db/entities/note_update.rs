//! One stored change of a meeting's notes (a Yjs v1 update), appended before it is
//! acknowledged; `seq` is the version it makes. Folded into `notes.state` by compaction.
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "note_updates")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub meeting_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub seq: i64,
    pub data: Vec<u8>,
    pub created_at: i64,
    pub author_id: Option<i64>,
    pub author_name: String,
}

impl ActiveModelBehavior for ActiveModel {}
