//! The node registry: every sfuserver, turnserver and fsserver of the deployment, whether it is
//! up, and its load. Nodes on this box register in-process; nodes on other hosts over the
//! bridge (see `bridge.rs` here and `crate::bridge`). Either way the registry holds a [`Link`]
//! of recipients: same messages, same bookkeeping.
//!
//! - The truth is kept in the `nodes` table, so an apiserver restart starts from what it knew;
//!   known nodes get one down-interval of grace to re-register before they are marked down.
//! - A node is down when its link closes, when it says bye, or after `bridge::DOWN_AFTER`
//!   without a heartbeat. The allocator (a subscriber) gets a full `NodesChanged` snapshot on
//!   every change and never hands out a down node; turnservers get it when the set of nodes
//!   changes, to learn the sfuservers they may relay to.
//! - Host actions go to the sfuserver that owns a meeting ([`Control`]) as a
//!   `bridge::Request`; waiting across a node's reconnects and passing its events on once are
//!   the bridge's (`bridge::remote`), not the registry's.

use actix::prelude::*;
use sea_orm::{DatabaseConnection, EntityTrait, sea_query::OnConflict};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub use crate::bridge::remote::Link;
use crate::bridge::remote::Remotes;
use crate::bridge::{self, Request, Unanswered};
use crate::db::entities::node;
use crate::proto::{ControlRoom, NodeInfo, NodeLoad, NodeRole, NodesChanged};

/// A node down for less than this is taken to be flapping: commands for it wait for its
/// return (up to `bridge::remote::COMMAND_TIMEOUT`) instead of failing at once.
const FLAP_GRACE: Duration = Duration::from_secs(10);

/// Who registers.
#[derive(Clone, Debug)]
pub struct Registration {
    pub role: NodeRole,
    pub address: String,
    pub capacity: u32,
    pub version: String,
    pub media: Vec<SocketAddr>,
    pub instance: String,
}

struct Entry {
    info: NodeInfo,
    link: Option<Link>,
    session: u64,
    instance: String,
    last_beat: Instant,
    persisted: Instant,
    /// When it went down (None while up).
    down_since: Option<Instant>,
}

pub struct Registry {
    db: DatabaseConnection,
    /// Nodes known from the table before they re-register are reached over the bridge.
    remotes: Remotes,
    nodes: HashMap<String, Entry>,
    next_session: u64,
    subscribers: Vec<Recipient<NodesChanged>>,
    /// What turnservers were last told (role, address, up, media), to tell them only changes.
    told_shape: Vec<(NodeRole, String, bool, Vec<SocketAddr>)>,
}

pub fn node_id(role: NodeRole, address: &str) -> String {
    format!("{}@{}", role.name(), address)
}

fn now_secs() -> i64 {
    crate::util::now()
}

impl Registry {
    pub fn new(db: DatabaseConnection, remotes: Remotes) -> Self {
        Registry {
            db,
            remotes,
            nodes: HashMap::new(),
            next_session: 1,
            subscribers: Vec::new(),
            told_shape: Vec::new(),
        }
    }

    fn snapshot(&self) -> NodesChanged {
        let mut nodes: Vec<NodeInfo> = self.nodes.values().map(|e| e.info.clone()).collect();
        nodes.sort_by(|a, b| (a.role.name(), &a.address).cmp(&(b.role.name(), &b.address)));
        NodesChanged { nodes }
    }

    /// Tells the subscribers; turnservers only when the set of nodes changed (or `force`).
    fn publish(&mut self, force_turn: bool) {
        let snap = self.snapshot();
        for s in &self.subscribers {
            s.do_send(snap.clone());
        }
        let shape: Vec<_> = snap
            .nodes
            .iter()
            .map(|n| (n.role, n.address.clone(), n.up, n.media.clone()))
            .collect();
        if shape == self.told_shape && !force_turn {
            return;
        }
        self.told_shape = shape;
        for e in self.nodes.values() {
            if e.info.role != NodeRole::Turnserver || !e.info.up {
                continue;
            }
            if let Some(r) = e.link.as_ref().and_then(|l| l.nodes.as_ref()) {
                r.do_send(snap.clone());
            }
        }
    }

    fn persist(&mut self, id: &str, ctx: &mut Context<Self>) {
        let Some(e) = self.nodes.get_mut(id) else {
            return;
        };
        e.persisted = Instant::now();
        let i = &e.info;
        let row = node::ActiveModel {
            id: sea_orm::Set(id.to_string()),
            role: sea_orm::Set(i.role.name().to_string()),
            address: sea_orm::Set(i.address.clone()),
            capacity: sea_orm::Set(i64::from(i.capacity)),
            version: sea_orm::Set(i.version.clone()),
            state: sea_orm::Set(if i.up {
                node::State::Up
            } else {
                node::State::Down
            }),
            // In the unit of the node's capacity: sfuserver forwarded packets/s, others sessions.
            load: sea_orm::Set(match i.role {
                NodeRole::Sfuserver => i64::try_from(i.load.packets).unwrap_or(i64::MAX),
                _ => i64::from(i.load.sessions),
            }),
            last_seen: sea_orm::Set(i.last_seen),
        };
        let db = self.db.clone();
        ctx.spawn(
            async move {
                let r = node::Entity::insert(row)
                    .on_conflict(
                        OnConflict::column(node::Column::Id)
                            .update_columns([
                                node::Column::Role,
                                node::Column::Address,
                                node::Column::Capacity,
                                node::Column::Version,
                                node::Column::State,
                                node::Column::Load,
                                node::Column::LastSeen,
                            ])
                            .to_owned(),
                    )
                    .exec_without_returning(&db)
                    .await;
                if let Err(e) = r {
                    tracing::warn!(error = %e, "cannot record a node in the registry table");
                }
            }
            .into_actor(self),
        );
    }

    fn mark_down(&mut self, id: &str, why: &str, ctx: &mut Context<Self>) {
        // The link stays: a node over the bridge keeps its end, where commands wait for it.
        let Some(e) = self.nodes.get_mut(id) else {
            return;
        };
        if !e.info.up {
            return;
        }
        e.info.up = false;
        e.down_since = Some(Instant::now());
        tracing::warn!(node = id, "node down: {why}");
        self.persist(id, ctx);
        self.publish(false);
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let silent: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, e)| e.info.up && now.duration_since(e.last_beat) > bridge::DOWN_AFTER)
            .map(|(k, _)| k.clone())
            .collect();
        for id in silent {
            self.mark_down(&id, "no heartbeat", ctx);
        }
    }
}

impl Actor for Registry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // What the last run knew; nodes get a down-interval to re-register.
        let db = self.db.clone();
        ctx.wait(
            async move { node::Entity::find().all(&db).await }
                .into_actor(self)
                .map(|rows, act, _| match rows {
                    Ok(rows) => {
                        for r in rows {
                            let Some(role) = NodeRole::parse(&r.role) else {
                                continue;
                            };
                            let info = NodeInfo {
                                role,
                                address: r.address.clone(),
                                up: r.state == node::State::Up,
                                capacity: u32::try_from(r.capacity).unwrap_or(0),
                                load: match role {
                                    NodeRole::Sfuserver => NodeLoad {
                                        packets: u64::try_from(r.load).unwrap_or(0),
                                        ..Default::default()
                                    },
                                    _ => NodeLoad {
                                        sessions: u32::try_from(r.load).unwrap_or(0),
                                        ..Default::default()
                                    },
                                },
                                media: Vec::new(),
                                version: r.version.clone(),
                                last_seen: r.last_seen,
                            };
                            // Not this process's (its roles register before anyone asks):
                            // over the bridge, where commands wait for it.
                            let link = act.remotes.link(&r.id);
                            act.nodes.insert(
                                r.id.clone(),
                                Entry {
                                    info,
                                    link: Some(link),
                                    session: 0,
                                    instance: String::new(),
                                    last_beat: Instant::now(),
                                    persisted: Instant::now(),
                                    // Down before the restart: not a flap.
                                    down_since: (r.state != node::State::Up).then(|| {
                                        Instant::now()
                                            .checked_sub(FLAP_GRACE * 2)
                                            .unwrap_or_else(Instant::now)
                                    }),
                                },
                            );
                        }
                        if !act.nodes.is_empty() {
                            tracing::info!(
                                nodes = act.nodes.len(),
                                "node registry loaded; waiting for nodes to re-register"
                            );
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot read the node registry table"),
                }),
        );
        ctx.run_interval(Duration::from_secs(1), |act, ctx| act.tick(ctx));
    }
}

/// A node (re)registers. Answers its session number and node id.
#[derive(Message)]
#[rtype(result = "(u64, String)")]
pub struct Connect {
    pub reg: Registration,
    pub link: Link,
    /// Over the bridge (for the log).
    pub remote: bool,
}

impl Handler<Connect> for Registry {
    type Result = MessageResult<Connect>;
    fn handle(&mut self, m: Connect, ctx: &mut Context<Self>) -> Self::Result {
        let id = node_id(m.reg.role, &m.reg.address);
        let session = self.next_session;
        self.next_session += 1;
        let now = now_secs();
        let info = NodeInfo {
            role: m.reg.role,
            address: m.reg.address.clone(),
            up: true,
            capacity: m.reg.capacity,
            load: NodeLoad::default(),
            media: m.reg.media.clone(),
            version: m.reg.version.clone(),
            last_seen: now,
        };
        let remote = m.remote;
        if let Some(old) = self.nodes.get(&id)
            && old.info.up
            && old.instance != m.reg.instance
        {
            tracing::warn!(node = %id, "a second process registered with the same role and address; the newer one replaces the older");
        }
        self.nodes.insert(
            id.clone(),
            Entry {
                info,
                link: Some(m.link),
                session,
                instance: m.reg.instance.clone(),
                last_beat: Instant::now(),
                persisted: Instant::now(),
                down_since: None,
            },
        );
        tracing::info!(node = %id, version = %m.reg.version, remote, media = ?m.reg.media, "node registered");
        self.persist(&id, ctx);
        self.publish(m.reg.role == NodeRole::Turnserver);
        MessageResult((session, id))
    }
}

/// A heartbeat with load.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Beat {
    pub session: u64,
    pub node: String,
    pub load: NodeLoad,
}

impl Handler<Beat> for Registry {
    type Result = ();
    fn handle(&mut self, m: Beat, ctx: &mut Context<Self>) {
        let Some(e) = self.nodes.get_mut(&m.node) else {
            return;
        };
        if e.session != m.session {
            return; // a replaced session
        }
        e.last_beat = Instant::now();
        e.info.last_seen = now_secs();
        e.info.load = m.load;
        let revived = !e.info.up;
        e.info.up = true;
        e.down_since = None;
        if revived {
            tracing::info!(node = %m.node, "node up again");
        }
        if revived || e.persisted.elapsed() >= Duration::from_secs(10) {
            self.persist(&m.node, ctx);
        }
        self.publish(false);
    }
}

/// A session ended (link closed, or the node said bye).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Disconnect {
    pub session: u64,
    pub node: String,
    pub why: String,
}

impl Handler<Disconnect> for Registry {
    type Result = ();
    fn handle(&mut self, m: Disconnect, ctx: &mut Context<Self>) {
        if self
            .nodes
            .get(&m.node)
            .is_some_and(|e| e.session == m.session)
        {
            self.mark_down(&m.node, &m.why, ctx);
        }
    }
}

/// Why a host action was not done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlError {
    /// The sfuserver answered no (e.g. nobody of that id is in the meeting).
    Refused(crate::proto::ControlRefused),
    /// The sfuserver could not be reached (down, not registered, no answer in time).
    Unreachable(String),
}

/// A host action for the sfuserver at `sfu` (the meeting's assignment).
#[derive(Message)]
#[rtype(result = "Result<(), ControlError>")]
pub struct Control {
    pub sfu: String,
    pub control: ControlRoom,
}

impl Handler<Control> for Registry {
    type Result = ResponseFuture<Result<(), ControlError>>;
    fn handle(&mut self, m: Control, _: &mut Context<Self>) -> Self::Result {
        use ControlError::Unreachable;
        let id = node_id(NodeRole::Sfuserver, &m.sfu);
        let Some(e) = self.nodes.get(&id) else {
            return Box::pin(async move {
                Err(Unreachable(format!(
                    "the sfuserver {} has not registered",
                    m.sfu
                )))
            });
        };
        if e.down_since.is_some_and(|t| t.elapsed() > FLAP_GRACE) {
            return Box::pin(async move {
                Err(Unreachable(format!("the sfuserver {} is down", m.sfu)))
            });
        }
        let Some(to) = e.link.as_ref().and_then(|l| l.control.clone()) else {
            return Box::pin(async {
                Err(Unreachable("that node takes no room commands".to_string()))
            });
        };
        // Up; or down for a moment (a flap), or known but not re-registered since this
        // apiserver started: the bridge keeps the command until the node is back.
        let sfu = m.sfu;
        Box::pin(async move {
            match to.send(Request(m.control)).await {
                Ok(Ok(r)) => r.map_err(ControlError::Refused),
                Ok(Err(Unanswered::Timeout)) => Err(Unreachable(format!(
                    "the sfuserver {sfu} did not answer in time"
                ))),
                Ok(Err(why)) => Err(Unreachable(format!("the sfuserver {sfu}: {why}"))),
                Err(_) => Err(Unreachable(format!("the sfuserver {sfu}: gone"))),
            }
        })
    }
}

/// Subscribe to snapshots (the allocator). Gets one at once.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe(pub Recipient<NodesChanged>);

impl Handler<Subscribe> for Registry {
    type Result = ();
    fn handle(&mut self, m: Subscribe, _: &mut Context<Self>) {
        m.0.do_send(self.snapshot());
        self.subscribers.push(m.0);
    }
}

/// Is the node known and down? (Unknown nodes are not "down": an external allocator may name
/// servers that never register.)
#[derive(Message)]
#[rtype(result = "bool")]
pub struct IsDown {
    pub role: NodeRole,
    pub address: String,
}

impl Handler<IsDown> for Registry {
    type Result = bool;
    fn handle(&mut self, m: IsDown, _: &mut Context<Self>) -> bool {
        self.nodes
            .get(&node_id(m.role, &m.address))
            .is_some_and(|e| !e.info.up)
    }
}

/// The registry's current view.
#[derive(Message)]
#[rtype(result = "NodesChanged")]
pub struct GetNodes;

impl Handler<GetNodes> for Registry {
    type Result = MessageResult<GetNodes>;
    fn handle(&mut self, _: GetNodes, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.snapshot())
    }
}
