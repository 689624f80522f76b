//! The notes documents in memory, one per meeting in use, and how they reach the database.
//!
//! Durability: a change is appended to `note_updates` (its own row, one INSERT) before anyone
//! hears of it: before the sender's ack and before it is passed on to the others. Every
//! few hundred changes, and when a document goes idle, the changes are folded into
//! `notes.state` in one transaction (compaction). Loading reads the state and the changes
//! after it. So a crash (even `kill -9`) right after an ack loses nothing.
//!
//! Locking: each document's state sits behind one async mutex. Every read or write of the
//! yrs document happens under it, and no yrs transaction lives across an `.await`, so yrs's
//! own (blocking) lock is never contended. The database write of a change happens under the
//! mutex too, which keeps versions in order and makes "stored" mean "stored in this order".
//! If that write fails, the in-memory document is ahead of the database: it is dropped
//! (every connection is told to reconnect, and each browser sends again what the server
//! lacks), and the next use loads the stored state. The same happens when an update was
//! refused half-applied.
//!
//! One apiserver process holds a meeting's document; several apiservers behind one
//! database would need a shared bus (not built), as the notes module doc says.

use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set, TransactionTrait};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;
use yrs::sync::{Message, SyncMessage};
use yrs::updates::encoder::Encode;
use yrs::{Doc, StateVector, TextRef};

use super::access::Member;
use super::crdt::{self, UpdateRefused};
use super::history::{self, NewVersion};
use super::limits::Limits;
use super::{MAX_NOTES_BYTES, NotesView};
use crate::db::entities::{note, note_update};
use crate::db::models;
use crate::error::ApiError;
use crate::roles::apiserver::ApiState;
use crate::util::now;

/// Compaction after this many stored changes…
const COMPACT_AFTER_CHANGES: usize = 500;
/// …or this many bytes of them.
const COMPACT_AFTER_BYTES: usize = 8 * 1024 * 1024;
/// A document nobody is connected to leaves memory after this long unused.
const IDLE_UNLOAD: Duration = Duration::from_secs(60);
/// How often pauses, idle documents and rate-limit memory are looked at.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(2);
/// Time the word diff of a REST save may take before it settles for coarser edits.
const DIFF_BUDGET: Duration = Duration::from_millis(300);

/// Who made a change.
#[derive(Clone, Debug)]
pub struct Author {
    pub id: Option<i64>,
    pub name: String,
    /// `u:<user>` or `g:<participant>` (rate limits and client-id ownership are per tag).
    pub tag: String,
}

impl Author {
    pub fn of(m: &Member) -> Author {
        Author {
            id: m.user_id(),
            name: m.name(),
            tag: m.tag(),
        }
    }
}

/// What a document's followers hear.
#[derive(Clone, Debug)]
pub enum Event {
    /// A stored change (a y-sync `update` frame), from connection `from` (0: the server).
    Update { from: u64, frame: Arc<Vec<u8>> },
    /// Awareness states (a y-sync awareness frame).
    Awareness { from: u64, frame: Arc<Vec<u8>> },
    /// The in-memory copy was dropped: reconnect (and sync again).
    Reload,
}

/// A y-sync frame carrying one update.
pub fn update_frame(update: &[u8]) -> Vec<u8> {
    Message::Sync(SyncMessage::Update(update.to_vec())).encode_v1()
}

/// Why a live change was not taken.
#[derive(Debug)]
pub enum LiveRefused {
    Update(UpdateRefused),
    /// Storing failed or the document was dropped meanwhile: reconnect and sync again.
    Unavailable,
}

struct DocState {
    doc: Doc,
    text: TextRef,
    /// Number of the last stored change.
    version: i64,
    /// The last change folded into `notes.state`.
    compacted_version: i64,
    updated_at: i64,
    updated_by: Option<i64>,
    changes_since_compaction: usize,
    bytes_since_compaction: usize,
    /// When the text last changed after the newest history version (for pause snapshots).
    last_change: Option<Instant>,
    last_used: Instant,
    /// Newest version kept in history.
    kept_version: i64,
    /// Who changed the text since `kept_version`.
    authors: BTreeSet<String>,
    /// Which member introduced each client id (content in a client's name is accepted only
    /// from that member). Ids from before a restart are claimed by the first to use them.
    owners: HashMap<u64, String>,
}

impl DocState {
    fn view(&self, meeting: i64) -> NotesView {
        NotesView {
            meeting_id: meeting,
            text: crdt::text_of(&self.doc, &self.text),
            version: self.version,
            updated_at: self.updated_at,
            updated_by: self.updated_by,
        }
    }
}

/// One meeting's notes in memory.
pub struct LiveDoc {
    pub meeting: i64,
    state: tokio::sync::Mutex<DocState>,
    events: broadcast::Sender<Event>,
    awareness: Mutex<super::awareness::Table>,
    connections: AtomicUsize,
    next_conn: AtomicU64,
    broken: AtomicBool,
}

/// The documents of this process.
#[derive(Default)]
pub struct NotesHub {
    docs: Mutex<HashMap<i64, Arc<LiveDoc>>>,
    /// Loads one document at a time (so two first users do not load two copies).
    loading: tokio::sync::Mutex<()>,
    maintenance: AtomicBool,
    limits: OnceLock<Limits>,
}

impl NotesHub {
    fn docs(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Arc<LiveDoc>>> {
        self.docs.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn limits(&self, st: &ApiState) -> &Limits {
        self.limits
            .get_or_init(|| Limits::new(st.cfg.notes.clone()))
    }

    /// The meeting's document, loaded if needed.
    pub async fn open(&self, st: &Arc<ApiState>, meeting: i64) -> Result<Arc<LiveDoc>, ApiError> {
        self.start_maintenance(st);
        if let Some(d) = self.docs().get(&meeting).cloned() {
            return Ok(d);
        }
        let _one = self.loading.lock().await;
        if let Some(d) = self.docs().get(&meeting).cloned() {
            return Ok(d);
        }
        let d = Arc::new(load(&st.db, meeting).await?);
        self.docs().insert(meeting, d.clone());
        Ok(d)
    }

    /// Drops a document whose memory cannot be trusted; its followers reconnect.
    fn drop_doc(&self, d: &Arc<LiveDoc>) {
        d.broken.store(true, Ordering::SeqCst);
        let mut docs = self.docs();
        if docs.get(&d.meeting).is_some_and(|x| Arc::ptr_eq(x, d)) {
            docs.remove(&d.meeting);
        }
        let _ = d.events.send(Event::Reload);
        tracing::warn!(
            meeting = d.meeting,
            "notes document dropped from memory; followers resync"
        );
    }

    fn start_maintenance(&self, st: &Arc<ApiState>) {
        if self.maintenance.swap(true, Ordering::SeqCst) {
            return;
        }
        let st = st.clone();
        actix_web::rt::spawn(async move {
            let mut tick = tokio::time::interval(MAINTENANCE_EVERY);
            loop {
                tick.tick().await;
                st.notes_hub.maintain(&st).await;
            }
        });
    }

    /// Pause snapshots, unloading idle documents, forgetting idle rate limits.
    async fn maintain(&self, st: &Arc<ApiState>) {
        let pause = Duration::from_secs(st.cfg.notes.snapshot_after_pause.as_secs());
        let docs: Vec<Arc<LiveDoc>> = self.docs().values().cloned().collect();
        for d in docs {
            let mut s = d.state.lock().await;
            if d.broken.load(Ordering::SeqCst) {
                continue;
            }
            if s.last_change.is_some_and(|t| t.elapsed() >= pause) {
                d.keep_version(st, &mut s, "pause", None).await;
            }
            let idle =
                d.connections.load(Ordering::SeqCst) == 0 && s.last_used.elapsed() >= IDLE_UNLOAD;
            if !idle {
                continue;
            }
            d.keep_version(st, &mut s, "end", None).await;
            if s.version > s.compacted_version && compact(&st.db, d.meeting, &mut s).await.is_err()
            {
                continue; // stays in memory; tried again next time
            }
            drop(s);
            let mut map = self.docs();
            // Only the map and this loop hold it: nobody is using it.
            if Arc::strong_count(&d) == 2 && map.get(&d.meeting).is_some_and(|x| Arc::ptr_eq(x, &d))
            {
                map.remove(&d.meeting);
                tracing::debug!(meeting = d.meeting, "notes document unloaded");
            }
        }
        self.limits(st).forget_idle(Instant::now());
    }
}

/// Reads a meeting's notes: the compacted state, then every change after it.
async fn load(db: &DatabaseConnection, meeting: i64) -> Result<LiveDoc, ApiError> {
    let txn = db.begin().await?;
    let (row, changes) = models::note::state_and_changes(&txn, meeting, None).await?;
    let kept_version = history::newest(&txn, meeting).await?;
    txn.commit().await?;
    let (doc, text) = crdt::new_doc();
    let mut s = DocState {
        doc,
        text,
        version: 0,
        compacted_version: 0,
        updated_at: 0,
        updated_by: None,
        changes_since_compaction: 0,
        bytes_since_compaction: 0,
        last_change: None,
        last_used: Instant::now(),
        kept_version,
        authors: BTreeSet::new(),
        owners: HashMap::new(),
    };
    s.owners.insert(s.doc.client_id().get(), "server".into());
    let unreadable = |what: String| {
        ApiError::internal(format!(
            "meeting {meeting}: stored notes {what} cannot be read"
        ))
    };
    let mut legacy = false;
    if let Some(r) = &row {
        s.version = r.version.max(r.compacted_version);
        s.compacted_version = r.compacted_version;
        s.updated_at = r.updated_at;
        s.updated_by = r.updated_by;
        if let Some(a) = r.pending_authors.as_deref() {
            s.authors = serde_json::from_str(a).unwrap_or_default();
        }
        match &r.state {
            Some(state) => {
                let u =
                    crdt::decode_update(state).map_err(|e| unreadable(format!("state ({e})")))?;
                crdt::apply(&s.doc, u).map_err(|e| unreadable(format!("state ({e})")))?;
            }
            None => {
                // Notes from before the CRDT: their text becomes the document.
                use yrs::{Text, Transact};
                s.text.insert(&mut s.doc.transact_mut(), 0, &r.text);
                legacy = true;
            }
        }
    }
    for c in &changes {
        let u = crdt::decode_update(&c.data)
            .map_err(|e| unreadable(format!("change {} ({e})", c.seq)))?;
        crdt::apply(&s.doc, u).map_err(|e| unreadable(format!("change {} ({e})", c.seq)))?;
        s.version = c.seq;
        s.updated_at = c.created_at;
        s.updated_by = c.author_id;
        s.changes_since_compaction += 1;
        s.bytes_since_compaction += c.data.len();
        if c.seq > kept_version {
            s.authors.insert(c.author_name.clone());
            s.last_change = Some(Instant::now());
        }
    }
    if legacy {
        // Stored before anyone sees it: every load must give the same document.
        compact(db, meeting, &mut s).await?;
        tracing::info!(meeting, "notes converted to a CRDT document");
    }
    Ok(LiveDoc {
        meeting,
        state: tokio::sync::Mutex::new(s),
        events: broadcast::channel(256).0,
        awareness: Mutex::new(Default::default()),
        connections: AtomicUsize::new(0),
        next_conn: AtomicU64::new(1),
        broken: AtomicBool::new(false),
    })
}

/// Folds the stored changes into `notes.state` (one transaction).
async fn compact(db: &DatabaseConnection, meeting: i64, s: &mut DocState) -> Result<(), ApiError> {
    let state = crdt::encode_state(&s.doc);
    let text = crdt::text_of(&s.doc, &s.text);
    let authors = serde_json::to_string(&s.authors).unwrap_or_else(|_| "[]".into());
    let txn = db.begin().await?;
    note::Entity::insert(note::ActiveModel {
        meeting_id: Set(meeting),
        text: Set(text),
        version: Set(s.version),
        updated_at: Set(s.updated_at),
        updated_by: Set(s.updated_by),
        state: Set(Some(state)),
        compacted_version: Set(s.version),
        pending_authors: Set(Some(authors)),
    })
    .on_conflict(
        OnConflict::column(note::Column::MeetingId)
            .update_columns([
                note::Column::Text,
                note::Column::Version,
                note::Column::UpdatedAt,
                note::Column::UpdatedBy,
                note::Column::State,
                note::Column::CompactedVersion,
                note::Column::PendingAuthors,
            ])
            .to_owned(),
    )
    .exec_without_returning(&txn)
    .await?;
    note_update::Entity::delete_many()
        .filter(note_update::Column::MeetingId.eq(meeting))
        .filter(note_update::Column::Seq.lte(s.version))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    s.compacted_version = s.version;
    s.changes_since_compaction = 0;
    s.bytes_since_compaction = 0;
    tracing::debug!(meeting, version = s.version, "notes compacted");
    Ok(())
}

/// The document as it was at `version` (the compacted state and the changes up to it).
async fn rebuild(
    db: &DatabaseConnection,
    meeting: i64,
    version: i64,
) -> Result<(Doc, TextRef), ApiError> {
    let (row, changes) = models::note::state_and_changes(db, meeting, Some(version)).await?;
    let (doc, text) = crdt::new_doc();
    let bad =
        |e: UpdateRefused| ApiError::internal(format!("meeting {meeting}: rebuilding notes: {e}"));
    if let Some(state) = row.and_then(|r| r.state) {
        crdt::apply(&doc, crdt::decode_update(&state).map_err(bad)?).map_err(bad)?;
    }
    for c in changes {
        crdt::apply(&doc, crdt::decode_update(&c.data).map_err(bad)?).map_err(bad)?;
    }
    Ok((doc, text))
}

fn too_large() -> ApiError {
    ApiError::new(
        actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
        "notes_too_large",
        format!("Notes have at most {MAX_NOTES_BYTES} bytes."),
    )
}

fn unavailable() -> ApiError {
    ApiError::new(
        actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
        "notes_unavailable",
        "The notes could not be saved just now; try again.",
    )
}

fn conflict(cur: NotesView) -> ApiError {
    ApiError::conflict(
        "version_conflict",
        format!(
            "Your version is older than the changes the server still has (now version {}); apply your change to the current text and save again.",
            cur.version
        ),
    )
    .with_extra(serde_json::json!({
        "text": cur.text,
        "version": cur.version,
        "updated_at": cur.updated_at,
        "updated_by": cur.updated_by,
    }))
}

impl LiveDoc {
    fn is_broken(&self) -> bool {
        self.broken.load(Ordering::SeqCst)
    }

    /// The notes now.
    pub async fn view(&self) -> NotesView {
        let mut s = self.state.lock().await;
        s.last_used = Instant::now();
        s.view(self.meeting)
    }

    /// Stores a change already applied to `s.doc` and passes it on. On failure the document
    /// is dropped (see the module doc).
    async fn store(
        self: &Arc<Self>,
        st: &ApiState,
        s: &mut DocState,
        change: Vec<u8>,
        author: &Author,
        from: u64,
    ) -> Result<i64, ApiError> {
        let seq = s.version + 1;
        let at = now();
        let len = change.len();
        let frame = update_frame(&change);
        let r = note_update::Entity::insert(note_update::ActiveModel {
            meeting_id: Set(self.meeting),
            seq: Set(seq),
            data: Set(change),
            created_at: Set(at),
            author_id: Set(author.id),
            author_name: Set(author.name.chars().take(128).collect()),
        })
        .exec_without_returning(&st.db)
        .await;
        if let Err(e) = r {
            tracing::warn!(meeting = self.meeting, error = %e, "storing a notes change failed");
            st.notes_hub.drop_doc(self);
            return Err(unavailable());
        }
        s.version = seq;
        s.updated_at = at;
        s.updated_by = author.id;
        s.authors.insert(author.name.clone());
        s.last_change = Some(Instant::now());
        s.last_used = Instant::now();
        s.changes_since_compaction += 1;
        s.bytes_since_compaction += len;
        let _ = self.events.send(Event::Update {
            from,
            frame: Arc::new(frame),
        });
        if (s.changes_since_compaction >= COMPACT_AFTER_CHANGES
            || s.bytes_since_compaction >= COMPACT_AFTER_BYTES)
            && let Err(e) = compact(&st.db, self.meeting, s).await
        {
            // The changes are stored; folding them in waits for the next time.
            tracing::warn!(meeting = self.meeting, error = %e.message, "notes compaction failed");
        }
        Ok(seq)
    }

    /// A change from a live connection (sync step 2 or update). `Ok(version)` once stored
    /// (or when the document already had all of it).
    pub async fn apply_live(
        self: &Arc<Self>,
        st: &ApiState,
        conn: u64,
        author: &Author,
        bytes: &[u8],
    ) -> Result<i64, LiveRefused> {
        let mut s = self.state.lock().await;
        if self.is_broken() {
            return Err(LiveRefused::Unavailable);
        }
        s.last_used = Instant::now();
        let update = crdt::decode_update(bytes).map_err(LiveRefused::Update)?;
        let clients = crdt::new_authors(&s.doc, &update);
        if clients
            .iter()
            .any(|c| s.owners.get(c).is_some_and(|t| *t != author.tag))
        {
            return Err(LiveRefused::Update(UpdateRefused::NotYours));
        }
        crdt::fits(&s.doc, &s.text, bytes, MAX_NOTES_BYTES).map_err(LiveRefused::Update)?;
        match crdt::apply(&s.doc, update) {
            Err(e) => {
                drop(s);
                st.notes_hub.drop_doc(self);
                Err(LiveRefused::Update(e))
            }
            Ok(None) => Ok(s.version),
            Ok(Some(change)) => {
                for c in clients {
                    s.owners.entry(c).or_insert_with(|| author.tag.clone());
                }
                self.store(st, &mut s, change, author, conn)
                    .await
                    .map_err(|_| LiveRefused::Unavailable)
            }
        }
    }

    /// A REST save: the text as `author` wants it, made on `base`. Applied as the difference
    /// to the text of `base` (see the module doc of `notes` for stale versions). `keep`:
    /// also keep the result in history as this kind.
    pub async fn set_text(
        self: &Arc<Self>,
        st: &ApiState,
        author: &Author,
        base: i64,
        new: &str,
        keep: &'static str,
    ) -> Result<NotesView, ApiError> {
        if new.len() > MAX_NOTES_BYTES {
            return Err(too_large());
        }
        let mut s = self.state.lock().await;
        if self.is_broken() {
            return Err(unavailable());
        }
        s.last_used = Instant::now();
        if base < 0 {
            return Err(ApiError::bad_request(
                "invalid_version",
                "`version` is the version your text was made on (0 for the first).",
            ));
        }
        if base > s.version || base < s.compacted_version {
            return Err(conflict(s.view(self.meeting)));
        }
        let change = if base == s.version {
            crdt::set_text(&s.doc, &s.text, new, DIFF_BUDGET)
        } else {
            // Made on an older version: the difference to that version, merged.
            let (old, old_text) = rebuild(&st.db, self.meeting, base).await?;
            match crdt::set_text(&old, &old_text, new, DIFF_BUDGET) {
                None => None,
                Some(u) => {
                    crdt::fits(&s.doc, &s.text, &u, MAX_NOTES_BYTES).map_err(|_| too_large())?;
                    s.owners.insert(old.client_id().get(), "server".into());
                    let decoded = crdt::decode_update(&u).map_err(ApiError::internal)?;
                    match crdt::apply(&s.doc, decoded) {
                        Ok(c) => c,
                        Err(e) => {
                            drop(s);
                            st.notes_hub.drop_doc(self);
                            return Err(ApiError::internal(e));
                        }
                    }
                }
            }
        };
        if let Some(change) = change {
            self.store(st, &mut s, change, author, 0).await?;
        }
        self.keep_version(st, &mut s, keep, author.id).await;
        Ok(s.view(self.meeting))
    }

    /// Keeps the current text in history when it changed since the newest kept version.
    async fn keep_version(
        &self,
        st: &ApiState,
        s: &mut DocState,
        kind: &'static str,
        by: Option<i64>,
    ) {
        if s.version <= s.kept_version {
            s.last_change = None;
            return;
        }
        let text = crdt::text_of(&s.doc, &s.text);
        let v = NewVersion {
            meeting: self.meeting,
            version: s.version,
            text: &text,
            by: by.or(s.updated_by),
            authors: s.authors.iter().cloned().collect(),
            kind,
            at: now(),
        };
        match history::keep(&st.db, v, st.cfg.notes.history_budget).await {
            Ok(()) => {
                s.kept_version = s.version;
                s.authors.clear();
                s.last_change = None;
            }
            Err(e) => {
                tracing::warn!(meeting = self.meeting, error = %e, "keeping a notes version failed")
            }
        }
    }

    // ---- live connections ---------------------------------------------------------------

    /// A live connection starts following: its id and its feed.
    pub fn join(&self) -> (u64, broadcast::Receiver<Event>) {
        self.connections.fetch_add(1, Ordering::SeqCst);
        (
            self.next_conn.fetch_add(1, Ordering::SeqCst),
            self.events.subscribe(),
        )
    }

    /// A live connection ended: its cursors go; the last one out keeps a version.
    pub fn leave(self: &Arc<Self>, st: &Arc<ApiState>, conn: u64) {
        let gone = self
            .awareness
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .leave(conn);
        if let Some(u) = gone {
            let _ = self.events.send(Event::Awareness {
                from: conn,
                frame: Arc::new(Message::Awareness(u).encode_v1()),
            });
        }
        if self.connections.fetch_sub(1, Ordering::SeqCst) == 1 {
            let (d, st) = (self.clone(), st.clone());
            actix_web::rt::spawn(async move {
                let mut s = d.state.lock().await;
                if !d.is_broken() {
                    d.keep_version(&st, &mut s, "end", None).await;
                }
            });
        }
    }

    /// What the server has (for sync step 1).
    pub async fn state_vector(&self) -> StateVector {
        crdt::state_vector(&self.state.lock().await.doc)
    }

    /// What `sv` lacks (sync step 2), and the current version.
    pub async fn diff_since(&self, sv: &StateVector) -> (Vec<u8>, i64) {
        let s = self.state.lock().await;
        (crdt::diff_since(&s.doc, sv), s.version)
    }

    /// The version now.
    pub async fn version(&self) -> i64 {
        self.state.lock().await.version
    }

    /// An awareness update from connection `conn` of member `name`: checked, named, passed on.
    pub fn awareness_update(&self, conn: u64, name: &str, bytes: &[u8]) {
        let out = self
            .awareness
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .update(conn, name, bytes);
        if let Some(a) = out {
            let _ = self.events.send(Event::Awareness {
                from: conn,
                frame: Arc::new(Message::Awareness(a).encode_v1()),
            });
        }
    }

    /// Every awareness state, as a y-sync frame.
    pub fn awareness_all(&self) -> Option<Vec<u8>> {
        let all = self
            .awareness
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .all()?;
        Some(Message::Awareness(all).encode_v1())
    }
}
