//! The node side of the bridge: dial the apiserver, prove the secret, register, heartbeat,
//! carry events up and commands down; reconnect with backoff (250 ms doubling to 4 s; 30 s
//! after a refusal), forever.
//!
//! [`start`] returns a [`BridgeLink`] actor: the local roles send it the same messages they
//! send the apiserver's actors on a single box (any [`Carried`] message), and it delivers the
//! apiserver's commands to their local recipients by kind ([`CommandRoutes`]) and its
//! snapshots (`NodesChanged`).

use actix::prelude::*;
use futures_util::{SinkExt, StreamExt};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::{Carried, CommandRoutes, Hello, PATH, PROTO, Refusal, Tagged, ToApi, ToNode};
use crate::proto::{NodeLoad, NodeRole, NodesChanged};

/// Events kept for the apiserver while the link is down (oldest dropped beyond this).
const MAX_UNACKED: usize = 10_000;
/// Command ids remembered, so a command sent again after a flap is not done twice.
const REMEMBERED: usize = 1024;

/// Who this node is.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub role: NodeRole,
    pub address: String,
    pub capacity: u32,
    pub media: Vec<SocketAddr>,
}

/// Where the apiserver's messages go on this node, and how load is sampled.
#[derive(Clone)]
pub struct Handlers {
    pub commands: Arc<CommandRoutes>,
    pub nodes: Option<Recipient<NodesChanged>>,
    pub load: Arc<dyn Fn() -> NodeLoad + Send + Sync>,
}

/// Where and how to dial.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl Target {
    /// `host:port`, or a `ws(s)://`/`http(s)://` URL. Without a scheme: TLS unless the host is
    /// loopback (a loopback apiserver serves plain HTTP).
    pub fn parse(s: &str) -> anyhow::Result<Target> {
        let (tls, rest) = if let Some(r) = s.strip_prefix("wss://").or(s.strip_prefix("https://")) {
            (Some(true), r)
        } else if let Some(r) = s.strip_prefix("ws://").or(s.strip_prefix("http://")) {
            (Some(false), r)
        } else {
            (None, s)
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = crate::config::split_host_port(rest).map_err(|e| {
            anyhow::anyhow!("--apiserver {s:?}: {e} (expected host:port, e.g. api.example.com:443)")
        })?;
        let bare = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let loopback = bare == "localhost"
            || bare
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        Ok(Target {
            tls: tls.unwrap_or(!loopback),
            host: bare,
            port,
        })
    }

    fn url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{scheme}://{host}:{}{PATH}", self.port)
    }
}

pub enum Outbound {
    Event(Tagged),
    Bye(tokio::sync::oneshot::Sender<()>),
}

/// The local face of the bridge: send it what would go to the apiserver's actors.
pub struct BridgeLink {
    tx: mpsc::UnboundedSender<Outbound>,
}

impl Actor for BridgeLink {
    type Context = Context<Self>;
}

/// Every event a role reports takes the one typed path up the bridge.
impl<M: Carried> Handler<M> for BridgeLink {
    type Result = ();
    fn handle(&mut self, m: M, _: &mut Context<Self>) {
        if let Some(e) = Tagged::of(M::KIND, &m) {
            let _ = self.tx.send(Outbound::Event(e));
        }
    }
}

/// Tell the apiserver this node stops (it is marked down at once); resolves when sent or after
/// a second.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SayBye;

impl Handler<SayBye> for BridgeLink {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, _: SayBye, _: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.tx.send(Outbound::Bye(tx)).is_err() {
            tracing::debug!("the bridge link's task is gone");
        }
        Box::pin(async move {
            let _ = tokio::time::timeout(Duration::from_secs(1), rx).await;
        })
    }
}

/// The queue behind a [`BridgeLink`], until [`start`] dials with it.
pub struct Outbox(mpsc::UnboundedReceiver<Outbound>);

/// The local face of the bridge, made before the roles that use it (they need its address;
/// it needs theirs). Messages sent to it wait until the link is up.
pub fn link() -> (Addr<BridgeLink>, Outbox) {
    let (tx, rx) = mpsc::unbounded_channel();
    (BridgeLink { tx }.start(), Outbox(rx))
}

/// Starts dialing in the background (on the current actix System), forever.
pub fn start(outbox: Outbox, target: Target, key: [u8; 32], spec: NodeSpec, handlers: Handlers) {
    let mut state = State::new(outbox, target, key, spec, handlers);
    actix_rt::spawn(async move { state.run().await });
}

struct State {
    target: Target,
    key: [u8; 32],
    spec: NodeSpec,
    handlers: Handlers,
    instance: String,
    next_event: u64,
    unacked: VecDeque<(u64, Tagged)>,
    done: HashMap<String, Answer>,
    done_order: VecDeque<String>,
    running: HashSet<String>,
    rx: mpsc::UnboundedReceiver<Outbound>,
}

impl State {
    /// A fresh node instance: nothing sent, nothing remembered.
    fn new(
        outbox: Outbox,
        target: Target,
        key: [u8; 32],
        spec: NodeSpec,
        handlers: Handlers,
    ) -> State {
        State {
            target,
            key,
            spec,
            handlers,
            instance: crate::ids::random_token(16),
            next_event: 1,
            unacked: VecDeque::new(),
            done: HashMap::new(),
            done_order: VecDeque::new(),
            running: HashSet::new(),
            rx: outbox.0,
        }
    }
}

/// A command's answer as it goes back: JSON, or why it could not run.
type Answer = Result<serde_json::Value, String>;

/// Why a session ended.
enum End {
    /// We said bye: stop dialing.
    Bye,
    /// The apiserver refused us; retry slowly (the operator must fix something).
    Refused,
    /// The link failed; retry soon.
    Lost(String),
}

impl State {
    async fn run(&mut self) {
        let role = self.spec.role.name();
        let mut backoff = Duration::from_millis(250);
        loop {
            let started = Instant::now();
            match self.connect().await {
                End::Bye => return,
                End::Refused => backoff = Duration::from_secs(30),
                End::Lost(why) => {
                    if started.elapsed() > Duration::from_secs(30) {
                        backoff = Duration::from_millis(250);
                    }
                    tracing::warn!(role, apiserver = %self.target.url(), %why, retry_in = ?backoff, "bridge link to the apiserver lost");
                }
            }
            let jitter = Duration::from_millis(rand::random::<u64>() % 250);
            tokio::time::sleep(backoff + jitter).await;
            // A lost link is retried at least every 4 s (an apiserver restart is short and
            // the node should be back soon after); a refusal waits 30 s (someone must act).
            if backoff < Duration::from_secs(30) {
                backoff = (backoff * 2).min(Duration::from_secs(4));
            }
        }
    }

    async fn connect(&mut self) -> End {
        let addr = format!("{}:{}", self.target.host, self.target.port);
        let tcp = match tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::TcpStream::connect(&addr),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return End::Lost(format!("cannot connect to {addr}: {e}")),
            Err(_) => return End::Lost(format!("no answer from {addr} within 5 s")),
        };
        let _ = tcp.set_nodelay(true);
        if !self.target.tls {
            return self.session(tcp, Vec::new()).await;
        }
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client_tls_config()));
        let name = match rustls::pki_types::ServerName::try_from(self.target.host.clone()) {
            Ok(n) => n,
            Err(e) => return End::Lost(format!("bad apiserver host {:?}: {e}", self.target.host)),
        };
        let tls = match tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
            .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return End::Lost(format!("TLS with {addr} failed: {e}")),
            Err(_) => return End::Lost(format!("TLS with {addr} timed out")),
        };
        let binding =
            match tls
                .get_ref()
                .1
                .export_keying_material([0u8; 32], super::EXPORTER_LABEL, None)
            {
                Ok(b) => b.to_vec(),
                Err(e) => return End::Lost(format!("no TLS exporter: {e}")),
            };
        self.session(tls, binding).await
    }

    async fn session<S>(&mut self, stream: S, binding: Vec<u8>) -> End
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let role = self.spec.role.name();
        let url = self.target.url();
        let (mut ws, _) = match tokio::time::timeout(
            super::HANDSHAKE_TIMEOUT,
            tokio_tungstenite::client_async(url.as_str(), stream),
        )
        .await
        {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => return End::Lost(format!("WebSocket upgrade at {url} failed: {e}")),
            Err(_) => return End::Lost(format!("WebSocket upgrade at {url} timed out")),
        };
        // 1. challenge
        let challenge = match read_frame(&mut ws).await {
            Ok(ToNode::Challenge {
                proto,
                version,
                nonce,
            }) => {
                if proto != PROTO {
                    tracing::error!(
                        role,
                        "{}",
                        super::version_mismatch(
                            proto,
                            &version,
                            self.spec.role,
                            PROTO,
                            super::version()
                        )
                    );
                }
                nonce
            }
            Ok(other) => return End::Lost(format!("expected a challenge, got {other:?}")),
            Err(e) => return End::Lost(e),
        };
        // 2. hello
        let mut hello = Hello {
            proto: PROTO,
            version: super::version().to_string(),
            role: self.spec.role,
            address: self.spec.address.clone(),
            capacity: self.spec.capacity,
            media: self.spec.media.clone(),
            instance: self.instance.clone(),
            challenge: challenge.clone(),
            nonce: super::nonce(),
            proof: String::new(),
        };
        hello.proof = super::node_proof(&self.key, &hello, &binding);
        if let Err(e) = send(&mut ws, &ToApi::Hello(hello.clone())).await {
            return End::Lost(e);
        }
        // 3. welcome or refusal
        match read_frame(&mut ws).await {
            Ok(ToNode::Welcome { proof, node_id }) => {
                if !super::check_api_proof(&self.key, &hello.nonce, &challenge, &binding, &proof) {
                    tracing::error!(
                        role,
                        apiserver = %url,
                        "the apiserver did not prove the deployment secret: its --secret differs from ours (or something impersonates it); not registering"
                    );
                    let _ = ws.close(None).await;
                    return End::Refused;
                }
                tracing::info!(role, apiserver = %url, node_id, "registered with the apiserver");
            }
            Ok(ToNode::Refused { reason, message }) => {
                match reason {
                    Refusal::WrongSecret => tracing::error!(
                        role,
                        apiserver = %url,
                        "the apiserver refused this node: wrong secret; give this node the same --secret as the apiserver ({message})"
                    ),
                    _ => {
                        tracing::error!(role, apiserver = %url, ?reason, "the apiserver refused this node: {message}")
                    }
                }
                return End::Refused;
            }
            Ok(other) => return End::Lost(format!("expected welcome, got {other:?}")),
            Err(e) => return End::Lost(e),
        }
        // Events the apiserver has not acknowledged go again, in order.
        let pending: Vec<ToApi> = self
            .unacked
            .iter()
            .map(|(id, e)| ToApi::Event {
                id: *id,
                event: e.clone(),
            })
            .collect();
        for f in pending {
            if let Err(e) = send(&mut ws, &f).await {
                return End::Lost(e);
            }
        }
        let (reply_tx, mut reply_rx) = mpsc::unbounded_channel::<(String, Answer)>();
        let mut beat = tokio::time::interval(super::HEARTBEAT);
        let mut last_heard = Instant::now();
        loop {
            tokio::select! {
                msg = ws.next() => {
                    let msg = match msg {
                        Some(Ok(m)) => m,
                        Some(Err(e)) => return End::Lost(format!("read: {e}")),
                        None => return End::Lost("the apiserver closed the link".into()),
                    };
                    last_heard = Instant::now();
                    let text = match msg {
                        Message::Text(t) => t,
                        Message::Close(c) => return End::Lost(format!("the apiserver closed the link: {c:?}")),
                        _ => continue,
                    };
                    match serde_json::from_str::<ToNode>(&text) {
                        Ok(ToNode::Ack { id }) => {
                            while self.unacked.front().is_some_and(|(i, _)| *i <= id) {
                                self.unacked.pop_front();
                            }
                        }
                        Ok(ToNode::Command { id, command }) => self.command(id, command, &reply_tx),
                        Ok(ToNode::Nodes(n)) => {
                            if let Some(r) = &self.handlers.nodes {
                                r.do_send(n);
                            }
                        }
                        Ok(other) => tracing::warn!(role, "unexpected bridge frame: {other:?}"),
                        Err(e) => tracing::warn!(role, error = %e, "unreadable bridge frame"),
                    }
                }
                Some((id, answer)) = reply_rx.recv() => {
                    self.running.remove(&id);
                    self.remember(id.clone(), answer.clone());
                    if let Err(e) = send(&mut ws, &ToApi::Reply { id, answer }).await {
                        return End::Lost(e);
                    }
                }
                out = self.rx.recv() => match out {
                    Some(Outbound::Event(event)) => {
                        let id = self.next_event;
                        self.next_event += 1;
                        if self.unacked.len() >= MAX_UNACKED {
                            self.unacked.pop_front();
                            tracing::warn!(role, "too many events unacknowledged by the apiserver: dropping the oldest");
                        }
                        self.unacked.push_back((id, event.clone()));
                        if let Err(e) = send(&mut ws, &ToApi::Event { id, event }).await {
                            return End::Lost(e);
                        }
                    }
                    Some(Outbound::Bye(done)) => {
                        tracing::debug!(role, "saying bye to the apiserver");
                        say_bye(&mut ws).await;
                        let _ = done.send(());
                        return End::Bye;
                    }
                    // The local side is gone (the process stops): say bye all the same.
                    None => {
                        tracing::debug!(role, "bridge link dropped locally; saying bye");
                        say_bye(&mut ws).await;
                        return End::Bye;
                    }
                },
                _ = beat.tick() => {
                    if last_heard.elapsed() > super::DOWN_AFTER {
                        return End::Lost(format!("nothing heard from the apiserver for {:?}", super::DOWN_AFTER));
                    }
                    let load = (self.handlers.load)();
                    if let Err(e) = send(&mut ws, &ToApi::Heartbeat { load }).await {
                        return End::Lost(e);
                    }
                }
            }
        }
    }

    /// Runs a command once per id: a repeated id gets the remembered answer.
    fn command(
        &mut self,
        id: String,
        command: Tagged,
        reply: &mpsc::UnboundedSender<(String, Answer)>,
    ) {
        if let Some(r) = self.done.get(&id) {
            let _ = reply.send((id, r.clone()));
            return;
        }
        if !self.running.insert(id.clone()) {
            return; // in progress: its answer will come
        }
        let (reply, run) = (reply.clone(), self.handlers.commands.run(command));
        actix_rt::spawn(async move {
            let _ = reply.send((id, run.await));
        });
    }

    fn remember(&mut self, id: String, r: Answer) {
        if self.done.insert(id.clone(), r).is_none() {
            self.done_order.push_back(id);
        }
        while self.done_order.len() > REMEMBERED {
            if let Some(old) = self.done_order.pop_front() {
                self.done.remove(&old);
            }
        }
    }
}

/// Bye, then the closing handshake, reading until the apiserver closes too: a socket closed
/// with unread data in it is reset, and a reset can cost the peer the bye itself.
async fn say_bye<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _ = send(ws, &ToApi::Bye).await;
    let _ = ws.close(None).await;
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

async fn send<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>, f: &ToApi) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let text = serde_json::to_string(f).map_err(|e| e.to_string())?;
    ws.send(Message::text(text))
        .await
        .map_err(|e| format!("write: {e}"))
}

async fn read_frame<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> Result<ToNode, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let deadline = tokio::time::Instant::now() + super::HANDSHAKE_TIMEOUT;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| "the apiserver did not answer the handshake in time".to_string())?;
        match msg {
            Some(Ok(Message::Text(t))) => {
                return serde_json::from_str(&t)
                    .map_err(|e| format!("unreadable frame {t:?}: {e}"));
            }
            Some(Ok(Message::Close(c))) => {
                return Err(format!("closed during the handshake: {c:?}"));
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(format!("read: {e}")),
            None => return Err("closed during the handshake".into()),
        }
    }
}

/// TLS to the apiserver. The certificate is not checked against a CA: a deployment on private
/// addresses normally runs a self-signed one, and the handshake's proofs, bound to this TLS
/// session, authenticate the apiserver (see the module doc of `bridge`). Handshake signatures
/// are still verified, so the session key belongs to whoever presented the certificate.
pub fn client_tls_config() -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(ProofVerifier(provider.clone()));
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth()
}

#[derive(Debug)]
struct ProofVerifier(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for ProofVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bridge::Asked;
    use crate::proto::{ControlRefused, ControlRoom};
    use std::sync::atomic::{AtomicU32, Ordering};

    struct CountingSfu(Arc<AtomicU32>);
    impl Actor for CountingSfu {
        type Context = Context<Self>;
    }
    impl Handler<ControlRoom> for CountingSfu {
        type Result = Result<(), ControlRefused>;
        fn handle(&mut self, _: ControlRoom, _: &mut Context<Self>) -> Self::Result {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    /// A command sent again (its reply was lost in a flap) is answered from memory, not done
    /// twice; so is one repeated while it still runs.
    #[actix_rt::test]
    async fn a_repeated_command_id_is_done_once() {
        let done = Arc::new(AtomicU32::new(0));
        let sfu = CountingSfu(done.clone()).start();
        let (_link, outbox) = link();
        let mut st = State::new(
            outbox,
            Target::parse("127.0.0.1:9").expect("target"),
            [0; 32],
            NodeSpec {
                role: NodeRole::Sfuserver,
                address: "127.0.0.1:1".into(),
                capacity: 0,
                media: vec![],
            },
            Handlers {
                commands: Arc::new(CommandRoutes::default().route(sfu.recipient())),
                nodes: None,
                load: Arc::new(NodeLoad::default),
            },
        );
        let cmd = || {
            let c = ControlRoom {
                meeting: crate::ids::MeetingId(1),
                action: crate::proto::RoomAction::Lock,
                by: None,
            };
            Tagged::of(ControlRoom::KIND, &c).expect("an object")
        };
        let ok = || Ok(serde_json::to_value(Ok::<(), ControlRefused>(())).expect("json"));
        let (tx, mut rx) = mpsc::unbounded_channel();
        st.command("c1".into(), cmd(), &tx);
        st.command("c1".into(), cmd(), &tx); // while running: no second run, no second reply
        let (id, r) = rx.recv().await.expect("reply");
        assert_eq!((id.as_str(), r.clone()), ("c1", ok()));
        st.running.remove(&id);
        st.remember(id, r);
        st.command("c1".into(), cmd(), &tx); // after a flap: the remembered answer
        assert_eq!(rx.recv().await.expect("reply"), ("c1".to_string(), ok()));
        st.command("c2".into(), cmd(), &tx);
        assert_eq!(rx.recv().await.expect("reply").0, "c2");
        assert_eq!(done.load(Ordering::SeqCst), 2, "c1 once, c2 once");
        assert!(rx.try_recv().is_err(), "no extra replies");
        // A kind this node has no route for is answered as not runnable, not dropped.
        let mut other = cmd();
        other.kind = "reboot".into();
        st.command("c3".into(), other, &tx);
        let (id, r) = rx.recv().await.expect("reply");
        assert_eq!(id, "c3");
        assert!(r.is_err_and(|why| why.contains("reboot")));
    }

    #[test]
    fn targets() {
        let t = Target::parse("api.example.com:443").expect("parse");
        assert!(t.tls);
        assert_eq!(t.url(), "wss://api.example.com:443/bridge/v1");
        let t = Target::parse("127.0.0.1:8080").expect("parse");
        assert!(!t.tls);
        assert_eq!(t.url(), "ws://127.0.0.1:8080/bridge/v1");
        assert!(Target::parse("https://127.0.0.1:8443").expect("parse").tls);
        assert!(!Target::parse("ws://10.0.0.1:80").expect("parse").tls);
        assert!(Target::parse("api.example.com").is_err());
    }
}
