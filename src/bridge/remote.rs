//! The apiserver's end of one node over the bridge, across the node's sessions: commands wait
//! here until answered (sent again, with the same id, on the node's next session; ended as
//! [`Unanswered::Timeout`] after [`COMMAND_TIMEOUT`]), and events are passed on once per
//! (node instance, id) however often a reconnecting node sends them. The registry sees only a
//! [`Link`]: recipients that it also gets, without any of this, for a role of its own process.

use actix::prelude::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

use super::{Answer, Asked, EventRoutes, Request, Tagged, ToNode, Unanswered};
use crate::proto::{ControlRoom, NodesChanged};

/// How long a command to a remote node may wait for its answer (across reconnects).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(15);

/// How the node registry reaches a node: the same recipients whether the node is a role of
/// this process ([`super::direct`]) or over the bridge ([`Remotes::link`]).
#[derive(Clone)]
pub struct Link {
    /// Host actions for the node (None: it takes none, e.g. a turnserver in this process).
    pub control: Option<Recipient<Request<ControlRoom>>>,
    /// Snapshots of the registry (turnservers learn the sfuservers' media addresses).
    pub nodes: Option<Recipient<NodesChanged>>,
}

/// Every node that has come over the bridge to this apiserver, by node id: one [`Remote`]
/// each, kept for the process's life (a deployment has a handful of nodes).
#[derive(Clone)]
pub struct Remotes {
    all: Arc<Mutex<HashMap<String, Addr<Remote>>>>,
    routes: Arc<EventRoutes>,
    arbiter: ArbiterHandle,
}

impl Remotes {
    /// Nodes' events go by kind to `routes`. Call on the actix System's thread: the
    /// [`Remote`]s run there.
    pub fn new(routes: EventRoutes) -> Remotes {
        Remotes {
            all: Arc::default(),
            routes: Arc::new(routes),
            arbiter: Arbiter::current(),
        }
    }

    /// The end of node `id`, made the first time it is asked for.
    pub fn of(&self, id: &str) -> Addr<Remote> {
        let mut all = self.all.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = all.get(id).filter(|a| a.connected()) {
            return a.clone();
        }
        let (node, routes) = (id.to_string(), self.routes.clone());
        let a = Remote::start_in_arbiter(&self.arbiter, move |_| Remote {
            node,
            session: None,
            next_session: 1,
            pending: HashMap::new(),
            seen: HashMap::new(),
            routes,
        });
        all.insert(id.to_string(), a.clone());
        a
    }

    /// How the registry reaches node `id` over the bridge.
    pub fn link(&self, id: &str) -> Link {
        let r = self.of(id);
        Link {
            control: Some(r.clone().recipient()),
            nodes: Some(r.recipient()),
        }
    }
}

struct Pending {
    command: Tagged,
    reply: oneshot::Sender<Result<serde_json::Value, Unanswered>>,
    deadline: Instant,
}

pub struct Remote {
    node: String,
    /// The session frames go to now, and its number.
    session: Option<(u64, mpsc::UnboundedSender<ToNode>)>,
    next_session: u64,
    pending: HashMap<String, Pending>,
    /// Highest event id passed on, per node instance.
    seen: HashMap<String, u64>,
    routes: Arc<EventRoutes>,
}

impl Actor for Remote {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(Duration::from_secs(1), |act, _| act.expire(Instant::now()));
    }
}

impl Remote {
    fn send(&self, id: &str) {
        if let (Some((_, tx)), Some(p)) = (&self.session, self.pending.get(id)) {
            let _ = tx.send(ToNode::Command {
                id: id.to_string(),
                command: p.command.clone(),
            });
        }
    }

    fn expire(&mut self, now: Instant) {
        let late: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for id in late {
            if let Some(p) = self.pending.remove(&id) {
                tracing::warn!(node = %self.node, kind = %p.command.kind, "a command got no answer in time");
                let _ = p.reply.send(Err(Unanswered::Timeout));
            }
        }
    }
}

/// A session of the node is up: frames for the node go to `0` from now on (the previous
/// session's sender is dropped, which ends that session), and waiting commands go again.
/// Answers the session's number, for [`Detach`].
#[derive(Message)]
#[rtype(result = "u64")]
pub struct Attach(pub mpsc::UnboundedSender<ToNode>);

impl Handler<Attach> for Remote {
    type Result = u64;
    fn handle(&mut self, m: Attach, _: &mut Context<Self>) -> u64 {
        let n = self.next_session;
        self.next_session += 1;
        self.session = Some((n, m.0));
        let waiting: Vec<String> = self.pending.keys().cloned().collect();
        for id in waiting {
            self.send(&id);
        }
        n
    }
}

/// Session `0` ended. Commands wait for the next one.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Detach(pub u64);

impl Handler<Detach> for Remote {
    type Result = ();
    fn handle(&mut self, m: Detach, _: &mut Context<Self>) {
        if self.session.as_ref().is_some_and(|(n, _)| *n == m.0) {
            self.session = None;
        }
    }
}

/// An event from the node; passed on once per (instance, id).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Received {
    pub instance: String,
    pub id: u64,
    pub event: Tagged,
}

impl Handler<Received> for Remote {
    type Result = ();
    fn handle(&mut self, m: Received, _: &mut Context<Self>) {
        let seen = self.seen.entry(m.instance).or_insert(0);
        if m.id <= *seen {
            return;
        }
        *seen = m.id;
        self.routes.deliver(m.event);
    }
}

/// The node's answer to command `id` (a late duplicate is ignored).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Replied {
    pub id: String,
    pub answer: Result<serde_json::Value, String>,
}

impl Handler<Replied> for Remote {
    type Result = ();
    fn handle(&mut self, m: Replied, _: &mut Context<Self>) {
        if let Some(p) = self.pending.remove(&m.id) {
            let _ = p.reply.send(m.answer.map_err(Unanswered::NotRunnable));
        }
    }
}

impl<M: Asked> Handler<Request<M>> for Remote
where
    M::Result: Answer,
{
    type Result = ResponseFuture<Result<M::Result, Unanswered>>;
    fn handle(&mut self, Request(m): Request<M>, _: &mut Context<Self>) -> Self::Result {
        let Some(command) = Tagged::of(M::KIND, &m) else {
            return Box::pin(async {
                Err(Unanswered::NotRunnable("it does not serialize".into()))
            });
        };
        let id = uuid::Uuid::new_v4().to_string();
        let (reply, answer) = oneshot::channel();
        self.pending.insert(
            id.clone(),
            Pending {
                command,
                reply,
                deadline: Instant::now() + COMMAND_TIMEOUT,
            },
        );
        self.send(&id);
        Box::pin(async move {
            let v = answer.await.map_err(|_| Unanswered::Gone)??;
            serde_json::from_value(v).map_err(|e| {
                Unanswered::NotRunnable(format!("its answer does not decode here: {e}"))
            })
        })
    }
}

/// The registry's snapshot, for the node if a session is up (a later one supersedes it).
impl Handler<NodesChanged> for Remote {
    type Result = ();
    fn handle(&mut self, m: NodesChanged, _: &mut Context<Self>) {
        if let Some((_, tx)) = &self.session {
            let _ = tx.send(ToNode::Nodes(m));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{MeetingId, ParticipantId};
    use crate::proto::{ControlRefused, ParticipationChanged, RoomAction};
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

    async fn next_command(rx: &mut mpsc::UnboundedReceiver<ToNode>) -> (String, Tagged) {
        loop {
            if let ToNode::Command { id, command } = rx.recv().await.expect("a frame") {
                return (id, command);
            }
        }
    }

    /// Events are passed on once per (instance, id) however often they come; a command whose
    /// session dropped goes again, with the same id, on the node's next session, and is
    /// answered once, with the node's own typed answer.
    #[actix_rt::test]
    async fn events_once_and_commands_again_after_a_flap() {
        let seen = Arc::new(AtomicU32::new(0));
        let remotes =
            Remotes::new(EventRoutes::default().route(Recorder(seen.clone()).start().recipient()));
        let node = remotes.of("sfuserver@10.0.0.3:443");
        let ev = |instance: &str, id| Received {
            instance: instance.into(),
            id,
            event: Tagged::of(
                "participation",
                &ParticipationChanged {
                    meeting: MeetingId(1),
                    participant: ParticipantId("p".into()),
                    joined: true,
                    at: 1,
                    reason: None,
                },
            )
            .expect("a proto event is a JSON object"),
        };
        for id in [1, 1, 2, 1, 2] {
            node.send(ev("i1", id)).await.expect("event");
        }
        // A restarted node (new instance) numbers from 1 again.
        node.send(ev("i2", 1)).await.expect("event");
        assert_eq!(seen.load(Ordering::SeqCst), 3);

        let (tx1, mut rx1) = mpsc::unbounded_channel();
        let s1 = node.send(Attach(tx1)).await.expect("attach");
        let lock = ControlRoom {
            meeting: MeetingId(1),
            action: RoomAction::Lock,
            by: None,
        };
        let asked = actix_rt::spawn(node.send(Request(lock.clone())));
        let (first, command) = next_command(&mut rx1).await;
        assert_eq!(command.kind, "control_room");
        assert_eq!(command.decode::<ControlRoom>().expect("decodes"), lock);
        // The session drops before the answer; the node comes back on a new one.
        node.do_send(Detach(s1));
        let (tx2, mut rx2) = mpsc::unbounded_channel();
        node.send(Attach(tx2)).await.expect("attach");
        let (again, _) = next_command(&mut rx2).await;
        assert_eq!(first, again, "the same command id on the new session");
        let refused = Err::<(), _>(ControlRefused::NotAllowed("no".into()));
        node.do_send(Replied {
            id: again.clone(),
            answer: Ok(serde_json::to_value(&refused).expect("json")),
        });
        node.do_send(Replied {
            id: again,
            answer: Ok(serde_json::to_value(Ok::<(), ControlRefused>(())).expect("json")),
        });
        let got = asked.await.expect("join").expect("mailbox");
        assert_eq!(got, Ok(refused), "the first answer, decoded to its type");
    }

    /// A node that cannot run a command says so; one that never answers times out.
    #[actix_rt::test]
    async fn not_runnable_and_timeout() {
        let remotes = Remotes::new(EventRoutes::default());
        let node = remotes.of("sfuserver@10.0.0.4:443");
        let (tx, mut rx) = mpsc::unbounded_channel();
        node.send(Attach(tx)).await.expect("attach");
        let lock = ControlRoom {
            meeting: MeetingId(1),
            action: RoomAction::Lock,
            by: None,
        };
        let asked = actix_rt::spawn(node.send(Request(lock.clone())));
        let (id, _) = next_command(&mut rx).await;
        node.do_send(Replied {
            id,
            answer: Err("no \"control_room\" here".into()),
        });
        assert!(matches!(
            asked.await.expect("join").expect("mailbox"),
            Err(Unanswered::NotRunnable(_))
        ));
        let asked = actix_rt::spawn(node.send(Request(lock)));
        next_command(&mut rx).await;
        let later = Instant::now() + COMMAND_TIMEOUT + Duration::from_secs(1);
        // The deadline passes (driven directly rather than waited for).
        let remote = node.clone();
        actix_rt::spawn(async move {
            let _ = remote.send(Expire(later)).await;
        });
        assert_eq!(
            asked.await.expect("join").expect("mailbox"),
            Err(Unanswered::Timeout)
        );
    }

    /// Test hook: expire as if the clock read `0`.
    #[derive(Message)]
    #[rtype(result = "()")]
    struct Expire(Instant);

    impl Handler<Expire> for Remote {
        type Result = ();
        fn handle(&mut self, m: Expire, _: &mut Context<Self>) {
            self.expire(m.0);
        }
    }
}
