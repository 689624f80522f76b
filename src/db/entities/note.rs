//! A meeting's notes as of the last compaction: the CRDT state (Yjs v1 update encoding), the
//! text it holds, and the version (number of changes) it includes. Changes after it are in
//! `note_updates`.
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notes")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub meeting_id: i64,
    /// The text of `state` (for people reading the database; the server reads `state`).
    pub text: String,
    /// The version of the last change folded in (as `compacted_version`; kept for old readers).
    pub version: i64,
    pub updated_at: i64,
    pub updated_by: Option<i64>,
    /// The CRDT document; NULL for notes written before notes were a CRDT (then `text` is
    /// the whole truth and the server makes the state from it on first use).
    pub state: Option<Vec<u8>>,
    /// The version of the last change folded into `state`.
    pub compacted_version: i64,
    /// JSON list of who changed the notes since the newest history version.
    pub pending_authors: Option<String>,
}

impl ActiveModelBehavior for ActiveModel {}
