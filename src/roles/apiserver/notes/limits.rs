//! How fast one member may change a meeting's notes: token buckets per (meeting, member),
//! shared by all of that member's connections and requests (opening more connections does
//! not buy more). Sans-IO: every call takes `now`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket: `capacity` at most, refilled at `rate` per second.
#[derive(Clone, Debug)]
pub struct Bucket {
    capacity: f64,
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    pub fn new(capacity: f64, rate: f64, now: Instant) -> Bucket {
        Bucket {
            capacity,
            rate,
            tokens: capacity,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.capacity);
        self.at = now;
    }

    /// Takes `n` tokens, or says how long until there are enough (nothing is taken then).
    pub fn take(&mut self, n: f64, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= n {
            self.tokens -= n;
            Ok(())
        } else {
            let missing = n.min(self.capacity) - self.tokens;
            Err(Duration::from_secs_f64(missing / self.rate))
        }
    }

    /// Full again (nothing to remember about this member).
    fn full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.capacity
    }
}

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
                    f64::from(c.save_burst),
                    f64::from(c.saves_per_minute) / 60.0,
                    now,
                ),
                messages: Bucket::new(
                    10.0 * f64::from(c.live_updates_per_second),
                    f64::from(c.live_updates_per_second),
                    now,
                ),
                // A burst as large as the largest notes (a paste), refilled per minute.
                bytes: Bucket::new(
                    (c.live_bytes_per_minute as f64 / 4.0).max(2.0 * super::MAX_NOTES_BYTES as f64),
                    c.live_bytes_per_minute as f64 / 60.0,
                    now,
                ),
            });
        f(m)
    }

    /// One REST save (PUT or restore).
    pub fn save(&self, meeting: i64, member: &str, now: Instant) -> Result<(), Duration> {
        self.with(meeting, member, now, |m| m.saves.take(1.0, now))
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
            m.messages.take(1.0, now)?;
            m.bytes.take(bytes as f64, now)
        })
    }

    /// Forgets members whose buckets are full again.
    pub fn forget_idle(&self, now: Instant) {
        let mut map = self.members.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, m| !(m.saves.full(now) && m.messages.full(now) && m.bytes.full(now)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_the_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(3.0, 1.0, t0);
        for _ in 0..3 {
            assert!(b.take(1.0, t0).is_ok());
        }
        let wait = b.take(1.0, t0).expect_err("empty");
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1));
        assert!(b.take(1.0, t0 + Duration::from_secs(1)).is_ok());
        assert!(b.take(1.0, t0 + Duration::from_secs(1)).is_err());
    }

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
