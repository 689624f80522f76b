//! The sfuserver's counters on `/metrics`, summed over its media workers at scrape time.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::WorkerStats;
use crate::load::{Cpu, Rate, Sampler};
use crate::proto::NodeLoad;

/// What this sfuserver reports in its heartbeats: rooms and participants now, and since the
/// previous heartbeat the bitrate, forwarded packets per second (the allocator's measure of
/// load) and CPU share.
pub fn load_report(stats: Vec<Arc<WorkerStats>>) -> Sampler {
    let st = std::sync::Mutex::new((Cpu::default(), Rate::default(), Rate::default()));
    Arc::new(move || {
        let (mut meetings, mut sessions, mut bytes, mut packets) = (0u64, 0u64, 0u64, 0u64);
        for w in &stats {
            // Rooms are counted per worker (a meeting spread over two counts twice); the
            // allocator goes by packets, this is for people reading the registry.
            meetings += w.rooms.load(Ordering::Relaxed);
            sessions += w.participants.load(Ordering::Relaxed);
            bytes += w.bytes_in.load(Ordering::Relaxed) + w.bytes_out.load(Ordering::Relaxed);
            packets += w.rtp_out.load(Ordering::Relaxed);
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

/// A histogram read from the workers' atomics at scrape time.
struct LatencyHistogram {
    sum: f64,
    count: u64,
    buckets: Vec<(f64, u64)>,
}

impl prometheus_client::metrics::TypedMetric for LatencyHistogram {
    const TYPE: prometheus_client::metrics::MetricType =
        prometheus_client::metrics::MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            self.sum,
            self.count,
            &self.buckets,
            None,
        )
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        prometheus_client::metrics::MetricType::Histogram
    }
}

#[derive(Debug)]
pub struct SfuCollector(pub Vec<Arc<WorkerStats>>);

impl std::fmt::Debug for WorkerStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WorkerStats")
    }
}

impl Collector for SfuCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let sum = |f: fn(&WorkerStats) -> &AtomicU64| {
            self.0
                .iter()
                .map(|w| f(w).load(Ordering::Relaxed))
                .sum::<u64>()
        };
        let counters: [(&str, &str, u64); 15] = [
            (
                "sfu_rtp_packets_in",
                "RTP packets received (media and retransmissions)",
                sum(|w| &w.rtp_in),
            ),
            (
                "sfu_rtp_packets_out",
                "RTP packets sent (media, retransmissions, probes)",
                sum(|w| &w.rtp_out),
            ),
            (
                "sfu_packets_in",
                "UDP packets received by the media workers",
                sum(|w| &w.packets_in),
            ),
            ("sfu_bytes_in", "UDP bytes received", sum(|w| &w.bytes_in)),
            (
                "sfu_packets_out",
                "UDP packets sent",
                sum(|w| &w.packets_out),
            ),
            ("sfu_bytes_out", "UDP bytes sent", sum(|w| &w.bytes_out)),
            (
                "sfu_packets_dropped_out",
                "Packets dropped because the socket was full",
                sum(|w| &w.dropped_out),
            ),
            (
                "sfu_packets_garbage",
                "Received datagrams no participant accepted",
                sum(|w| &w.garbage_in),
            ),
            (
                "sfu_nacks_received",
                "NACKs received from subscribers",
                sum(|w| &w.nacks_received),
            ),
            (
                "sfu_keyframe_requests",
                "Keyframe requests (PLI) sent to publishers",
                sum(|w| &w.keyframe_requests),
            ),
            (
                "sfu_keyframes_replayed",
                "Video streams a viewer started on a keyframe already received (no new request)",
                sum(|w| &w.keyframes_replayed),
            ),
            (
                "sfu_retransmitted",
                "Packets sent again on a NACK, from the shared packet cache",
                sum(|w| &w.retransmitted),
            ),
            (
                "sfu_audio_held",
                "Audio packets not forwarded: outside the meeting's K loudest",
                sum(|w| &w.audio_held),
            ),
            (
                "sfu_handoff_dropped",
                "Packets for another media worker dropped on a full queue",
                sum(|w| &w.handoff_dropped),
            ),
            (
                "sfu_send_batches",
                "sendmmsg calls (datagrams per call: sfu_packets_out / this)",
                sum(|w| &w.send_batches),
            ),
        ];
        for (name, help, v) in counters {
            let c = ConstCounter::new(v);
            c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        let gauges: [(&str, &str, u64); 4] = [
            (
                "sfu_participants",
                "Participants connected to the media workers",
                sum(|w| &w.participants),
            ),
            ("sfu_rooms", "Open rooms", sum(|w| &w.rooms)),
            ("sfu_tracks", "Published tracks", sum(|w| &w.tracks)),
            (
                "sfu_egress_estimate_bps",
                "Sum of bandwidth estimates towards participants",
                sum(|w| &w.bwe_bps_sum),
            ),
        ];
        for (name, help, v) in gauges {
            let g = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
            g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        // Added latency, summed over the workers bucket by bucket.
        let mut sum_s = 0.0;
        let mut count = 0;
        let mut buckets: Vec<(f64, u64)> = Vec::new();
        for w in &self.0 {
            let (s, c, b) = w.latency.snapshot();
            sum_s += s;
            count += c;
            if buckets.is_empty() {
                buckets = b;
            } else {
                for (acc, (_, n)) in buckets.iter_mut().zip(b) {
                    acc.1 += n;
                }
            }
        }
        let h = LatencyHistogram {
            sum: sum_s,
            count,
            buckets,
        };
        h.encode(enc.encode_descriptor(
            "sfu_added_latency_seconds",
            "Time from receiving a datagram to sending each copy forwarded from it",
            None,
            h.metric_type(),
        )?)?;
        Ok(())
    }
}
