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
//! - Host actions go to the sfuserver that owns a meeting ([`Control`]). A command carries a
//!   unique id and is sent again after a reconnect until answered; a node over the bridge
//!   answers a repeated id without acting twice. Events from nodes carry per-instance ids and
//!   are passed on once.

use actix::prelude::*;
use sea_orm::{DatabaseConnection, EntityTrait, sea_query::OnConflict};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

use crate::bridge::{self, NodeCommand, NodeEvent, ToNode};
use crate::db::entities::node;
use crate::proto::{ControlRoom, NodeInfo, NodeLoad, NodeRole, NodesChanged, ParticipationChanged};

/// How long a command to a remote node may wait for its answer (across reconnects).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(15);
/// A node down for less than this is taken to be flapping: commands for it wait for its
/// return (up to `COMMAND_TIMEOUT`) instead of failing at once.
const FLAP_GRACE: Duration = Duration::from_secs(10);

/// How the registry reaches a node: the same two recipients whether the node is a role of
/// this process or behind a bridge session ([`Link::bridge_session`]). Commands carry an id
/// and are answered with [`Replied`] either way, so one path keeps them until answered and
/// sends them again after a reconnect.
#[derive(Clone)]
pub struct Link {
    /// Commands for the node (None: it takes none, e.g. a turnserver in this process).
    pub commands: Option<Recipient<Deliver>>,
    /// Snapshots of the registry (turnservers learn the sfuservers' media addresses).
    pub nodes: Option<Recipient<NodesChanged>>,
}

/// A command for a node, with the id its answer ([`Replied`]) names.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct Deliver {
    pub id: String,
    pub command: NodeCommand,
}

impl Link {
    /// A bridge session's link: what the registry sends becomes frames for the node.
    pub fn bridge_session(tx: mpsc::UnboundedSender<ToNode>) -> Link {
        let out = SessionFrames(tx).start();
        Link {
            commands: Some(out.clone().recipient()),
            nodes: Some(out.recipient()),
        }
    }
}

/// Turns the registry's messages into frames on a bridge session. It stops when the registry
/// lets go of the link (the node went down or registered again).
struct SessionFrames(mpsc::UnboundedSender<ToNode>);

impl Actor for SessionFrames {
    type Context = Context<Self>;
}

impl Handler<Deliver> for SessionFrames {
    type Result = ();
    fn handle(&mut self, m: Deliver, _: &mut Context<Self>) {
        let _ = self.0.send(ToNode::Command {
            id: m.id,
            command: m.command,
        });
    }
}

impl Handler<NodesChanged> for SessionFrames {
    type Result = ();
    fn handle(&mut self, m: NodesChanged, _: &mut Context<Self>) {
        let _ = self.0.send(ToNode::Nodes(m));
    }
}

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

struct Pending {
    node: String,
    command: NodeCommand,
    reply: oneshot::Sender<Result<(), ControlError>>,
    deadline: Instant,
}

pub struct Registry {
    db: DatabaseConnection,
    /// Where nodes' events go by kind: participation to the recorder, chat to the chat
    /// store and host actions to the audit log when those are set; others are dropped.
    events: bridge::EventRoutes,
    nodes: HashMap<String, Entry>,
    next_session: u64,
    pending: HashMap<String, Pending>,
    subscribers: Vec<Recipient<NodesChanged>>,
    /// Highest event id passed on, per node instance.
    seen_events: HashMap<String, u64>,
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
    pub fn new(db: DatabaseConnection, recorder: Recipient<ParticipationChanged>) -> Self {
        Registry {
            db,
            events: bridge::EventRoutes::default().route(recorder),
            nodes: HashMap::new(),
            next_session: 1,
            pending: HashMap::new(),
            subscribers: Vec::new(),
            seen_events: HashMap::new(),
            told_shape: Vec::new(),
        }
    }

    /// Nodes' chat reports go to `r`.
    pub fn chat_to(mut self, r: Recipient<crate::proto::ChatPosted>) -> Self {
        self.events = self.events.route(r);
        self
    }

    /// Nodes' reports of host actions go to `r`.
    pub fn host_actions_to(mut self, r: Recipient<crate::proto::HostActed>) -> Self {
        self.events = self.events.route(r);
        self
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
            state: sea_orm::Set(if i.up { "up" } else { "down" }.to_string()),
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
        let Some(e) = self.nodes.get_mut(id) else {
            return;
        };
        e.link = None;
        if !e.info.up {
            return;
        }
        e.info.up = false;
        e.down_since = Some(Instant::now());
        tracing::warn!(node = id, "node down: {why}");
        self.persist(id, ctx);
        self.publish(false);
    }

    fn send_command(&mut self, cmd_id: &str) {
        let Some(p) = self.pending.get(cmd_id) else {
            return;
        };
        if let Some(c) = self
            .nodes
            .get(&p.node)
            .and_then(|e| e.link.as_ref())
            .and_then(|l| l.commands.as_ref())
        {
            c.do_send(Deliver {
                id: cmd_id.to_string(),
                command: p.command.clone(),
            });
        }
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
        let expired: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for id in expired {
            if let Some(p) = self.pending.remove(&id) {
                let _ = p.reply.send(Err(ControlError::Unreachable(format!(
                    "the sfuserver {} did not answer in time",
                    p.node
                ))));
            }
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
                                up: r.state == "up",
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
                            act.nodes.insert(
                                r.id.clone(),
                                Entry {
                                    info,
                                    link: None,
                                    session: 0,
                                    instance: String::new(),
                                    last_beat: Instant::now(),
                                    persisted: Instant::now(),
                                    // Down before the restart: not a flap.
                                    down_since: (r.state != "up").then(|| {
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
            && old.link.is_some()
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
        // Commands that waited for this node (a flap, or an apiserver restart) go again.
        let waiting: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.node == id)
            .map(|(k, _)| k.clone())
            .collect();
        for c in waiting {
            self.send_command(&c);
        }
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

/// An event from a node; passed on once per (instance, id).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Event {
    pub instance: String,
    pub id: u64,
    pub event: NodeEvent,
}

impl Handler<Event> for Registry {
    type Result = ();
    fn handle(&mut self, m: Event, _: &mut Context<Self>) {
        let seen = self.seen_events.entry(m.instance).or_insert(0);
        if m.id <= *seen {
            return;
        }
        *seen = m.id;
        self.events.deliver(m.event);
    }
}

/// A node's answer to a command.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Replied {
    pub id: String,
    pub result: Result<(), crate::proto::ControlRefused>,
}

impl Handler<Replied> for Registry {
    type Result = ();
    fn handle(&mut self, m: Replied, _: &mut Context<Self>) {
        if let Some(p) = self.pending.remove(&m.id) {
            let _ = p.reply.send(m.result.map_err(ControlError::Refused));
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
        if let Some(Link { commands: None, .. }) = &e.link {
            return Box::pin(async {
                Err(Unreachable("that node takes no room commands".to_string()))
            });
        }
        // Linked; or known but not yet re-registered after an apiserver restart, or its link
        // just dropped (a flap): the command waits for the link (bounded by COMMAND_TIMEOUT)
        // and goes with the same id after a reconnect.
        let cmd_id = uuid::Uuid::new_v4().to_string();
        let (tx, rx) = oneshot::channel();
        self.pending.insert(
            cmd_id.clone(),
            Pending {
                node: id,
                command: NodeCommand::ControlRoom(m.control),
                reply: tx,
                deadline: Instant::now() + COMMAND_TIMEOUT,
            },
        );
        self.send_command(&cmd_id);
        Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Err(Unreachable("the registry stopped".to_string())))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{MeetingId, ParticipantId};
    use crate::proto::RoomAction;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    struct Recorder(Arc<AtomicU32>);
    impl Actor for Recorder {
        type Context = Context<Self>;
    }
    impl Handler<ParticipationChanged> for Recorder {
        type Result = ();
        fn handle(&mut self, _: ParticipationChanged, _: &mut Context<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn reg(instance: &str) -> Registration {
        Registration {
            role: NodeRole::Sfuserver,
            address: "10.0.0.3:443".into(),
            capacity: 0,
            version: "t".into(),
            media: vec![],
            instance: instance.into(),
        }
    }

    /// Events are passed on once per (instance, id) however often they come; a command whose
    /// link dropped goes again, with the same id, on the node's next link, and is answered once.
    #[actix_rt::test]
    async fn events_once_and_commands_again_after_a_flap() {
        let db = crate::db::connect("sqlite::memory:", 1, Duration::from_secs(5))
            .await
            .expect("db");
        let seen = Arc::new(AtomicU32::new(0));
        let registry = Registry::new(db, Recorder(seen.clone()).start().recipient()).start();
        let (tx1, mut rx1) = mpsc::unbounded_channel();
        let (s1, node) = registry
            .send(Connect {
                reg: reg("i1"),
                link: Link::bridge_session(tx1),
                remote: true,
            })
            .await
            .expect("connect");
        assert_eq!(node, "sfuserver@10.0.0.3:443");
        let ev = |id| Event {
            instance: "i1".into(),
            id,
            event: NodeEvent::of(&ParticipationChanged {
                meeting: MeetingId(1),
                participant: ParticipantId("p".into()),
                joined: true,
                at: 1,
                reason: None,
            })
            .expect("a proto event is a JSON object"),
        };
        for id in [1, 1, 2, 1, 2] {
            registry.send(ev(id)).await.expect("event");
        }
        assert_eq!(seen.load(Ordering::SeqCst), 2);

        let control = registry.send(Control {
            sfu: "10.0.0.3:443".into(),
            control: ControlRoom {
                meeting: MeetingId(1),
                action: RoomAction::Lock,
                by: None,
            },
        });
        let waiter = actix_rt::spawn(control);
        let first = loop {
            match rx1.recv().await.expect("a frame") {
                ToNode::Command { id, .. } => break id,
                _ => continue,
            }
        };
        // The link drops before the answer; the node comes back on a new link.
        registry.do_send(Disconnect {
            session: s1,
            node: node.clone(),
            why: "flap".into(),
        });
        let (tx2, mut rx2) = mpsc::unbounded_channel();
        registry
            .send(Connect {
                reg: reg("i1"),
                link: Link::bridge_session(tx2),
                remote: true,
            })
            .await
            .expect("reconnect");
        let again = loop {
            match rx2.recv().await.expect("a frame") {
                ToNode::Command { id, .. } => break id,
                _ => continue,
            }
        };
        assert_eq!(first, again, "the same command id on the new link");
        registry.do_send(Replied {
            id: again.clone(),
            result: Ok(()),
        });
        registry.do_send(Replied {
            id: again,
            result: Err(crate::proto::ControlRefused::NotAllowed(
                "a late duplicate answer is ignored".into(),
            )),
        });
        assert_eq!(waiter.await.expect("join").expect("mailbox"), Ok(()));
    }
}
