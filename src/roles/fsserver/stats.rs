//! The fsserver's counters, updated with relaxed atomics and read at scrape time by
//! [`FsCollector`] (`/metrics`).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// No grant, a forged, expired or mismatched one, or one for another fsserver.
    Grant,
    /// Over the size limit.
    TooLarge,
    /// Over the meeting's quota.
    Quota,
    /// The client stopped sending before the body was complete.
    Incomplete,
    /// The grant was used already.
    Exists,
}

impl Refused {
    pub const ALL: [Refused; 5] = [
        Refused::Grant,
        Refused::TooLarge,
        Refused::Quota,
        Refused::Incomplete,
        Refused::Exists,
    ];
    fn label(self) -> &'static str {
        match self {
            Refused::Grant => "grant",
            Refused::TooLarge => "too_large",
            Refused::Quota => "quota",
            Refused::Incomplete => "incomplete",
            Refused::Exists => "exists",
        }
    }
}

#[derive(Default)]
pub struct FsStats {
    stored: AtomicU64,
    stored_bytes: AtomicU64,
    downloads: AtomicU64,
    deleted: AtomicU64,
    refused: [AtomicU64; Refused::ALL.len()],
}

impl FsStats {
    pub fn stored(&self, bytes: u64) {
        self.stored.fetch_add(1, Ordering::Relaxed);
        self.stored_bytes.fetch_add(bytes, Ordering::Relaxed);
    }
    pub fn download(&self) {
        self.downloads.fetch_add(1, Ordering::Relaxed);
    }
    pub fn deleted(&self) {
        self.deleted.fetch_add(1, Ordering::Relaxed);
    }
    pub fn refused(&self, why: Refused) {
        if let Some(i) = Refused::ALL.iter().position(|r| *r == why) {
            self.refused[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub struct FsCollector(pub Arc<FsStats>);

impl std::fmt::Debug for FsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FsCollector")
    }
}

impl Collector for FsCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for (name, help, v) in [
            ("fs_files_stored", "Uploads stored", get(&s.stored)),
            (
                "fs_stored_bytes",
                "Bytes of uploads stored",
                get(&s.stored_bytes),
            ),
            (
                "fs_downloads",
                "Downloads answered with bytes (200 or 206)",
                get(&s.downloads),
            ),
            ("fs_files_deleted", "Files deleted", get(&s.deleted)),
        ] {
            let c = ConstCounter::new(v);
            c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        let mut family = enc.encode_descriptor(
            "fs_refused_requests",
            "File requests refused, by reason",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (r, v) in Refused::ALL.iter().zip(&s.refused) {
            let labels = [("reason", r.label())];
            ConstCounter::new(get(v)).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
