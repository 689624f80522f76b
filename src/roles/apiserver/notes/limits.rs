//! How fast one member may change a meeting's notes: token buckets per (meeting, member),
//! shared by all of that member's connections and requests (opening more connections does
//! not buy more). Sans-IO: every call takes `now`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::ratelimit::Bucket;

/// Saves through REST: a count. Live changes: messages and bytes.
struct MemberLimits {
    saves: Bucket,
    messages: Bucket,
    bytes: Bucket,
}

/// The limits of every member who changed notes recently.
pub struct Limits {
    cfg: crate::config::Notes,
    members: Mutex<HashMap<(i64, String), MemberLimits>>,
}

impl Limits {
    pub fn new(cfg: crate::config::Notes) -> Limits {
        Limits {
            cfg,
            members: Mutex::new(HashMap::new()),
        }
    }

    fn with<T>(
        &self,
        meeting: i64,
        member: &str,
        now: Instant,
        f: impl FnOnce(&mut MemberLimits) -> T,
    ) -> T {
        let mut map = self.members.lock().unwrap_or_else(|p| p.into_inner());
        let c = &self.cfg;
        let m = map
            .entry((meeting, member.to_string()))
            .or_insert_with(|| MemberLimits {
                saves: Bucket::new(
                    f64::from(c.saves_per_minute) / 60.0,
                    f64::from(c.save_burst),
                    now,
                ),
                messages: Bucket::new(
                    f64::from(c.live_updates_per_second),
                    10.0 * f64::from(c.live_updates_per_second),
                    now,
                ),
                // A burst as large as the largest notes (a paste), refilled per minute.
                bytes: Bucket::new(
                    c.live_bytes_per_minute as f64 / 60.0,
                    (c.live_bytes_per_minute as f64 / 4.0).max(2.0 * super::MAX_NOTES_BYTES as f64),
                    now,
                ),
            });
        f(m)
    }

    /// One REST save (PUT or restore).
    pub fn save(&self, meeting: i64, member: &str, now: Instant) -> Result<(), Duration> {
        self.with(meeting, member, now, |m| m.saves.wait_for(1.0, now))
    }

    /// One live message of `bytes` bytes.
    pub fn live(
        &self,
        meeting: i64,
        member: &str,
        bytes: usize,
        now: Instant,
    ) -> Result<(), Duration> {
        self.with(meeting, member, now, |m| {
            m.messages.wait_for(1.0, now)?;
            m.bytes.wait_for(bytes as f64, now)
        })
    }

    /// Forgets members whose buckets are full again.
    pub fn forget_idle(&self, now: Instant) {
        let mut map = self.members.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, m| {
            !(m.saves.is_full(now) && m.messages.is_full(now) && m.bytes.is_full(now))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_limited_separately() {
        let cfg = crate::config::Notes {
            save_burst: 2,
            saves_per_minute: 6,
            ..Default::default()
        };
        let l = Limits::new(cfg);
        let t0 = Instant::now();
        assert!(l.save(1, "u:1", t0).is_ok());
        assert!(l.save(1, "u:1", t0).is_ok());
        assert!(l.save(1, "u:1", t0).is_err());
        assert!(
            l.save(1, "u:2", t0).is_ok(),
            "another member is not affected"
        );
        assert!(
            l.save(2, "u:1", t0).is_ok(),
            "another meeting is not affected"
        );
        assert!(l.save(1, "u:1", t0 + Duration::from_secs(10)).is_ok());
        l.forget_idle(t0 + Duration::from_secs(3600));
        assert!(l.members.lock().expect("lock").is_empty());
    }
}
