//! People with an account.

use sea_orm::{ConnectionTrait, DbErr, EntityTrait};

use crate::db::entities::user;

pub async fn by_id<C: ConnectionTrait>(db: &C, id: i64) -> Result<Option<user::Model>, DbErr> {
    user::Entity::find_by_id(id).one(db).await
}
