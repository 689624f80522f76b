//! `meeting-appliance backup --to DIR` and `restore --from DIR --dataDir NEW` for a single box.
//!
//! A backup is a plain folder (mode 0700: it holds the secret and private keys):
//! ```text
//! meeting.db        the SQLite database, a consistent snapshot (`VACUUM INTO`)
//! secret            the generated deployment secret (when there is one)
//! tls/  acme/       the self-signed certificate, the ACME account and certificate
//! files/            the fsserver's stored files (`meetings/<meeting>/<file>` + `.json`)
//! appliance.toml    the config file given with --config (when given)
//! MANIFEST.json     every file above with its size and SHA-256; `restore` checks them all
//! ```
//! It is taken while the appliance runs. Order matters: the database snapshot comes first,
//! then the files. A file is on disk before the database knows it (upload, then commit), so
//! every file the snapshot lists is copied; files committed during the backup are copied
//! too and are simply unknown to the restored database. Uploads in progress (`files/tmp/`)
//! are left out. `VACUUM INTO` reads inside one transaction: writers go on meanwhile (WAL).
//!
//! MariaDB/MySQL and PostgreSQL boxes keep their database elsewhere: `backup` then copies
//! everything but the database and says how to dump it (docs/OPERATIONS.md).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::Config;

const MANIFEST: &str = "MANIFEST.json";
const FORMAT: u32 = 1;

/// What a backup holds, with a checksum for every file.
#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// Unix seconds when the backup started.
    pub created_at: i64,
    /// The version of the binary that took it.
    pub version: String,
    /// `sqlite` when `meeting.db` is included; otherwise the database kind (not included).
    pub database: String,
    pub entries: Vec<Entry>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Entry {
    /// Relative path inside the backup folder, `/`-separated.
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// `meeting-appliance backup`: prints a summary, or the error with what to do.
pub fn backup_main(cfg: &Config, to: &Path, config_file: Option<&Path>) -> ExitCode {
    report(backup(cfg, to, config_file).map(|m| {
        let bytes: u64 = m.entries.iter().map(|e| e.size).sum();
        format!(
            "backup written to {}: {} files, {} bytes, database: {}",
            to.display(),
            m.entries.len(),
            bytes,
            m.database
        )
    }))
}

/// `meeting-appliance restore`.
pub fn restore_main(cfg: &Config, from: &Path) -> ExitCode {
    report(restore(cfg, from).map(|m| {
        format!(
            "restored {} files from {} into {}; start the appliance with this data dir{}",
            m.entries.len(),
            from.display(),
            cfg.data_dir.display(),
            if from.join("appliance.toml").is_file() {
                format!(
                    " (the backup's config file is {})",
                    from.join("appliance.toml").display()
                )
            } else {
                String::new()
            }
        )
    }))
}

fn report(r: anyhow::Result<String>) -> ExitCode {
    match r {
        Ok(s) => {
            println!("{s}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// The SQLite file of `cfg`, or `None` when the database is a server (MariaDB, PostgreSQL).
fn sqlite_path(cfg: &Config) -> Option<PathBuf> {
    let url = cfg.database.effective_url(&cfg.data_dir);
    let rest = url.strip_prefix("sqlite://")?;
    let path = rest.split('?').next().unwrap_or(rest);
    Some(PathBuf::from(path))
}

fn files_dir(cfg: &Config) -> PathBuf {
    cfg.fs
        .directory
        .clone()
        .unwrap_or_else(|| cfg.data_dir.join("files"))
}

/// Takes a backup of the box described by `cfg` into `to` (which must not exist or be empty).
pub fn backup(cfg: &Config, to: &Path, config_file: Option<&Path>) -> anyhow::Result<Manifest> {
    let created_at = crate::util::now();
    if to.exists() && std::fs::read_dir(to)?.next().is_some() {
        anyhow::bail!(
            "{} is not empty: give a new folder to --to (a backup never overwrites one)",
            to.display()
        );
    }
    create_private_dir(to)?;
    let database = match sqlite_path(cfg) {
        Some(db) => {
            if !db.is_file() {
                anyhow::bail!(
                    "no database at {}: is --dataDir (or `data_dir` in --config) the appliance's data dir?",
                    db.display()
                );
            }
            snapshot_sqlite(&db, &to.join("meeting.db"))?;
            "sqlite".to_string()
        }
        None => {
            let url = cfg.database.effective_url(&cfg.data_dir);
            let kind = url.split(':').next().unwrap_or("server").to_string();
            eprintln!(
                "note: the database is {kind}, not SQLite: it is not in this backup. Dump it too, e.g. \
                 `mysqldump --single-transaction --routines --databases {}` (see docs/OPERATIONS.md)",
                cfg.database.mysql_database.as_deref().unwrap_or("Meeting")
            );
            kind
        }
    };
    let secret = cfg.data_dir.join("secret");
    if secret.is_file() {
        copy_file(&secret, &to.join("secret"))?;
    }
    for d in ["tls", "acme"] {
        copy_tree(&cfg.data_dir.join(d), &to.join(d), &[])?;
    }
    // Uploads in progress are not files yet.
    copy_tree(&files_dir(cfg), &to.join("files"), &["tmp"])?;
    if let Some(f) = config_file {
        copy_file(f, &to.join("appliance.toml"))?;
    }
    let manifest = Manifest {
        format: FORMAT,
        created_at,
        version: env!("CARGO_PKG_VERSION").to_string(),
        database,
        entries: list_entries(to)?,
    };
    let json = serde_json::to_vec_pretty(&manifest)?;
    std::fs::write(to.join(MANIFEST), json)?;
    Ok(manifest)
}

/// Restores `from` into the (new, empty) data dir of `cfg`, after checking every checksum.
pub fn restore(cfg: &Config, from: &Path) -> anyhow::Result<Manifest> {
    let text = std::fs::read(from.join(MANIFEST)).map_err(|e| {
        anyhow::anyhow!(
            "{} has no readable {MANIFEST} ({e}): is it a folder written by `meeting-appliance backup`?",
            from.display()
        )
    })?;
    let manifest: Manifest =
        serde_json::from_slice(&text).map_err(|e| anyhow::anyhow!("{MANIFEST} is damaged: {e}"))?;
    if manifest.format != FORMAT {
        anyhow::bail!(
            "backup format {} is not known to this version ({FORMAT}); restore with the version that took it ({})",
            manifest.format,
            manifest.version
        );
    }
    // A manifest is data from outside: no entry may name a place outside the backup (read)
    // or outside the data dir (written).
    if let Some(bad) = manifest
        .entries
        .iter()
        .find(|e| !is_plain_relative(&e.path))
    {
        anyhow::bail!(
            "{MANIFEST} names `{}`, which is not a plain relative path inside the backup: refusing to restore this backup",
            bad.path
        );
    }
    for e in &manifest.entries {
        let p = from.join(&e.path);
        let (size, sha) = hash_file(&p)
            .map_err(|err| anyhow::anyhow!("{}: {err}; the backup is incomplete", p.display()))?;
        if size != e.size || sha != e.sha256 {
            anyhow::bail!(
                "{} does not match the manifest (size or SHA-256 differs): the backup is damaged",
                p.display()
            );
        }
    }
    let data = &cfg.data_dir;
    let files = files_dir(cfg);
    let db = sqlite_path(cfg);
    let occupied = [
        db.clone(),
        Some(data.join("secret")),
        Some(files.join("meetings")),
    ];
    if let Some(p) = occupied.iter().flatten().find(|p| p.exists()) {
        anyhow::bail!(
            "{} already exists: restore into a new, empty data dir (--dataDir NEW), or move the old one aside first",
            p.display()
        );
    }
    if manifest.database == "sqlite" && db.is_none() {
        anyhow::bail!(
            "the backup holds a SQLite database but this configuration uses a database server: \
             restore with the SQLite default (no --mysqlAddress/--databaseUrl), or load a dump into the server"
        );
    }
    create_private_dir(data)?;
    for e in &manifest.entries {
        let src = from.join(&e.path);
        let dest = if e.path == "meeting.db" {
            match &db {
                Some(p) => p.clone(),
                None => continue,
            }
        } else if let Some(rest) = e.path.strip_prefix("files/") {
            files.join(rest)
        } else if e.path == "appliance.toml" {
            continue; // the operator decides where config lives
        } else {
            data.join(&e.path)
        };
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        copy_file(&src, &dest)?;
    }
    if let Some(p) = &db
        && p.is_file()
    {
        check_sqlite(p)?;
    }
    Ok(manifest)
}

/// `a/b/c` and nothing else: no root, no `..`, no `.`, no empty part.
fn is_plain_relative(p: &str) -> bool {
    !p.is_empty()
        && !p.contains('\\')
        && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
        && Path::new(p)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
}

fn create_private_dir(p: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(p)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", p.display()))
}

/// Copies one file, keeping its permission bits (keys stay 0600).
fn copy_file(src: &Path, dest: &Path) -> anyhow::Result<()> {
    std::fs::copy(src, dest)
        .map_err(|e| anyhow::anyhow!("cannot copy {} to {}: {e}", src.display(), dest.display()))?;
    Ok(())
}

/// Copies `src` into `dest` recursively (nothing when `src` does not exist), leaving out the
/// top-level names in `skip`. A file that vanishes meanwhile (deleted) is left out.
fn copy_tree(src: &Path, dest: &Path, skip: &[&str]) -> anyhow::Result<()> {
    let entries = match std::fs::read_dir(src) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => anyhow::bail!("cannot read {}: {e}", src.display()),
    };
    create_private_dir(dest)?;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if skip.iter().any(|s| name == *s) {
            continue;
        }
        let (from, to) = (entry.path(), dest.join(&name));
        let ty = entry.file_type()?;
        if ty.is_dir() {
            copy_tree(&from, &to, &[])?;
        } else if ty.is_file() {
            match std::fs::copy(&from, &to) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => anyhow::bail!("cannot copy {}: {e}", from.display()),
            }
        }
    }
    Ok(())
}

/// Every file under `root` (but the manifest), sorted, with size and SHA-256.
fn list_entries(root: &Path) -> anyhow::Result<Vec<Entry>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<Entry>) -> anyhow::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let p = entry.path();
            if entry.file_type()?.is_dir() {
                walk(root, &p, out)?;
                continue;
            }
            let rel = p
                .strip_prefix(root)
                .map_err(|_| anyhow::anyhow!("{} is outside the backup", p.display()))?;
            let path = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            if path == MANIFEST {
                continue;
            }
            let (size, sha256) = hash_file(&p)?;
            out.push(Entry { path, size, sha256 });
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(root, root, &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn hash_file(p: &Path) -> io::Result<(u64, String)> {
    let mut f = std::fs::File::open(p)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(h.finalize())))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Opens an existing SQLite file (never creates one), waiting for writers rather than failing.
async fn open_sqlite(path: &Path) -> anyhow::Result<sea_orm::DatabaseConnection> {
    let url = format!("sqlite://{}?mode=rw", path.display());
    let mut opt = sea_orm::ConnectOptions::new(url);
    opt.max_connections(1)
        .min_connections(1)
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|o| o.busy_timeout(std::time::Duration::from_secs(30)));
    sea_orm::Database::connect(opt)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))
}

/// A consistent copy of a live SQLite database: `VACUUM INTO` runs in one read transaction.
fn snapshot_sqlite(db: &Path, dest: &Path) -> anyhow::Result<()> {
    use sea_orm::ConnectionTrait;
    let dest_str = dest
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("{} is not UTF-8: choose another --to", dest.display()))?;
    let sql = format!("VACUUM INTO '{}'", dest_str.replace('\'', "''"));
    runtime()?.block_on(async {
        let conn = open_sqlite(db).await?;
        conn.execute_unprepared(&sql)
            .await
            .map_err(|e| anyhow::anyhow!("snapshot of {} failed: {e}", db.display()))?;
        conn.close().await.ok();
        anyhow::Ok(())
    })?;
    // The snapshot holds the accounts, sessions and secrets of every user.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

/// `PRAGMA integrity_check` on the restored database.
fn check_sqlite(db: &Path) -> anyhow::Result<()> {
    use sea_orm::{ConnectionTrait, Statement};
    runtime()?.block_on(async {
        let conn = open_sqlite(db).await?;
        let row = conn
            .query_one_raw(Statement::from_string(
                sea_orm::DbBackend::Sqlite,
                "PRAGMA integrity_check",
            ))
            .await?
            .ok_or_else(|| anyhow::anyhow!("integrity_check returned nothing"))?;
        let verdict: String = row.try_get_by_index(0)?;
        conn.close().await.ok();
        if verdict != "ok" {
            anyhow::bail!("the restored database fails SQLite's integrity check: {verdict}");
        }
        anyhow::Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_refuses_a_non_empty_target_and_restore_a_damaged_backup() {
        let data = tempfile::tempdir().expect("tmp");
        let out = tempfile::tempdir().expect("tmp");
        std::fs::write(out.path().join("x"), "x").expect("write");
        let cfg = Config {
            data_dir: data.path().to_path_buf(),
            ..Config::default()
        };
        let err = backup(&cfg, out.path(), None).expect_err("not empty");
        assert!(err.to_string().contains("not empty"), "{err}");

        // A backup without a database (nothing but a secret) restores; a flipped byte does not.
        std::fs::write(data.path().join("secret"), "s3cret-s3cret").expect("write");
        let b = out.path().join("b");
        let cfg_files = Config {
            database: crate::config::Database {
                url: Some("mysql://u:p@127.0.0.1:1/x".into()),
                ..Default::default()
            },
            ..cfg.clone()
        };
        backup(&cfg_files, &b, None).expect("backup");
        std::fs::write(b.join("secret"), "s3cret-s3creT").expect("damage");
        let new = Config {
            data_dir: out.path().join("new"),
            ..cfg_files
        };
        let err = restore(&new, &b).expect_err("damaged");
        assert!(err.to_string().contains("damaged"), "{err}");
    }

    /// Before the fix a manifest entry `../x` or `/x` was copied to where it pointed.
    #[test]
    fn restore_refuses_paths_that_leave_the_backup_or_the_data_dir() {
        let root = tempfile::tempdir().expect("tmp");
        let b = root.path().join("backup");
        std::fs::create_dir_all(b.join("files")).expect("mkdir");
        let victim = root.path().join("victim.txt");
        let body = b"owned";
        std::fs::write(b.join("files").join("x"), body).expect("write");
        let (size, sha256) = hash_file(&b.join("files").join("x")).expect("hash");
        for evil in [
            "../victim.txt".to_string(),
            "files/../../victim.txt".to_string(),
            victim.display().to_string(),
            "files/./x".to_string(),
            "".to_string(),
        ] {
            let m = Manifest {
                format: FORMAT,
                created_at: 0,
                version: "t".into(),
                database: "none".into(),
                entries: vec![Entry {
                    path: evil.clone(),
                    size,
                    sha256: sha256.clone(),
                }],
            };
            std::fs::write(b.join(MANIFEST), serde_json::to_vec(&m).expect("json")).expect("w");
            let cfg = Config {
                data_dir: root.path().join("data").join("d"),
                database: crate::config::Database {
                    url: Some("mysql://u:p@127.0.0.1:1/x".into()),
                    ..Default::default()
                },
                ..Config::default()
            };
            let err = restore(&cfg, &b).expect_err(&evil);
            assert!(
                err.to_string().contains("not a plain relative path"),
                "{evil}: {err}"
            );
            assert!(!victim.exists(), "{evil} wrote outside the data dir");
        }
        assert!(is_plain_relative("files/meetings/1/abc"));
    }
}
