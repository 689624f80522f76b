//! The apiserver's end of the remote bridge (`GET /bridge/v1`, a WebSocket): challenge, check
//! the node's proof, prove the secret back, then hand the session to the node registry. The
//! protocol is described in `crate::bridge`.

use actix::Addr;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

use super::ApiState;
use super::registry::{Beat, Connect, Disconnect, Event, Link, Registration, Registry, Replied};
use crate::bridge::{self, Hello, PROTO, Refusal, ToApi, ToNode};
use crate::proto::NodeRole;

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
    let (res, session, stream) = actix_ws::handle(&req, body)?;
    let stream = stream.max_frame_size(1 << 20).aggregate_continuations();
    let key = *st.keys.bridge_key();
    let registry = st.registry.clone();
    actix_rt::spawn(async move {
        run(session, stream, binding, peer, key, registry).await;
    });
    Ok(res)
}

async fn refuse(mut session: actix_ws::Session, reason: Refusal, message: String) {
    let f = ToNode::Refused { reason, message };
    if let Ok(t) = serde_json::to_string(&f) {
        let _ = session.text(t).await;
    }
    let _ = session
        .close(Some(actix_ws::CloseReason {
            code: actix_ws::CloseCode::Policy,
            description: Some("refused".into()),
        }))
        .await;
}

async fn run(
    mut session: actix_ws::Session,
    mut stream: actix_ws::AggregatedMessageStream,
    binding: Vec<u8>,
    peer: String,
    key: [u8; 32],
    registry: Addr<Registry>,
) {
    let challenge = bridge::nonce();
    let hello = ToNode::Challenge {
        proto: PROTO,
        version: bridge::version().to_string(),
        nonce: challenge.clone(),
    };
    let Ok(t) = serde_json::to_string(&hello) else {
        return;
    };
    if session.text(t).await.is_err() {
        return;
    }
    // The hello, within the handshake timeout.
    let text = loop {
        match tokio::time::timeout(bridge::HANDSHAKE_TIMEOUT, stream.next()).await {
            Ok(Some(Ok(actix_ws::AggregatedMessage::Text(t)))) => break t.to_string(),
            Ok(Some(Ok(actix_ws::AggregatedMessage::Ping(p)))) => {
                let _ = session.pong(&p).await;
            }
            Ok(Some(Ok(_))) => {}
            _ => {
                tracing::info!(%peer, "bridge: no handshake from the peer; closing");
                let _ = session.close(None).await;
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
    let (tx, mut rx) = mpsc::unbounded_channel::<ToNode>();
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
            link: Link::bridge_session(tx),
            remote: true,
        })
        .await
    else {
        let _ = session.close(None).await;
        return;
    };
    let welcome = ToNode::Welcome {
        proof: bridge::api_proof(&key, &hello.nonce, &challenge, &binding),
        node_id: node.clone(),
    };
    if let Ok(t) = serde_json::to_string(&welcome)
        && session.text(t).await.is_err()
    {
        registry.do_send(Disconnect {
            session: session_id,
            node,
            why: "link closed during the handshake".into(),
        });
        return;
    }
    let mut ping = tokio::time::interval(bridge::HEARTBEAT);
    let mut last_heard = Instant::now();
    let why: String = loop {
        tokio::select! {
            msg = stream.next() => {
                let msg = match msg {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => break format!("bridge read error: {e}"),
                    None => break "link closed".into(),
                };
                last_heard = Instant::now();
                let text = match msg {
                    actix_ws::AggregatedMessage::Text(t) => t,
                    actix_ws::AggregatedMessage::Ping(p) => {
                        let _ = session.pong(&p).await;
                        continue;
                    }
                    actix_ws::AggregatedMessage::Close(_) => break "link closed".into(),
                    _ => continue,
                };
                match serde_json::from_str::<ToApi>(&text) {
                    Ok(ToApi::Heartbeat { load }) => registry.do_send(Beat { session: session_id, node: node.clone(), load }),
                    Ok(ToApi::Event { id, event }) => {
                        let _ = registry.send(Event { instance: instance.clone(), id, event }).await;
                        if let Ok(t) = serde_json::to_string(&ToNode::Ack { id })
                            && session.text(t).await.is_err() {
                            break "link closed".into();
                        }
                    }
                    Ok(ToApi::Reply { id, result }) => registry.do_send(Replied { id, result }),
                    Ok(ToApi::Bye) => break "the node stopped (bye)".into(),
                    Ok(ToApi::Hello(_)) => tracing::warn!(node = %node, "bridge: a second hello on one link; ignored"),
                    Err(e) => tracing::warn!(node = %node, error = %e, "bridge: unreadable frame"),
                }
            }
            out = rx.recv() => match out {
                Some(f) => {
                    let Ok(t) = serde_json::to_string(&f) else { continue };
                    if session.text(t).await.is_err() {
                        break "link closed".into();
                    }
                }
                None => break "replaced by a newer link".into(),
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > bridge::DOWN_AFTER + Duration::from_secs(1) {
                    break "no heartbeat".into();
                }
                if session.ping(b"").await.is_err() {
                    break "link closed".into();
                }
            }
        }
    };
    registry.do_send(Disconnect {
        session: session_id,
        node,
        why: why.clone(),
    });
    let _ = session.close(None).await;
}
