//! Starting the node roles (sfuserver, turnserver, fsserver) of this process, the same way
//! whether the apiserver is in this process or on another host. What registers with the node
//! registry comes back as [`LocalNode`]s; `wiring` connects them to the registry in-process or
//! over the bridge.

use actix::prelude::*;
use actix_web::web;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use crate::bridge::client::NodeSpec;
use crate::config::{Config, Role};
use crate::load::{self, Sampler};
use crate::metrics::Metrics;
use crate::proto::{ControlRoom, NodeRole, NodesChanged};
use crate::roles::{fsserver, sfuserver, turnserver};
use crate::tokens::Keys;

/// A role of this process that registers as a node.
pub struct LocalNode {
    pub spec: NodeSpec,
    pub control: Option<Recipient<ControlRoom>>,
    pub nodes: Option<Recipient<NodesChanged>>,
    pub load: Sampler,
}

#[derive(Default)]
pub struct Started {
    pub sfu: Option<web::Data<sfuserver::SfuState>>,
    pub fs: Option<web::Data<fsserver::FsState>>,
    pub nodes: Vec<LocalNode>,
}

/// The turnserver's sockets, bound early: a taken port fails start-up, and the ports are known
/// before join answers name them.
pub struct TurnBound {
    pub bound: turnserver::Bound,
    pub ip: IpAddr,
}

impl TurnBound {
    pub fn address(&self) -> String {
        SocketAddr::new(self.ip, self.bound.port()).to_string()
    }
}

pub fn bind_turn(
    cfg: &Config,
    here: IpAddr,
    listen_ip: IpAddr,
    tls: bool,
) -> anyhow::Result<Option<TurnBound>> {
    if !cfg.has_role(Role::Turnserver) {
        return Ok(None);
    }
    if cfg.turn.ip.is_none() && listen_ip.is_unspecified() {
        anyhow::bail!(
            "the turnserver listens on all addresses: give --ip, the address clients reach for TURN"
        );
    }
    let ip = cfg.turn.ip.unwrap_or(here);
    // TURN over TLS when this process has a certificate.
    let tls_port = tls.then_some(cfg.turn.tls_port);
    Ok(Some(TurnBound {
        bound: turnserver::bind(ip, cfg.turn.port, tls_port)?,
        ip,
    }))
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

#[allow(clippy::too_many_arguments)]
pub fn start(
    cfg: &Config,
    keys: &Keys,
    metrics: &Metrics,
    listen_ip: IpAddr,
    own_address: &str,
    tls_config: Option<&rustls::ServerConfig>,
    turn: Option<TurnBound>,
    reports: sfuserver::Reports,
) -> anyhow::Result<Started> {
    let mut out = Started::default();
    if cfg.has_role(Role::Sfuserver) {
        let workers = match cfg.sfu.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let settings = sfuserver::SfuSettings {
            workers,
            udp_port: cfg.sfu.udp_port,
            advertised_ip: media_ip(cfg, listen_ip, own_address)?,
            own_address: own_address.to_string(),
            room_grace: cfg.sfu.room_grace.0,
            audio_top_k: cfg.sfu.audio_top_k,
            removed_for: cfg.meetings.join_token_ttl.0 + std::time::Duration::from_secs(60),
        };
        let media = crate::listen::media_sockets()?;
        let (addr, state, stats) = sfuserver::start(&settings, media, keys.clone(), Some(reports))?;
        metrics.register_collector(Box::new(sfuserver::metrics::SfuCollector(stats.clone())));
        let capacity = match cfg.sfu.capacity_pps {
            0 => u32::try_from(workers)
                .unwrap_or(u32::MAX)
                .saturating_mul(sfuserver::PPS_PER_WORKER),
            c => c,
        };
        out.nodes.push(LocalNode {
            spec: NodeSpec {
                role: NodeRole::Sfuserver,
                address: own_address.to_string(),
                capacity,
                media: state.media.clone(),
            },
            control: Some(addr.recipient()),
            nodes: None,
            load: sfuserver::metrics::load_report(stats),
        });
        out.sfu = Some(web::Data::new(state));
    }
    if let Some(t) = turn {
        let address = t.address();
        // This process's own sfuserver is always a peer (even on loopback or a private address).
        let static_peers = out
            .sfu
            .iter()
            .flat_map(|s| s.media.iter())
            .map(|a| turnserver::TrustedPeer {
                ip: a.ip(),
                ports: a.port()..=a.port(),
            })
            .collect();
        let settings = turnserver::TurnSettings::new(&cfg.turn, t.ip, static_peers);
        let learned = settings.learned_peers.clone();
        let stats = turnserver::start(t.bound, settings, keys.turn_secret(), tls_config.cloned())?;
        metrics.register_collector(Box::new(turnserver::TurnCollector(stats.clone())));
        out.nodes.push(LocalNode {
            spec: NodeSpec {
                role: NodeRole::Turnserver,
                address,
                capacity: 0,
                media: Vec::new(),
            },
            control: None,
            nodes: Some(turnserver::PeerUpdater(learned).start().recipient()),
            load: turnserver::stats::load_report(stats),
        });
    }
    if cfg.has_role(Role::Fsserver) {
        let settings = fsserver::FsSettings::from_config(cfg, own_address);
        let st = fsserver::start(settings, keys.clone())?;
        metrics.register_collector(Box::new(fsserver::stats::FsCollector(st.stats())));
        out.nodes.push(LocalNode {
            spec: NodeSpec {
                role: NodeRole::Fsserver,
                address: own_address.to_string(),
                capacity: 0,
                media: Vec::new(),
            },
            control: None,
            nodes: None,
            load: load::cpu_only(),
        });
        out.fs = Some(web::Data::new(st));
    }
    Ok(out)
}
