//! Token buckets: per-allocation bandwidth caps and per-source limits on requests that carry
//! no valid credentials.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// `rate` units per second, at most `burst` saved up.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: f64, now: Instant) -> TokenBucket {
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        self.last = now;
    }

    /// Takes `n` tokens if there are that many.
    pub fn take(&mut self, n: f64, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }

    fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }
}

/// Most source addresses tracked at once. Above it, buckets that have refilled are forgotten;
/// if all are busy (a flood from many addresses), new sources are refused until some refill.
const MAX_SOURCES: usize = 65_536;

/// One token bucket per source IP address.
pub struct SourceLimiter {
    rate: f64,
    burst: f64,
    sources: HashMap<IpAddr, TokenBucket>,
}

impl SourceLimiter {
    /// `per_second` requests per second and source, bursts of five seconds' worth (a browser
    /// gathering candidates sends a few at once; so does a meeting room full of people behind
    /// one NAT address).
    pub fn new(per_second: u32) -> SourceLimiter {
        let rate = f64::from(per_second.max(1));
        SourceLimiter {
            rate,
            burst: rate * 5.0,
            sources: HashMap::new(),
        }
    }

    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if let Some(b) = self.sources.get_mut(&ip) {
            return b.take(1.0, now);
        }
        if self.sources.len() >= MAX_SOURCES {
            self.sources.retain(|_, b| !b.is_full(now));
            if self.sources.len() >= MAX_SOURCES {
                return false;
            }
        }
        let mut b = TokenBucket::new(self.rate, self.burst, now);
        let ok = b.take(1.0, now);
        self.sources.insert(ip, b);
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_refills_at_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100.0, 10.0, t0);
        assert!((0..10).all(|_| b.take(1.0, t0)));
        assert!(!b.take(1.0, t0));
        assert!(b.take(5.0, t0 + Duration::from_millis(50)));
        assert!(!b.take(1.0, t0 + Duration::from_millis(50)));
    }

    #[test]
    fn limiter_is_per_source() {
        let t0 = Instant::now();
        let mut l = SourceLimiter::new(2);
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        assert_eq!((0..20).filter(|_| l.allow(a, t0)).count(), 10);
        assert!(l.allow(b, t0));
        assert!(l.allow(a, t0 + Duration::from_secs(1)));
    }
}
