//! Keys derived from the deployment secret, and the tokens made with them.
//!
//! One HKDF-SHA256 key per purpose, so a key leaked from one use (say a TURN server's REST
//! secret pasted into coturn) cannot forge another (join tokens). Every role derives the same
//! keys from `--secret`, so an sfuserver, turnserver or fsserver validates what the apiserver
//! issued locally, without a round trip.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::ids::{MeetingId, ParticipantId};

type HmacSha256 = Hmac<Sha256>;

/// The per-purpose keys of one deployment.
#[derive(Clone)]
pub struct Keys {
    join: [u8; 32],
    /// coturn's `static-auth-secret` is a string; ours is the hex of the derived key, so the
    /// same value can be given to a coturn that replaces our turnserver.
    turn_secret: String,
    files: [u8; 32],
    bridge: [u8; 32],
    codes: [u8; 32],
    sso: [u8; 32],
    passcodes: [u8; 32],
}

impl Keys {
    pub fn derive(secret: &str) -> Keys {
        let hk = hkdf::Hkdf::<Sha256>::new(Some(b"meeting-appliance v1"), secret.as_bytes());
        let key = |info: &[u8]| {
            let mut k = [0u8; 32];
            // 32 bytes is far below HKDF-SHA256's 8160-byte limit: expand cannot fail.
            hk.expand(info, &mut k)
                .expect("32-byte HKDF output is always valid");
            k
        };
        Keys {
            join: key(b"join-token"),
            turn_secret: hex::encode(key(b"turn-rest")),
            files: key(b"file-url"),
            bridge: key(b"bridge-auth"),
            codes: key(b"login-code"),
            sso: key(b"sso-tokens"),
            passcodes: key(b"meeting-passcodes"),
        }
    }

    /// The TURN REST shared secret (give this to coturn as `static-auth-secret`).
    pub fn turn_secret(&self) -> &str {
        &self.turn_secret
    }
    pub fn files_key(&self) -> &[u8; 32] {
        &self.files
    }
    pub fn bridge_key(&self) -> &[u8; 32] {
        &self.bridge
    }
    /// Seals identity providers' tokens kept with SSO sessions (`auth::seal`).
    pub fn sso_key(&self) -> &[u8; 32] {
        &self.sso
    }
    /// Seals meeting passcodes (kept for invitation mails; checked against their hash).
    pub fn passcode_key(&self) -> &[u8; 32] {
        &self.passcodes
    }

    /// A sign-in code as stored: keyed hash, so a copied database does not reveal codes
    /// without the secret too.
    pub fn hash_code(&self, email: &str, code: &str) -> String {
        hex::encode(
            mac(&self.codes, &[email.as_bytes(), code.as_bytes()])
                .finalize()
                .into_bytes(),
        )
    }

    pub fn sign_join(&self, claims: &JoinClaims) -> String {
        sign_claims(&self.join, JOIN, claims)
    }

    /// Checks signature, expiry and that the token is for `meeting`. Used by the sfuserver.
    pub fn verify_join(
        &self,
        token: &str,
        meeting: MeetingId,
        now: i64,
    ) -> Result<JoinClaims, TokenError> {
        let claims: JoinClaims = verify_claims(&self.join, JOIN, token)?;
        if claims.exp < now {
            return Err(TokenError::Expired);
        }
        if claims.meeting != meeting {
            return Err(TokenError::WrongMeeting);
        }
        Ok(claims)
    }

    /// coturn's REST credentials: username `expiry:meeting.participant`, password
    /// base64(HMAC-SHA1(turn secret, username)). The turnserver reads the meeting from the
    /// username to cap allocations per meeting (`turnserver::limits::meeting_of`); coturn
    /// takes it as an opaque user name.
    pub fn turn_credentials(
        &self,
        meeting: MeetingId,
        participant: &ParticipantId,
        expires_at: i64,
    ) -> (String, String) {
        let username = format!("{expires_at}:{meeting}.{participant}");
        let password = turn_password(&self.turn_secret, &username);
        (username, password)
    }
}

/// The coturn REST password for a username under a shared secret.
pub fn turn_password(secret: &str, username: &str) -> String {
    // HMAC accepts keys of any length.
    let mut m =
        <Hmac<Sha1> as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    m.update(username.as_bytes());
    STANDARD.encode(m.finalize().into_bytes())
}

/// HMAC-SHA256 of `parts` under `key`, each part prefixed with its length (8 bytes, big
/// endian) so that no two different lists of parts authenticate alike. The appliance's one
/// MAC construction: signed tokens, sign-in code hashes, the bridge handshake, TURN nonces.
/// (TURN passwords are HMAC-SHA1 because coturn's REST format says so: [`turn_password`].)
pub fn mac(key: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        m.update(&(p.len() as u64).to_be_bytes());
        m.update(p);
    }
    m
}

const JOIN: &str = "join";

/// The longest signed token accepted: far above any real one, so parsing work is bounded.
const MAX_TOKEN: usize = 8192;

/// The one signed-token format (join tokens, file grants and receipts):
/// `base64url(JSON claims) "." base64url([mac](key, [purpose, body]))`. The purpose in the
/// MAC keeps a token of one kind from passing as another under the same key.
pub fn sign_claims<T: Serialize>(key: &[u8; 32], purpose: &str, claims: &T) -> String {
    // Claims are plain structs of strings and numbers: serializing them cannot fail, and
    // signing an empty payload instead would hide a broken type.
    let payload = serde_json::to_vec(claims).expect("token claims serialize");
    let body = URL_SAFE_NO_PAD.encode(payload);
    let sig = URL_SAFE_NO_PAD.encode(purpose_mac(key, purpose, &body).finalize().into_bytes());
    format!("{body}.{sig}")
}

/// Checks a [`sign_claims`] token's size and signature and reads its claims (the caller
/// checks expiry and what the claims are for).
pub fn verify_claims<T: DeserializeOwned>(
    key: &[u8; 32],
    purpose: &str,
    token: &str,
) -> Result<T, TokenError> {
    if token.len() > MAX_TOKEN {
        return Err(TokenError::Malformed);
    }
    let (body, sig) = token.split_once('.').ok_or(TokenError::Malformed)?;
    let sig = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| TokenError::Malformed)?;
    purpose_mac(key, purpose, body)
        .verify_slice(&sig)
        .map_err(|_| TokenError::BadSignature)?;
    let payload = URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)
}

fn purpose_mac(key: &[u8; 32], purpose: &str, body: &str) -> HmacSha256 {
    mac(key, &[purpose.as_bytes(), body.as_bytes()])
}

/// SHA-256 hex of an opaque token (session tokens are stored only as this).
pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// What a join token grants: one participant in one meeting on one sfuserver, until `exp`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JoinClaims {
    pub meeting: MeetingId,
    pub participant: ParticipantId,
    /// The sfuserver (`host:port`) the token is for; the sfuserver checks it is itself.
    pub sfu: String,
    pub name: String,
    pub host: bool,
    /// Unix seconds.
    pub exp: i64,
    /// Owner, co-host, participant or guest (`host` is true for the first two).
    #[serde(default)]
    pub role: crate::proto::signal::Role,
    /// The person waits in the lobby until a host admits them.
    #[serde(default)]
    pub lobby: bool,
    /// The meeting lets only hosts share their screen.
    #[serde(default)]
    pub screens_hosts_only: bool,
    /// An invitee who may claim host powers when no host is in the meeting.
    #[serde(default)]
    pub may_claim_host: bool,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's signature is wrong (forged, or from another deployment)")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is for another meeting")]
    WrongMeeting,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> JoinClaims {
        JoinClaims {
            meeting: MeetingId(7),
            participant: ParticipantId("pabc".into()),
            sfu: "127.0.0.1:8080".into(),
            name: "Ann".into(),
            host: true,
            exp,
            role: crate::proto::signal::Role::Owner,
            lobby: false,
            screens_hosts_only: false,
            may_claim_host: false,
        }
    }

    #[test]
    fn join_token_round_trip() {
        let k = Keys::derive("s3cret");
        let t = k.sign_join(&claims(1000));
        assert_eq!(k.verify_join(&t, MeetingId(7), 999), Ok(claims(1000)));
    }

    #[test]
    fn forged_expired_and_other_meeting_tokens_are_rejected() {
        let k = Keys::derive("s3cret");
        let t = k.sign_join(&claims(1000));
        // Another deployment's secret.
        let other = Keys::derive("other").sign_join(&claims(1000));
        assert_eq!(
            k.verify_join(&other, MeetingId(7), 999),
            Err(TokenError::BadSignature)
        );
        // Payload edited to claim host in another meeting, signature kept.
        let (_, sig) = t.split_once('.').expect("dot");
        let mut c = claims(1000);
        c.meeting = MeetingId(8);
        let forged_body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).expect("json"));
        assert_eq!(
            k.verify_join(&format!("{forged_body}.{sig}"), MeetingId(8), 999),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            k.verify_join(&t, MeetingId(7), 1001),
            Err(TokenError::Expired)
        );
        assert_eq!(
            k.verify_join(&t, MeetingId(8), 999),
            Err(TokenError::WrongMeeting)
        );
        assert_eq!(
            k.verify_join("garbage", MeetingId(7), 0),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            k.verify_join("a.b.c", MeetingId(7), 0),
            Err(TokenError::Malformed)
        );
        // Oversized: refused before any decoding or MAC work.
        let huge = format!("{}.{sig}", "A".repeat(MAX_TOKEN));
        assert_eq!(
            k.verify_join(&huge, MeetingId(7), 0),
            Err(TokenError::Malformed)
        );
        // A token of another kind under the same key (the purpose is in the MAC).
        let other_kind = sign_claims(&k.join, "grant", &claims(1000));
        assert_eq!(
            k.verify_join(&other_kind, MeetingId(7), 999),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn turn_password_matches_coturn_rest_scheme() {
        // Known answer: base64(HMAC-SHA1("secret", "1700000000:alice")), computed with
        // `printf %s 1700000000:alice | openssl dgst -sha1 -hmac secret -binary | base64`.
        assert_eq!(
            turn_password("secret", "1700000000:alice"),
            "d8soP47RbdIKLDUOpnJPVQyq5Ts="
        );
    }

    #[test]
    fn purposes_get_different_keys() {
        let k = Keys::derive("s");
        assert_ne!(k.files_key(), k.bridge_key());
        assert_ne!(hex::encode(k.files_key()), k.turn_secret());
    }
}
