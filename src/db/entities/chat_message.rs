//! A meeting's chat, as the sfuserver reported it (bounded per meeting).
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "chat_messages")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub meeting_id: i64,
    pub at: i64,
    pub from_participant: String,
    pub from_name: String,
    /// A private message to this participant.
    pub to_participant: Option<String>,
    /// A private message to the hosts.
    pub to_hosts: bool,
    pub text: String,
}

impl ActiveModelBehavior for ActiveModel {}
