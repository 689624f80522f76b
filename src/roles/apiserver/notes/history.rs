//! History of a meeting's notes: versions of the text kept when editing pauses, when the last
//! editor leaves, on every REST save and on every restore, each with who wrote since the one
//! before. A meeting keeps at most `notes.history_budget` bytes of them: past that, versions
//! are dropped so that the ones kept are dense recently and sparse long ago
//! ([`plan_prune`]), the newest always kept.
//!
//! ```text
//! GET /api/v1/meetings/{id}/notes/versions       → [{version, created_at, created_by, authors, kind, bytes}], newest first
//! GET /api/v1/meetings/{id}/notes/versions/{v}   → that version with its text
//! ```

use actix_web::{HttpResponse, web};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ConnectionTrait, DbErr, EntityTrait, Set};

use super::access::{Credentials, member};
use crate::db::entities::note_version;
use crate::db::models;
use crate::error::ApiError;
use crate::roles::apiserver::ApiState;

/// A kept version, as pruning sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kept {
    pub id: i64,
    /// Unix seconds.
    pub at: i64,
    pub bytes: i64,
}

/// Which versions to drop (ids) so that the rest fit in `budget` bytes: each time the one
/// whose removal leaves the smallest gap relative to its age (gap between its neighbours,
/// divided by how old it is), so recent versions stay close together and old ones thin
/// out. The newest is never dropped, the oldest only when nothing else is left to drop.
/// `rows` are oldest first.
pub fn plan_prune(rows: &[Kept], now: i64, budget: u64) -> Vec<i64> {
    let mut keep: Vec<Kept> = rows.to_vec();
    let mut total: u64 = keep.iter().map(|k| k.bytes.max(0) as u64).sum();
    let mut gone = Vec::new();
    while total > budget && keep.len() > 1 {
        let n = keep.len();
        // The oldest (how it all began) and the newest stay while others remain.
        let mut best = (f64::INFINITY, 0usize);
        for i in 1..n - 1 {
            let gap = keep[i + 1].at - keep[i - 1].at;
            let age = (now - keep[i].at).max(0) as f64 + 1.0;
            let score = gap.max(0) as f64 / age;
            if score < best.0 {
                best = (score, i);
            }
        }
        if n == 2 {
            best.1 = 0;
        }
        let k = keep.remove(best.1);
        total -= k.bytes.max(0) as u64;
        gone.push(k.id);
    }
    gone
}

/// A version to keep.
pub struct NewVersion<'a> {
    pub meeting: i64,
    pub version: i64,
    pub text: &'a str,
    pub by: Option<i64>,
    pub authors: Vec<String>,
    pub kind: &'static str,
    pub at: i64,
}

/// Keeps a version (once per version number) and prunes the meeting's history to `budget`.
pub async fn keep<C: ConnectionTrait>(db: &C, v: NewVersion<'_>, budget: u64) -> Result<(), DbErr> {
    let authors = serde_json::to_string(&v.authors).unwrap_or_else(|_| "[]".into());
    note_version::Entity::insert(note_version::ActiveModel {
        meeting_id: Set(v.meeting),
        version: Set(v.version),
        text: Set(v.text.to_string()),
        created_at: Set(v.at),
        created_by: Set(v.by),
        authors: Set(Some(authors)),
        kind: Set(v.kind.to_string()),
        bytes: Set(v.text.len() as i64),
        ..Default::default()
    })
    .on_conflict(
        OnConflict::columns([
            note_version::Column::MeetingId,
            note_version::Column::Version,
        ])
        .do_nothing()
        .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    prune(db, v.meeting, budget, v.at).await?;
    Ok(())
}

/// Drops versions until the meeting's history fits in `budget` (see [`plan_prune`]).
pub async fn prune<C: ConnectionTrait>(
    db: &C,
    meeting: i64,
    budget: u64,
    now: i64,
) -> Result<usize, DbErr> {
    let rows: Vec<Kept> = models::note::version_sizes(db, meeting)
        .await?
        .into_iter()
        .map(|(id, at, bytes)| Kept { id, at, bytes })
        .collect();
    let gone = plan_prune(&rows, now, budget);
    models::note::delete_versions(db, &gone).await?;
    if !gone.is_empty() {
        tracing::debug!(meeting, dropped = gone.len(), "notes history pruned");
    }
    Ok(gone.len())
}

/// The newest kept version number (0: none).
pub async fn newest<C: ConnectionTrait>(db: &C, meeting: i64) -> Result<i64, DbErr> {
    models::note::newest_version(db, meeting).await
}

fn authors_of(json: Option<&str>) -> serde_json::Value {
    json.and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_else(|| serde_json::json!([]))
}

/// `GET /api/v1/meetings/{id}/notes/versions`
pub async fn versions(
    st: web::Data<ApiState>,
    creds: Credentials,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let m = member(&st, &creds, id.into_inner()).await?;
    let rows = models::note::versions(&st.db, m.meeting.id).await?;
    let list: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|(version, created_at, created_by, authors, kind, bytes)| {
            serde_json::json!({
                "version": version, "created_at": created_at, "created_by": created_by,
                "authors": authors_of(authors.as_deref()), "kind": kind, "bytes": bytes,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(list))
}

/// One kept version, or 404.
pub async fn find(st: &ApiState, meeting: i64, v: i64) -> Result<note_version::Model, ApiError> {
    models::note::version(&st.db, meeting, v)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(
                "The notes history has no such version (it may have been thinned out).",
            )
        })
}

/// `GET /api/v1/meetings/{id}/notes/versions/{v}`
pub async fn version(
    st: web::Data<ApiState>,
    creds: Credentials,
    path: web::Path<(i64, i64)>,
) -> Result<HttpResponse, ApiError> {
    let (id, v) = path.into_inner();
    let m = member(&st, &creds, id).await?;
    let row = find(&st, m.meeting.id, v).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "meeting_id": row.meeting_id,
        "version": row.version,
        "text": row.text,
        "created_at": row.created_at,
        "created_by": row.created_by,
        "authors": authors_of(row.authors.as_deref()),
        "kind": row.kind,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_keeps_recent_dense_old_sparse_and_the_newest() {
        // A version every minute for 30 days, 1 kB each; room for 60 of them.
        let now = 30 * 86400;
        let rows: Vec<Kept> = (0..30 * 1440)
            .map(|i| Kept {
                id: i,
                at: i * 60,
                bytes: 1000,
            })
            .collect();
        // Prune as it would happen: after each new version.
        let mut kept: Vec<Kept> = Vec::new();
        for r in &rows {
            kept.push(*r);
            let gone = plan_prune(&kept, r.at, 60_000);
            kept.retain(|k| !gone.contains(&k.id));
        }
        assert_eq!(kept.len(), 60);
        assert_eq!(kept.last().map(|k| k.id), rows.last().map(|k| k.id));
        // Gaps grow with age: the newest ten within the last hours, the oldest spread
        // over weeks.
        let ages: Vec<i64> = kept.iter().map(|k| now - k.at).collect();
        assert!(ages[ages.len() - 10] < 6 * 3600, "{ages:?}");
        assert!(ages[0] > 14 * 86400, "{ages:?}");
        let gap = |i: usize| kept[i + 1].at - kept[i].at;
        assert!(gap(0) > 20 * gap(kept.len() - 3), "{ages:?}");
    }

    #[test]
    fn pruning_does_nothing_under_budget_and_never_drops_the_last() {
        let rows = [
            Kept {
                id: 1,
                at: 0,
                bytes: 10,
            },
            Kept {
                id: 2,
                at: 5,
                bytes: 10,
            },
        ];
        assert!(plan_prune(&rows, 10, 20).is_empty());
        assert_eq!(plan_prune(&rows, 10, 15), vec![1]);
        assert_eq!(plan_prune(&rows, 10, 1), vec![1]);
    }
}
