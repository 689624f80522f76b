//! A meeting's chat as kept for its notes.

use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder};

use crate::db::entities::chat_message;

/// The meeting's messages to everyone (never private ones, nor those to the hosts), oldest
/// first.
pub async fn to_everyone<C: ConnectionTrait>(
    db: &C,
    meeting_id: i64,
) -> Result<Vec<chat_message::Model>, DbErr> {
    chat_message::Entity::find()
        .filter(chat_message::Column::MeetingId.eq(meeting_id))
        .filter(chat_message::Column::ToParticipant.is_null())
        .filter(chat_message::Column::ToHosts.eq(false))
        .order_by_asc(chat_message::Column::Id)
        .all(db)
        .await
}
