//! Participations: one row per join answer, marked when the sfuserver reports the person in
//! the media session (`entered_at`) and when they leave or a host removes them.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Set,
};

use crate::db::entities::participation;

/// A join answer was given: the participation opens (not yet entered).
pub struct Opened {
    pub meeting_id: i64,
    pub participant_id: String,
    pub user_id: Option<i64>,
    pub display_name: String,
    pub guest_key: Option<String>,
    pub now: i64,
}

pub async fn open<C: ConnectionTrait>(db: &C, o: Opened) -> Result<(), DbErr> {
    participation::ActiveModel {
        meeting_id: Set(o.meeting_id),
        participant_id: Set(o.participant_id),
        user_id: Set(o.user_id),
        display_name: Set(o.display_name),
        joined_at: Set(o.now),
        left_at: Set(None),
        // Set when the sfuserver reports the participant in the media session.
        entered_at: Set(None),
        removed_at: Set(None),
        guest_key: Set(o.guest_key),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(())
}

/// The participation `participant_id` of meeting `meeting_id`.
pub async fn by_participant<C: ConnectionTrait>(
    db: &C,
    meeting_id: i64,
    participant_id: &str,
) -> Result<Option<participation::Model>, DbErr> {
    participation::Entity::find()
        .filter(participation::Column::MeetingId.eq(meeting_id))
        .filter(participation::Column::ParticipantId.eq(participant_id))
        .one(db)
        .await
}

/// Who a removal is about: a signed-in person, or a guest's browser key.
pub enum Person<'a> {
    User(i64),
    Guest(&'a str),
}

/// Whether a host removed `who` from the meeting in a participation after `since`.
pub async fn was_removed<C: ConnectionTrait>(
    db: &C,
    meeting_id: i64,
    since: i64,
    who: Person<'_>,
) -> Result<bool, DbErr> {
    let q = participation::Entity::find()
        .filter(participation::Column::MeetingId.eq(meeting_id))
        .filter(participation::Column::RemovedAt.is_not_null())
        .filter(participation::Column::Id.gt(since));
    let q = match who {
        Person::User(id) => q.filter(participation::Column::UserId.eq(id)),
        Person::Guest(key) => q.filter(participation::Column::GuestKey.eq(key)),
    };
    Ok(q.one(db).await?.is_some())
}

/// Whether user `user_id` was in the meeting's media session (reported by the sfuserver) in a
/// participation after `since`, and not removed from it.
pub async fn user_was_present<C: ConnectionTrait>(
    db: &C,
    meeting_id: i64,
    user_id: i64,
    since: i64,
) -> Result<bool, DbErr> {
    Ok(participation::Entity::find()
        .filter(participation::Column::MeetingId.eq(meeting_id))
        .filter(participation::Column::UserId.eq(user_id))
        .filter(participation::Column::EnteredAt.is_not_null())
        .filter(participation::Column::RemovedAt.is_null())
        .filter(participation::Column::Id.gt(since))
        .one(db)
        .await?
        .is_some())
}

/// How many people the sfuserver reports in the meeting's media session now.
pub async fn present_count<C: ConnectionTrait>(db: &C, meeting_id: i64) -> Result<u64, DbErr> {
    participation::Entity::find()
        .filter(participation::Column::MeetingId.eq(meeting_id))
        .filter(participation::Column::EnteredAt.is_not_null())
        .filter(participation::Column::LeftAt.is_null())
        .count(db)
        .await
}

/// A host removed `participant_id`: it has left, and may not come back.
pub async fn mark_removed<C: ConnectionTrait>(
    db: &C,
    meeting_id: i64,
    participant_id: &str,
    now: i64,
) -> Result<(), DbErr> {
    participation::Entity::update_many()
        .col_expr(participation::Column::RemovedAt, Expr::value(now))
        .col_expr(participation::Column::LeftAt, Expr::value(now))
        .filter(participation::Column::MeetingId.eq(meeting_id))
        .filter(participation::Column::ParticipantId.eq(participant_id))
        .exec(db)
        .await?;
    Ok(())
}

/// The meeting's participations, newest first.
pub async fn of_meeting<C: ConnectionTrait>(
    db: &C,
    meeting_id: i64,
) -> Result<Vec<participation::Model>, DbErr> {
    participation::Entity::find()
        .filter(participation::Column::MeetingId.eq(meeting_id))
        .order_by_desc(participation::Column::Id)
        .all(db)
        .await
}

/// `user_id`'s participations that joined since `joined_since` and are open, or (with
/// `left_since`) left after it.
pub async fn recent_of_user<C: ConnectionTrait>(
    db: &C,
    user_id: i64,
    joined_since: i64,
    left_since: Option<i64>,
) -> Result<Vec<participation::Model>, DbErr> {
    let mut open = Condition::any().add(participation::Column::LeftAt.is_null());
    if let Some(s) = left_since {
        open = open.add(participation::Column::LeftAt.gte(s));
    }
    participation::Entity::find()
        .filter(participation::Column::UserId.eq(user_id))
        .filter(participation::Column::JoinedAt.gte(joined_since))
        .filter(open)
        .all(db)
        .await
}

/// (meeting id, joined at) of everyone in a media session now who joined since `oldest`.
pub async fn present_since<C: ConnectionTrait>(
    db: &C,
    oldest: i64,
) -> Result<Vec<(i64, i64)>, DbErr> {
    participation::Entity::find()
        .select_only()
        .column(participation::Column::MeetingId)
        .column(participation::Column::JoinedAt)
        .filter(participation::Column::LeftAt.is_null())
        .filter(participation::Column::EnteredAt.is_not_null())
        .filter(participation::Column::JoinedAt.gte(oldest))
        .into_tuple()
        .all(db)
        .await
}
