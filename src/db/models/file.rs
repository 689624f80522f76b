//! Files of meeting notes, as recorded once their upload is committed.

use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, SqlErr};

use crate::db::entities::file;

pub async fn by_id<C: ConnectionTrait>(db: &C, id: &str) -> Result<Option<file::Model>, DbErr> {
    file::Entity::find_by_id(id.to_string()).one(db).await
}

/// The meeting's files, oldest first.
pub async fn of_meeting<C: ConnectionTrait>(
    db: &C,
    meeting_id: i64,
) -> Result<Vec<file::Model>, DbErr> {
    file::Entity::find()
        .filter(file::Column::MeetingId.eq(meeting_id))
        .order_by_asc(file::Column::CreatedAt)
        .order_by_asc(file::Column::Id)
        .all(db)
        .await
}

/// Records `row` (whose id is `id`) unless a row with that id is there already (the same
/// upload committed twice at once), and answers the stored row.
pub async fn record<C: ConnectionTrait>(
    db: &C,
    id: &str,
    row: file::ActiveModel,
) -> Result<file::Model, DbErr> {
    match file::Entity::insert(row).exec_without_returning(db).await {
        Ok(_) => {}
        Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {}
        Err(e) => return Err(e),
    }
    by_id(db, id)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("file {id} after recording it")))
}

pub async fn delete<C: ConnectionTrait>(db: &C, id: &str) -> Result<(), DbErr> {
    file::Entity::delete_by_id(id.to_string()).exec(db).await?;
    Ok(())
}
