//! Running a meeting: the lobby, an optional passcode (hashed for checking, sealed for the
//! invitation mails), who may share a screen, whether mailed notes carry the chat, co-hosts
//! named by email, and the chat itself (kept per meeting, bounded).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn add(table: &'static str, col: ColumnDef) -> TableAlterStatement {
    Table::alter().table(table).add_column(col).to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time. Meetings made before
        // keep what they did: no lobby, no passcode, everyone may share.
        let alters = [
            add(
                "meetings",
                ColumnDef::new("lobby")
                    .string_len(16)
                    .not_null()
                    .default("off")
                    .to_owned(),
            ),
            add(
                "meetings",
                ColumnDef::new("passcode_hash")
                    .string_len(255)
                    .null()
                    .to_owned(),
            ),
            add(
                "meetings",
                ColumnDef::new("passcode_sealed")
                    .string_len(255)
                    .null()
                    .to_owned(),
            ),
            add(
                "meetings",
                ColumnDef::new("screen_share")
                    .string_len(16)
                    .not_null()
                    .default("everyone")
                    .to_owned(),
            ),
            add(
                "meetings",
                ColumnDef::new("chat_in_notes")
                    .boolean()
                    .not_null()
                    .default(false)
                    .to_owned(),
            ),
        ];
        for a in alters {
            m.alter_table(a).await?;
        }
        m.create_table(
            Table::create()
                .table("meeting_cohosts")
                .col(
                    ColumnDef::new("id")
                        .big_integer()
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                .col(ColumnDef::new("meeting_id").big_integer().not_null())
                .col(ColumnDef::new("email").string_len(254).not_null())
                .col(ColumnDef::new("created_at").big_integer().not_null())
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_meeting_cohosts")
                .table("meeting_cohosts")
                .col("meeting_id")
                .col("email")
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("chat_messages")
                .col(
                    ColumnDef::new("id")
                        .big_integer()
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                .col(ColumnDef::new("meeting_id").big_integer().not_null())
                .col(ColumnDef::new("at").big_integer().not_null())
                .col(ColumnDef::new("from_participant").string_len(64).not_null())
                .col(ColumnDef::new("from_name").string_len(128).not_null())
                .col(ColumnDef::new("to_participant").string_len(64).null())
                .col(
                    ColumnDef::new("to_hosts")
                        .boolean()
                        .not_null()
                        .default(false),
                )
                .col(ColumnDef::new("text").text().not_null())
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_chat_meeting")
                .table("chat_messages")
                .col("meeting_id")
                .col("id")
                .to_owned(),
        )
        .await?;
        Ok(())
    }
}
