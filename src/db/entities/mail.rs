//! The persistent mail outbox: a message is stored fully formatted before any attempt, so nothing queued is lost.
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "mail_outbox")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub recipient: String,
    pub sender: String,
    pub subject: String,
    /// The whole RFC 5322 message, as it will be sent.
    pub message: String,
    pub status: Status,
    pub attempts: i32,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
    /// 0 = sign-in codes (sent first), 1 = everything else.
    pub priority: i32,
    /// The user whose action caused the mail (quotas), if any.
    pub user_id: Option<i64>,
    /// Not worth sending after this (a sign-in code that has expired).
    pub expires_at: Option<i64>,
}

impl ActiveModelBehavior for ActiveModel {}

/// Where a mail is in the outbox; stored and shown (admin page) as the same strings as ever.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum, serde::Serialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting for its (next) attempt.
    #[sea_orm(string_value = "pending")]
    Pending,
    /// No mail server configured: written to the log instead.
    #[sea_orm(string_value = "logged")]
    Logged,
    #[sea_orm(string_value = "sent")]
    Sent,
    /// Given up: refused for good, or out of attempts.
    #[sea_orm(string_value = "failed")]
    Failed,
    /// A sign-in code nobody could use any more: never sent.
    #[sea_orm(string_value = "expired")]
    Expired,
}
