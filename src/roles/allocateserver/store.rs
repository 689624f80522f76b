//! Where the allocator's `State` survives a restart: the main database in-process (table
//! `allocator_state`, migration m0002), a JSON file in the data dir for the standalone
//! allocateserver. Either way the whole document is written at once, so a crash leaves the old
//! or the new state, never half of one: the file is written beside and renamed over, the row
//! is one upsert.

use std::path::{Path, PathBuf};

use super::state::State;

#[async_trait::async_trait]
pub trait Store: Send + Sync {
    /// `None` when nothing was ever saved.
    async fn load(&self) -> anyhow::Result<Option<State>>;
    async fn save(&self, state: &State) -> anyhow::Result<()>;
    /// For logs and errors: where the state lives.
    fn describe(&self) -> String;
}

/// The standalone allocateserver's store: `<data_dir>/allocator-state.json`.
pub struct FileStore {
    path: PathBuf,
}

impl FileStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileStore { path: path.into() }
    }

    pub fn in_data_dir(dir: &Path) -> Self {
        FileStore::new(dir.join("allocator-state.json"))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_atomically(&self, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        let tmp = self.path.with_extension("json.tmp");
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent()
            && let Ok(d) = std::fs::File::open(dir)
        {
            // The rename itself is durable only once the directory is.
            let _ = d.sync_all();
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Store for FileStore {
    async fn load(&self) -> anyhow::Result<Option<State>> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => anyhow::bail!(
                "cannot read the allocator state {}: {e}",
                self.path.display()
            ),
        };
        let st = serde_json::from_slice(&bytes).map_err(|e| {
            anyhow::anyhow!(
                "the allocator state {} is damaged ({e}); restore it from a backup, or move it away to start empty (reservations and provisioned servers would then be forgotten)",
                self.path.display()
            )
        })?;
        Ok(Some(st))
    }

    async fn save(&self, state: &State) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec_pretty(state)?;
        self.write_atomically(&bytes).map_err(|e| {
            anyhow::anyhow!(
                "cannot write the allocator state {}: {e}",
                self.path.display()
            )
        })
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

mod row {
    use sea_orm::entity::prelude::*;

    #[sea_orm::model]
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "allocator_state")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub body: String,
        pub updated_at: i64,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// The in-process allocator's store: one row of the main database.
pub struct DbStore {
    db: sea_orm::DatabaseConnection,
}

const ROW_ID: &str = "state";

impl DbStore {
    pub fn new(db: sea_orm::DatabaseConnection) -> Self {
        DbStore { db }
    }
}

#[async_trait::async_trait]
impl Store for DbStore {
    async fn load(&self) -> anyhow::Result<Option<State>> {
        use sea_orm::EntityTrait;
        let Some(r) = row::Entity::find_by_id(ROW_ID.to_string())
            .one(&self.db)
            .await
            .map_err(|e| {
                anyhow::anyhow!("cannot read the allocator state from the database: {e}")
            })?
        else {
            return Ok(None);
        };
        let st = serde_json::from_str(&r.body).map_err(|e| {
            anyhow::anyhow!(
                "the allocator state in table allocator_state is damaged ({e}); delete the row to start empty (reservations would be forgotten)"
            )
        })?;
        Ok(Some(st))
    }

    async fn save(&self, state: &State) -> anyhow::Result<()> {
        use sea_orm::sea_query::OnConflict;
        use sea_orm::{EntityTrait, Set};
        let body = serde_json::to_string(state)?;
        let am = row::ActiveModel {
            id: Set(ROW_ID.to_string()),
            body: Set(body),
            updated_at: Set(crate::util::now()),
        };
        row::Entity::insert(am)
            .on_conflict(
                OnConflict::column(row::Column::Id)
                    .update_columns([row::Column::Body, row::Column::UpdatedAt])
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await
            .map_err(|e| anyhow::anyhow!("cannot save the allocator state to the database: {e}"))?;
        Ok(())
    }

    fn describe(&self) -> String {
        "the database (table allocator_state)".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn file_store_round_trips_and_names_a_damaged_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = FileStore::in_data_dir(dir.path());
        assert_eq!(s.load().await.expect("empty"), None);
        let st = State {
            seq: 7,
            ..State::default()
        };
        s.save(&st).await.expect("save");
        assert_eq!(s.load().await.expect("load"), Some(st));
        std::fs::write(s.path(), b"{not json").expect("write");
        let e = s.load().await.expect_err("damaged").to_string();
        assert!(e.contains("damaged"), "{e}");
    }

    #[actix_rt::test]
    async fn db_store_round_trips_on_sqlite() {
        let dir = tempfile::tempdir().expect("tmp");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("m.db").display());
        let db = crate::db::connect(&url, 2, std::time::Duration::from_secs(5))
            .await
            .expect("db");
        let s = DbStore::new(db);
        assert_eq!(s.load().await.expect("empty"), None);
        for seq in [1, 2] {
            let st = State {
                seq,
                ..State::default()
            };
            s.save(&st).await.expect("save");
            assert_eq!(s.load().await.expect("load"), Some(st));
        }
    }
}
