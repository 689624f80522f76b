//! Schema migrations, applied at start-up (sea-orm-migration keeps the applied list).
use sea_orm_migration::prelude::*;

mod m0001_initial;
mod m0002_allocator_state;
mod m0003_hardening;
mod m0004_notes_crdt;
mod m0005_enterprise_signin;
mod m0006_meeting_controls;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_initial::Migration),
            Box::new(m0002_allocator_state::Migration),
            Box::new(m0003_hardening::Migration),
            Box::new(m0004_notes_crdt::Migration),
            Box::new(m0005_enterprise_signin::Migration),
            Box::new(m0006_meeting_controls::Migration),
        ]
    }
}
