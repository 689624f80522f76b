//! Meeting notes as stored: the compacted state with the changes after it, and the kept
//! versions (the history).

use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use crate::db::entities::{note, note_update, note_version};

/// The meeting's compacted notes (if any) and the changes after it, up to `up_to` when given,
/// in order. Read in one transaction by the caller when it must be a consistent pair.
pub async fn state_and_changes<C: ConnectionTrait>(
    db: &C,
    meeting_id: i64,
    up_to: Option<i64>,
) -> Result<(Option<note::Model>, Vec<note_update::Model>), DbErr> {
    let row = note::Entity::find_by_id(meeting_id).one(db).await?;
    let mut changes =
        note_update::Entity::find().filter(note_update::Column::MeetingId.eq(meeting_id));
    if let Some(v) = up_to {
        changes = changes.filter(note_update::Column::Seq.lte(v));
    }
    let changes = changes
        .order_by_asc(note_update::Column::Seq)
        .all(db)
        .await?;
    Ok((row, changes))
}

/// (id, created at, bytes) of each kept version, oldest first.
pub async fn version_sizes<C: ConnectionTrait>(
    db: &C,
    meeting_id: i64,
) -> Result<Vec<(i64, i64, i64)>, DbErr> {
    note_version::Entity::find()
        .select_only()
        .column(note_version::Column::Id)
        .column(note_version::Column::CreatedAt)
        .column(note_version::Column::Bytes)
        .filter(note_version::Column::MeetingId.eq(meeting_id))
        .order_by_asc(note_version::Column::Version)
        .into_tuple()
        .all(db)
        .await
}

pub async fn delete_versions<C: ConnectionTrait>(db: &C, ids: &[i64]) -> Result<(), DbErr> {
    // Bounded statements: a long history is dropped in pieces.
    for chunk in ids.chunks(500) {
        note_version::Entity::delete_many()
            .filter(note_version::Column::Id.is_in(chunk.iter().copied()))
            .exec(db)
            .await?;
    }
    Ok(())
}

/// The newest kept version number (0: none).
pub async fn newest_version<C: ConnectionTrait>(db: &C, meeting_id: i64) -> Result<i64, DbErr> {
    let v: Option<i64> = note_version::Entity::find()
        .select_only()
        .column(note_version::Column::Version)
        .filter(note_version::Column::MeetingId.eq(meeting_id))
        .order_by_desc(note_version::Column::Version)
        .into_tuple()
        .one(db)
        .await?;
    Ok(v.unwrap_or(0))
}

/// One line of the history: version, created at, created by, authors (JSON), kind, bytes.
pub type VersionLine = (i64, i64, Option<i64>, Option<String>, String, i64);

/// The kept versions without their content, newest first.
pub async fn versions<C: ConnectionTrait>(
    db: &C,
    meeting_id: i64,
) -> Result<Vec<VersionLine>, DbErr> {
    note_version::Entity::find()
        .select_only()
        .column(note_version::Column::Version)
        .column(note_version::Column::CreatedAt)
        .column(note_version::Column::CreatedBy)
        .column(note_version::Column::Authors)
        .column(note_version::Column::Kind)
        .column(note_version::Column::Bytes)
        .filter(note_version::Column::MeetingId.eq(meeting_id))
        .order_by_desc(note_version::Column::Version)
        .into_tuple()
        .all(db)
        .await
}

pub async fn version<C: ConnectionTrait>(
    db: &C,
    meeting_id: i64,
    version: i64,
) -> Result<Option<note_version::Model>, DbErr> {
    note_version::Entity::find()
        .filter(note_version::Column::MeetingId.eq(meeting_id))
        .filter(note_version::Column::Version.eq(version))
        .one(db)
        .await
}
