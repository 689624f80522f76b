//! Password sign-ins (LDAP), for throttling: written before the directory is asked, so a burst
//! of guesses counts itself before any of it is checked.
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "password_attempts")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// What was typed as the login, lower-cased.
    pub login: String,
    pub ip: String,
    pub created_at: i64,
    /// "pending" (being checked), "failed" or "ok"; pending and failed count.
    pub outcome: String,
}

impl ActiveModelBehavior for ActiveModel {}
