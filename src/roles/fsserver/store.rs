//! The files on disk, and how much of its quota each meeting uses.
//!
//! Layout under `--directory` (every name is made here from ids; nothing a client sends is
//! ever part of a path):
//! ```text
//! tmp/                         uploads in progress: <file>-<random>.part (+ .meta.part)
//! meetings/<meeting>/<file>    a stored file's bytes
//! meetings/<meeting>/<file>.json   its metadata (name, type, size, sha256, inline)
//! ```
//! An upload streams into `tmp/`, is synced, and is then published with two hard links
//! (metadata first, bytes last). `link(2)` never replaces an existing name, so a grant used
//! twice cannot overwrite a file, and the bytes appear under their final name whole or not
//! at all: the link of the bytes is the commit point. Temp names are removed on every path
//! (success, refusal, client gone) by [`TempFile`]'s drop, and `tmp/` is emptied at start-up
//! (what a crash left behind).
//!
//! Quota: the bytes of each meeting's stored files (counted from disk the first time the
//! meeting is touched) plus the bytes of its uploads in flight, which reserve as they stream
//! and give back what they do not keep when they end ([`Reservation`]).

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::ids::{FileId, MeetingId};
use crate::proto::files::is_file_id;

/// A stored file's metadata, next to its bytes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Meta {
    pub name: String,
    pub content_type: String,
    pub size: u64,
    pub sha256: String,
    /// Whether the file is shown inline: its type is allowlisted and its bytes look like it.
    pub inline: bool,
    pub stored_at: i64,
    pub uploader: Option<String>,
    /// Deleted at this time (unix seconds) unless the apiserver records it first (`keep`).
    /// None: recorded (or stored before uploads were reaped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_by: Option<i64>,
}

#[derive(Default, Clone, Copy)]
struct Usage {
    stored: u64,
    in_flight: u64,
}

pub struct Store {
    tmp: PathBuf,
    meetings: PathBuf,
    quota: u64,
    /// Locked briefly per upload chunk and per commit; never across I/O.
    usage: Mutex<HashMap<MeetingId, Usage>>,
    /// Uploads not recorded by the apiserver yet, and when they are reaped.
    unclaimed: Mutex<HashMap<(MeetingId, FileId), i64>>,
}

/// Why an upload cannot have more bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct QuotaExceeded {
    pub quota: u64,
}

impl Store {
    /// Creates the folders, empties `tmp/`, and checks that the directory is writable.
    pub fn open(root: &Path, quota: u64) -> anyhow::Result<Arc<Store>> {
        let tmp = root.join("tmp");
        let meetings = root.join("meetings");
        for d in [&tmp, &meetings] {
            std::fs::create_dir_all(d).map_err(|e| {
                anyhow::anyhow!(
                    "cannot create the file store folder {}: {e}; check --directory and its permissions",
                    d.display()
                )
            })?;
        }
        let mut swept = 0;
        for entry in std::fs::read_dir(&tmp)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", tmp.display()))?
            .flatten()
        {
            if std::fs::remove_file(entry.path()).is_ok() {
                swept += 1;
            }
        }
        if swept > 0 {
            tracing::info!(swept, "removed unfinished uploads left by an earlier run");
        }
        let probe = tmp.join(format!("probe-{}", crate::ids::random_token(6)));
        std::fs::write(&probe, b"").map_err(|e| {
            anyhow::anyhow!("the file store {} is not writable: {e}", root.display())
        })?;
        let _ = std::fs::remove_file(&probe);
        let unclaimed = scan_unclaimed(&meetings);
        if !unclaimed.is_empty() {
            tracing::info!(
                count = unclaimed.len(),
                "uploads not recorded by the apiserver yet"
            );
        }
        Ok(Arc::new(Store {
            tmp,
            meetings,
            quota,
            usage: Mutex::new(HashMap::new()),
            unclaimed: Mutex::new(unclaimed),
        }))
    }

    fn unclaimed(&self) -> MutexGuard<'_, HashMap<(MeetingId, FileId), i64>> {
        self.unclaimed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Uploads whose time to be recorded is over (to be reaped).
    pub fn unclaimed_due(&self, now: i64) -> Vec<(MeetingId, FileId)> {
        self.unclaimed()
            .iter()
            .filter(|(_, by)| **by <= now)
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn usage(&self) -> MutexGuard<'_, HashMap<MeetingId, Usage>> {
        self.usage.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn tmp_dir(&self) -> &Path {
        &self.tmp
    }

    pub fn meeting_dir(&self, meeting: MeetingId) -> PathBuf {
        self.meetings.join(meeting.0.to_string())
    }

    /// The bytes' path. `file` must be a checked id ([`is_file_id`]).
    pub fn data_path(&self, meeting: MeetingId, file: &FileId) -> PathBuf {
        debug_assert!(is_file_id(file.as_str()));
        self.meeting_dir(meeting).join(file.as_str())
    }

    pub fn meta_path(&self, meeting: MeetingId, file: &FileId) -> PathBuf {
        self.meeting_dir(meeting)
            .join(format!("{}.json", file.as_str()))
    }

    /// A fresh temp file name for an upload of `file`.
    pub fn temp_path(&self, file: &FileId, suffix: &str) -> PathBuf {
        self.tmp.join(format!(
            "{}-{}{suffix}",
            file.as_str(),
            crate::ids::random_token(6)
        ))
    }

    /// Bytes of stored files of a meeting, from disk (blocking; small folders).
    fn scan(&self, meeting: MeetingId) -> u64 {
        let Ok(entries) = std::fs::read_dir(self.meeting_dir(meeting)) else {
            return 0;
        };
        entries
            .flatten()
            .filter(|e| e.file_name().to_str().is_some_and(is_file_id))
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    }

    fn ensure_counted(&self, meeting: MeetingId) {
        if self.usage().contains_key(&meeting) {
            return;
        }
        let stored = self.scan(meeting);
        self.usage().entry(meeting).or_insert(Usage {
            stored,
            in_flight: 0,
        });
    }

    /// Starts an upload's reservation of `bytes` (0 when the size is not known yet).
    pub fn reserve(
        self: &Arc<Self>,
        meeting: MeetingId,
        bytes: u64,
    ) -> Result<Reservation, QuotaExceeded> {
        self.ensure_counted(meeting);
        let mut r = Reservation {
            store: self.clone(),
            meeting,
            bytes: 0,
            done: false,
        };
        r.grow_to(bytes)?;
        Ok(r)
    }

    /// A stored file was deleted.
    pub fn release_stored(&self, meeting: MeetingId, bytes: u64) {
        if let Some(u) = self.usage().get_mut(&meeting) {
            u.stored = u.stored.saturating_sub(bytes);
        }
    }

    /// Stored bytes of a meeting (for tests and logs).
    pub fn stored(&self, meeting: MeetingId) -> u64 {
        self.ensure_counted(meeting);
        self.usage().get(&meeting).map_or(0, |u| u.stored)
    }
}

/// Bytes an upload in flight holds of its meeting's quota. Dropped without `commit`, it
/// gives them all back.
pub struct Reservation {
    store: Arc<Store>,
    meeting: MeetingId,
    bytes: u64,
    done: bool,
}

impl Reservation {
    /// Holds `total` bytes (no-op when it already holds as many).
    pub fn grow_to(&mut self, total: u64) -> Result<(), QuotaExceeded> {
        if total <= self.bytes {
            return Ok(());
        }
        let more = total - self.bytes;
        let quota = self.store.quota;
        let mut map = self.store.usage();
        let u = map.entry(self.meeting).or_default();
        if u.stored.saturating_add(u.in_flight).saturating_add(more) > quota {
            return Err(QuotaExceeded { quota });
        }
        u.in_flight += more;
        self.bytes = total;
        Ok(())
    }

    /// The upload is stored with `size` bytes: they count as stored from now on.
    pub fn commit(mut self, size: u64) {
        let mut map = self.store.usage();
        let u = map.entry(self.meeting).or_default();
        u.in_flight = u.in_flight.saturating_sub(self.bytes);
        u.stored += size;
        self.done = true;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.done {
            let mut map = self.store.usage();
            if let Some(u) = map.get_mut(&self.meeting) {
                u.in_flight = u.in_flight.saturating_sub(self.bytes);
            }
        }
    }
}

/// A temp file that is removed when dropped (its published hard link, if any, stays).
pub struct TempFile {
    pub path: PathBuf,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "cannot remove a temp file")
            }
        }
    }
}

/// Why publishing failed.
pub enum PublishError {
    /// A file with this id exists already (the grant was used before).
    Exists,
    Io(io::Error),
}

/// Every stored upload still waiting for the apiserver (`keep_by` set), from disk.
fn scan_unclaimed(meetings: &Path) -> HashMap<(MeetingId, FileId), i64> {
    let mut out = HashMap::new();
    let Ok(dirs) = std::fs::read_dir(meetings) else {
        return out;
    };
    for d in dirs.flatten() {
        let Some(m) = d.file_name().to_str().and_then(|n| n.parse::<i64>().ok()) else {
            continue;
        };
        let Ok(files) = std::fs::read_dir(d.path()) else {
            continue;
        };
        for f in files.flatten() {
            let name = f.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if !is_file_id(id) {
                continue;
            }
            let keep_by = std::fs::read(f.path())
                .ok()
                .and_then(|b| serde_json::from_slice::<Meta>(&b).ok())
                .and_then(|meta| meta.keep_by);
            if let Some(by) = keep_by {
                out.insert((MeetingId(m), FileId(id.to_string())), by);
            }
        }
    }
    out
}

/// The apiserver recorded the upload: it stays. `Ok(false)` when there is no such file (it
/// was reaped, or never stored). Idempotent. Blocking.
pub fn keep(store: &Store, meeting: MeetingId, file: &FileId) -> io::Result<bool> {
    let path = store.meta_path(meeting, file);
    let mut meta: Meta = match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b).map_err(io::Error::other)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if !store.data_path(meeting, file).exists() {
        return Ok(false);
    }
    if meta.keep_by.take().is_some() {
        let tmp = TempFile {
            path: store.temp_path(file, ".meta.part"),
        };
        let json = serde_json::to_vec(&meta).map_err(io::Error::other)?;
        write_synced(&tmp.path, &json)?;
        std::fs::rename(&tmp.path, &path)?;
    }
    store.unclaimed().remove(&(meeting, file.clone()));
    Ok(true)
}

/// Publishes an upload: metadata, then the bytes (the commit point), then syncs the folder.
/// Blocking.
pub fn publish(
    store: &Store,
    meeting: MeetingId,
    file: &FileId,
    data_tmp: &Path,
    meta: &Meta,
) -> Result<(), PublishError> {
    let dir = store.meeting_dir(meeting);
    std::fs::create_dir_all(&dir).map_err(PublishError::Io)?;
    let meta_tmp = TempFile {
        path: store.temp_path(file, ".meta.part"),
    };
    let json = serde_json::to_vec(meta).map_err(|e| PublishError::Io(io::Error::other(e)))?;
    write_synced(&meta_tmp.path, &json).map_err(PublishError::Io)?;
    let meta_path = store.meta_path(meeting, file);
    match std::fs::hard_link(&meta_tmp.path, &meta_path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(PublishError::Exists),
        Err(e) => return Err(PublishError::Io(e)),
    }
    match std::fs::hard_link(data_tmp, store.data_path(meeting, file)) {
        Ok(()) => {}
        Err(e) => {
            // The metadata alone is invisible, but do not leave it behind.
            let _ = std::fs::remove_file(&meta_path);
            return Err(if e.kind() == io::ErrorKind::AlreadyExists {
                PublishError::Exists
            } else {
                PublishError::Io(e)
            });
        }
    }
    // The new names survive a power cut only once the folder itself is synced.
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    if let Some(by) = meta.keep_by {
        store.unclaimed().insert((meeting, file.clone()), by);
    }
    Ok(())
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Reads a stored file's metadata and opens its bytes; `None` when there is no such file.
/// Blocking.
pub fn open(
    store: &Store,
    meeting: MeetingId,
    file: &FileId,
) -> io::Result<Option<(Meta, std::fs::File, u64)>> {
    let data = match std::fs::File::open(store.data_path(meeting, file)) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta: Meta = match std::fs::read(store.meta_path(meeting, file)) {
        Ok(b) => serde_json::from_slice(&b).map_err(io::Error::other)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = data.metadata()?.len();
    Ok(Some((meta, data, len)))
}

/// Deletes a stored file: the bytes first (from then on it is gone), then the metadata.
/// Returns the bytes freed, `None` when there was no such file. Blocking.
pub fn delete(store: &Store, meeting: MeetingId, file: &FileId) -> io::Result<Option<u64>> {
    let data = store.data_path(meeting, file);
    let size = match std::fs::metadata(&data) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    match std::fs::remove_file(&data) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    }
    let _ = std::fs::remove_file(store.meta_path(meeting, file));
    if let Ok(d) = std::fs::File::open(store.meeting_dir(meeting)) {
        let _ = d.sync_all();
    }
    store.release_stored(meeting, size);
    store.unclaimed().remove(&(meeting, file.clone()));
    Ok(Some(size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_respect_the_quota_and_give_back_on_drop() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Store::open(dir.path(), 100).expect("open");
        let m = MeetingId(1);
        let mut a = s.reserve(m, 60).expect("60 of 100");
        assert_eq!(s.reserve(m, 41).err(), Some(QuotaExceeded { quota: 100 }));
        let mut b = s.reserve(m, 0).expect("nothing yet");
        assert!(b.grow_to(40).is_ok());
        assert!(b.grow_to(41).is_err());
        drop(b);
        assert!(a.grow_to(100).is_ok());
        a.commit(70);
        assert_eq!(s.stored(m), 70);
        assert!(s.reserve(m, 31).is_err());
        assert!(s.reserve(m, 30).is_ok());
        // Another meeting has its own quota.
        assert!(s.reserve(MeetingId(2), 100).is_ok());
    }

    #[test]
    fn publish_never_replaces_and_delete_frees() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Store::open(dir.path(), 1000).expect("open");
        let m = MeetingId(5);
        let f = FileId::random();
        let meta = Meta {
            name: "a.txt".into(),
            content_type: "text/plain".into(),
            size: 3,
            sha256: "x".into(),
            inline: false,
            stored_at: 0,
            uploader: None,
            keep_by: None,
        };
        let t1 = TempFile {
            path: s.temp_path(&f, ".part"),
        };
        std::fs::write(&t1.path, b"one").expect("write");
        assert!(publish(&s, m, &f, &t1.path, &meta).is_ok());
        let t2 = TempFile {
            path: s.temp_path(&f, ".part"),
        };
        std::fs::write(&t2.path, b"two").expect("write");
        assert!(matches!(
            publish(&s, m, &f, &t2.path, &meta),
            Err(PublishError::Exists)
        ));
        drop((t1, t2));
        assert_eq!(std::fs::read_dir(s.tmp_dir()).expect("tmp").count(), 0);
        let (got, _, len) = open(&s, m, &f).expect("io").expect("stored");
        assert_eq!((got, len), (meta, 3));
        assert_eq!(std::fs::read(s.data_path(m, &f)).expect("read"), b"one");
        assert_eq!(delete(&s, m, &f).expect("io"), Some(3));
        assert!(open(&s, m, &f).expect("io").is_none());
        assert_eq!(delete(&s, m, &f).expect("io"), None);
    }
}
