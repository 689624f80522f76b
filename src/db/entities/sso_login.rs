//! OpenID Connect sign-ins in flight: made when the browser is sent to the provider, consumed
//! (once) when it comes back. `state` is stored as a hash; the login is bound to the browser
//! that started it by a cookie whose hash is kept too.
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sso_logins")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub state_hash: String,
    pub binding_hash: String,
    pub nonce: String,
    pub pkce_verifier: String,
    /// Where to go after signing in (a path on this site).
    pub next: String,
    pub ip: String,
    pub created_at: i64,
    pub consumed_at: Option<i64>,
}

impl ActiveModelBehavior for ActiveModel {}
