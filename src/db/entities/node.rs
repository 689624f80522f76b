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
    /// "up" or "down".
    pub state: String,
    pub load: i64,
    pub last_seen: i64,
}

impl ActiveModelBehavior for ActiveModel {}
