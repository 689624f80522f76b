//! The apiserver's end of the remote bridge (`GET /bridge/v1`, a WebSocket): challenge, check
//! the node's proof, prove the secret back, then register the node and carry its frames: to
//! the node's [`Remote`] (events, answers; it keeps commands across sessions) and the registry
//! (heartbeats, the session's end). The protocol is described in `crate::bridge`; the session
//! has the shape of every WebSocket here (`crate::ws`).

use actix::Addr;
use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::CloseCode;
use futures_util::StreamExt;
use std::time::Duration;
use tokio::sync::mpsc;

use super::ApiState;
use super::registry::{Beat, Connect, Disconnect, Registration, Registry, node_id};
use crate::bridge::remote::{Attach, Detach, Received, Remote, Remotes, Replied};
use crate::bridge::{self, Hello, PROTO, Refusal, ToApi, ToNode};
use crate::proto::NodeRole;
use crate::ws;

/// The largest frame a node may send.
const MAX_FRAME: usize = 1 << 20;

pub async fn bridge(
    req: HttpRequest,
    body: web::Payload,
    st: web::Data<ApiState>,
) -> actix_web::Result<HttpResponse> {
    let binding = req
        .conn_data::<bridge::TlsBinding>()
        .map(|b| b.0.to_vec())
        .unwrap_or_default();
    let peer = req
        .peer_addr()
        .map_or_else(|| "?".to_string(), |a| a.to_string());
    let (res, session, stream) = ws::accept(&req, body, MAX_FRAME)?;
    let key = *st.keys.bridge_key();
    let (registry, remotes) = (st.registry.clone(), st.remotes.clone());
    actix_rt::spawn(async move {
        run(session, stream, binding, peer, key, registry, remotes).await;
    });
    Ok(res)
}

async fn send(session: &mut actix_ws::Session, f: &ToNode) -> Result<(), ws::WriteError> {
    match serde_json::to_string(f) {
        Ok(t) => ws::text(session, t).await,
        // No frame of ours fails to serialize; if one did, the link could not go on.
        Err(_) => Err(ws::WriteError::Closed),
    }
}

async fn refuse(mut session: actix_ws::Session, reason: Refusal, message: String) {
    let _ = send(&mut session, &ToNode::Refused { reason, message }).await;
    ws::close(session, CloseCode::Policy, "refused").await;
}

async fn run(
    mut session: actix_ws::Session,
    mut stream: actix_ws::AggregatedMessageStream,
    binding: Vec<u8>,
    peer: String,
    key: [u8; 32],
    registry: Addr<Registry>,
    remotes: Remotes,
) {
    let challenge = bridge::nonce();
    let hello = ToNode::Challenge {
        proto: PROTO,
        version: bridge::version().to_string(),
        nonce: challenge.clone(),
    };
    if send(&mut session, &hello).await.is_err() {
        return;
    }
    // The hello, within the handshake timeout.
    let text = loop {
        match tokio::time::timeout(bridge::HANDSHAKE_TIMEOUT, stream.next()).await {
            Ok(Some(Ok(actix_ws::AggregatedMessage::Text(t)))) => break t.to_string(),
            Ok(Some(Ok(actix_ws::AggregatedMessage::Ping(p)))) => {
                let _ = ws::pong(&mut session, &p).await;
            }
            Ok(Some(Ok(_))) => {}
            _ => {
                tracing::info!(%peer, "bridge: no handshake from the peer; closing");
                ws::close(session, CloseCode::Policy, "no_handshake").await;
                return;
            }
        }
    };
    // The version first: a newer node's hello may not parse as ours.
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let node_proto = bridge::frame_proto(&text);
    if node_proto != Some(PROTO) {
        let role = v
            .get("role")
            .and_then(|r| r.as_str())
            .and_then(NodeRole::parse)
            .unwrap_or(NodeRole::Sfuserver);
        let their_version = v.get("version").and_then(|r| r.as_str()).unwrap_or("?");
        let msg = match node_proto {
            Some(p) => bridge::version_mismatch(PROTO, bridge::version(), role, p, their_version),
            None => "the first frame must be a hello with the bridge protocol version".to_string(),
        };
        tracing::error!(%peer, "refused a node: {msg}");
        let reason = if node_proto.is_some() {
            Refusal::Version
        } else {
            Refusal::Malformed
        };
        refuse(session, reason, msg).await;
        return;
    }
    let hello: Hello = match serde_json::from_str::<ToApi>(&text) {
        Ok(ToApi::Hello(h)) => h,
        Ok(_) | Err(_) => {
            tracing::warn!(%peer, "refused a node: its first frame is not a valid hello");
            refuse(
                session,
                Refusal::Malformed,
                "the first frame must be a valid hello".into(),
            )
            .await;
            return;
        }
    };
    let who = format!("{} at {}", hello.role.name(), hello.address);
    if hello.challenge != challenge {
        tracing::error!(%peer, node = %who, "refused a node: replayed handshake (its hello answers another connection's challenge)");
        refuse(
            session,
            Refusal::Replayed,
            "replayed handshake: the hello answers another connection's challenge".into(),
        )
        .await;
        return;
    }
    if !bridge::check_node_proof(&key, &hello, &binding) {
        tracing::error!(%peer, node = %who, "refused a node: wrong secret (its proof does not match this apiserver's --secret); give it the same --secret");
        refuse(
            session,
            Refusal::WrongSecret,
            "wrong secret: the proof does not match the apiserver's --secret".into(),
        )
        .await;
        return;
    }
    let node = node_id(hello.role, &hello.address);
    let remote = remotes.of(&node);
    let (tx, mut rx) = mpsc::unbounded_channel::<ToNode>();
    let Ok(attached) = remote.send(Attach(tx)).await else {
        ws::close(session, CloseCode::Error, "shutting_down").await;
        return;
    };
    let instance = hello.instance.clone();
    let Ok((session_id, node)) = registry
        .send(Connect {
            reg: Registration {
                role: hello.role,
                address: hello.address.clone(),
                capacity: hello.capacity,
                version: hello.version.clone(),
                media: hello.media.clone(),
                instance: instance.clone(),
            },
            link: remotes.link(&node),
            remote: true,
        })
        .await
    else {
        remote.do_send(Detach(attached));
        ws::close(session, CloseCode::Error, "shutting_down").await;
        return;
    };
    let welcome = ToNode::Welcome {
        proof: bridge::api_proof(&key, &hello.nonce, &challenge, &binding),
        node_id: node.clone(),
    };
    let linked = Linked {
        remote,
        registry,
        node,
        session: session_id,
        instance,
    };
    let why = match send(&mut session, &welcome).await {
        Ok(()) => carry(&mut session, &mut stream, &mut rx, &linked).await,
        Err(_) => "link closed during the handshake".to_string(),
    };
    linked.remote.do_send(Detach(attached));
    linked.registry.do_send(Disconnect {
        session: linked.session,
        node: linked.node,
        why,
    });
    ws::close(session, CloseCode::Normal, "closed").await;
}

/// A registered node's session: where its frames go.
struct Linked {
    remote: Addr<Remote>,
    registry: Addr<Registry>,
    node: String,
    /// The registry's number for this session (heartbeats and the end name it).
    session: u64,
    /// The node's process instance (its events are numbered per instance).
    instance: String,
}

/// Carries an authenticated session's frames until it ends; says why it ended.
async fn carry(
    session: &mut actix_ws::Session,
    stream: &mut actix_ws::AggregatedMessageStream,
    rx: &mut mpsc::UnboundedReceiver<ToNode>,
    l: &Linked,
) -> String {
    let node = l.node.as_str();
    let mut alive = ws::Keepalive::new(
        bridge::HEARTBEAT,
        bridge::DOWN_AFTER + Duration::from_secs(1),
    );
    loop {
        tokio::select! {
            msg = stream.next() => {
                let msg = match msg {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => return format!("bridge read error: {e}"),
                    None => return "link closed".into(),
                };
                alive.seen();
                let text = match msg {
                    actix_ws::AggregatedMessage::Text(t) => t,
                    actix_ws::AggregatedMessage::Ping(p) => {
                        if ws::pong(session, &p).await.is_err() {
                            return "link closed".into();
                        }
                        continue;
                    }
                    actix_ws::AggregatedMessage::Close(_) => return "link closed".into(),
                    _ => continue,
                };
                match serde_json::from_str::<ToApi>(&text) {
                    Ok(ToApi::Heartbeat { load }) => l.registry.do_send(Beat { session: l.session, node: l.node.clone(), load }),
                    Ok(ToApi::Event { id, event }) => {
                        let _ = l.remote.send(Received { instance: l.instance.clone(), id, event }).await;
                        if send(session, &ToNode::Ack { id }).await.is_err() {
                            return "link closed".into();
                        }
                    }
                    Ok(ToApi::Reply { id, answer }) => l.remote.do_send(Replied { id, answer }),
                    Ok(ToApi::Bye) => return "the node stopped (bye)".into(),
                    Ok(ToApi::Hello(_)) => tracing::warn!(node, "bridge: a second hello on one link; ignored"),
                    Err(e) => tracing::warn!(node, error = %e, "bridge: unreadable frame"),
                }
            }
            out = rx.recv() => match out {
                Some(f) => {
                    if send(session, &f).await.is_err() {
                        return "link closed".into();
                    }
                }
                None => return "replaced by a newer link".into(),
            },
            _ = alive.due() => match alive.ping(session).await {
                Ok(()) => {}
                Err(ws::Silence::Idle) => return "no heartbeat".into(),
                Err(ws::Silence::Write(_)) => return "link closed".into(),
            },
        }
    }
}
