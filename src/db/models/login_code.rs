//! One-time sign-in codes (only their keyed hash is stored).
//!
//! Two rules hold here whatever the caller does: a code is consumed by exactly one request
//! ([`consume`] is a compare-and-set), and of any number of guesses arriving together at
//! most `max` are compared ([`claim_attempt`] counts the guess in the same statement that
//! checks the limit).

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, ExprTrait,
    QueryFilter, QueryOrder, Set,
};

use crate::db::entities::login_code;

/// Who a rate limit on code requests counts.
pub enum Requester<'a> {
    EmailFromIp(&'a str, &'a str),
    Ip(&'a str),
    Email(&'a str),
}

/// The codes requested by `who` since `since`, oldest first.
pub async fn requested_since<C: ConnectionTrait>(
    db: &C,
    who: Requester<'_>,
    since: i64,
) -> Result<Vec<login_code::Model>, DbErr> {
    let who = match who {
        Requester::EmailFromIp(email, ip) => Condition::all()
            .add(login_code::Column::Email.eq(email))
            .add(login_code::Column::Ip.eq(ip)),
        Requester::Ip(ip) => Condition::all().add(login_code::Column::Ip.eq(ip)),
        Requester::Email(email) => Condition::all().add(login_code::Column::Email.eq(email)),
    };
    login_code::Entity::find()
        .filter(who)
        .filter(login_code::Column::CreatedAt.gt(since))
        .order_by_asc(login_code::Column::CreatedAt)
        .all(db)
        .await
}

/// A new code for `email`; any earlier one still open is void from now on.
pub struct NewCode {
    pub email: String,
    pub code_hash: String,
    pub ip: String,
    pub now: i64,
    pub expires_at: i64,
}

pub async fn replace<C: ConnectionTrait>(db: &C, c: NewCode) -> Result<(), DbErr> {
    login_code::Entity::update_many()
        .col_expr(login_code::Column::ConsumedAt, Expr::value(c.now))
        .filter(login_code::Column::Email.eq(c.email.clone()))
        .filter(login_code::Column::ConsumedAt.is_null())
        .exec(db)
        .await?;
    login_code::ActiveModel {
        email: Set(c.email),
        code_hash: Set(c.code_hash),
        ip: Set(c.ip),
        created_at: Set(c.now),
        expires_at: Set(c.expires_at),
        attempts: Set(0),
        consumed_at: Set(None),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(())
}

/// The newest code of `email` not yet consumed.
pub async fn open_for<C: ConnectionTrait>(
    db: &C,
    email: &str,
) -> Result<Option<login_code::Model>, DbErr> {
    login_code::Entity::find()
        .filter(login_code::Column::Email.eq(email))
        .filter(login_code::Column::ConsumedAt.is_null())
        .order_by_desc(login_code::Column::Id)
        .one(db)
        .await
}

/// Consumes code `id`; true for the one caller that did.
pub async fn consume<C: ConnectionTrait>(db: &C, id: i64, now: i64) -> Result<bool, DbErr> {
    Ok(login_code::Entity::update_many()
        .col_expr(login_code::Column::ConsumedAt, Expr::value(now))
        .filter(login_code::Column::Id.eq(id))
        .filter(login_code::Column::ConsumedAt.is_null())
        .exec(db)
        .await?
        .rows_affected
        == 1)
}

/// Counts one guess against code `id` if it is open and has had fewer than `max`; false: no
/// guess may be compared.
pub async fn claim_attempt<C: ConnectionTrait>(db: &C, id: i64, max: i32) -> Result<bool, DbErr> {
    Ok(login_code::Entity::update_many()
        .col_expr(
            login_code::Column::Attempts,
            Expr::col(login_code::Column::Attempts).add(1),
        )
        .filter(login_code::Column::Id.eq(id))
        .filter(login_code::Column::ConsumedAt.is_null())
        .filter(login_code::Column::Attempts.lt(max))
        .exec(db)
        .await?
        .rows_affected
        == 1)
}

/// How many guesses code `id` has had (None: it is gone).
pub async fn attempts<C: ConnectionTrait>(db: &C, id: i64) -> Result<Option<i32>, DbErr> {
    Ok(login_code::Entity::find_by_id(id)
        .one(db)
        .await?
        .map(|r| r.attempts))
}
