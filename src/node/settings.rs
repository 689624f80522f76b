//! Each role's narrow settings, derived from the one `Config` here and nowhere else: a role
//! sees only what it uses, and a change to the config tree touches this file, not the roles.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use crate::config::Config;
use crate::roles::allocateserver::server::AllocateSettings;
use crate::roles::fsserver::FsSettings;
use crate::roles::sfuserver::{self, SfuSettings};
use crate::roles::turnserver::{TrustedPeer, TurnSettings};
use crate::tokens::Keys;

/// Media workers: `sfu.workers`, or one per core when 0.
pub fn sfu_workers(cfg: &Config) -> usize {
    match cfg.sfu.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

pub fn sfu(
    cfg: &Config,
    keys: &Keys,
    listen_ip: IpAddr,
    own_address: &str,
    reports: sfuserver::Reports,
) -> anyhow::Result<SfuSettings> {
    Ok(SfuSettings {
        workers: sfu_workers(cfg),
        udp_port: cfg.sfu.udp_port,
        advertised_ip: media_ip(cfg, listen_ip, own_address)?,
        own_address: own_address.to_string(),
        room_grace: cfg.sfu.room_grace.0,
        audio_top_k: cfg.sfu.audio_top_k,
        removed_for: cfg.meetings.join_token_ttl.0 + std::time::Duration::from_secs(60),
        keys: keys.clone(),
        reports: Some(reports),
    })
}

/// The packets per second an sfuserver states as its capacity: `sfu.capacity_pps`, else
/// per worker.
pub fn sfu_capacity(cfg: &Config) -> u32 {
    match cfg.sfu.capacity_pps {
        0 => u32::try_from(sfu_workers(cfg))
            .unwrap_or(u32::MAX)
            .saturating_mul(sfuserver::PPS_PER_WORKER),
        c => c,
    }
}

/// `sfu_peers`: this process's own sfuserver's media addresses, always relayed to.
pub fn turn(
    cfg: &Config,
    keys: &Keys,
    relay_ip: IpAddr,
    sfu_peers: Vec<TrustedPeer>,
    tls: Option<&rustls::ServerConfig>,
) -> TurnSettings {
    let t = &cfg.turn;
    TurnSettings {
        relay_ip,
        realm: t.realm.clone(),
        relay_port_min: t.relay_port_min,
        relay_port_max: t.relay_port_max,
        allowed_peers: t.allowed_peers.clone(),
        sfu_peers,
        learned_peers: Default::default(),
        max_allocations_per_user: t.max_allocations_per_user,
        max_allocations_per_ip: t.max_allocations_per_ip,
        max_allocations_per_meeting: t.max_allocations_per_meeting,
        max_tcp_connections_per_ip: t.max_tcp_connections_per_ip,
        max_bandwidth_kbps: t.max_bandwidth_kbps,
        max_lifetime: t.max_lifetime.0,
        unauthenticated_per_second: t.unauthenticated_per_second,
        secret: keys.turn_secret().to_string(),
        tls: tls.cloned(),
    }
}

pub fn fs(cfg: &Config, keys: &Keys, own_address: &str) -> FsSettings {
    FsSettings {
        directory: cfg
            .fs
            .directory
            .clone()
            .unwrap_or_else(|| cfg.data_dir.join("files")),
        own_address: own_address.to_string(),
        max_file_size: cfg.fs.max_file_size,
        meeting_quota: cfg.fs.meeting_quota,
        unclaimed_ttl: cfg.fs.unclaimed_ttl.0,
        inline_types: cfg.fs.inline_types.clone(),
        keys: keys.clone(),
    }
}

pub fn allocate(cfg: &Config, tls: Option<rustls::ServerConfig>) -> AllocateSettings {
    AllocateSettings {
        allocator: cfg.allocator.clone(),
        data_dir: cfg.data_dir.clone(),
        tls,
    }
}

/// The address browsers send media to: `sfu.ip` (--ip), else the listener's address, else the
/// host of `--domainaddress` (an IP, or the name resolved once at start).
fn media_ip(cfg: &Config, listen_ip: IpAddr, own_address: &str) -> anyhow::Result<IpAddr> {
    if let Some(ip) = cfg.sfu.ip.first() {
        return Ok(*ip);
    }
    if !listen_ip.is_unspecified() {
        return Ok(listen_ip);
    }
    let (host, port) = crate::config::split_host_port(own_address)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ip);
    }
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map(Iterator::collect)
        .unwrap_or_default();
    if let Some(a) = addrs.iter().find(|a| a.is_ipv4()).or(addrs.first()) {
        tracing::info!(%host, ip = %a.ip(), "sfuserver: media address from the domain name");
        return Ok(a.ip());
    }
    anyhow::bail!(
        "the sfuserver listens on all addresses and {host} does not resolve: give --ip, the address browsers reach for media"
    )
}
