//! The remote bridge: how a role on another host (sfuserver, turnserver, fsserver started with
//! `--apiserver host:port`) reaches the apiserver, and carries the same `proto` messages the
//! roles exchange in-process on a single box.
//!
//! # Transport
//! A WebSocket at [`PATH`] on the apiserver's own listener: `wss://` unless the apiserver's
//! host is loopback (a loopback apiserver serves plain HTTP, as the appliance does everywhere);
//! `ws://`/`wss://`/`http://`/`https://` in `--apiserver` force the choice. One connection per
//! role. Frames are JSON text, one message each ([`ToApi`], [`ToNode`]).
//!
//! # Handshake (the secret never crosses the wire)
//! 1. apiserver → node: `challenge {proto, version, nonce}` (fresh random nonce).
//! 2. node → apiserver: `hello {proto, version, role, address, capacity, media, instance,
//!    challenge, nonce, proof}`: `proof` = HMAC(bridge key, "node" | challenge | nonce |
//!    binding | role | address | instance), where the bridge key is derived from `--secret`
//!    (HKDF, `Keys::bridge_key`) and `binding` is 32 bytes exported from this very TLS session
//!    (RFC 5705 exporter; empty on a plain loopback link).
//! 3. apiserver → node: `welcome {proof, node_id}` with `proof` = HMAC(bridge key, "apiserver" |
//!    nonce | challenge | binding): the apiserver proves the secret too, so a node never talks
//!    to an impostor. Or `refused {reason, message}`, and the link closes.
//!
//! A handshake recorded on one connection fails on any other: the challenge and the TLS
//! binding differ. Because the proofs are bound to the TLS session, a man in the middle (who
//! must run two TLS sessions) cannot relay them; that is why the node accepts the apiserver's
//! certificate without a CA (self-signed certificates on private addresses are normal here).
//! A different `proto` is refused before anything else is read, naming the side to upgrade.
//!
//! # After the handshake
//! - node → apiserver: `heartbeat {load}` every [`HEARTBEAT`]; `event {id, event}` (any
//!   [`Carried`] message, e.g. participation) with a per-instance increasing id, kept until the
//!   apiserver's `ack {id}` and sent again after a reconnect (the apiserver drops ids it has
//!   seen); `reply {id, answer}`.
//! - apiserver → node: `command {id, command}` (any [`Asked`] message, e.g. `ControlRoom`), with
//!   a unique id; sent again after a reconnect until replied, and a node answers a repeated id
//!   from its memory without doing it twice; `nodes {…}` (the registry's snapshot).
//! - A node missing [`DOWN_AFTER`] of heartbeats, or whose link closed, is marked down.
//!
//! Both kinds of message travel as a [`Tagged`]: the message's own JSON with its kind beside
//! it. The retries and the de-duplication are this module's: [`client`] on the node,
//! [`remote`] on the apiserver. The registry and the roles only send and answer messages.

pub mod client;
pub mod remote;

use crate::tokens::mac;
use actix::prelude::*;
use hmac::{Hmac, Mac};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::net::SocketAddr;
use std::time::Duration;

use crate::proto::{ControlRoom, NodeLoad, NodeRole, NodesChanged, ParticipationChanged};

/// The bridge protocol version. Bump on any incompatible change of the frames below.
/// 2: chat and host-action events (an apiserver of version 1 could not read them, would not
/// acknowledge them, and the node's later events would wait behind them). 3: typed refusals
/// in replies. 4: a reply carries the command's own answer, or why the node could not run it.
pub const PROTO: u32 = 4;
/// Where the apiserver accepts bridge links.
pub const PATH: &str = "/bridge/v1";
/// How often a node reports.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// Silence after which a node is marked down (3 missed heartbeats).
pub const DOWN_AFTER: Duration = Duration::from_secs(6);
/// The longest a handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The RFC 5705 exporter label that binds the proofs to the TLS session.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-meeting-appliance-bridge";

/// The TLS exporter of an accepted connection, kept in the connection's data by
/// [`on_connect`] (absent on plain HTTP).
#[derive(Clone, Copy)]
pub struct TlsBinding(pub [u8; 32]);

/// `HttpServer::on_connect` hook: remembers each TLS connection's exporter for the bridge.
pub fn on_connect(conn: &dyn std::any::Any, ext: &mut actix_web::dev::Extensions) {
    type Tls = actix_tls::accept::rustls_0_23::TlsStream<actix_rt::net::TcpStream>;
    if let Some(tls) = conn.downcast_ref::<Tls>()
        && let Ok(b) = (**tls)
            .get_ref()
            .1
            .export_keying_material([0u8; 32], EXPORTER_LABEL, None)
    {
        ext.insert(TlsBinding(b));
    }
}

/// This build's version, sent in the handshake and shown in the node registry.
pub fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// Frames from a node to the apiserver.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToApi {
    Hello(Hello),
    Heartbeat {
        load: NodeLoad,
    },
    Event {
        id: u64,
        event: Tagged,
    },
    Reply {
        id: String,
        /// The command's answer as JSON, or why the node could not run it (no such command
        /// here, or it did not decode).
        answer: Result<serde_json::Value, String>,
    },
    /// A graceful stop: mark me down now rather than after missed heartbeats.
    Bye,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub proto: u32,
    pub version: String,
    pub role: NodeRole,
    /// The `host:port` the allocator names this node by.
    pub address: String,
    pub capacity: u32,
    #[serde(default)]
    pub media: Vec<SocketAddr>,
    /// Random per process start: events are numbered per instance.
    pub instance: String,
    /// The challenge this hello answers (must be this connection's).
    pub challenge: String,
    pub nonce: String,
    pub proof: String,
}

/// Frames from the apiserver to a node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToNode {
    Challenge {
        proto: u32,
        version: String,
        nonce: String,
    },
    Welcome {
        proof: String,
        node_id: String,
    },
    Refused {
        reason: Refusal,
        message: String,
    },
    Command {
        id: String,
        command: Tagged,
    },
    Ack {
        id: u64,
    },
    Nodes(NodesChanged),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// The proof does not match: the node's secret differs from the apiserver's.
    WrongSecret,
    /// The hello answers another connection's challenge.
    Replayed,
    /// Bridge protocol versions differ.
    Version,
    /// Not a hello, or not valid.
    Malformed,
}

/// A `proto` message on the bridge, named by its kind, its fields beside the kind
/// (`{"kind": "participation", "meeting": …}`). Events up ([`Carried`]) and commands down
/// ([`Asked`]) take this one form; each side hands it on by kind ([`EventRoutes`],
/// [`CommandRoutes`]). A kind with no route is dropped (an event: acknowledged all the same,
/// so it never holds up the events behind it) or answered as not runnable (a command).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tagged {
    pub kind: String,
    #[serde(flatten)]
    pub body: serde_json::Map<String, serde_json::Value>,
}

impl Tagged {
    /// None only if `m` does not serialize to a JSON object, which no `proto` struct does.
    pub fn of<M: Serialize>(kind: &str, m: &M) -> Option<Tagged> {
        match serde_json::to_value(m) {
            Ok(serde_json::Value::Object(body)) => Some(Tagged {
                kind: kind.to_string(),
                body,
            }),
            other => {
                tracing::error!(kind, value = ?other, "a message that is not a JSON object cannot cross the bridge");
                None
            }
        }
    }

    pub fn decode<M: DeserializeOwned>(self) -> Result<M, serde_json::Error> {
        serde_json::from_value(serde_json::Value::Object(self.body))
    }
}

/// A `proto` message a node sends up the bridge exactly as it would to an actor of the
/// apiserver on one box.
pub trait Carried: Message<Result = ()> + Serialize + DeserializeOwned + Send + 'static {
    /// Its name on the wire: stable, never reused for another message.
    const KIND: &'static str;
}

impl Carried for ParticipationChanged {
    const KIND: &'static str = "participation";
}

impl Carried for crate::proto::ChatPosted {
    const KIND: &'static str = "chat";
}

impl Carried for crate::proto::HostActed {
    const KIND: &'static str = "host_acted";
}

/// What an answer must be to cross the bridge.
pub trait Answer: Serialize + DeserializeOwned + Send + 'static {}
impl<T: Serialize + DeserializeOwned + Send + 'static> Answer for T {}

/// A `proto` message the apiserver asks a node, answered with the message's own result
/// (which must be an [`Answer`]), exactly as the node's actor answers it on one box.
pub trait Asked: Message + Serialize + DeserializeOwned + Send + 'static {
    /// Its name on the wire: stable, never reused for another message.
    const KIND: &'static str;
}

impl Asked for ControlRoom {
    const KIND: &'static str = "control_room";
}

/// Asks a node `M`, wherever it runs: the answer, or why none came. The registry holds a
/// `Recipient<Request<M>>` per node: [`direct`] for a role of this process, a
/// [`remote::Remote`] for one over the bridge.
pub struct Request<M>(pub M);

impl<M: Asked> Message for Request<M>
where
    M::Result: Answer,
{
    type Result = Result<M::Result, Unanswered>;
}

/// Why a [`Request`] got no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unanswered {
    /// None within the deadline (the node is away, or did not answer in time).
    Timeout,
    /// The node's end is gone (its mailbox closed, the process stops).
    Gone,
    /// The node cannot run it: no such command there, or it did not decode.
    NotRunnable(String),
}

impl std::fmt::Display for Unanswered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unanswered::Timeout => f.write_str("no answer in time"),
            Unanswered::Gone => f.write_str("gone"),
            Unanswered::NotRunnable(why) => write!(f, "cannot run it: {why}"),
        }
    }
}

/// A role of this process, asked as a node over the bridge is.
pub fn direct<M: Asked>(to: Recipient<M>) -> Recipient<Request<M>>
where
    M::Result: Answer,
{
    Direct(to).start().recipient()
}

struct Direct<M: Asked>(Recipient<M>)
where
    M::Result: Answer;

impl<M: Asked> Actor for Direct<M>
where
    M::Result: Answer,
{
    type Context = Context<Self>;
}

impl<M: Asked> Handler<Request<M>> for Direct<M>
where
    M::Result: Answer,
{
    type Result = ResponseFuture<Result<M::Result, Unanswered>>;
    fn handle(&mut self, Request(m): Request<M>, _: &mut Context<Self>) -> Self::Result {
        let to = self.0.clone();
        Box::pin(async move { to.send(m).await.map_err(|_| Unanswered::Gone) })
    }
}

type Route = Box<dyn Fn(Tagged) + Send + Sync>;

/// Where each kind of node event goes on the apiserver: the recipient of its type.
#[derive(Default)]
pub struct EventRoutes(std::collections::HashMap<&'static str, Route>);

impl EventRoutes {
    /// Events of `M`'s kind go to `to`.
    pub fn route<M: Carried>(mut self, to: Recipient<M>) -> Self {
        let deliver = move |e: Tagged| match e.decode::<M>() {
            Ok(m) => to.do_send(m),
            Err(err) => {
                tracing::warn!(kind = M::KIND, error = %err, "a node sent an event that does not decode; dropped")
            }
        };
        self.0.insert(M::KIND, Box::new(deliver));
        self
    }

    pub fn deliver(&self, e: Tagged) {
        match self.0.get(e.kind.as_str()) {
            Some(deliver) => deliver(e),
            None => tracing::debug!(kind = %e.kind, "no route for this node event here; dropped"),
        }
    }
}

type Run = Box<
    dyn Fn(Tagged) -> futures_util::future::BoxFuture<'static, Result<serde_json::Value, String>>
        + Send
        + Sync,
>;

/// Where each kind of command goes on a node: the recipient of its type, whose answer goes
/// back as JSON.
#[derive(Default)]
pub struct CommandRoutes(std::collections::HashMap<&'static str, Run>);

impl CommandRoutes {
    /// Commands of `M`'s kind go to `to`.
    pub fn route<M: Asked>(mut self, to: Recipient<M>) -> Self
    where
        M::Result: Answer,
    {
        let run = move |t: Tagged| -> futures_util::future::BoxFuture<'static, _> {
            let to = to.clone();
            Box::pin(async move {
                let m = t
                    .decode::<M>()
                    .map_err(|e| format!("a {} that does not decode: {e}", M::KIND))?;
                let answer = to
                    .send(m)
                    .await
                    .map_err(|_| format!("the {} handler is gone", M::KIND))?;
                serde_json::to_value(answer).map_err(|e| e.to_string())
            })
        };
        self.0.insert(M::KIND, Box::new(run));
        self
    }

    /// Runs a command: its answer, or why it could not run.
    pub fn run(
        &self,
        t: Tagged,
    ) -> futures_util::future::BoxFuture<'static, Result<serde_json::Value, String>> {
        match self.0.get(t.kind.as_str()) {
            Some(run) => run(t),
            None => {
                let why = format!("no {:?} here", t.kind);
                Box::pin(async move { Err(why) })
            }
        }
    }
}

/// The sentence both sides log when protocol versions differ: which side to upgrade.
pub fn version_mismatch(
    api_proto: u32,
    api_version: &str,
    node: NodeRole,
    node_proto: u32,
    node_version: &str,
) -> String {
    let (older, newer) = if api_proto < node_proto {
        ("apiserver", node.name())
    } else {
        (node.name(), "apiserver")
    };
    format!(
        "bridge protocol mismatch: the apiserver ({api_version}) speaks version {api_proto}, the {} ({node_version}) speaks version {node_proto}; upgrade the {older} to the {newer}'s release",
        node.name()
    )
}

/// A fresh random nonce (hex of 32 bytes).
pub fn nonce() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// The MAC behind a node's proof. Parts are length-prefixed, so no two different inputs hash
/// alike.
fn node_mac(key: &[u8; 32], h: &Hello, binding: &[u8]) -> Hmac<Sha256> {
    mac(
        key,
        &[
            b"node",
            h.challenge.as_bytes(),
            h.nonce.as_bytes(),
            binding,
            h.role.name().as_bytes(),
            h.address.as_bytes(),
            h.instance.as_bytes(),
        ],
    )
}

/// The node's proof (see the module doc).
pub fn node_proof(key: &[u8; 32], h: &Hello, binding: &[u8]) -> String {
    hex::encode(node_mac(key, h, binding).finalize().into_bytes())
}

/// Checks a node's proof in constant time.
pub fn check_node_proof(key: &[u8; 32], h: &Hello, binding: &[u8]) -> bool {
    hex::decode(&h.proof).is_ok_and(|given| node_mac(key, h, binding).verify_slice(&given).is_ok())
}

fn api_mac(key: &[u8; 32], nonce: &str, challenge: &str, binding: &[u8]) -> Hmac<Sha256> {
    mac(
        key,
        &[
            b"apiserver",
            nonce.as_bytes(),
            challenge.as_bytes(),
            binding,
        ],
    )
}

/// The apiserver's proof for a node's nonce.
pub fn api_proof(key: &[u8; 32], nonce: &str, challenge: &str, binding: &[u8]) -> String {
    hex::encode(
        api_mac(key, nonce, challenge, binding)
            .finalize()
            .into_bytes(),
    )
}

pub fn check_api_proof(
    key: &[u8; 32],
    nonce: &str,
    challenge: &str,
    binding: &[u8],
    proof: &str,
) -> bool {
    let Ok(given) = hex::decode(proof) else {
        return false;
    };
    api_mac(key, nonce, challenge, binding)
        .verify_slice(&given)
        .is_ok()
}

/// The `proto` of any frame, read before the rest so a newer peer's frame that would not
/// parse still gets the version answer.
pub fn frame_proto(text: &str) -> Option<u32> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    v.get("proto")?.as_u64().and_then(|p| u32::try_from(p).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::Keys;

    /// The frames of protocol 2 are unchanged: the kind beside the event's own fields.
    #[test]
    fn events_keep_their_wire_form_and_decode_to_their_type() {
        let p = ParticipationChanged {
            meeting: crate::ids::MeetingId(7),
            participant: crate::ids::ParticipantId("p1".into()),
            joined: true,
            at: 5,
            reason: None,
        };
        let e = Tagged::of(ParticipationChanged::KIND, &p).expect("an object");
        let mut want = serde_json::to_value(&p).expect("serializes");
        want["kind"] = "participation".into();
        assert_eq!(serde_json::to_value(&e).expect("serializes"), want);
        let back: Tagged = serde_json::from_value(want).expect("parses");
        assert_eq!(back.decode::<ParticipationChanged>().expect("decodes"), p);
        // A command takes the same form: the kind beside the message's fields.
        let c = ControlRoom {
            meeting: crate::ids::MeetingId(7),
            action: crate::proto::RoomAction::Lock,
            by: None,
        };
        let t = Tagged::of(ControlRoom::KIND, &c).expect("an object");
        let mut want = serde_json::to_value(&c).expect("serializes");
        want["kind"] = "control_room".into();
        assert_eq!(serde_json::to_value(&t).expect("serializes"), want);
        assert_eq!(t.decode::<ControlRoom>().expect("decodes"), c);
    }

    fn hello(challenge: &str) -> Hello {
        Hello {
            proto: PROTO,
            version: version().into(),
            role: NodeRole::Sfuserver,
            address: "10.0.0.3:443".into(),
            capacity: 0,
            media: vec![],
            instance: "i1".into(),
            challenge: challenge.into(),
            nonce: nonce(),
            proof: String::new(),
        }
    }

    #[test]
    fn proofs_bind_secret_challenge_and_session() {
        let k = Keys::derive("the right secret");
        let mut h = hello("c1");
        h.proof = node_proof(k.bridge_key(), &h, b"tls-a");
        assert!(check_node_proof(k.bridge_key(), &h, b"tls-a"));
        // Another TLS session, another secret, another address: all fail.
        assert!(!check_node_proof(k.bridge_key(), &h, b"tls-b"));
        assert!(!check_node_proof(
            Keys::derive("a wrong secret").bridge_key(),
            &h,
            b"tls-a"
        ));
        let mut moved = h.clone();
        moved.address = "10.0.0.9:443".into();
        assert!(!check_node_proof(k.bridge_key(), &moved, b"tls-a"));
        let p = api_proof(k.bridge_key(), &h.nonce, "c1", b"tls-a");
        assert!(check_api_proof(
            k.bridge_key(),
            &h.nonce,
            "c1",
            b"tls-a",
            &p
        ));
        assert!(!check_api_proof(
            k.bridge_key(),
            &h.nonce,
            "c2",
            b"tls-a",
            &p
        ));
        assert!(!check_api_proof(
            k.bridge_key(),
            &h.nonce,
            "c1",
            b"tls-a",
            "zz"
        ));
    }

    #[test]
    fn frames_round_trip_and_version_is_read_first() {
        let f = ToApi::Hello(hello("c"));
        let s = serde_json::to_string(&f).expect("json");
        assert_eq!(frame_proto(&s), Some(PROTO));
        assert_eq!(serde_json::from_str::<ToApi>(&s).expect("parse"), f);
        // A future hello with fields we do not know still tells its version.
        assert_eq!(
            frame_proto(r#"{"type":"hello","proto":7,"something":"new"}"#),
            Some(7)
        );
        let m = version_mismatch(1, "0.1.0", NodeRole::Sfuserver, 2, "0.2.0");
        assert!(m.contains("upgrade the apiserver"), "{m}");
        let m = version_mismatch(2, "0.2.0", NodeRole::Turnserver, 1, "0.1.0");
        assert!(m.contains("upgrade the turnserver"), "{m}");
    }
}
