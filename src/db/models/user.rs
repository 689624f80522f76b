//! People with an account.

use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use std::collections::HashMap;

use crate::db::entities::user;

pub async fn by_email<C: ConnectionTrait>(
    db: &C,
    email: &str,
) -> Result<Option<user::Model>, DbErr> {
    user::Entity::find()
        .filter(user::Column::Email.eq(email))
        .one(db)
        .await
}

pub async fn by_id<C: ConnectionTrait>(db: &C, id: i64) -> Result<Option<user::Model>, DbErr> {
    user::Entity::find_by_id(id).one(db).await
}

/// The emails of the people `ids`, by id.
pub async fn emails_of<C: ConnectionTrait>(
    db: &C,
    ids: impl IntoIterator<Item = i64>,
) -> Result<HashMap<i64, String>, DbErr> {
    Ok(user::Entity::find()
        .select_only()
        .column(user::Column::Id)
        .column(user::Column::Email)
        .filter(user::Column::Id.is_in(ids))
        .into_tuple::<(i64, String)>()
        .all(db)
        .await?
        .into_iter()
        .collect())
}

/// Up to `limit` people whose email or name contains `text` (everyone without), the most
/// recent sign-in first.
pub async fn search<C: ConnectionTrait>(
    db: &C,
    text: Option<&str>,
    limit: u64,
) -> Result<Vec<user::Model>, DbErr> {
    let mut find = user::Entity::find();
    if let Some(text) = text {
        find = find.filter(
            Condition::any()
                .add(user::Column::Email.contains(text))
                .add(user::Column::DisplayName.contains(text)),
        );
    }
    find.order_by_desc(user::Column::LastLoginAt)
        .limit(limit)
        .all(db)
        .await
}
