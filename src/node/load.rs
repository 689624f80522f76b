//! Load samplers: what each role reports in its heartbeats to the node registry.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::proto::NodeLoad;
use crate::roles::sfuserver::WorkerStats;
use crate::roles::turnserver::TurnStats;

pub type Sampler = Arc<dyn Fn() -> NodeLoad + Send + Sync>;

/// Busy share of all CPUs since the previous call, from /proc/stat.
struct Cpu {
    last: Option<(u64, u64)>,
}

impl Cpu {
    fn sample(&mut self) -> f32 {
        let Some((busy, total)) = read_proc_stat() else {
            return 0.0;
        };
        let r = match self.last {
            Some((b0, t0)) if total > t0 => (busy.saturating_sub(b0)) as f32 / (total - t0) as f32,
            _ => 0.0,
        };
        self.last = Some((busy, total));
        r.clamp(0.0, 1.0)
    }
}

fn read_proc_stat() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let line = s.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 5 {
        return None;
    }
    let total: u64 = v.iter().sum();
    let idle = v[3] + v[4];
    Some((total - idle, total))
}

struct Rate {
    last: Option<(Instant, u64)>,
}

impl Rate {
    /// Bits per second since the previous call, given a byte counter.
    fn bps(&mut self, bytes: u64) -> u64 {
        let now = Instant::now();
        let r = match self.last {
            Some((t, b)) => {
                let dt = now.duration_since(t).as_secs_f64();
                if dt > 0.0 {
                    (bytes.saturating_sub(b) as f64 * 8.0 / dt) as u64
                } else {
                    0
                }
            }
            None => 0,
        };
        self.last = Some((now, bytes));
        r
    }
}

pub fn sfu(stats: Vec<Arc<WorkerStats>>) -> Sampler {
    let st = Mutex::new((Cpu { last: None }, Rate { last: None }, Rate { last: None }));
    Arc::new(move || {
        let (mut meetings, mut sessions, mut bytes, mut packets) = (0u64, 0u64, 0u64, 0u64);
        for w in &stats {
            // Rooms are counted per worker (a meeting spread over two counts twice); the
            // allocator goes by packets, this is for people reading the registry.
            meetings += w.rooms.load(Relaxed);
            sessions += w.participants.load(Relaxed);
            bytes += w.bytes_in.load(Relaxed) + w.bytes_out.load(Relaxed);
            packets += w.rtp_out.load(Relaxed);
        }
        let mut g = st.lock().unwrap_or_else(|p| p.into_inner());
        NodeLoad {
            meetings: u32::try_from(meetings).unwrap_or(u32::MAX),
            sessions: u32::try_from(sessions).unwrap_or(u32::MAX),
            bitrate: g.1.bps(bytes),
            cpu: g.0.sample(),
            // The byte-rate helper gives 8 × count per second.
            packets: g.2.bps(packets) / 8,
        }
    })
}

pub fn turn(stats: Arc<TurnStats>) -> Sampler {
    let st = Mutex::new((Cpu { last: None }, Rate { last: None }));
    Arc::new(move || {
        let bytes = stats.bytes_to_peers.load(Relaxed) + stats.bytes_from_peers.load(Relaxed);
        let mut g = st.lock().unwrap_or_else(|p| p.into_inner());
        NodeLoad {
            meetings: 0,
            sessions: u32::try_from(stats.allocations.load(Relaxed).max(0)).unwrap_or(u32::MAX),
            bitrate: g.1.bps(bytes),
            cpu: g.0.sample(),
            packets: 0,
        }
    })
}

pub fn cpu_only() -> Sampler {
    let st = Mutex::new(Cpu { last: None });
    Arc::new(move || NodeLoad {
        cpu: st.lock().unwrap_or_else(|p| p.into_inner()).sample(),
        ..Default::default()
    })
}
