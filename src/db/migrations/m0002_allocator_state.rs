//! The built-in allocator's persisted state (reservations, seats, provisioned servers) when it
//! runs in-process: one JSON document, rewritten whole on every change (see
//! `roles::allocateserver::store`). The standalone allocateserver keeps the same document in a
//! file in its data dir instead.

use sea_orm::DatabaseBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let mut body = ColumnDef::new("body");
        match m.get_database_backend() {
            // MySQL's TEXT stops at 64 KiB; a busy week of reservations is more.
            DatabaseBackend::MySql => body.custom("LONGTEXT"),
            _ => body.text(),
        };
        body.not_null();
        m.create_table(
            Table::create()
                .table("allocator_state")
                .if_not_exists()
                .col(ColumnDef::new("id").string_len(64).not_null().primary_key())
                .col(body)
                .col(ColumnDef::new("updated_at").big_integer().not_null())
                .to_owned(),
        )
        .await
    }
}
