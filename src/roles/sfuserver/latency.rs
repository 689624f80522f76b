//! The sfuserver's added latency: from the moment the kernel received a datagram to the
//! moment each copy forwarded because of it was handed to the kernel (`sendmmsg` returned),
//! per copy. Socket queueing, decryption, the handoff between workers, rewriting,
//! encryption and send batching are all inside it.
//!
//! Buckets are √2 apart from 1 µs to ~12 s. A worker counts into a plain array and adds it
//! to the shared atomics every housekeeping round (no atomic per packet); `/metrics` shows
//! `sfu_added_latency_seconds` as a Prometheus histogram and the load generator reads two
//! scrapes to get a step's quantiles (`quantile`).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

pub const BUCKETS: usize = 48;

/// Upper bounds in nanoseconds: 1 µs × 2^(i/2).
pub fn bounds_ns() -> &'static [u64; BUCKETS] {
    static B: std::sync::OnceLock<[u64; BUCKETS]> = std::sync::OnceLock::new();
    B.get_or_init(|| {
        let mut b = [0u64; BUCKETS];
        for (i, v) in b.iter_mut().enumerate() {
            *v = (1000.0 * 2f64.powf(i as f64 / 2.0)).round() as u64;
        }
        b
    })
}

/// A worker's counts since its last flush (one more for "above the last bound").
pub struct LocalHist {
    counts: [u64; BUCKETS + 1],
    sum_ns: u64,
}

impl Default for LocalHist {
    fn default() -> Self {
        LocalHist {
            counts: [0; BUCKETS + 1],
            sum_ns: 0,
        }
    }
}

impl LocalHist {
    pub fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = bounds_ns().partition_point(|&b| b < ns);
        self.counts[i] += 1;
        self.sum_ns = self.sum_ns.saturating_add(ns);
    }

    pub fn flush_into(&mut self, h: &Histogram) {
        for (a, c) in h.counts.iter().zip(self.counts.iter_mut()) {
            if *c > 0 {
                a.fetch_add(std::mem::take(c), Relaxed);
            }
        }
        h.sum_ns
            .fetch_add(std::mem::take(&mut self.sum_ns), Relaxed);
    }
}

/// Shared with `/metrics`.
pub struct Histogram {
    counts: [AtomicU64; BUCKETS + 1],
    sum_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_ns: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    /// (sum in seconds, count, per-bucket (upper bound in seconds, count)); the last bucket
    /// is +Inf.
    pub fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut buckets: Vec<(f64, u64)> = bounds_ns()
            .iter()
            .zip(self.counts.iter())
            .map(|(b, c)| (*b as f64 / 1e9, c.load(Relaxed)))
            .collect();
        buckets.push((f64::INFINITY, self.counts[BUCKETS].load(Relaxed)));
        let count = buckets.iter().map(|(_, c)| c).sum();
        (self.sum_ns.load(Relaxed) as f64 / 1e9, count, buckets)
    }
}

/// The `q` quantile (0..1) of per-bucket counts over `bounds` (seconds, ascending, the
/// last possibly +Inf), interpolating linearly inside the bucket. None when empty.
pub fn quantile(buckets: &[(f64, u64)], q: f64) -> Option<f64> {
    let total: u64 = buckets.iter().map(|(_, c)| c).sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut seen = 0u64;
    let mut lower = 0.0;
    for &(upper, c) in buckets {
        if c > 0 && (seen + c) as f64 >= rank {
            if upper.is_infinite() {
                return Some(lower);
            }
            let within = ((rank - seen as f64) / c as f64).clamp(0.0, 1.0);
            return Some(lower + (upper - lower) * within);
        }
        seen += c;
        if upper.is_finite() {
            lower = upper;
        }
    }
    Some(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_count_and_quantiles_interpolate() {
        let b = bounds_ns();
        assert_eq!(b[0], 1000);
        assert_eq!(b[2], 2000);
        assert_eq!(b[20], 1_024_000);
        let h = Histogram::default();
        let mut l = LocalHist::default();
        for us in 1..=1000u64 {
            l.record(Duration::from_micros(us));
        }
        l.record(Duration::from_secs(60));
        l.flush_into(&h);
        let (sum, count, buckets) = h.snapshot();
        assert_eq!(count, 1001);
        assert!((sum - (0.5005 + 60.0)).abs() < 1e-6, "{sum}");
        assert_eq!(buckets.last().map(|b| b.1), Some(1));
        let p50 = quantile(&buckets, 0.5).expect("p50");
        // 500 µs, within the resolution of √2 buckets.
        assert!((0.000_35..0.000_71).contains(&p50), "{p50}");
        let p99 = quantile(&buckets, 0.99).expect("p99");
        assert!((0.000_7..0.001_1).contains(&p99), "{p99}");
        assert_eq!(quantile(&[(1.0, 0)], 0.5), None);
        // Flushed counts are gone from the local histogram.
        l.flush_into(&h);
        assert_eq!(h.snapshot().1, 1001);
    }
}
