//! Throttling password sign-ins (LDAP), the way codes are limited: per login from one client
//! IP, per client IP, and per login from all IPs, within `auth.password_failure_window`.
//!
//! An attempt is written as `pending` BEFORE the directory is asked, then counted together
//! with the failures and other pending attempts in the window. Of any number of guesses that
//! arrive at once, each sees at least every attempt inserted before it, so at most the limit
//! reach the directory; the others are refused without a bind (and their rows deleted). Counts
//! come from the table, so limits hold across restarts. Successful attempts do not count.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, Set,
};

use crate::config::Auth;
use crate::db::entities::password_attempt;
pub use crate::db::entities::password_attempt::Outcome;
use crate::util::now;

/// Refused: retry after this many seconds.
pub struct Throttled {
    pub retry_after: u64,
    pub whom: &'static str,
}

/// Records an attempt for `login` from `ip`; its id, or why it may not go ahead.
pub async fn begin(
    db: &sea_orm::DatabaseConnection,
    auth: &Auth,
    login: &str,
    ip: &str,
) -> Result<Result<i64, Throttled>, sea_orm::DbErr> {
    let t = now();
    let row = password_attempt::ActiveModel {
        login: Set(login.to_string()),
        ip: Set(ip.to_string()),
        created_at: Set(t),
        outcome: Set(Outcome::Pending),
        ..Default::default()
    }
    .insert(db)
    .await?;
    let window = auth.password_failure_window.as_secs_i64();
    let since = t - window;
    let limits = [
        (
            Condition::all()
                .add(password_attempt::Column::Login.eq(login))
                .add(password_attempt::Column::Ip.eq(ip)),
            auth.password_failures_per_login_per_ip,
            "this login from your network",
        ),
        (
            Condition::all().add(password_attempt::Column::Ip.eq(ip)),
            auth.password_failures_per_ip,
            "your network address",
        ),
        (
            Condition::all().add(password_attempt::Column::Login.eq(login)),
            auth.password_failures_per_login_all_ips,
            "this login",
        ),
    ];
    for (filter, limit, whom) in limits {
        let counted = password_attempt::Entity::find()
            .filter(filter)
            .filter(password_attempt::Column::CreatedAt.gt(since))
            .filter(password_attempt::Column::Outcome.is_in([Outcome::Pending, Outcome::Failed]))
            .order_by_asc(password_attempt::Column::CreatedAt)
            .all(db)
            .await?;
        // The count includes this attempt: `limit` attempts may be under way or have failed.
        if counted.len() > limit as usize {
            // Not kept: refused guesses must not grow the table (the audit log has them,
            // limited per address).
            forget(db, row.id).await?;
            let oldest = counted.first().map_or(t, |r| r.created_at);
            return Ok(Err(Throttled {
                retry_after: u64::try_from(oldest + window - t).unwrap_or(1).max(1),
                whom,
            }));
        }
    }
    Ok(Ok(row.id))
}

/// Marks attempt `id` as `outcome` (ok, failed).
pub async fn finish(
    db: &sea_orm::DatabaseConnection,
    id: i64,
    outcome: Outcome,
) -> Result<(), sea_orm::DbErr> {
    password_attempt::Entity::update_many()
        .col_expr(password_attempt::Column::Outcome, Expr::value(outcome))
        .filter(password_attempt::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// Forgets attempt `id` (the directory could not be asked: not the person's failure).
pub async fn forget(db: &sea_orm::DatabaseConnection, id: i64) -> Result<(), sea_orm::DbErr> {
    password_attempt::Entity::delete_by_id(id).exec(db).await?;
    Ok(())
}
