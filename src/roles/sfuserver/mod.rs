//! The sfuserver role: the WebRTC relay.
//!
//! `SfuServer` (an actor) owns the media workers and knows which worker owns which meeting's
//! room; it answers host actions (`ControlRoom`) and hands a joining signaling session the
//! channel of its room's worker. Media never passes through it: each worker is a thread with
//! its own UDP socket and str0m state machines (`worker.rs`, `peer.rs`). The signaling
//! WebSocket (`signal.rs`) checks the join token with the deployment secret alone.

pub mod metrics;
mod peer;
pub mod signal;
mod worker;

use actix::prelude::*;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use tokio::sync::oneshot;

use crate::ids::MeetingId;
use crate::proto::{ControlRoom, ParticipationChanged};
use crate::tokens::Keys;

pub use worker::{WorkerCmd, WorkerStats};

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
}

struct WorkerHandle {
    tx: UnboundedSender<WorkerCmd>,
    rooms: usize,
}

pub struct SfuServer {
    workers: Vec<WorkerHandle>,
    rooms: HashMap<MeetingId, usize>,
}

impl Actor for SfuServer {
    type Context = Context<Self>;
}

/// Which worker serves this meeting (assigning the least busy one to a new room).
#[derive(Message)]
#[rtype(result = "Option<UnboundedSender<WorkerCmd>>")]
pub struct PickWorker {
    pub meeting: MeetingId,
}

#[derive(Message)]
#[rtype(result = "()")]
struct RoomClosed(MeetingId);

impl Handler<PickWorker> for SfuServer {
    type Result = Option<UnboundedSender<WorkerCmd>>;
    fn handle(&mut self, m: PickWorker, _: &mut Context<Self>) -> Self::Result {
        let i = match self.rooms.get(&m.meeting) {
            Some(&i) => i,
            None => {
                let i = (0..self.workers.len()).min_by_key(|&i| self.workers[i].rooms)?;
                self.workers[i].rooms += 1;
                self.rooms.insert(m.meeting, i);
                i
            }
        };
        Some(self.workers[i].tx.clone())
    }
}

impl Handler<RoomClosed> for SfuServer {
    type Result = ();
    fn handle(&mut self, m: RoomClosed, _: &mut Context<Self>) {
        if let Some(i) = self.rooms.remove(&m.0) {
            self.workers[i].rooms = self.workers[i].rooms.saturating_sub(1);
        }
    }
}

impl Handler<ControlRoom> for SfuServer {
    type Result = ResponseFuture<Result<(), String>>;
    fn handle(&mut self, m: ControlRoom, _: &mut Context<Self>) -> Self::Result {
        let Some(&i) = self.rooms.get(&m.meeting) else {
            return Box::pin(async { Err("nobody is in this meeting".to_string()) });
        };
        let (reply, rx) = oneshot::channel();
        let sent = self.workers[i].tx.send(WorkerCmd::Control {
            meeting: m.meeting,
            action: m.action,
            reply,
        });
        Box::pin(async move {
            sent.map_err(|_| "the media worker is gone".to_string())?;
            rx.await
                .map_err(|_| "the media worker did not answer".to_string())?
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
                w.tx.send(WorkerCmd::Shutdown { reply }).ok().map(|_| rx)
            })
            .collect();
        Box::pin(async move {
            for w in waits {
                let _ = tokio::time::timeout(Duration::from_secs(2), w).await;
            }
        })
    }
}

struct ActorReporter {
    sfu: Addr<SfuServer>,
    participation: Option<Recipient<ParticipationChanged>>,
}

impl worker::Reporter for ActorReporter {
    fn participation(&self, m: ParticipationChanged) {
        if let Some(r) = &self.participation {
            r.do_send(m);
        }
    }
    fn room_closed(&self, meeting: MeetingId) {
        self.sfu.do_send(RoomClosed(meeting));
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

/// Starts the workers and the `SfuServer` actor. Returns the actor and the per-worker stats.
pub fn start(
    s: &SfuSettings,
    keys: Keys,
    participation: Option<Recipient<ParticipationChanged>>,
) -> anyhow::Result<(Addr<SfuServer>, SfuState, Vec<Arc<WorkerStats>>)> {
    let crypto = Arc::new(str0m::crypto::from_feature_flags());
    let n = s.workers.max(1);
    let mut sockets = Vec::with_capacity(n);
    for i in 0..n {
        let port = if s.udp_port == 0 {
            0
        } else {
            s.udp_port
                .saturating_add(u16::try_from(i).unwrap_or(u16::MAX))
        };
        sockets.push(media_socket(s.advertised_ip, port)?);
    }
    let mut handles = Vec::with_capacity(n);
    let mut receivers = Vec::with_capacity(n);
    for _ in 0..n {
        let (tx, rx) = unbounded_channel();
        handles.push(WorkerHandle { tx, rooms: 0 });
        receivers.push(rx);
    }
    let sfu = SfuServer {
        workers: handles,
        rooms: HashMap::new(),
    }
    .start();
    let mut all_stats = Vec::with_capacity(n);
    let mut media = Vec::with_capacity(n);
    for (i, (sock, rx)) in sockets.into_iter().zip(receivers).enumerate() {
        let port = sock.local_addr()?.port();
        let advertised = SocketAddr::new(s.advertised_ip, port);
        media.push(advertised);
        let stats = Arc::new(WorkerStats::default());
        all_stats.push(stats.clone());
        let reporter = Box::new(ActorReporter {
            sfu: sfu.clone(),
            participation: participation.clone(),
        });
        let worker = worker::Worker::new(
            i,
            sock,
            advertised,
            crypto.clone(),
            stats,
            reporter,
            s.room_grace,
        )?;
        std::thread::Builder::new()
            .name(format!("sfu-media-{i}"))
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(worker.run(rx)),
                    Err(e) => tracing::error!(error = %e, "cannot start a media worker runtime"),
                }
            })?;
        tracing::info!(worker = i, media = %advertised, "sfuserver media worker");
    }
    let state = SfuState {
        keys,
        own_address: s.own_address.clone(),
        sfu: sfu.clone(),
        media,
    };
    Ok((sfu, state, all_stats))
}
