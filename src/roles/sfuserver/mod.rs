//! The sfuserver role: the WebRTC relay.
//!
//! `SfuServer` (an actor) owns the media workers. Each participant is placed on the worker
//! with the fewest participants, so one meeting spreads over every worker (and core) of the
//! box; the workers keep each other's room directories in step and hand each other packets
//! (`core` module doc). The actor answers host actions (`ControlRoom`, given to every worker)
//! and hands a joining signaling session its worker. Media never passes through it: each
//! worker is a thread with its own UDP socket (`worker.rs`) around a sans-IO core
//! (`core/`). The signaling WebSocket (`signal.rs`) checks the join token with the
//! deployment secret alone.

pub mod core;
pub mod latency;
pub mod metrics;
pub mod signal;
mod worker;

use actix::prelude::*;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

use crate::ids::MeetingId;
use crate::proto::{ChatPosted, ControlRefused, ControlRoom, HostActed, ParticipationChanged};
use crate::tokens::Keys;

pub use self::core::WorkerCmd;
pub use worker::{WorkerHandle, WorkerStats};

/// Forwarded RTP packets per second one media worker (one core) is stated to carry when the
/// operator does not say (`sfu.capacity_pps`): about two thirds of what one core forwarded
/// in the benchmarks (BENCHMARKS.md) with p99 added latency within 1 ms, so a box is
/// "full" before its cores are.
pub const PPS_PER_WORKER: u32 = 60_000;

/// What the sfuserver needs to start.
pub struct SfuSettings {
    /// Media workers (threads, one UDP port each).
    pub workers: usize,
    /// First UDP port; worker i uses `udp_port + i`. 0: any free port (tests).
    pub udp_port: u16,
    /// The address browsers send media to (the only ICE candidate we advertise).
    pub advertised_ip: IpAddr,
    /// The `host:port` of this sfuserver's signaling, as join tokens name it.
    pub own_address: String,
    pub room_grace: Duration,
    /// Audio streams forwarded to each participant: the loudest K (0: all).
    pub audio_top_k: usize,
    /// A participant a host removed is refused this long if it comes back with its join
    /// token: the join tokens' lifetime (`meetings.join_token_ttl`) and some clock slack.
    pub removed_for: Duration,
    /// Join tokens are checked with these (the deployment secret alone).
    pub keys: Keys,
    /// Where participation, chat and host-action reports go (chosen by the node's wiring);
    /// None: nowhere (benchmarks).
    pub reports: Option<Reports>,
}

pub struct SfuServer {
    workers: Vec<WorkerHandle>,
}

impl Actor for SfuServer {
    type Context = Context<Self>;
}

/// The worker a joining participant goes to: the one with the fewest participants, so a
/// meeting's participants spread over all workers.
#[derive(Message)]
#[rtype(result = "Option<WorkerHandle>")]
pub struct PickWorker {
    pub meeting: MeetingId,
}

impl Handler<PickWorker> for SfuServer {
    type Result = Option<WorkerHandle>;
    fn handle(&mut self, _: PickWorker, _: &mut Context<Self>) -> Self::Result {
        let w = self
            .workers
            .iter()
            .min_by_key(|w| w.stats.assigned.load(Ordering::Relaxed))?;
        // Counted now, so a burst of joins spreads before any of them is in; the worker
        // takes it back when the participant leaves or is refused.
        w.stats.assigned.fetch_add(1, Ordering::Relaxed);
        Some(w.clone())
    }
}

impl Handler<ControlRoom> for SfuServer {
    type Result = ResponseFuture<Result<(), ControlRefused>>;
    fn handle(&mut self, m: ControlRoom, _: &mut Context<Self>) -> Self::Result {
        // Every worker applies what concerns its own participants (a meeting spans workers).
        let mut waits = Vec::with_capacity(self.workers.len());
        for w in &self.workers {
            let (reply, rx) = oneshot::channel();
            if w.send(WorkerCmd::Control {
                meeting: m.meeting,
                action: m.action.clone(),
                by: m.by.clone(),
                reply,
            })
            .is_ok()
            {
                waits.push(rx);
            }
        }
        Box::pin(async move {
            if waits.is_empty() {
                return Err(ControlRefused::WorkerGone);
            }
            let mut first_err = None;
            let mut ok = false;
            for w in waits {
                match w.await {
                    Ok(Ok(())) => ok = true,
                    Ok(Err(e)) => {
                        first_err.get_or_insert(e);
                    }
                    Err(_) => {
                        first_err.get_or_insert(ControlRefused::WorkerGone);
                    }
                }
            }
            if ok {
                Ok(())
            } else {
                Err(first_err.unwrap_or(ControlRefused::NoMeeting))
            }
        })
    }
}

/// The server stops: tell every session on every worker (see `WorkerCmd::Shutdown`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ShutdownRooms;

impl Handler<ShutdownRooms> for SfuServer {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, _: ShutdownRooms, _: &mut Context<Self>) -> Self::Result {
        let waits: Vec<_> = self
            .workers
            .iter()
            .filter_map(|w| {
                let (reply, rx) = oneshot::channel();
                w.send(WorkerCmd::Shutdown { reply }).ok().map(|_| rx)
            })
            .collect();
        Box::pin(async move {
            for w in waits {
                let _ = tokio::time::timeout(Duration::from_secs(2), w).await;
            }
        })
    }
}

/// Where the sfuserver's reports go: the apiserver's recorder on this box, or the bridge.
#[derive(Clone)]
pub struct Reports {
    pub participation: Recipient<ParticipationChanged>,
    pub chat: Recipient<ChatPosted>,
    pub host_acted: Recipient<HostActed>,
}

struct ActorReporter {
    reports: Option<Reports>,
}

impl worker::Reporter for ActorReporter {
    fn participation(&self, m: ParticipationChanged) {
        if let Some(r) = &self.reports {
            r.participation.do_send(m);
        }
    }
    fn chat(&self, m: ChatPosted) {
        if let Some(r) = &self.reports {
            r.chat.do_send(m);
        }
    }
    fn host_acted(&self, m: HostActed) {
        if let Some(r) = &self.reports {
            r.host_acted.do_send(m);
        }
    }
    fn room_closed(&self, meeting: MeetingId) {
        tracing::debug!(%meeting, "room closed on every worker");
    }
}

/// Shared by the signaling route.
pub struct SfuState {
    pub keys: Keys,
    pub own_address: String,
    pub sfu: Addr<SfuServer>,
    /// The UDP addresses media arrives on (one per worker), as advertised to browsers.
    pub media: Vec<SocketAddr>,
}

/// A media socket: bound to the advertised address when it is ours, else to all addresses
/// (a cloud VM behind 1:1 NAT advertises a public IP it does not have), with big buffers.
fn media_socket(ip: IpAddr, port: u16) -> anyhow::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let want = SocketAddr::new(ip, port);
    let sock = Socket::new(Domain::for_address(want), Type::DGRAM, Some(Protocol::UDP))?;
    const BUF: usize = 4 << 20;
    let _ = sock.set_recv_buffer_size(BUF);
    let _ = sock.set_send_buffer_size(BUF);
    if sock.recv_buffer_size().unwrap_or(0) < BUF {
        tracing::warn!(
            "UDP receive buffers are capped below 4 MiB: media may be lost under load. Raise net.core.rmem_max (sysctl -w net.core.rmem_max=8388608)"
        );
    }
    match sock.bind(&want.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {
            let any = if ip.is_ipv4() {
                IpAddr::from([0u8; 4])
            } else {
                IpAddr::from([0u16; 8])
            };
            sock.bind(&SocketAddr::new(any, port).into())
                .map_err(|e| anyhow::anyhow!("cannot bind media UDP port {port}: {e}"))?;
        }
        Err(e) => anyhow::bail!(
            "cannot bind media UDP {want}: {e}; is another server using it? Change --udpPort"
        ),
    }
    Ok(sock.into())
}

/// Media leaves with IPv4's don't-fragment bit set (as browsers send theirs), without path-MTU
/// discovery: the kernel then skips choosing an IP identification for every datagram
/// (`__ip_select_ident`, a shared hash table: 2.8 % of the sfuserver's CPU in a 10×10
/// meeting). Media packets are ~1,200 bytes, below any path MTU WebRTC can use. IPv6 has no
/// fragmentation by routers: nothing to set.
fn dont_fragment(sock: &std::net::UdpSocket) {
    use std::os::fd::AsRawFd;
    if !sock.local_addr().is_ok_and(|a| a.is_ipv4()) {
        return;
    }
    let v: libc::c_int = libc::IP_PMTUDISC_PROBE;
    // SAFETY: a valid socket descriptor and a c_int option value of the right size.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            (&raw const v).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "media socket: cannot set don't-fragment");
    }
}

/// The workers' media sockets: `bound` (handed over by the service manager, at most 64) or,
/// when none, `workers` bound here from `udp_port` (0: any free ports) on `ip`; every one set
/// to send with don't-fragment.
fn media_sockets(
    workers: usize,
    udp_port: u16,
    ip: IpAddr,
    bound: Vec<std::net::UdpSocket>,
) -> anyhow::Result<Vec<std::net::UdpSocket>> {
    let sockets = if bound.is_empty() {
        let n = workers.clamp(1, 64);
        let mut sockets = Vec::with_capacity(n);
        for i in 0..n {
            let port = if udp_port == 0 {
                0
            } else {
                udp_port.saturating_add(u16::try_from(i).unwrap_or(u16::MAX))
            };
            sockets.push(media_socket(ip, port)?);
        }
        sockets
    } else {
        bound.into_iter().take(64).collect()
    };
    for sock in &sockets {
        dont_fragment(sock);
    }
    Ok(sockets)
}

/// A running sfuserver.
pub struct SfuHandle {
    /// For the signaling route, and the actor host actions go to (`state.sfu`).
    pub state: SfuState,
    /// Per-worker counters (metrics and load reports).
    pub stats: Vec<Arc<WorkerStats>>,
    /// Resolves once every session was told `server_shutdown` after the shutdown fired.
    pub stopped: crate::shutdown::Stopped,
}

/// Starts the workers and the `SfuServer` actor. `bound`: media sockets bound already
/// (handed over by the service manager), one per worker, used instead of `workers` and
/// `udp_port`; empty: bound here from the settings. At `shutdown` every session is told
/// (`ShutdownRooms`), so clients rejoin elsewhere instead of waiting for media to time out.
pub fn start(
    s: SfuSettings,
    bound: Vec<std::net::UdpSocket>,
    shutdown: crate::shutdown::Shutdown,
) -> anyhow::Result<SfuHandle> {
    let crypto = Arc::new(str0m::crypto::from_feature_flags());
    let sockets = media_sockets(s.workers, s.udp_port, s.advertised_ip, bound)?;
    let n = sockets.len();
    let rooms = Arc::new(self::core::Rooms::new(s.audio_top_k));
    let handoff = Arc::new(worker::Handoff::new(n));
    let peers: Arc<Mutex<Vec<WorkerHandle>>> = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let mut workers = Vec::with_capacity(n);
    let mut handles = Vec::with_capacity(n);
    let mut all_stats = Vec::with_capacity(n);
    let mut media = Vec::with_capacity(n);
    for (i, sock) in sockets.into_iter().enumerate() {
        let port = sock.local_addr()?.port();
        let advertised = SocketAddr::new(s.advertised_ip, port);
        media.push(advertised);
        let stats = Arc::new(WorkerStats::default());
        all_stats.push(stats.clone());
        let core = self::core::Core::new(self::core::CoreConfig {
            worker: i as u8,
            workers: n as u8,
            advertised,
            crypto: crypto.clone(),
            room_grace: s.room_grace,
            rooms: rooms.clone(),
            removed_for: s.removed_for,
        });
        let reporter = Box::new(ActorReporter {
            reports: s.reports.clone(),
        });
        let (w, handle) = worker::Worker::new(
            i,
            sock,
            core,
            handoff.clone(),
            peers.clone(),
            stats,
            reporter,
        )?;
        handles.push(handle);
        workers.push((w, advertised));
    }
    peers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .extend(handles.iter().cloned());
    for (i, (w, advertised)) in workers.into_iter().enumerate() {
        std::thread::Builder::new()
            .name(format!("sfu-media-{i}"))
            .spawn(move || w.run())?;
        tracing::info!(worker = i, media = %advertised, "sfuserver media worker");
    }
    let sfu = SfuServer { workers: handles }.start();
    let stopping = sfu.clone();
    let stopped = shutdown.then(async move {
        let _ = stopping.send(ShutdownRooms).await;
    });
    let state = SfuState {
        keys: s.keys,
        own_address: s.own_address,
        sfu,
        media,
    };
    Ok(SfuHandle {
        state,
        stats: all_stats,
        stopped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mtu_discover(sock: &std::net::UdpSocket) -> libc::c_int {
        use std::os::fd::AsRawFd;
        let mut v: libc::c_int = -1;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: a valid socket descriptor, a c_int buffer and its length.
        let r = unsafe {
            libc::getsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                (&raw mut v).cast(),
                &mut len,
            )
        };
        assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
        v
    }

    #[test]
    fn media_sockets_send_with_dont_fragment_and_no_pmtu_discovery() {
        let lo = IpAddr::from([127, 0, 0, 1]);
        // The kernel's default for a UDP socket: discovery per route (no DF on most routes).
        let plain = media_socket(lo, 0).expect("socket");
        assert_ne!(mtu_discover(&plain), libc::IP_PMTUDISC_PROBE);
        // Bound here, one per worker, and handed over by the service manager: all set.
        let made = media_sockets(2, 0, lo, Vec::new()).expect("sockets");
        assert_eq!(made.len(), 2);
        let handed = media_sockets(1, 0, lo, vec![plain]).expect("sockets");
        for sock in made.iter().chain(&handed) {
            assert_eq!(mtu_discover(sock), libc::IP_PMTUDISC_PROBE);
        }
        // An IPv6 socket is left alone (and does not fail).
        if let Ok(v6) = std::net::UdpSocket::bind("[::1]:0") {
            dont_fragment(&v6);
        }
    }
}
