//! Newtype ids for everything that crosses a module boundary, so a meeting id can never be
//! passed where a user id is expected.

use rand::Rng;
use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! int_id {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

macro_rules! str_id {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(s)
            }
        }
        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.to_owned())
            }
        }
        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }
        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                self.0 == *other
            }
        }
        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

int_id!(
    /// A meeting (database row id). The public handle is its [`MeetingCode`].
    MeetingId
);
str_id!(
    /// The short code in join links (`/m/{code}`); unguessable, easy to read aloud.
    MeetingCode
);
str_id!(
    /// One participant's presence in one meeting (one join); random, issued at join time.
    ParticipantId
);
str_id!(
    /// A stored file blob of meeting notes.
    FileId
);

/// Letters that cannot be confused with each other when read aloud or typed (no 0/o, 1/l/i).
const CODE_ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";

impl MeetingCode {
    /// `xxx-xxxx-xxx`: 10 random symbols from a 31-letter alphabet (~49 bits).
    pub fn random() -> Self {
        let mut rng = rand::rng();
        let mut s = String::with_capacity(12);
        for i in 0..10 {
            if i == 3 || i == 7 {
                s.push('-');
            }
            s.push(CODE_ALPHABET[rng.random_range(0..CODE_ALPHABET.len())] as char);
        }
        MeetingCode(s)
    }
    /// Whether a string could be a code at all (checked before touching the database).
    pub fn is_well_formed(s: &str) -> bool {
        s.len() == 12
            && s.bytes().enumerate().all(|(i, b)| {
                if i == 3 || i == 8 {
                    b == b'-'
                } else {
                    CODE_ALPHABET.contains(&b)
                }
            })
    }
}

impl ParticipantId {
    pub fn random() -> Self {
        ParticipantId(format!("p{}", random_token(12)))
    }
}

impl FileId {
    pub fn random() -> Self {
        FileId(format!("f{}", random_token(16)))
    }
}

/// URL-safe random string of `bytes` random bytes (base64url, no padding).
pub fn random_token(bytes: usize) -> String {
    use base64::Engine;
    let mut buf = vec![0u8; bytes];
    rand::rng().fill(&mut buf[..]);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meeting_codes_are_well_formed_and_distinct() {
        let a = MeetingCode::random();
        let b = MeetingCode::random();
        assert!(MeetingCode::is_well_formed(a.as_str()), "{a}");
        assert_ne!(a, b);
        assert!(!MeetingCode::is_well_formed("abc-defg-hi0"));
        assert!(!MeetingCode::is_well_formed("../etc/passwd"));
    }
}
