//! Rate limits. [`Keyed`]: the control plane's (joins per user, per client IP, …), one GCRA
//! limiter per purpose from `governor`, with `rate` per minute and a burst of the same size;
//! keys that have refilled are pruned periodically, so a flood of distinct keys costs memory
//! only while the keys are hot. [`Bucket`]: one token bucket that its owner keeps where the
//! thing limited lives (a signaling session, a TURN source or relay, a notes member), on the
//! caller's clock, with fractional amounts (bytes as well as messages).

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::hash::Hash;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

pub struct Keyed<K: Hash + Eq + Clone> {
    limiter: Option<DefaultKeyedRateLimiter<K>>,
}

impl<K: Hash + Eq + Clone> Keyed<K> {
    /// `per_minute` = 0 turns the limit off.
    pub fn per_minute(per_minute: u32) -> Keyed<K> {
        Keyed {
            limiter: NonZeroU32::new(per_minute)
                .map(|n| RateLimiter::keyed(Quota::per_minute(n).allow_burst(n))),
        }
    }

    /// `Ok` when `key` may act now; else how long until it may.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        let Some(l) = &self.limiter else {
            return Ok(());
        };
        l.check_key(key)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Forgets keys whose budget is full again (call every few minutes).
    pub fn prune(&self) {
        if let Some(l) = &self.limiter {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }

    pub fn len(&self) -> usize {
        self.limiter.as_ref().map_or(0, |l| l.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_its_burst_then_waits_and_others_are_unaffected() {
        let k = Keyed::per_minute(3);
        for _ in 0..3 {
            assert!(k.check(&"a").is_ok());
        }
        let wait = k.check(&"a").expect_err("limited");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert!(k.check(&"b").is_ok());
        let off = Keyed::per_minute(0);
        for _ in 0..1000 {
            assert!(off.check(&"a").is_ok());
        }
    }
}

/// A token bucket: `rate` tokens a second, holding at most `burst` (full at first).
#[derive(Clone, Debug)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    pub fn new(rate: f64, burst: f64, now: Instant) -> Bucket {
        Bucket {
            rate,
            burst,
            tokens: burst,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        self.at = now;
    }

    /// Takes `n` tokens if there are that many.
    pub fn take(&mut self, n: f64, now: Instant) -> bool {
        self.wait_for(n, now).is_ok()
    }

    /// Takes `n` tokens, or says how long until there are enough (nothing is taken then).
    pub fn wait_for(&mut self, n: f64, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= n {
            self.tokens -= n;
            Ok(())
        } else {
            let missing = n.min(self.burst) - self.tokens;
            Err(Duration::from_secs_f64(missing / self.rate))
        }
    }

    /// Full again: nothing about its owner is worth remembering.
    pub fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }
}

#[cfg(test)]
mod bucket_tests {
    use super::Bucket;
    use std::time::{Duration, Instant};

    #[test]
    fn the_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(1.0, 3.0, t0);
        for _ in 0..3 {
            assert!(b.take(1.0, t0));
        }
        let wait = b.wait_for(1.0, t0).expect_err("empty");
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1));
        assert!(b.take(1.0, t0 + Duration::from_secs(1)));
        assert!(!b.take(1.0, t0 + Duration::from_secs(1)));
        assert!(b.is_full(t0 + Duration::from_secs(10)));
    }

    #[test]
    fn fractional_amounts_refill_at_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(100.0, 10.0, t0);
        assert!((0..10).all(|_| b.take(1.0, t0)));
        assert!(!b.take(1.0, t0));
        assert!(b.take(5.0, t0 + Duration::from_millis(50)));
        assert!(!b.take(1.0, t0 + Duration::from_millis(50)));
    }
}
