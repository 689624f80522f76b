//! What the generator counts while a step runs, and what it reads about the server from /proc.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Instant;

use serde::Serialize;

/// The one clock every send timestamp and receive time is read from (one process).
pub fn clock_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Latency histogram: 1 µs buckets up to 4 ms, 100 µs buckets up to 1 s, 10 ms buckets up to
/// 60 s, then overflow.
#[derive(Clone)]
pub struct Histogram {
    fine: Vec<u64>,
    coarse: Vec<u64>,
    slow: Vec<u64>,
    over: u64,
    count: u64,
    max_us: u64,
}

const FINE_US: u64 = 4_000;
const COARSE_STEP: u64 = 100;
const COARSE_US: u64 = 1_000_000;
const SLOW_STEP: u64 = 10_000;
const SLOW_US: u64 = 60_000_000;

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            fine: vec![0; FINE_US as usize],
            coarse: vec![0; ((COARSE_US - FINE_US) / COARSE_STEP) as usize],
            slow: vec![0; ((SLOW_US - COARSE_US) / SLOW_STEP) as usize],
            over: 0,
            count: 0,
            max_us: 0,
        }
    }
}

impl Histogram {
    pub fn record_us(&mut self, us: u64) {
        self.count += 1;
        self.max_us = self.max_us.max(us);
        if us < FINE_US {
            self.fine[us as usize] += 1;
        } else if us < COARSE_US {
            self.coarse[((us - FINE_US) / COARSE_STEP) as usize] += 1;
        } else if us < SLOW_US {
            self.slow[((us - COARSE_US) / SLOW_STEP) as usize] += 1;
        } else {
            self.over += 1;
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The value (µs, bucket upper edge) below which `q` of the samples fall.
    pub fn quantile_us(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let target = ((self.count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.fine.iter().enumerate() {
            seen += n;
            if seen >= target {
                return i as u64 + 1;
            }
        }
        for (i, n) in self.coarse.iter().enumerate() {
            seen += n;
            if seen >= target {
                return FINE_US + (i as u64 + 1) * COARSE_STEP;
            }
        }
        for (i, n) in self.slow.iter().enumerate() {
            seen += n;
            if seen >= target {
                return COARSE_US + (i as u64 + 1) * SLOW_STEP;
            }
        }
        self.max_us
    }
}

/// Counters of one measurement window, summed over all simulated participants.
#[derive(Default)]
pub struct Window {
    /// RTP datagrams (SRTP, counted from the clear header) that reached subscribers.
    pub rtp_packets: u64,
    pub rtp_bytes: u64,
    /// Frames (audio packets, whole video frames) the fully checking subscribers decoded.
    pub frames_received: u64,
    /// Frames that never arrived, retransmission included (gaps in the publisher's counter).
    pub frames_lost: u64,
    /// RTP-mode subscribers: packets that arrived, and that never did (after retransmission).
    pub light_packets: u64,
    pub light_gaps: u64,
    pub frames_sent: u64,
    pub keyframes_sent: u64,
    pub keyframe_requests: u64,
    /// Every frame (audio and video).
    pub latency: Histogram,
    /// Audio frames only (str0m sends audio unpaced) and video frames only (paced when the
    /// sender runs BWE): a tail in one and not the other points at pacing, not at the CPU.
    pub latency_audio: Histogram,
    pub latency_video: Histogram,
}

/// State shared by the controller and every participant task.
#[derive(Default)]
pub struct Shared {
    pub window: Window,
    /// Participants whose ICE+DTLS is up.
    pub connected: usize,
    /// Participants that get media from everyone they should (or only publish and are up).
    pub ready: usize,
    /// Participants whose session failed, with why.
    pub failures: Vec<String>,
}

/// CPU time (user+system, seconds) and RSS (bytes) of a process, from /proc.
#[derive(Clone, Copy, Debug)]
pub struct ProcSample {
    pub cpu_s: f64,
    pub rss: u64,
    pub at: Instant,
}

pub fn proc_sample(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Some(ProcSample {
        cpu_s: ticks as f64 / hz,
        rss: rss_kb * 1024,
        at: Instant::now(),
    })
}

/// Busy and total jiffies per CPU from /proc/stat (`cpuN` lines).
pub fn cpu_times() -> HashMap<String, (u64, u64)> {
    let mut out = HashMap::new();
    let Ok(s) = std::fs::read_to_string("/proc/stat") else {
        return out;
    };
    for l in s.lines() {
        let mut it = l.split_whitespace();
        let Some(name) = it.next() else { continue };
        if !name.starts_with("cpu") || name == "cpu" {
            continue;
        }
        let v: Vec<u64> = it.filter_map(|x| x.parse().ok()).collect();
        if v.len() < 5 {
            continue;
        }
        let total: u64 = v.iter().sum();
        let idle = v[3] + v[4];
        out.insert(name.to_string(), (total - idle, total));
    }
    out
}

/// Busy percentage of each CPU between two `cpu_times` readings, by CPU number.
pub fn per_core_busy(
    a: &HashMap<String, (u64, u64)>,
    b: &HashMap<String, (u64, u64)>,
) -> Vec<(String, f64)> {
    let mut v: Vec<(String, f64)> = b
        .iter()
        .filter_map(|(k, (busy1, tot1))| {
            let (busy0, tot0) = a.get(k)?;
            let dt = tot1.saturating_sub(*tot0);
            (dt > 0).then(|| {
                (
                    k.clone(),
                    100.0 * busy1.saturating_sub(*busy0) as f64 / dt as f64,
                )
            })
        })
        .collect();
    v.sort_by_key(|(k, _)| k[3..].parse::<u32>().unwrap_or(0));
    v
}

#[derive(Serialize, Clone, Debug, Default)]
pub struct Latency {
    pub samples: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl From<&Histogram> for Latency {
    fn from(h: &Histogram) -> Latency {
        Latency {
            samples: h.count(),
            p50_us: h.quantile_us(0.5),
            p99_us: h.quantile_us(0.99),
            p999_us: h.quantile_us(0.999),
            max_us: h.max_us,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        let mut h = Histogram::default();
        for us in 1..=1000 {
            h.record_us(us);
        }
        assert_eq!(h.quantile_us(0.5), 501);
        assert_eq!(h.quantile_us(0.99), 991);
        h.record_us(50_000);
        assert_eq!(h.quantile_us(1.0), 50_100);
        h.record_us(1_234_567);
        assert_eq!(h.quantile_us(1.0), 1_240_000);
        assert_eq!(Latency::from(&h).max_us, 1_234_567);
    }
}
