//! Notes become a CRDT document (Yjs/yrs): every change is appended to `note_updates` before
//! it is acknowledged, and folded now and then into `notes.state` (compaction). History rows
//! get their authors, what made them and their size, for the per-meeting budget.
//!
//! Existing notes keep their text; the first time such a meeting's notes are opened the
//! server makes the CRDT state from it (and stores it before anyone sees it).

use sea_orm::{ConnectionTrait, DatabaseBackend};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Binary data that may be large (a whole document state): MySQL's BLOB stops at 64 KiB.
fn long_blob(col: &'static str, backend: DatabaseBackend, null: bool) -> ColumnDef {
    let mut c = ColumnDef::new(col);
    match backend {
        DatabaseBackend::MySql => c.custom("LONGBLOB"),
        _ => c.blob(),
    };
    if null {
        c.null();
    } else {
        c.not_null();
    }
    c
}

fn big_default(col: &'static str, v: i64) -> ColumnDef {
    let mut c = ColumnDef::new(col);
    c.big_integer().not_null().default(v);
    c
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let b = m.get_database_backend();
        // SQLite alters one column per statement.
        let alters = [
            Table::alter()
                .table("notes")
                .add_column(long_blob("state", b, true))
                .to_owned(),
            Table::alter()
                .table("notes")
                .add_column(big_default("compacted_version", 0))
                .to_owned(),
            Table::alter()
                .table("notes")
                .add_column(ColumnDef::new("pending_authors").text().null())
                .to_owned(),
            Table::alter()
                .table("note_versions")
                .add_column(ColumnDef::new("authors").text().null())
                .to_owned(),
            Table::alter()
                .table("note_versions")
                .add_column(
                    ColumnDef::new("kind")
                        .string_len(16)
                        .not_null()
                        .default("save"),
                )
                .to_owned(),
            Table::alter()
                .table("note_versions")
                .add_column(big_default("bytes", 0))
                .to_owned(),
        ];
        for a in alters {
            m.alter_table(a).await?;
        }
        // The size of the versions kept so far, in bytes of UTF-8.
        let size = match b {
            DatabaseBackend::Sqlite => "length(CAST(text AS BLOB))",
            _ => "octet_length(text)",
        };
        m.get_connection()
            .execute_unprepared(&format!("UPDATE note_versions SET bytes = {size}"))
            .await?;
        m.create_table(
            Table::create()
                .table("note_updates")
                .col(ColumnDef::new("meeting_id").big_integer().not_null())
                .col(ColumnDef::new("seq").big_integer().not_null())
                .col(long_blob("data", b, false))
                .col(ColumnDef::new("created_at").big_integer().not_null())
                .col(ColumnDef::new("author_id").big_integer().null())
                .col(ColumnDef::new("author_name").string_len(128).not_null())
                .primary_key(Index::create().col("meeting_id").col("seq"))
                .to_owned(),
        )
        .await
    }
}
