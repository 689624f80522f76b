//! The node registry: servers of other roles that registered with this apiserver.
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "nodes")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub role: String,
    pub address: String,
    pub capacity: i64,
    pub version: String,
    pub state: State,
    pub load: i64,
    pub last_seen: i64,
}

impl ActiveModelBehavior for ActiveModel {}

/// Whether the registry last saw the node up; stored as the same strings as before.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum, serde::Serialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(8))")]
#[serde(rename_all = "snake_case")]
pub enum State {
    #[sea_orm(string_value = "up")]
    Up,
    #[sea_orm(string_value = "down")]
    Down,
}
