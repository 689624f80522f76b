//! The turnserver role: TURN (RFC 8656) over UDP, TCP and TLS, so that people whose networks
//! block the sfuserver's UDP ports (or everything but HTTPS-looking TLS) still get media
//! through.
//!
//! Built on the webrtc-rs `turn` crate (ARCHITECTURE.md section 2), with what it lacks in
//! layers around it rather than inside it (TURN-NOTES.md):
//!
//! ```text
//!  UDP socket ─┐                               ┌─ RelaySocket (relay.rs): peer policy,
//!              ├─ Guard (guard.rs) ─ turn crate ┤  bandwidth cap, byte counters; one per
//!  TCP (tcp.rs)┘  credentials, nonces, limits,  └─ allocation, from the relay port range
//!                 403/486, lifetime, TCP close
//! ```
//!
//! - `guard.rs` (with `nonce.rs`, `messages.rs`) checks every request before the crate does.
//! - `tcp.rs` presents all TURN-over-TCP connections as one packet connection for the crate;
//!   the same, after a TLS handshake with this process's certificate, serves `turns:`.
//! - `auth.rs` is coturn's REST scheme with the deployment's TURN key, so coturn and this
//!   server accept the same credentials (the apiserver hands them out in join answers).
//! - `policy.rs` decides which peers may be relayed to (no loopback/private/link-local/
//!   multicast except the allowlist, our sfuservers and our own relay ports).
//! - `stats.rs` counts allocations, bytes, refusals by reason, for `/metrics`.
//! - `client.rs` and `check.rs` are the client side: `meeting-appliance turn-check`.
//!
//! The relay runs on its own thread with its own tokio runtime: relayed packets never wait
//! behind HTTP requests, and the other way round. Listeners are bound first ([`bind`]) so that
//! a taken port fails start-up and a port chosen by the system (0) is known before join
//! answers name it; [`start`] then serves them.

pub mod auth;
pub mod check;
pub mod client;
mod guard;
pub mod limits;
mod messages;
mod nonce;
pub mod policy;
mod relay;
pub mod stats;
pub mod tcp;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::IpNet;
use guard::{Guard, GuardShared};
pub use policy::{TrustedPeer, TrustedPeers};

/// Keeps the turnserver's learned peers equal to the sfuservers' media addresses in the node
/// registry's snapshots, so a turnserver on its own host relays to them (private addresses
/// included) and to nothing else of the private network.
pub struct PeerUpdater(pub TrustedPeers);

impl actix::Actor for PeerUpdater {
    type Context = actix::Context<Self>;
}

impl actix::Handler<crate::proto::NodesChanged> for PeerUpdater {
    type Result = ();
    fn handle(&mut self, m: crate::proto::NodesChanged, _: &mut actix::Context<Self>) {
        let peers: Vec<TrustedPeer> = m
            .nodes
            .iter()
            .filter(|n| n.role == crate::proto::NodeRole::Sfuserver)
            .flat_map(|n| n.media.iter())
            .map(|a| TrustedPeer {
                ip: a.ip(),
                ports: a.port()..=a.port(),
            })
            .collect();
        tracing::info!(sfu_media = ?peers.iter().map(|p| (p.ip, *p.ports.start())).collect::<Vec<_>>(), "turnserver: sfuservers it may relay to");
        if let Ok(mut l) = self.0.write() {
            *l = peers;
        }
    }
}
use relay::{RelayGen, RelayShared};

/// Runs fuzzed input through the guard, the turnserver's first reader of every packet: for
/// the `turn_guard` fuzz target (fuzz/) and the replay of its corpus in the test suite
/// (tests/it/fuzz_corpus.rs). The input is a series of records `[flags, source, length (u16
/// big-endian), bytes]`, each a datagram to a UDP guard (small quotas, a null socket) from
/// one of 8 sources. Flags: 1 = decode the bytes as STUN and sign them with valid
/// credentials (username chosen by bits 5–7: the old form, or one of four meetings) so the
/// checks behind authentication are reached, 2 = add a FINGERPRINT; for an Allocate that
/// passes, 4 = the engine answers success (else an error); 8 = the allocation then closes.
/// Panics if, once every allocation has ended, any quota is still counted.
pub fn fuzz_guard(input: &[u8]) {
    let _ = guard::fuzz(input);
}

/// How often the box's own addresses (never relayed to) are read again.
const OWN_ADDRESSES_EVERY: Duration = Duration::from_secs(10);
pub use stats::{TurnCollector, TurnStats};

/// What the turnserver needs to run.
pub struct TurnSettings {
    /// The relay and advertised address (`--ip`).
    pub relay_ip: IpAddr,
    pub realm: String,
    pub relay_port_min: u16,
    pub relay_port_max: u16,
    pub allowed_peers: Vec<IpNet>,
    /// This deployment's sfuservers: always allowed as peers.
    pub sfu_peers: Vec<TrustedPeer>,
    /// The sfuservers learned from the node registry (updated by [`PeerUpdater`]).
    pub learned_peers: TrustedPeers,
    pub max_allocations_per_user: u32,
    pub max_allocations_per_ip: u32,
    pub max_allocations_per_meeting: u32,
    pub max_tcp_connections_per_ip: u32,
    pub max_bandwidth_kbps: u32,
    pub max_lifetime: Duration,
    pub unauthenticated_per_second: u32,
    /// The TURN REST key (`Keys::turn_secret`): credentials are checked with it alone.
    pub secret: String,
    /// The certificate this process serves, for TURN over TLS (when `bind` got a TLS port).
    pub tls: Option<rustls::ServerConfig>,
}

/// The UDP socket and TCP listener of one port (and the TLS listener, if any), bound but
/// not yet served.
pub struct Bound {
    udp: std::net::UdpSocket,
    tcp: std::net::TcpListener,
    tls: Option<std::net::TcpListener>,
    bind_ip: IpAddr,
}

impl Bound {
    pub fn port(&self) -> u16 {
        self.udp.local_addr().map(|a| a.port()).unwrap_or(0)
    }
    /// The TURN-over-TLS port, when TLS is on.
    pub fn tls_port(&self) -> Option<u16> {
        self.tls
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port())
    }
}

fn unspecified(ip: IpAddr) -> IpAddr {
    if ip.is_ipv4() {
        IpAddr::from([0u8; 4])
    } else {
        IpAddr::from([0u16; 8])
    }
}

fn tcp_listener(ip: IpAddr, port: u16) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let addr = SocketAddr::new(ip, port);
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // A restarted server must not wait for the old connections' TIME_WAIT.
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}

/// Binds UDP and TCP `ip:port` (port 0: one the system picks, the same for both), and TCP
/// `ip:tls_port` for TURN over TLS when given. When `ip` is not an address of this host (a
/// cloud VM behind 1:1 NAT advertises its public IP), binds all addresses instead.
pub fn bind(ip: IpAddr, port: u16, tls_port: Option<u16>) -> anyhow::Result<Bound> {
    let bind_ip = match relay::udp_socket(ip, 0) {
        Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => unspecified(ip),
        _ => ip,
    };
    let taken = |e: std::io::Error, proto: &str, p: u16| {
        anyhow::anyhow!(
            "cannot listen for TURN on {proto} {}: {e}; is another TURN server (coturn?) running? Change `turn.port` (--port)",
            SocketAddr::new(bind_ip, p)
        )
    };
    let tls = match tls_port {
        Some(p) => Some(tcp_listener(bind_ip, p).map_err(|e| {
            anyhow::anyhow!(
                "cannot listen for TURN over TLS on {}: {e}; change `turn.tls_port`",
                SocketAddr::new(bind_ip, p)
            )
        })?),
        None => None,
    };
    // With port 0, the port the system gives UDP may be taken for TCP: try a few.
    for _ in 0..20 {
        let udp = relay::udp_socket(bind_ip, port).map_err(|e| taken(e, "UDP", port))?;
        if socket2::SockRef::from(&udp)
            .recv_buffer_size()
            .is_ok_and(|n| n < relay::SOCKET_BUFFER)
        {
            tracing::warn!(
                "UDP receive buffers are capped below 4 MiB: relayed media may be lost under load. Raise net.core.rmem_max (sysctl -w net.core.rmem_max=8388608)"
            );
        }
        let p = udp.local_addr()?.port();
        match tcp_listener(bind_ip, p) {
            Ok(tcp) => {
                return Ok(Bound {
                    udp,
                    tcp,
                    tls,
                    bind_ip,
                });
            }
            Err(_) if port == 0 => continue,
            Err(e) => return Err(taken(e, "TCP", p)),
        }
    }
    anyhow::bail!("cannot find a port free for both UDP and TCP for TURN")
}

/// A running turnserver.
pub struct TurnHandle {
    /// Its counters (metrics and load reports).
    pub stats: Arc<TurnStats>,
    /// The sfuservers it may relay to besides its own (fed by a [`PeerUpdater`]).
    pub learned_peers: TrustedPeers,
    /// Resolves once its listeners are closed after the shutdown fired.
    pub stopped: crate::shutdown::Stopped,
}

/// How long closing the TURN engines may take at a stop.
const CLOSE_WITHIN: Duration = Duration::from_secs(2);

/// Serves `bound` on a thread of its own (its TLS listener, if bound, with `s.tls`) until
/// `shutdown`. Returns once the relay is running.
pub fn start(
    s: TurnSettings,
    bound: Bound,
    shutdown: crate::shutdown::Shutdown,
) -> anyhow::Result<TurnHandle> {
    let stats = Arc::new(TurnStats::default());
    let learned_peers = s.learned_peers.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let (done, stopped) = crate::shutdown::Stopped::pair();
    let st = stats.clone();
    std::thread::Builder::new()
        .name("turn".into())
        .spawn(move || {
            let threads = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1);
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .thread_name("turn-relay")
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("cannot start the TURN runtime: {e}")));
                    return;
                }
            };
            rt.block_on(async move {
                match serve(bound, s, st).await {
                    Ok(servers) => {
                        let _ = ready_tx.send(Ok(()));
                        shutdown.wait().await;
                        for server in servers {
                            let _ = tokio::time::timeout(CLOSE_WITHIN, server.close()).await;
                        }
                        done.finish();
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("{e:#}")));
                    }
                }
            });
        })?;
    match ready_rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Ok(())) => Ok(TurnHandle {
            stats,
            learned_peers,
            stopped,
        }),
        Ok(Err(e)) => anyhow::bail!("the turnserver did not start: {e}"),
        Err(_) => anyhow::bail!("the turnserver did not start within 20 s"),
    }
}

async fn serve(
    bound: Bound,
    mut s: TurnSettings,
    stats: Arc<TurnStats>,
) -> anyhow::Result<Vec<turn::server::Server>> {
    let tls = s.tls.take();
    let udp = tokio::net::UdpSocket::from_std(bound.udp)?;
    let tcp = tokio::net::TcpListener::from_std(bound.tcp)?;
    let local = udp.local_addr()?;
    let tls = match (bound.tls, tls) {
        (Some(l), Some(config)) => Some((
            tokio::net::TcpListener::from_std(l)?,
            tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        )),
        _ => None,
    };
    let tls_local = match &tls {
        Some((l, _)) => Some(l.local_addr()?),
        None => None,
    };
    // This box's addresses: the interfaces', the advertised one (a public IP behind 1:1 NAT
    // is on no interface) and this process's sfuserver's.
    let own = policy::OwnAddresses::new(
        [s.relay_ip, bound.bind_ip]
            .into_iter()
            .chain(s.sfu_peers.iter().map(|p| p.ip)),
    );
    let refresh = own.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(OWN_ADDRESSES_EVERY).await;
            refresh.refresh();
        }
    });
    let policy = Arc::new(policy::PeerPolicy {
        allowed: s.allowed_peers.clone(),
        trusted: s.sfu_peers.clone(),
        learned: s.learned_peers.clone(),
        relays: Default::default(),
        own,
    });
    let relay_shared = Arc::new(RelayShared {
        bind_ip: bound.bind_ip,
        relay_ip: s.relay_ip,
        port_min: s.relay_port_min,
        port_max: s.relay_port_max,
        policy: policy.clone(),
        stats: stats.clone(),
        bytes_per_sec: u64::from(s.max_bandwidth_kbps) * 1000 / 8,
    });
    let auth = auth::RestAuth::new(&s.secret, &s.realm);
    let guard_shared = Arc::new(GuardShared {
        auth: auth.clone(),
        policy,
        stats: stats.clone(),
        limiter: Mutex::new(limits::SourceLimiter::new(s.unauthenticated_per_second)),
        quotas: Mutex::new(limits::Quotas::new(
            s.max_allocations_per_user,
            s.max_allocations_per_ip,
            s.max_allocations_per_meeting,
        )),
        max_lifetime: u32::try_from(s.max_lifetime.as_secs())
            .unwrap_or(u32::MAX)
            .clamp(1, guard::MAX_LIFETIME),
        nonces: nonce::NonceSigner::new(rand::random()),
    });
    // TCP and TLS connections share the per-address cap.
    let slots = limits::ConnectionSlots::new(tcp::MAX_CONNECTIONS, s.max_tcp_connections_per_ip);
    let (tcp_conn, closed) = tcp::TcpPacketConn::serve(tcp, stats.clone(), None, slots.clone())?;
    let mut guards = vec![
        Arc::new(Guard::new(Arc::new(udp), guard_shared.clone())),
        Arc::new(Guard::new_tcp(tcp_conn, guard_shared.clone(), closed)),
    ];
    // TLS clients get their own listener connection: a client may use the same source port
    // for TCP and TLS, and each listener keys its clients by address.
    if let Some((listener, acceptor)) = tls {
        let (tls_conn, closed) =
            tcp::TcpPacketConn::serve(listener, stats.clone(), Some(acceptor), slots)?;
        guards.push(Arc::new(Guard::new_tcp(tls_conn, guard_shared, closed)));
    }
    // One crate server per listener: each gets its own allocation-closed notifications, so
    // each guard knows which of its clients still have an allocation.
    let mut servers = Vec::new();
    for g in guards {
        let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
        let conn: Arc<dyn webrtc_util::Conn + Send + Sync> = g.clone();
        let server = turn::server::Server::new(turn::server::config::ServerConfig {
            conn_configs: vec![turn::server::config::ConnConfig {
                conn,
                relay_addr_generator: Box::new(RelayGen(relay_shared.clone())),
            }],
            realm: s.realm.clone(),
            auth_handler: Arc::new(auth.clone()),
            channel_bind_timeout: Duration::ZERO,
            alloc_close_notify: Some(tx),
        })
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the TURN engine: {e}"))?;
        tokio::spawn(async move {
            while let Some(info) = rx.recv().await {
                g.allocation_closed(info.five_tuple.src_addr);
            }
        });
        servers.push(server);
    }
    tracing::info!(
        udp = %local,
        tcp = %local,
        tls = %tls_local.map_or("off (no certificate)".to_string(), |a| a.to_string()),
        relay = %s.relay_ip,
        ports = %format!("{}-{}", s.relay_port_min, s.relay_port_max),
        "turnserver listening"
    );
    Ok(servers)
}
