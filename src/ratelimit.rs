//! Keyed rate limits for the control plane (joins per user, per client IP, …): one GCRA
//! limiter per purpose from `governor`, with `rate` per minute and a burst of the same size.
//! Keys that have refilled are pruned periodically, so a flood of distinct keys costs memory
//! only while the keys are hot.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::hash::Hash;
use std::num::NonZeroU32;
use std::time::Duration;

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
