//! Load reports: what a node role tells the node registry in each heartbeat.
//!
//! Each role builds its own [`Sampler`] from its own counters (only it knows what they mean:
//! `sfuserver::metrics::load_report`, `turnserver::stats::load_report`); the node only passes
//! the sampler on to the registry, in-process or over the bridge. The helpers here turn
//! counters into rates and read the CPU share, the same way for every role.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::proto::NodeLoad;

/// A role's load, sampled once per heartbeat.
pub type Sampler = Arc<dyn Fn() -> NodeLoad + Send + Sync>;

/// Busy share of all CPUs since the previous call, from /proc/stat.
#[derive(Default)]
pub struct Cpu {
    last: Option<(u64, u64)>,
}

impl Cpu {
    pub fn sample(&mut self) -> f32 {
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

/// A rate from a growing counter.
#[derive(Default)]
pub struct Rate {
    last: Option<(Instant, u64)>,
}

impl Rate {
    /// Bits per second since the previous call, given a byte counter.
    pub fn bps(&mut self, bytes: u64) -> u64 {
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

/// For a role whose only load worth reporting is the machine's CPU (the fsserver).
pub fn cpu_only() -> Sampler {
    let st = Mutex::new(Cpu::default());
    Arc::new(move || NodeLoad {
        cpu: st.lock().unwrap_or_else(|p| p.into_inner()).sample(),
        ..Default::default()
    })
}
