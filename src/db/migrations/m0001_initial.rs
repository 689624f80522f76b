//! The first schema. Never edit a migration that has shipped: add a new one.

use sea_orm::DatabaseBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Text that may be long (notes, whole mail messages): MySQL's TEXT stops at 64 KiB.
fn long_text(col: &'static str, backend: DatabaseBackend) -> ColumnDef {
    let mut c = ColumnDef::new(col);
    match backend {
        DatabaseBackend::MySql => c.custom("LONGTEXT"),
        _ => c.text(),
    };
    c.not_null();
    c
}

fn id(col: &'static str) -> ColumnDef {
    let mut c = ColumnDef::new(col);
    c.big_integer().not_null().auto_increment().primary_key();
    c
}
fn big(col: &'static str) -> ColumnDef {
    let mut c = ColumnDef::new(col);
    c.big_integer().not_null();
    c
}
fn big_null(col: &'static str) -> ColumnDef {
    let mut c = ColumnDef::new(col);
    c.big_integer().null();
    c
}
fn int(col: &'static str) -> ColumnDef {
    let mut c = ColumnDef::new(col);
    c.integer().not_null();
    c
}
fn s(col: &'static str, len: u32) -> ColumnDef {
    let mut c = ColumnDef::new(col);
    c.string_len(len).not_null();
    c
}
fn s_null(col: &'static str, len: u32) -> ColumnDef {
    let mut c = ColumnDef::new(col);
    c.string_len(len).null();
    c
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let b = m.get_database_backend();
        let tables = [
            Table::create()
                .table("users")
                .col(id("id"))
                .col(s("email", 254))
                .col(s("display_name", 128))
                .col(big("created_at"))
                .col(big("last_login_at"))
                .to_owned(),
            Table::create()
                .table("login_codes")
                .col(id("id"))
                .col(s("email", 254))
                .col(s("code_hash", 64))
                .col(s("ip", 64))
                .col(big("created_at"))
                .col(big("expires_at"))
                .col(int("attempts"))
                .col(big_null("consumed_at"))
                .to_owned(),
            Table::create()
                .table("sessions")
                .col(id("id"))
                .col(s("token_hash", 64))
                .col(big("user_id"))
                .col(big("created_at"))
                .col(big("expires_at"))
                .col(big_null("revoked_at"))
                .to_owned(),
            Table::create()
                .table("meetings")
                .col(id("id"))
                .col(s("code", 16))
                .col(big("owner_id"))
                .col(s("title", 200))
                .col(s("kind", 16))
                .col(big("begin_at"))
                .col(big("end_at"))
                .col(s("ical_uid", 128))
                .col(int("sequence"))
                .col(s("status", 16))
                .col(ColumnDef::new("guests_allowed").boolean().not_null())
                .col(s_null("sfu", 255))
                .col(s_null("turn", 255))
                .col(s_null("fs", 255))
                .col(big("created_at"))
                .col(big("updated_at"))
                .to_owned(),
            Table::create()
                .table("invitations")
                .col(id("id"))
                .col(big("meeting_id"))
                .col(s("email", 254))
                .col(big("created_at"))
                .to_owned(),
            Table::create()
                .table("participations")
                .col(id("id"))
                .col(big("meeting_id"))
                .col(s("participant_id", 64))
                .col(big_null("user_id"))
                .col(s("display_name", 128))
                .col(big("joined_at"))
                .col(big_null("left_at"))
                .to_owned(),
            Table::create()
                .table("notes")
                .col(
                    ColumnDef::new("meeting_id")
                        .big_integer()
                        .not_null()
                        .primary_key(),
                )
                .col(long_text("text", b))
                .col(big("version"))
                .col(big("updated_at"))
                .col(big_null("updated_by"))
                .to_owned(),
            Table::create()
                .table("note_versions")
                .col(id("id"))
                .col(big("meeting_id"))
                .col(big("version"))
                .col(long_text("text", b))
                .col(big("created_at"))
                .col(big_null("created_by"))
                .to_owned(),
            Table::create()
                .table("files")
                .col(ColumnDef::new("id").string_len(64).not_null().primary_key())
                .col(big("meeting_id"))
                .col(s("name", 255))
                .col(s("content_type", 128))
                .col(big("size"))
                .col(s("sha256", 64))
                .col(s("fs", 255))
                .col(big_null("uploaded_by"))
                .col(big("created_at"))
                .to_owned(),
            Table::create()
                .table("nodes")
                .col(
                    ColumnDef::new("id")
                        .string_len(128)
                        .not_null()
                        .primary_key(),
                )
                .col(s("role", 32))
                .col(s("address", 255))
                .col(big("capacity"))
                .col(s("version", 32))
                .col(s("state", 16))
                .col(big("load"))
                .col(big("last_seen"))
                .to_owned(),
            Table::create()
                .table("mail_outbox")
                .col(id("id"))
                .col(s("recipient", 254))
                .col(s("sender", 254))
                .col(s("subject", 255))
                .col(long_text("message", b))
                .col(s("status", 16))
                .col(int("attempts"))
                .col(big("next_attempt_at"))
                .col(ColumnDef::new("last_error").text().null())
                .col(big("created_at"))
                .col(big_null("sent_at"))
                .to_owned(),
        ];
        for t in tables {
            m.create_table(t).await?;
        }
        let indexes = [
            ("ux_users_email", "users", vec!["email"], true),
            (
                "ix_login_codes_email",
                "login_codes",
                vec!["email", "created_at"],
                false,
            ),
            (
                "ix_login_codes_ip",
                "login_codes",
                vec!["ip", "created_at"],
                false,
            ),
            ("ux_sessions_token", "sessions", vec!["token_hash"], true),
            ("ux_meetings_code", "meetings", vec!["code"], true),
            (
                "ix_meetings_owner",
                "meetings",
                vec!["owner_id", "kind"],
                false,
            ),
            (
                "ux_invitations",
                "invitations",
                vec!["meeting_id", "email"],
                true,
            ),
            ("ix_invitations_email", "invitations", vec!["email"], false),
            (
                "ux_participations_pid",
                "participations",
                vec!["participant_id"],
                true,
            ),
            (
                "ix_participations_meeting",
                "participations",
                vec!["meeting_id", "user_id"],
                false,
            ),
            (
                "ux_note_versions",
                "note_versions",
                vec!["meeting_id", "version"],
                true,
            ),
            ("ix_files_meeting", "files", vec!["meeting_id"], false),
            (
                "ix_mail_due",
                "mail_outbox",
                vec!["status", "next_attempt_at"],
                false,
            ),
        ];
        for (name, table, cols, unique) in indexes {
            let mut idx = Index::create();
            idx.name(name).table(table);
            for c in cols {
                idx.col(c);
            }
            if unique {
                idx.unique();
            }
            m.create_index(idx.to_owned()).await?;
        }
        Ok(())
    }
}
