//! What the hardening needs to remember: whether a participant really entered the media
//! session and whether a host removed them (notes and files follow presence, a removed person
//! cannot come back), a guest's browser key, a meeting's lock and the last participation
//! before its access was reset (a new code), and the mail outbox's priority, originator and expiry.

use sea_orm::ConnectionTrait;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn add(table: &'static str, col: ColumnDef) -> TableAlterStatement {
    Table::alter().table(table).add_column(col).to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        let alters = [
            add(
                "participations",
                ColumnDef::new("entered_at").big_integer().null().to_owned(),
            ),
            add(
                "participations",
                ColumnDef::new("removed_at").big_integer().null().to_owned(),
            ),
            add(
                "participations",
                ColumnDef::new("guest_key").string_len(64).null().to_owned(),
            ),
            add(
                "meetings",
                ColumnDef::new("locked")
                    .boolean()
                    .not_null()
                    .default(false)
                    .to_owned(),
            ),
            add(
                "meetings",
                ColumnDef::new("access_since")
                    .big_integer()
                    .not_null()
                    .default(0)
                    .to_owned(),
            ),
            add(
                "mail_outbox",
                ColumnDef::new("priority")
                    .integer()
                    .not_null()
                    .default(1)
                    .to_owned(),
            ),
            add(
                "mail_outbox",
                ColumnDef::new("user_id").big_integer().null().to_owned(),
            ),
            add(
                "mail_outbox",
                ColumnDef::new("expires_at").big_integer().null().to_owned(),
            ),
        ];
        for a in alters {
            m.alter_table(a).await?;
        }
        // Everyone recorded so far did enter (the row was written at join time).
        m.get_connection()
            .execute_unprepared("UPDATE participations SET entered_at = joined_at")
            .await?;
        let idx = |name: &'static str, table: &'static str, cols: &[&'static str]| {
            let mut i = Index::create();
            i.name(name).table(table);
            for c in cols {
                i.col(*c);
            }
            i.to_owned()
        };
        m.create_index(idx(
            "idx_mail_due",
            "mail_outbox",
            &["status", "priority", "next_attempt_at"],
        ))
        .await?;
        m.create_index(idx(
            "idx_mail_user",
            "mail_outbox",
            &["user_id", "created_at"],
        ))
        .await?;
        Ok(())
    }
}
