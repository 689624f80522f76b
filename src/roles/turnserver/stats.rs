//! The turnserver's counters, updated on the packet path with relaxed atomics and read at
//! scrape time by [`TurnCollector`] (`/metrics`).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::load::{Cpu, Rate, Sampler};
use crate::proto::NodeLoad;

/// What this turnserver reports in its heartbeats: allocations now (its sessions, the unit of
/// its capacity), and since the previous heartbeat the relayed bitrate and CPU share.
pub fn load_report(stats: Arc<TurnStats>) -> Sampler {
    let st = std::sync::Mutex::new((Cpu::default(), Rate::default()));
    Arc::new(move || {
        let bytes = stats.bytes_to_peers.load(Ordering::Relaxed)
            + stats.bytes_from_peers.load(Ordering::Relaxed);
        let mut g = st.lock().unwrap_or_else(|p| p.into_inner());
        NodeLoad {
            meetings: 0,
            sessions: u32::try_from(stats.allocations.load(Ordering::Relaxed).max(0))
                .unwrap_or(u32::MAX),
            bitrate: g.1.bps(bytes),
            cpu: g.0.sample(),
            packets: 0,
        }
    })
}

/// Why a request got an error answer (or none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejected {
    /// Over `turn.unauthenticated_per_second` for its source address: dropped unanswered.
    RateLimited,
    /// Wrong password (MESSAGE-INTEGRITY did not match) or not a REST username.
    BadCredentials,
    ExpiredCredentials,
    WrongRealm,
    /// A nonce from too long ago, or issued to another address: answered 438 (clients retry).
    StaleNonce,
    /// CreatePermission or ChannelBind to a refused peer: 403.
    ForbiddenPeer,
    /// `turn.max_allocations_per_user` reached: 486.
    Quota,
    /// `turn.max_allocations_per_ip` reached for the client's address (IPv6: its /64): 486.
    QuotaSource,
    /// `turn.max_allocations_per_meeting` reached for the credentials' meeting: 486.
    QuotaMeeting,
    /// A TCP or TLS connection refused at accept: `turn.max_tcp_connections_per_ip` from its
    /// address, or the listeners' total, reached.
    ConnectionLimit,
    /// Not STUN or ChannelData, undecodable, or from a client without an allocation.
    Malformed,
}

impl Rejected {
    const ALL: [Rejected; 11] = [
        Rejected::RateLimited,
        Rejected::BadCredentials,
        Rejected::ExpiredCredentials,
        Rejected::WrongRealm,
        Rejected::StaleNonce,
        Rejected::ForbiddenPeer,
        Rejected::Quota,
        Rejected::QuotaSource,
        Rejected::QuotaMeeting,
        Rejected::ConnectionLimit,
        Rejected::Malformed,
    ];
    fn label(self) -> &'static str {
        match self {
            Rejected::RateLimited => "rate_limited",
            Rejected::BadCredentials => "bad_credentials",
            Rejected::ExpiredCredentials => "expired_credentials",
            Rejected::WrongRealm => "wrong_realm",
            Rejected::StaleNonce => "stale_nonce",
            Rejected::ForbiddenPeer => "forbidden_peer",
            Rejected::Quota => "quota",
            Rejected::QuotaSource => "quota_ip",
            Rejected::QuotaMeeting => "quota_meeting",
            Rejected::ConnectionLimit => "connection_limit",
            Rejected::Malformed => "malformed",
        }
    }
}

/// Why a relayed packet was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// To or from a peer the policy refuses.
    ForbiddenPeer,
    /// Over `turn.max_bandwidth_kbps`.
    Bandwidth,
    /// Larger than the relay's 1500-byte buffer, or a TCP client too slow to take it.
    Overflow,
    /// The kernel refused to send it.
    SendError,
}

impl Dropped {
    const ALL: [Dropped; 4] = [
        Dropped::ForbiddenPeer,
        Dropped::Bandwidth,
        Dropped::Overflow,
        Dropped::SendError,
    ];
    fn label(self) -> &'static str {
        match self {
            Dropped::ForbiddenPeer => "forbidden_peer",
            Dropped::Bandwidth => "bandwidth",
            Dropped::Overflow => "overflow",
            Dropped::SendError => "send_error",
        }
    }
}

#[derive(Default)]
pub struct TurnStats {
    /// Allocations alive now.
    pub allocations: AtomicI64,
    pub allocations_created: AtomicU64,
    /// Client → peer (what the relay sockets sent) and peer → client (what they received).
    pub bytes_to_peers: AtomicU64,
    pub packets_to_peers: AtomicU64,
    pub bytes_from_peers: AtomicU64,
    pub packets_from_peers: AtomicU64,
    pub tcp_connections: AtomicI64,
    rejected: [AtomicU64; 11],
    dropped: [AtomicU64; 4],
}

impl TurnStats {
    pub fn reject(&self, why: Rejected) {
        if let Some(i) = Rejected::ALL.iter().position(|r| *r == why) {
            self.rejected[i].fetch_add(1, Ordering::Relaxed);
        }
    }
    pub fn drop_packet(&self, why: Dropped) {
        if let Some(i) = Dropped::ALL.iter().position(|r| *r == why) {
            self.dropped[i].fetch_add(1, Ordering::Relaxed);
        }
    }
    pub fn rejected(&self, why: Rejected) -> u64 {
        Rejected::ALL
            .iter()
            .position(|r| *r == why)
            .map(|i| self.rejected[i].load(Ordering::Relaxed))
            .unwrap_or(0)
    }
}

impl std::fmt::Debug for TurnStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TurnStats")
    }
}

#[derive(Debug)]
pub struct TurnCollector(pub Arc<TurnStats>);

impl Collector for TurnCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let gauges = [
            (
                "turn_allocations",
                "TURN allocations alive",
                s.allocations.load(Ordering::Relaxed),
            ),
            (
                "turn_tcp_connections",
                "TURN-over-TCP client connections open",
                s.tcp_connections.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, v) in gauges {
            let g = ConstGauge::new(v.max(0));
            g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        let c = ConstCounter::new(get(&s.allocations_created));
        c.encode(enc.encode_descriptor(
            "turn_allocations_created",
            "TURN allocations created",
            None,
            c.metric_type(),
        )?)?;
        type Samples<'a> = Vec<(&'a str, &'a str, u64)>;
        let families: [(&str, &str, Samples); 4] = [
            (
                "turn_relayed_bytes",
                "Bytes relayed, by direction",
                vec![
                    ("direction", "to_peer", get(&s.bytes_to_peers)),
                    ("direction", "from_peer", get(&s.bytes_from_peers)),
                ],
            ),
            (
                "turn_relayed_packets",
                "Packets relayed, by direction",
                vec![
                    ("direction", "to_peer", get(&s.packets_to_peers)),
                    ("direction", "from_peer", get(&s.packets_from_peers)),
                ],
            ),
            (
                "turn_rejected_requests",
                "TURN requests refused, by reason",
                Rejected::ALL
                    .iter()
                    .zip(&s.rejected)
                    .map(|(r, v)| ("reason", r.label(), get(v)))
                    .collect(),
            ),
            (
                "turn_dropped_packets",
                "Relayed packets dropped, by reason",
                Dropped::ALL
                    .iter()
                    .zip(&s.dropped)
                    .map(|(r, v)| ("reason", r.label(), get(v)))
                    .collect(),
            ),
        ];
        for (name, help, samples) in families {
            let mut family = enc.encode_descriptor(
                name,
                help,
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for (k, v, n) in samples {
                let labels = [(k, v)];
                ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
