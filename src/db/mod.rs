//! The database: connection from config, migrations at start-up, entities.
//!
//! SQLite in the data dir on a single box; MySQL/MariaDB from the seed's `--mysql*` flags;
//! PostgreSQL by URL. All timestamps are unix seconds.

pub mod entities;
mod migrations;
pub mod models;

use sea_orm::{ConnectOptions, Database, DatabaseConnection};
use sea_orm_migration::MigratorTrait;
use std::time::{Duration, Instant};

/// Connects (retrying until `timeout`, so a database that starts a little after us is fine)
/// and applies pending migrations.
pub async fn connect(
    url: &str,
    max_connections: u32,
    timeout: Duration,
) -> anyhow::Result<DatabaseConnection> {
    let mut opt = ConnectOptions::new(url.to_owned());
    opt.max_connections(max_connections)
        .min_connections(1)
        // While a database server is down a request must not hang: a connection is refused or
        // times out within 1 s and the client is told to retry (503 + Retry-After). SQLite
        // cannot be down; its waits are for the one writer, so it may wait longer.
        .connect_timeout(Duration::from_secs(1))
        .acquire_timeout(if url.starts_with("sqlite:") {
            Duration::from_secs(10)
        } else {
            Duration::from_secs(1)
        })
        .sqlx_logging(false);
    if url.starts_with("sqlite:") {
        // One writer at a time in SQLite; WAL lets readers go on while it writes, and the busy
        // timeout makes concurrent writers wait instead of failing with "database is locked".
        opt.map_sqlx_sqlite_opts(|o| {
            o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(10))
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
        });
    }
    let started = Instant::now();
    let db = loop {
        match Database::connect(opt.clone()).await {
            Ok(db) => break db,
            Err(e) if started.elapsed() < timeout => {
                tracing::warn!(error = %e, db = %redact(url), "database not reachable yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => anyhow::bail!(
                "cannot reach the database {} ({e}); check that it runs and that address, user, password and database name are right",
                redact(url)
            ),
        }
    };
    migrations::Migrator::up(&db, None)
        .await
        .map_err(|e| anyhow::anyhow!("database migration failed: {e}"))?;
    Ok(db)
}

/// Whether an error means the database cannot be reached right now (down, restarting, the
/// network to it broken), as opposed to a query or data problem.
pub fn is_unavailable(e: &sea_orm::DbErr) -> bool {
    use sea_orm::{DbErr, RuntimeErr};
    let runtime = match e {
        DbErr::ConnectionAcquire(_) => return true,
        DbErr::Conn(r) | DbErr::Exec(r) | DbErr::Query(r) => r,
        _ => return false,
    };
    match runtime {
        RuntimeErr::SqlxError(x) => matches!(
            x.as_ref(),
            sea_orm::sqlx::Error::Io(_)
                | sea_orm::sqlx::Error::PoolTimedOut
                | sea_orm::sqlx::Error::PoolClosed
                | sea_orm::sqlx::Error::WorkerCrashed
                | sea_orm::sqlx::Error::Tls(_)
        ),
        _ => false,
    }
}

/// The URL with its password masked, for logs.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("****"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}
