//! The mail outbox: what is due, what went wrong, and how much one person caused.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

use crate::db::entities::mail::{self, Status};

/// How many mails user `user_id`'s actions queued since `since` (their daily quota).
pub async fn caused_by_since<C: ConnectionTrait>(
    db: &C,
    user_id: i64,
    since: i64,
) -> Result<u64, DbErr> {
    mail::Entity::find()
        .filter(mail::Column::UserId.eq(user_id))
        .filter(mail::Column::CreatedAt.gt(since))
        .count(db)
        .await
}

/// Pending mail past its `expires_at` (a sign-in code nobody can use) is never sent.
pub async fn expire<C: ConnectionTrait>(db: &C, now: i64) -> Result<(), DbErr> {
    mail::Entity::update_many()
        .col_expr(mail::Column::Status, Expr::value(Status::Expired))
        .col_expr(mail::Column::Message, Expr::value(""))
        .filter(mail::Column::Status.eq(Status::Pending))
        .filter(mail::Column::ExpiresAt.lt(now))
        .exec(db)
        .await?;
    Ok(())
}

/// Which priorities a delivery pass takes.
pub enum Lane {
    Only(i32),
    AllBut(i32),
}

/// Up to `limit` pending mails of `lane` due at `now`, longest waiting first.
pub async fn due<C: ConnectionTrait>(
    db: &C,
    now: i64,
    lane: Lane,
    limit: u64,
) -> Result<Vec<mail::Model>, DbErr> {
    let lane = match lane {
        Lane::Only(p) => mail::Column::Priority.eq(p),
        Lane::AllBut(p) => mail::Column::Priority.ne(p),
    };
    mail::Entity::find()
        .filter(mail::Column::Status.eq(Status::Pending))
        .filter(mail::Column::NextAttemptAt.lte(now))
        .filter(lane)
        .order_by_asc(mail::Column::NextAttemptAt)
        .order_by_asc(mail::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

pub async fn pending_count<C: ConnectionTrait>(db: &C) -> Result<u64, DbErr> {
    mail::Entity::find()
        .filter(mail::Column::Status.eq(Status::Pending))
        .count(db)
        .await
}

/// Mail in trouble: still pending after a failed attempt, or given up.
fn troubled() -> Condition {
    Condition::any()
        .add(
            Condition::all()
                .add(mail::Column::Status.eq(Status::Pending))
                .add(mail::Column::LastError.is_not_null()),
        )
        .add(mail::Column::Status.eq(Status::Failed))
}

/// The outbox at a glance (the admin page).
pub struct Counts {
    pub queued: u64,
    pub troubled: u64,
    pub given_up: u64,
}

pub async fn counts<C: ConnectionTrait>(db: &C) -> Result<Counts, DbErr> {
    Ok(Counts {
        queued: pending_count(db).await?,
        troubled: mail::Entity::find().filter(troubled()).count(db).await?,
        given_up: mail::Entity::find()
            .filter(mail::Column::Status.eq(Status::Failed))
            .count(db)
            .await?,
    })
}

/// The latest `limit` mails in trouble, the most recent attempt first.
pub async fn latest_troubled<C: ConnectionTrait>(
    db: &C,
    limit: u64,
) -> Result<Vec<mail::Model>, DbErr> {
    mail::Entity::find()
        .filter(troubled())
        .order_by_desc(mail::Column::NextAttemptAt)
        .order_by_desc(mail::Column::Id)
        .limit(limit)
        .all(db)
        .await
}
