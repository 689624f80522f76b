//! File URLs between the apiserver and the fsserver.
//!
//! The fsserver has no database and never calls the apiserver: everything it needs to decide
//! a request is in the URL, signed with the deployment's file key (`Keys::files_key`, derived
//! from `--secret`). So an fsserver on another host with only the secret serves what the
//! apiserver granted, and nothing else.
//!
//! - **Grant** (apiserver → client → fsserver): `{fs}/fs/v1/files/{meeting}/{file}?t={grant}`.
//!   The grant names one operation (`put`, `get`, `delete` or `keep`) on one file of one meeting on
//!   one fsserver, until `exp`. A `put` grant also fixes the largest size the apiserver allows
//!   and the file's name and type (metadata only: the file is stored under its id).
//! - **Receipt** (fsserver → client → apiserver): the answer to an upload. It states what was
//!   stored (size, sha256, type) and is signed too, so the apiserver records only files that
//!   really are on the fsserver, without the fsserver reaching the apiserver.
//! - **Keep** (apiserver → fsserver): when the apiserver records an upload it POSTs a `keep`
//!   grant for it to the fsserver. An upload nobody recorded within `fs.unclaimed_ttl` (the
//!   receipt's lifetime) is deleted: uploads never committed do not hold the quota forever.
//!
//! A token is `base64url(JSON claims) "." base64url(HMAC-SHA256(key, purpose "." body))`; the
//! purpose (`grant`, `receipt`) keeps one kind from being replayed as the other.

use serde::{Deserialize, Serialize};

use crate::ids::{FileId, MeetingId};
use crate::tokens::{TokenError, sign_claims as sign, verify_claims as verify};

/// The path prefix the fsserver serves files under.
pub const FILES_PATH: &str = "/fs/v1/files";

/// What a grant allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileOp {
    Put,
    Get,
    Delete,
    /// The apiserver recorded the upload: the fsserver keeps it (else it is reaped).
    Keep,
}

/// One operation on one stored file, signed by the apiserver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileGrant {
    pub op: FileOp,
    pub meeting: MeetingId,
    pub file: FileId,
    /// The fsserver (`host:port`) the grant is for; another fsserver refuses it.
    pub fs: String,
    /// Unix seconds.
    pub exp: i64,
    /// `put`: the largest upload allowed, bytes (the fsserver's own limit applies too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<u64>,
    /// `put`: the file name shown on download (metadata, never a path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `put`: the declared media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// `put`: who uploads: `u:<user id>` or `g:<participant id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploader: Option<String>,
}

/// What the fsserver stored, signed by it, for the apiserver to record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileReceipt {
    pub meeting: MeetingId,
    pub file: FileId,
    /// The fsserver that holds the bytes.
    pub fs: String,
    pub name: String,
    pub content_type: String,
    pub size: u64,
    /// Hex SHA-256 of the stored bytes.
    pub sha256: String,
    pub uploader: Option<String>,
    /// Unix seconds when the file was stored.
    pub stored_at: i64,
    /// The receipt must be presented before this (unix seconds).
    pub exp: i64,
}

const GRANT: &str = "grant";
const RECEIPT: &str = "receipt";

impl FileGrant {
    pub fn sign(&self, key: &[u8; 32]) -> String {
        sign(key, GRANT, self)
    }

    /// Checks the signature and expiry, and that the grant is for this operation on this
    /// path (`meeting`, `file`). The caller checks `fs` against its own address.
    pub fn verify(
        key: &[u8; 32],
        token: &str,
        op: FileOp,
        meeting: MeetingId,
        file: &FileId,
        now: i64,
    ) -> Result<FileGrant, TokenError> {
        let g: FileGrant = verify(key, GRANT, token)?;
        if g.exp < now {
            return Err(TokenError::Expired);
        }
        if g.meeting != meeting || &g.file != file || g.op != op {
            return Err(TokenError::WrongMeeting);
        }
        Ok(g)
    }

    /// The full URL of this grant on the fsserver whose base URL (`http(s)://host:port`) is given.
    pub fn url(&self, base: &str, key: &[u8; 32]) -> String {
        format!(
            "{base}{FILES_PATH}/{}/{}?t={}",
            self.meeting,
            self.file,
            self.sign(key)
        )
    }
}

impl FileReceipt {
    pub fn sign(&self, key: &[u8; 32]) -> String {
        sign(key, RECEIPT, self)
    }

    pub fn verify(key: &[u8; 32], token: &str, now: i64) -> Result<FileReceipt, TokenError> {
        let r: FileReceipt = verify(key, RECEIPT, token)?;
        if r.exp < now {
            return Err(TokenError::Expired);
        }
        Ok(r)
    }
}

/// Whether `s` is a file id as [`FileId::random`] makes them: `f` and 22 base64url
/// characters. Checked before an id comes near a path, so no client text ever names a file.
pub fn is_file_id(s: &str) -> bool {
    s.len() == 23
        && s.starts_with('f')
        && s.bytes()
            .skip(1)
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(op: FileOp, exp: i64) -> FileGrant {
        FileGrant {
            op,
            meeting: MeetingId(3),
            file: FileId("fAAAAAAAAAAAAAAAAAAAAAA".into()),
            fs: "127.0.0.1:8080".into(),
            exp,
            max_size: Some(10),
            name: Some("a.png".into()),
            content_type: Some("image/png".into()),
            uploader: Some("u:1".into()),
        }
    }

    #[test]
    fn grants_verify_only_for_their_operation_path_and_time() {
        let key = [7u8; 32];
        let g = grant(FileOp::Put, 100);
        let t = g.sign(&key);
        let f = g.file.clone();
        assert_eq!(
            FileGrant::verify(&key, &t, FileOp::Put, MeetingId(3), &f, 99),
            Ok(g.clone())
        );
        assert_eq!(
            FileGrant::verify(&key, &t, FileOp::Put, MeetingId(3), &f, 101),
            Err(TokenError::Expired)
        );
        assert_eq!(
            FileGrant::verify(&key, &t, FileOp::Get, MeetingId(3), &f, 99),
            Err(TokenError::WrongMeeting)
        );
        assert_eq!(
            FileGrant::verify(&key, &t, FileOp::Put, MeetingId(4), &f, 99),
            Err(TokenError::WrongMeeting)
        );
        assert_eq!(
            FileGrant::verify(&[8u8; 32], &t, FileOp::Put, MeetingId(3), &f, 99),
            Err(TokenError::BadSignature)
        );
        // A receipt's signature does not make a grant.
        let grant: FileGrant = verify(&key, GRANT, &t).expect("a grant");
        let as_receipt = sign(&key, RECEIPT, &grant);
        assert_eq!(
            FileGrant::verify(&key, &as_receipt, FileOp::Put, MeetingId(3), &f, 99),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            FileGrant::verify(&key, "x", FileOp::Put, MeetingId(3), &f, 0),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn file_ids() {
        assert!(is_file_id(&FileId::random().0));
        assert!(!is_file_id("f../../../etc/passwdxxxx"));
        assert!(!is_file_id("../"));
        assert!(!is_file_id("fAAAAAAAAAAAAAAAAAAAAA/"));
    }
}
