//! THE one place that decides, per peer role, whether a role talks to a local actor or to a
//! proxy for another host. Callers only ever get `Recipient`s.
//!
//! - The allocator is the built-in actor (single box, or an apiserver without
//!   `--allocateserver`) or the HTTP client of the seed's protocol (`--allocateserver URL`).
//! - Node roles (sfuserver, turnserver, fsserver) register with the apiserver's node registry:
//!   in-process when the apiserver runs here, else over the remote bridge ([`Registrar`]: one
//!   [`Uplink`] per role, made before the role so that its reports have somewhere to go).
//!   Either way the registry reaches them through the same messages (`bridge::Request` of
//!   `ControlRoom`; `NodesChanged`) and hears the same ones back (`ParticipationChanged`,
//!   chat, host actions, heartbeats with load).

use actix::prelude::*;
use std::sync::Arc;

use super::roles::LocalNode;
use crate::bridge::client::{self as bridge_client, BridgeLink, Handlers, Outbox, Target};
use crate::bridge::{CommandRoutes, direct};
use crate::config::Config;
use crate::proto::{AllocateFileServer, AllocateServers, NodesChanged};
use crate::roles::allocateserver::{Allocator, HttpAllocator};
use crate::roles::apiserver::registry::{self, Registry};
use crate::roles::sfuserver::Reports;
use crate::tokens::Keys;

/// What the apiserver needs from other roles.
pub struct Peers {
    pub allocate: Recipient<AllocateServers>,
    pub allocate_fs: Recipient<AllocateFileServer>,
    /// Where the node registry's snapshots go (the built-in allocator's live view of nodes).
    pub nodes: Option<Recipient<NodesChanged>>,
    /// `turns:host:port?transport=tcp` for join answers when meetings get this box's own
    /// turnserver and it serves TLS. An external allocator or a configured pool names a
    /// turnserver only as `host:port` (the seed's protocol): no `turns:` for those.
    pub own_turns: Option<String>,
}

/// This box's own addresses, as the built-in allocator hands them out on a single box.
pub struct OwnAddresses {
    pub sfu: String,
    pub turn: String,
    pub fs: String,
    /// This box's turnserver over TLS, `public-host:port`, when it runs here with a
    /// certificate (the certificate is for the public host).
    pub turn_tls: Option<String>,
}

pub fn wire(
    cfg: &Config,
    own: &OwnAddresses,
    db: &sea_orm::DatabaseConnection,
) -> anyhow::Result<Peers> {
    if let Some(url) = &cfg.allocator.url {
        let a = HttpAllocator::new(url, cfg.allocator.timeout.0)?.start();
        tracing::info!("allocation: external allocateserver (seed protocol)");
        return Ok(Peers {
            allocate: a.clone().recipient(),
            allocate_fs: a.recipient(),
            nodes: None,
            own_turns: None,
        });
    }
    let a = Allocator::start_in_process(cfg, &own.sfu, &own.turn, &own.fs, db.clone())?;
    tracing::info!("allocation: built-in allocator, in-process");
    let own_turns = own
        .turn_tls
        .as_ref()
        .filter(|_| cfg.allocator.turn.is_empty())
        .map(|a| format!("turns:{a}?transport=tcp"));
    Ok(Peers {
        allocate: a.clone().recipient(),
        allocate_fs: a.clone().recipient(),
        nodes: Some(a.recipient()),
        own_turns,
    })
}

/// Where this process's node roles register, report and take commands from: the node
/// registry in this process, or the apiserver on another host over the bridge. Decided once
/// (by whether the apiserver runs here); each role then gets an [`Uplink`] from it.
pub enum Registrar {
    InProcess {
        registry: Addr<Registry>,
        /// The apiserver's recorder, for the sfuserver's reports.
        reports: Reports,
    },
    Bridge {
        target: Target,
        key: [u8; 32],
    },
}

impl Registrar {
    pub fn bridge(target: Target, keys: &Keys) -> Registrar {
        Registrar::Bridge {
            target,
            key: *keys.bridge_key(),
        }
    }

    /// One role's way up, made before the role starts: the role reports through it.
    pub fn uplink(&self) -> Uplink {
        match self {
            Registrar::InProcess { registry, reports } => Uplink {
                reports: reports.clone(),
                via: Via::InProcess(registry.clone()),
            },
            Registrar::Bridge { target, key } => {
                // The link queues what the role sends until it has dialed and registered.
                let (link, outbox) = bridge_client::link();
                Uplink {
                    reports: Reports {
                        participation: link.clone().recipient(),
                        chat: link.clone().recipient(),
                        host_acted: link.clone().recipient(),
                    },
                    via: Via::Bridge {
                        target: target.clone(),
                        key: *key,
                        link,
                        outbox,
                    },
                }
            }
        }
    }
}

/// One node role's connection to the node registry, whichever side of the bridge that is.
pub struct Uplink {
    reports: Reports,
    via: Via,
}

enum Via {
    InProcess(Addr<Registry>),
    Bridge {
        target: Target,
        key: [u8; 32],
        link: Addr<BridgeLink>,
        outbox: Outbox,
    },
}

impl Uplink {
    /// Where the role's reports go.
    pub fn reports(&self) -> Reports {
        self.reports.clone()
    }

    /// Registers the started role and heartbeats for it. Returns the bridge link to say bye
    /// on at a stop (None in-process: the registry goes down with this process).
    pub async fn register(self, n: LocalNode) -> Option<Addr<BridgeLink>> {
        match self.via {
            Via::InProcess(registry) => {
                register_in_process(&registry, n).await;
                None
            }
            Via::Bridge {
                target,
                key,
                link,
                outbox,
            } => {
                tracing::info!(role = n.spec.role.name(), address = %n.spec.address, "registering with the apiserver over the bridge");
                bridge_client::start(
                    outbox,
                    target,
                    key,
                    n.spec,
                    Handlers {
                        commands: Arc::new(match n.control {
                            Some(c) => CommandRoutes::default().route(c),
                            None => CommandRoutes::default(),
                        }),
                        nodes: n.nodes,
                        load: n.load,
                    },
                );
                Some(link)
            }
        }
    }
}

/// A role of this process joins the registry in-process and heartbeats to it.
async fn register_in_process(registry: &Addr<Registry>, n: LocalNode) {
    let reg = registry::Registration {
        role: n.spec.role,
        address: n.spec.address.clone(),
        capacity: n.spec.capacity,
        version: crate::bridge::version().to_string(),
        media: n.spec.media.clone(),
        instance: crate::ids::random_token(16),
    };
    let link = registry::Link {
        control: n.control.map(direct),
        nodes: n.nodes,
    };
    let connect = registry::Connect {
        reg,
        link,
        remote: false,
    };
    let Ok((session, node)) = registry.send(connect).await else {
        tracing::error!("the node registry is not running");
        return;
    };
    let (registry, load) = (registry.clone(), n.load);
    actix_rt::spawn(async move {
        let mut beat = tokio::time::interval(crate::bridge::HEARTBEAT);
        loop {
            beat.tick().await;
            let b = registry::Beat {
                session,
                node: node.clone(),
                load: load(),
            };
            if registry.send(b).await.is_err() {
                return;
            }
        }
    });
}
