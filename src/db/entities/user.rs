//! People who signed in at least once. Email is the identity.
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub email: String,
    pub display_name: String,
    pub created_at: i64,
    pub last_login_at: i64,
    /// An administrator disabled the account: no sign-in, no session, until enabled.
    pub disabled_at: Option<i64>,
    /// The identity provider stopped vouching for the person (disabled there): no access by
    /// any method until they sign in through the provider again.
    pub idp_disabled_at: Option<i64>,
}

impl ActiveModelBehavior for ActiveModel {}
