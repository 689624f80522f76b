//! Sign-in sessions. Only the SHA-256 of the opaque token is stored.
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sessions")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub token_hash: String,
    pub user_id: i64,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    /// How it was made.
    pub method: crate::config::AuthMethod,
    /// The provider's name for the person: OIDC `sub` or LDAP DN.
    pub idp_subject: Option<String>,
    /// The provider's tokens (OIDC refresh and ID token), sealed (`auth::seal`).
    pub idp_tokens: Option<String>,
    /// When the provider last confirmed the person (SSO sessions are re-checked).
    pub checked_at: Option<i64>,
    /// What the provider's groups allowed at the last check; None: no group rule applies.
    pub can_create: Option<bool>,
    pub is_admin: Option<bool>,
    /// The client address it was made from (the admin's user list).
    pub ip: Option<String>,
}

impl ActiveModelBehavior for ActiveModel {}
