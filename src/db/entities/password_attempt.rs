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
    /// Pending and failed attempts count against the limits.
    pub outcome: Outcome,
}

impl ActiveModelBehavior for ActiveModel {}

/// Stored as the same strings as before.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(8))")]
pub enum Outcome {
    /// Being checked with the directory.
    #[sea_orm(string_value = "pending")]
    Pending,
    #[sea_orm(string_value = "failed")]
    Failed,
    #[sea_orm(string_value = "ok")]
    Ok,
}
