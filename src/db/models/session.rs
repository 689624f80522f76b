//! Sign-in sessions, and the one rule that makes a session valid.
//!
//! Every way in goes through [`is_valid`]: a request's Bearer token or cookie, the notes
//! WebSocket's auth message, and the periodic re-check of connections that outlive a request.
//! Queries over many sessions ("who is signed in", "which SSO sessions to re-check") use
//! [`live`], the same rule's part that is a column of the session itself; the person's part
//! (disabled) is applied when those sessions are used.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect,
};

use crate::db::entities::{session, user};

/// A session is valid while it is not revoked, not expired, and its person is not disabled
/// (by an administrator, or by the identity provider since the session began).
pub fn is_valid(s: &session::Model, person: &user::Model, now: i64) -> bool {
    s.revoked_at.is_none()
        && s.expires_at >= now
        && person.disabled_at.is_none()
        // Disabling revokes sessions too; this also covers a session made in the same instant.
        && person.idp_disabled_at.is_none_or(|d| d < s.created_at)
}

/// Sessions not revoked and not expired at `now` (see [`is_valid`]).
pub fn live(now: i64) -> Condition {
    Condition::all()
        .add(session::Column::RevokedAt.is_null())
        .add(session::Column::ExpiresAt.gte(now))
}

/// The session whose token hashes to `token_hash`, with its person, if it is valid.
pub async fn valid_by_token_hash<C: ConnectionTrait>(
    db: &C,
    token_hash: &str,
    now: i64,
) -> Result<Option<(session::Model, user::Model)>, DbErr> {
    let Some(s) = session::Entity::find()
        .filter(session::Column::TokenHash.eq(token_hash))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    with_person_if_valid(db, s, now).await
}

/// Whether session `id` is still valid: for connections that outlive a request.
pub async fn still_valid<C: ConnectionTrait>(db: &C, id: i64, now: i64) -> Result<bool, DbErr> {
    let Some(s) = session::Entity::find_by_id(id).one(db).await? else {
        return Ok(false);
    };
    Ok(with_person_if_valid(db, s, now).await?.is_some())
}

async fn with_person_if_valid<C: ConnectionTrait>(
    db: &C,
    s: session::Model,
    now: i64,
) -> Result<Option<(session::Model, user::Model)>, DbErr> {
    let Some(person) = user::Entity::find_by_id(s.user_id).one(db).await? else {
        return Ok(None);
    };
    Ok(is_valid(&s, &person, now).then_some((s, person)))
}

/// Ends session `id` for good (sign-out).
pub async fn revoke<C: ConnectionTrait>(db: &C, id: i64, now: i64) -> Result<(), DbErr> {
    session::Entity::update_many()
        .col_expr(session::Column::RevokedAt, Expr::value(now))
        .filter(session::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// Up to `limit` live sessions made by one of `methods` that their provider has not confirmed
/// since `due` (or ever).
pub async fn due_for_recheck<C: ConnectionTrait>(
    db: &C,
    methods: &[&str],
    now: i64,
    due: i64,
    limit: u64,
) -> Result<Vec<session::Model>, DbErr> {
    session::Entity::find()
        .filter(session::Column::Method.is_in(methods.iter().copied()))
        .filter(live(now))
        .filter(
            Condition::any()
                .add(session::Column::CheckedAt.is_null())
                .add(session::Column::CheckedAt.lte(due)),
        )
        .limit(limit)
        .all(db)
        .await
}

/// The live sessions of the people `user_ids` (see [`live`]).
pub async fn live_of<C: ConnectionTrait>(
    db: &C,
    user_ids: impl IntoIterator<Item = i64>,
    now: i64,
) -> Result<Vec<session::Model>, DbErr> {
    session::Entity::find()
        .filter(session::Column::UserId.is_in(user_ids))
        .filter(live(now))
        .all(db)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> session::Model {
        session::Model {
            id: 1,
            token_hash: String::new(),
            user_id: 7,
            created_at: 1_000,
            expires_at: 2_000,
            revoked_at: None,
            method: crate::config::AuthMethod::Oidc,
            idp_subject: None,
            idp_tokens: None,
            checked_at: None,
            can_create: None,
            is_admin: None,
            ip: None,
        }
    }

    fn person() -> user::Model {
        user::Model {
            id: 7,
            email: "ann@corp.test".into(),
            display_name: "Ann".into(),
            created_at: 0,
            last_login_at: 0,
            disabled_at: None,
            idp_disabled_at: None,
        }
    }

    #[test]
    fn a_session_is_valid_until_expired_revoked_or_its_person_disabled() {
        let (s, p) = (session(), person());
        assert!(is_valid(&s, &p, 1_500));
        assert!(is_valid(&s, &p, 2_000), "valid through its last second");
        assert!(!is_valid(&s, &p, 2_001), "expired");
        let revoked = session::Model {
            revoked_at: Some(1_200),
            ..session()
        };
        assert!(!is_valid(&revoked, &p, 1_500));
        let disabled = user::Model {
            disabled_at: Some(1_100),
            ..person()
        };
        assert!(!is_valid(&s, &disabled, 1_500));
        // The provider's "no" ends the sessions from before it (and one made in that second),
        // not those of a later sign-in through the provider.
        for (idp_disabled_at, valid) in [(900, true), (1_000, false), (1_100, false)] {
            let p = user::Model {
                idp_disabled_at: Some(idp_disabled_at),
                ..person()
            };
            assert_eq!(
                is_valid(&s, &p, 1_500),
                valid,
                "idp disabled at {idp_disabled_at}"
            );
        }
    }
}
