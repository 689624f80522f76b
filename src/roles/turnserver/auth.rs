//! coturn's TURN REST credentials, checked locally with the deployment's TURN key.
//!
//! The apiserver hands out username `expiry:meeting.participant` (before: `expiry:participant`,
//! still accepted; the meeting is only read for the per-meeting quota, `limits::meeting_of`) and password
//! base64(HMAC-SHA1(turn secret, username)) (`tokens::Keys::turn_credentials`); coturn started
//! with `--use-auth-secret --static-auth-secret=<the same secret>` accepts exactly these, and
//! so do we. TURN's long-term credential key is MD5(username:realm:password).

use crate::tokens::turn_password;

/// Why credentials were refused (counted on `/metrics`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthReject {
    /// The username is not `expiry` or `expiry:something`.
    Malformed,
    /// The expiry has passed.
    Expired,
    /// The client used another realm than ours.
    WrongRealm,
}

impl std::fmt::Display for AuthReject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AuthReject::Malformed => "the username is not a TURN REST username (expiry:user)",
            AuthReject::Expired => "the TURN credentials have expired",
            AuthReject::WrongRealm => "the realm is not this server's",
        })
    }
}

/// Computes long-term keys for REST usernames.
#[derive(Clone)]
pub struct RestAuth {
    secret: String,
    realm: String,
}

impl RestAuth {
    pub fn new(secret: &str, realm: &str) -> RestAuth {
        RestAuth {
            secret: secret.to_string(),
            realm: realm.to_string(),
        }
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// The MESSAGE-INTEGRITY key for `username` in `realm` at unix time `now`, or why not.
    /// A wrong password is not detected here: the key simply will not match the request's
    /// MESSAGE-INTEGRITY.
    pub fn key(&self, username: &str, realm: &str, now: i64) -> Result<Vec<u8>, AuthReject> {
        if realm != self.realm {
            return Err(AuthReject::WrongRealm);
        }
        let expiry = username.split(':').next().unwrap_or_default();
        let expiry: i64 = expiry.parse().map_err(|_| AuthReject::Malformed)?;
        if expiry < now {
            return Err(AuthReject::Expired);
        }
        let password = turn_password(&self.secret, username);
        Ok(turn::auth::generate_auth_key(username, realm, &password))
    }
}

/// The `turn` crate asks for the key of every authenticated request. The guard in front of
/// the crate has already checked the same things, so a refusal here is rare (a credential
/// expiring between the two checks).
impl turn::auth::AuthHandler for RestAuth {
    fn auth_handle(
        &self,
        username: &str,
        realm: &str,
        _src_addr: std::net::SocketAddr,
    ) -> Result<Vec<u8>, turn::Error> {
        self.key(username, realm, crate::util::now())
            .map_err(|r| turn::Error::Other(r.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_usernames() {
        let a = RestAuth::new("secret", "r");
        assert_eq!(a.key("100:bob", "r", 101), Err(AuthReject::Expired));
        assert_eq!(a.key("bob", "r", 0), Err(AuthReject::Malformed));
        assert_eq!(a.key("200:bob", "other", 0), Err(AuthReject::WrongRealm));
        // coturn's key for the known-answer password in tokens.rs.
        let key = a.key("1700000000:alice", "r", 0).expect("valid");
        assert_eq!(
            key,
            turn::auth::generate_auth_key("1700000000:alice", "r", "d8soP47RbdIKLDUOpnJPVQyq5Ts=")
        );
        // A bare expiry (coturn allows it) works too.
        assert!(a.key("200", "r", 0).is_ok());
    }
}
