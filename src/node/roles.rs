//! Starting the node roles (sfuserver, turnserver, fsserver) of this process, the same way
//! whether the apiserver is in this process or on another host: each role's `start` with its
//! settings (`settings`), its sockets and the process's shutdown. What registers with the node
//! registry comes back as [`LocalNode`]s, each with the `wiring::Uplink` it registers through.

use actix::prelude::*;
use actix_web::web;
use std::net::{IpAddr, SocketAddr};

use super::Listening;
use super::settings;
use super::wiring::{Registrar, Uplink};
use crate::bridge::client::NodeSpec;
use crate::config::{Config, Role};
use crate::load::{self, Sampler};
use crate::metrics::Metrics;
use crate::proto::{ControlRoom, NodeRole, NodesChanged};
use crate::roles::{fsserver, sfuserver, turnserver};
use crate::shutdown::{Shutdown, Stopped};
use crate::tokens::Keys;

/// A role of this process that registers as a node.
pub struct LocalNode {
    pub spec: NodeSpec,
    pub control: Option<Recipient<ControlRoom>>,
    pub nodes: Option<Recipient<NodesChanged>>,
    pub load: Sampler,
}

/// The node roles started in this process.
#[derive(Default)]
pub struct Started {
    /// For the signaling route.
    pub sfu: Option<web::Data<sfuserver::SfuState>>,
    /// For the file routes.
    pub fs: Option<web::Data<fsserver::FsState>>,
    /// What registers, each with the uplink it reports through.
    pub nodes: Vec<(Uplink, LocalNode)>,
    /// One per role: resolved once it has done what it does at a stop.
    pub stopped: Vec<Stopped>,
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

/// Starts the node roles this process runs, each with its own settings, the same
/// `shutdown`, and an uplink from `registrar` (made before the role, which reports through it).
pub fn start(
    cfg: &Config,
    keys: &Keys,
    metrics: &Metrics,
    at: &Listening,
    turn: Option<TurnBound>,
    registrar: &Registrar,
    shutdown: &Shutdown,
) -> anyhow::Result<Started> {
    let mut out = Started::default();
    let own_address = at.own_address.as_str();
    if cfg.has_role(Role::Sfuserver) {
        let up = registrar.uplink();
        let s = settings::sfu(cfg, keys, at.bound.ip(), own_address, up.reports())?;
        let media = crate::listen::media_sockets()?;
        let h = sfuserver::start(s, media, shutdown.clone())?;
        metrics.register_collector(Box::new(sfuserver::metrics::SfuCollector(h.stats.clone())));
        out.nodes.push((
            up,
            LocalNode {
                spec: NodeSpec {
                    role: NodeRole::Sfuserver,
                    address: own_address.to_string(),
                    capacity: settings::sfu_capacity(cfg),
                    media: h.state.media.clone(),
                },
                control: Some(h.state.sfu.clone().recipient()),
                nodes: None,
                load: sfuserver::metrics::load_report(h.stats),
            },
        ));
        out.sfu = Some(web::Data::new(h.state));
        out.stopped.push(h.stopped);
    }
    if let Some(t) = turn {
        let up = registrar.uplink();
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
        let s = settings::turn(cfg, keys, t.ip, static_peers, at.tls.as_ref());
        let h = turnserver::start(s, t.bound, shutdown.clone())?;
        metrics.register_collector(Box::new(turnserver::TurnCollector(h.stats.clone())));
        out.nodes.push((
            up,
            LocalNode {
                spec: NodeSpec {
                    role: NodeRole::Turnserver,
                    address,
                    capacity: 0,
                    media: Vec::new(),
                },
                control: None,
                nodes: Some(turnserver::PeerUpdater(h.learned_peers).start().recipient()),
                load: turnserver::stats::load_report(h.stats),
            },
        ));
        out.stopped.push(h.stopped);
    }
    if cfg.has_role(Role::Fsserver) {
        let up = registrar.uplink();
        let h = fsserver::start(settings::fs(cfg, keys, own_address), shutdown.clone())?;
        metrics.register_collector(Box::new(fsserver::stats::FsCollector(h.state.stats())));
        out.nodes.push((
            up,
            LocalNode {
                spec: NodeSpec {
                    role: NodeRole::Fsserver,
                    address: own_address.to_string(),
                    capacity: 0,
                    media: Vec::new(),
                },
                control: None,
                nodes: None,
                load: load::cpu_only(),
            },
        ));
        out.fs = Some(web::Data::new(h.state));
        out.stopped.push(h.stopped);
    }
    Ok(out)
}
