//! OpenID Connect sign-ins under way: the state sent to the provider, bound to the browser
//! that started it, usable once.

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter};

use crate::db::entities::sso_login;

/// Sign-ins from `ip` started since `since` and not finished.
pub async fn in_flight_from<C: ConnectionTrait>(
    db: &C,
    ip: &str,
    since: i64,
) -> Result<u64, DbErr> {
    sso_login::Entity::find()
        .filter(sso_login::Column::Ip.eq(ip))
        .filter(sso_login::Column::CreatedAt.gt(since))
        .filter(sso_login::Column::ConsumedAt.is_null())
        .count(db)
        .await
}

pub async fn by_state_hash<C: ConnectionTrait>(
    db: &C,
    state_hash: &str,
) -> Result<Option<sso_login::Model>, DbErr> {
    sso_login::Entity::find()
        .filter(sso_login::Column::StateHash.eq(state_hash))
        .one(db)
        .await
}

/// Uses sign-in `id` up; true for the one caller that did (a replayed callback gets false).
pub async fn consume<C: ConnectionTrait>(db: &C, id: i64, now: i64) -> Result<bool, DbErr> {
    Ok(sso_login::Entity::update_many()
        .col_expr(sso_login::Column::ConsumedAt, Expr::value(now))
        .filter(sso_login::Column::Id.eq(id))
        .filter(sso_login::Column::ConsumedAt.is_null())
        .exec(db)
        .await?
        .rows_affected
        == 1)
}
