//! The audit log: who did what, when, from where, and how it ended.
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
#[sea_orm(table_name = "audit_log")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Unix seconds.
    pub at: i64,
    /// e.g. "sign_in", "admin.disable_user", "host.remove" (see `apiserver::audit`).
    pub action: String,
    /// "ok", "failed", "refused" or "throttled".
    pub result: String,
    /// Sign-ins: "email_code", "oidc" or "ldap".
    pub method: Option<crate::config::AuthMethod>,
    pub ip: Option<String>,
    pub actor_id: Option<i64>,
    /// Who acted (an email, what was typed as a login, or "system").
    pub actor: String,
    /// Whom or what it was done to (a user's email, a participant).
    pub target: String,
    pub meeting_id: Option<i64>,
    /// Why it failed, or what else matters.
    pub detail: String,
}

impl ActiveModelBehavior for ActiveModel {}
