//! Versions of a meeting's notes kept for history (on pauses, when the last editor leaves,
//! on REST saves and restores), thinned out under the meeting's history budget.
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
    /// JSON list of the names of who changed the text since the version before.
    pub authors: Option<String>,
    /// What kept it: `pause`, `end`, `save` (REST), `restore`.
    pub kind: String,
    /// Bytes of `text` (what counts against the budget).
    pub bytes: i64,
}

impl ActiveModelBehavior for ActiveModel {}
