//! One-time sign-in codes, stored as keyed hashes; one active code per email.
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "login_codes")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub email: String,
    pub code_hash: String,
    pub ip: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub attempts: i32,
    /// Set when the code was used or superseded by a newer one: it can never be used again.
    pub consumed_at: Option<i64>,
}

impl ActiveModelBehavior for ActiveModel {}
