//! `PUT /fs/v1/files/{meeting}/{file}?t=<put grant>`: one upload, streamed to disk.
//!
//! Memory stays flat whatever the size: each chunk is hashed, counted against the size limit
//! and the meeting's quota, and written before the next is read (the socket applies back
//! pressure). A declared `Content-Length` over a limit is refused before any byte is read.
//! When anything goes wrong, or the client goes away (the request future is then dropped),
//! the temp file and the quota reservation are released by their drops: nothing partial is
//! ever published.

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::stats::Refused;
use super::store::{self, Meta, PublishError, TempFile};
use super::{FsState, authorize};
use crate::error::ApiError;
use crate::proto::files::{FileOp, FileReceipt};
use crate::util::now;

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "file_too_large",
        format!("A file may have at most {limit} bytes."),
    )
}

fn over_quota(quota: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "quota_exceeded",
        format!("This meeting's files may take at most {quota} bytes together; delete some first."),
    )
}

pub async fn put(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    mut body: web::Payload,
    st: web::Data<FsState>,
) -> Result<HttpResponse, ApiError> {
    let (meeting, file, grant) = authorize(&st, &req, &path, FileOp::Put)?;
    let limit = grant
        .max_size
        .unwrap_or(u64::MAX)
        .min(st.settings.max_file_size);
    let declared = match req.headers().get(actix_web::http::header::CONTENT_LENGTH) {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request("invalid_length", "Content-Length is not a number.")
                })?,
        ),
        None => None,
    };
    if declared.is_some_and(|n| n > limit) {
        st.stats.refused(Refused::TooLarge);
        return Err(too_large(limit));
    }
    if st.store.data_path(meeting, &file).exists() {
        st.stats.refused(Refused::Exists);
        return Err(ApiError::conflict(
            "file_exists",
            "This upload link was used already; ask for a new one.",
        ));
    }
    let mut reservation = st
        .store
        .reserve(meeting, declared.unwrap_or(0))
        .map_err(|q| {
            st.stats.refused(Refused::Quota);
            over_quota(q.quota)
        })?;

    let temp = TempFile {
        path: st.store.temp_path(&file, ".part"),
    };
    let mut out = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp.path)
        .await
        .map_err(|e| ApiError::internal(format_args!("creating {}: {e}", temp.path.display())))?;
    let mut hasher = Sha256::new();
    let mut head: Vec<u8> = Vec::with_capacity(16);
    let mut total: u64 = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            tracing::info!(%meeting, %file, received = total, error = %e, "upload ended early");
            st.stats.refused(Refused::Incomplete);
            ApiError::bad_request("upload_incomplete", format!("The upload ended early: {e}."))
        })?;
        total += chunk.len() as u64;
        if total > limit {
            tracing::info!(%meeting, %file, limit, "upload refused: too large");
            st.stats.refused(Refused::TooLarge);
            return Err(too_large(limit));
        }
        reservation.grow_to(total).map_err(|q| {
            tracing::info!(%meeting, %file, quota = q.quota, "upload refused: meeting quota");
            st.stats.refused(Refused::Quota);
            over_quota(q.quota)
        })?;
        if head.len() < 16 {
            let take = (16 - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
        }
        hasher.update(&chunk);
        out.write_all(&chunk)
            .await
            .map_err(|e| ApiError::internal(format_args!("writing an upload: {e}")))?;
    }
    out.flush()
        .await
        .map_err(|e| ApiError::internal(format_args!("writing an upload: {e}")))?;
    out.sync_all()
        .await
        .map_err(|e| ApiError::internal(format_args!("syncing an upload: {e}")))?;
    drop(out);

    let sha256 = hex::encode(hasher.finalize());
    let content_type = grant
        .content_type
        .clone()
        .unwrap_or_else(|| "application/octet-stream".into());
    let meta = Meta {
        name: grant.name.clone().unwrap_or_else(|| file.0.clone()),
        inline: super::http::shown_inline(&content_type, &head, &st.settings.inline_types),
        content_type,
        size: total,
        sha256,
        stored_at: now(),
        uploader: grant.uploader.clone(),
        keep_by: Some(now() + receipt_ttl(&st)),
    };
    let published = {
        let (st2, file2, meta2) = (st.clone(), file.clone(), meta.clone());
        // The reservation goes along: once published, the bytes count as stored even if the
        // client is gone before the answer.
        web::block(move || {
            let r = store::publish(&st2.store, meeting, &file2, &temp.path, &meta2);
            drop(temp); // the published name keeps the bytes; the temp name goes
            if r.is_ok() {
                reservation.commit(total);
            }
            r
        })
        .await
        .map_err(|e| ApiError::internal(format_args!("publishing an upload: {e}")))?
    };
    match published {
        Ok(()) => {}
        Err(PublishError::Exists) => {
            st.stats.refused(Refused::Exists);
            return Err(ApiError::conflict(
                "file_exists",
                "This upload link was used already; ask for a new one.",
            ));
        }
        Err(PublishError::Io(e)) => {
            return Err(ApiError::internal(format_args!(
                "publishing an upload: {e}"
            )));
        }
    }
    st.stats.stored(total);
    tracing::info!(%meeting, %file, size = total, sha256 = %meta.sha256, "file stored");
    let receipt = FileReceipt {
        meeting,
        file: file.clone(),
        fs: st.settings.own_address.clone(),
        name: meta.name.clone(),
        content_type: meta.content_type.clone(),
        size: total,
        sha256: meta.sha256.clone(),
        uploader: meta.uploader.clone(),
        stored_at: meta.stored_at,
        exp: meta.keep_by.unwrap_or_else(now),
    };
    Ok(HttpResponse::Created().json(serde_json::json!({
        "id": file,
        "meeting": meeting,
        "name": meta.name,
        "content_type": meta.content_type,
        "size": total,
        "sha256": meta.sha256,
        "inline": meta.inline,
        "receipt": receipt.sign(st.settings.keys.files_key()),
    })))
}

/// A receipt is good as long as the upload waits for the apiserver to record it.
fn receipt_ttl(st: &FsState) -> i64 {
    i64::try_from(st.settings.unclaimed_ttl.as_secs()).unwrap_or(i64::MAX / 4)
}
