//! `GET|HEAD /fs/v1/files/{meeting}/{file}?t=<get grant>` and `DELETE …?t=<delete grant>`.
//!
//! A stored file never changes (a new upload gets a new id), so its sha256 is a strong ETag
//! and caches may keep it (`immutable`), privately and no longer than the grant lives.

use actix_web::body::SizedStream;
use actix_web::http::{Method, StatusCode, header};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::http::{RangeAnswer, content_disposition, http_date, none_match, range};
use super::{FsState, authorize, no_such_file, store};
use crate::error::ApiError;
use crate::ids::{FileId, MeetingId};
use crate::proto::files::FileOp;
use crate::util::now;

/// Read size per chunk of a download.
const CHUNK: usize = 64 * 1024;
/// Caches keep a file at most this long, and never past its grant.
const MAX_AGE: i64 = 86400;

pub async fn get(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    st: web::Data<FsState>,
) -> Result<HttpResponse, ApiError> {
    let (meeting, file, grant) = authorize(&st, &req, &path, FileOp::Get)?;
    let opened = on_disk("opening a file", &st, meeting, &file, store::open).await?;
    let Some((meta, data, len)) = opened else {
        return Err(no_such_file());
    };
    let etag = format!("\"{}\"", meta.sha256);
    let max_age = (grant.exp - now()).clamp(0, MAX_AGE);
    let header_str = |name: header::HeaderName| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let mut resp = HttpResponse::Ok();
    resp.insert_header((header::ETAG, etag.clone()))
        .insert_header((
            header::CACHE_CONTROL,
            format!("private, max-age={max_age}, immutable"),
        ))
        .insert_header((header::LAST_MODIFIED, http_date(meta.stored_at)))
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .insert_header((
            header::CONTENT_DISPOSITION,
            content_disposition(meta.inline, &meta.name),
        ))
        .insert_header((header::CONTENT_SECURITY_POLICY, "sandbox"));
    if none_match(header_str(header::IF_NONE_MATCH).as_deref(), &etag) {
        return Ok(resp.status(StatusCode::NOT_MODIFIED).finish());
    }
    resp.insert_header((header::CONTENT_TYPE, meta.content_type.clone()));
    // If-Range: a range only applies to the version the client has.
    let if_range_ok = header_str(header::IF_RANGE).is_none_or(|v| v.trim() == etag);
    let wanted = if if_range_ok {
        range(header_str(header::RANGE).as_deref(), len)
    } else {
        RangeAnswer::Full
    };
    let (start, count) = match wanted {
        RangeAnswer::Full => (0, len),
        RangeAnswer::Partial { start, end } => {
            resp.status(StatusCode::PARTIAL_CONTENT)
                .insert_header((header::CONTENT_RANGE, format!("bytes {start}-{end}/{len}")));
            (start, end - start + 1)
        }
        RangeAnswer::Unsatisfiable => {
            return Ok(resp
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .insert_header((header::CONTENT_RANGE, format!("bytes */{len}")))
                .finish());
        }
    };
    if req.method() == Method::HEAD {
        // The length is announced; the (empty) body is never sent for HEAD.
        let nothing = futures_util::stream::empty::<Result<Bytes, std::io::Error>>();
        return Ok(resp.body(SizedStream::new(count, nothing)));
    }
    st.stats.download();
    let mut f = tokio::fs::File::from_std(data);
    if start > 0 {
        f.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(|e| ApiError::internal(format_args!("seeking a file: {e}")))?;
    }
    let stream = futures_util::stream::unfold((f, count), |(mut f, left)| async move {
        if left == 0 {
            return None;
        }
        let want = usize::try_from(left).map_or(CHUNK, |l| l.min(CHUNK));
        let mut buf = vec![0u8; want];
        match f.read(&mut buf).await {
            Ok(0) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the file is shorter than its metadata says",
                )),
                (f, 0),
            )),
            Ok(n) => {
                buf.truncate(n);
                Some((
                    Ok::<_, std::io::Error>(Bytes::from(buf)),
                    (f, left - n as u64),
                ))
            }
            Err(e) => Some((Err(e), (f, 0))),
        }
    });
    Ok(resp.body(SizedStream::new(count, stream)))
}

pub async fn delete(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    st: web::Data<FsState>,
) -> Result<HttpResponse, ApiError> {
    let (meeting, file, _) = authorize(&st, &req, &path, FileOp::Delete)?;
    let freed = on_disk("deleting a file", &st, meeting, &file, store::delete).await?;
    match freed {
        Some(size) => {
            st.stats.deleted();
            tracing::info!(%meeting, %file, size, "file deleted");
            Ok(HttpResponse::NoContent().finish())
        }
        None => Err(no_such_file()),
    }
}

/// `POST …?t={keep grant}`: the apiserver recorded this upload; it is kept from now on.
pub async fn keep(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    st: web::Data<FsState>,
) -> Result<HttpResponse, ApiError> {
    let (meeting, file, _) = authorize(&st, &req, &path, FileOp::Keep)?;
    let kept = on_disk("keeping a file", &st, meeting, &file, store::keep).await?;
    if kept {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::new(
            actix_web::http::StatusCode::GONE,
            "upload_expired",
            "This upload was not recorded in time and has been deleted; upload it again.",
        ))
    }
}

/// Runs a store operation on `file` off the async threads; any failure is a 500 saying `what`.
async fn on_disk<T: Send + 'static>(
    what: &'static str,
    st: &web::Data<FsState>,
    meeting: MeetingId,
    file: &FileId,
    op: fn(&store::Store, MeetingId, &FileId) -> std::io::Result<T>,
) -> Result<T, ApiError> {
    let (st, file) = (st.clone(), file.clone());
    web::block(move || op(&st.store, meeting, &file))
        .await
        .map_err(|e| ApiError::internal(format_args!("{what}: {e}")))?
        .map_err(|e| ApiError::internal(format_args!("{what}: {e}")))
}
