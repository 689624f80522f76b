//! The node registry's table as others read it (the registry itself writes it).

use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder};

use crate::db::entities::node;

/// Every node the registry knows, by role, then id.
pub async fn all<C: ConnectionTrait>(db: &C) -> Result<Vec<node::Model>, DbErr> {
    node::Entity::find()
        .order_by_asc(node::Column::Role)
        .order_by_asc(node::Column::Id)
        .all(db)
        .await
}

/// The nodes of `role` (e.g. "fsserver"), up or down.
pub async fn of_role<C: ConnectionTrait>(db: &C, role: &str) -> Result<Vec<node::Model>, DbErr> {
    node::Entity::find()
        .filter(node::Column::Role.eq(role))
        .all(db)
        .await
}
