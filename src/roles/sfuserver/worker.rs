//! A media worker's I/O: one thread, one UDP socket, an `epoll` loop around the sans-IO
//! [`Core`]. It reads datagrams in batches (`recvmmsg`, with the kernel's receive time of
//! each), takes packets other workers handed over (bounded lock-free queues) and commands
//! and control messages (a channel), feeds all of it to the core with the current time, and
//! sends what the core wrote in batches (`sendmmsg`).
//!
//! No queueing delay is added by batching: a receive batch is whatever is already waiting
//! in the socket (never waited for), and what it produced leaves before the next receive —
//! the send batch is flushed at the end of every turn and whenever it is full. Timers: a
//! deadline that has passed is handled in the same turn; only a future one is slept for
//! (`epoll_pwait2`, nanosecond timeout), exactly if it is near (the pacer's next packet),
//! else until the next tick of a 5 ms grid so that many participants' timers share one
//! wake-up ([`on_grid`]).

use std::io;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_queue::ArrayQueue;
use tokio::sync::mpsc::error::TrySendError;

use super::core::{
    ClientTx, Core, CoreEvent, Ctl, Dest, Fwd, Input, MAX_DATAGRAM, NetSink, Outputs, ToClient,
    WorkerCmd, is_rtp,
};
use super::latency::{Histogram, LocalHist};
use crate::ids::MeetingId;
use crate::proto::ParticipationChanged;

/// Datagrams read per `recvmmsg`.
const RECV_BATCH: usize = 32;
/// Datagrams written per `sendmmsg` (the batch is flushed when full and after every turn).
const SEND_BATCH: usize = 64;
/// Packets one worker may have waiting for another; beyond, the newest are dropped.
pub const HANDOFF_QUEUE: usize = 8192;
/// Counters and the latency histogram reach `/metrics` this often.
const FLUSH: Duration = Duration::from_millis(250);
/// Timers further away than [`EXACT`] are slept for until the next multiple of this (from
/// the worker's start), so that the participants' many timers share wake-ups instead of
/// each waking the worker: str0m's run every 25 ms (bandwidth estimation), 33 ms (NACKs
/// while a packet is missing), 50 ms (TWCC feedback) and slower (reports, ICE), and media
/// never waits for a timer (it is sent as it arrives). At fan-out 1→100 this took the
/// worker's timer wake-ups from ~1,200/s to ~300/s.
const TIMER_GRID: Duration = Duration::from_millis(5);
/// A deadline this close is slept for exactly (the pacer's next packet).
const EXACT: Duration = Duration::from_micros(200);

/// Counters shared with `/metrics`. The worker adds to them in batches, not per packet.
#[derive(Default)]
pub struct WorkerStats {
    /// RTP packets (media and retransmissions, not RTCP/STUN/DTLS) in and out.
    pub rtp_in: AtomicU64,
    pub rtp_out: AtomicU64,
    pub packets_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub packets_out: AtomicU64,
    pub bytes_out: AtomicU64,
    pub dropped_out: AtomicU64,
    pub garbage_in: AtomicU64,
    pub nacks_received: AtomicU64,
    pub retransmitted: AtomicU64,
    pub keyframe_requests: AtomicU64,
    /// Viewers that started on a keyframe already at hand instead of asking for one.
    pub keyframes_replayed: AtomicU64,
    /// Audio packets not forwarded (outside the room's top-K).
    pub audio_held: AtomicU64,
    /// Packets for another worker dropped because its queue was full.
    pub handoff_dropped: AtomicU64,
    /// `sendmmsg` calls (datagrams per call = packets_out / this).
    pub send_batches: AtomicU64,
    pub participants: AtomicU64,
    pub rooms: AtomicU64,
    pub tracks: AtomicU64,
    pub bwe_bps_sum: AtomicU64,
    /// Participants this worker was given and has not let go of (the `SfuServer` picks
    /// the worker with the fewest for a new participant).
    pub assigned: AtomicI64,
    /// Added latency per forwarded copy (datagram received → copy sent).
    pub latency: Histogram,
}

/// Events the worker reports upward (participation history, rooms closing).
pub trait Reporter: Send + 'static {
    fn participation(&self, m: ParticipationChanged);
    fn room_closed(&self, meeting: MeetingId);
    /// A chat message, for the meeting's record.
    fn chat(&self, m: crate::proto::ChatPosted);
    /// A host action over signaling, for the audit log.
    fn host_acted(&self, m: crate::proto::HostActed);
}

/// Wakes a worker sleeping in `epoll`: an eventfd, written only when the worker said it
/// is about to sleep.
pub struct Waker {
    fd: OwnedFd,
    sleeping: AtomicBool,
}

impl Waker {
    fn new() -> io::Result<Waker> {
        // SAFETY: eventfd returns a new fd or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Waker {
            // SAFETY: fd is a fresh, owned descriptor.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            sleeping: AtomicBool::new(false),
        })
    }

    /// After new work was queued for the worker.
    pub fn wake(&self) {
        if self.sleeping.load(Ordering::SeqCst) {
            self.wake_now();
        }
    }

    fn wake_now(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64 to our eventfd.
        unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            );
        }
    }

    fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads at most 8 bytes into a valid u64; the fd is non-blocking.
        unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                (&mut v as *mut u64).cast(),
                std::mem::size_of::<u64>(),
            );
        }
    }
}

/// What reaches a worker besides datagrams and handed-over packets.
pub enum WorkerMsg {
    Cmd(WorkerCmd),
    Ctl(Ctl),
}

/// How the signaling side and the other workers reach a worker.
#[derive(Clone)]
pub struct WorkerHandle {
    tx: mpsc::Sender<WorkerMsg>,
    waker: Arc<Waker>,
    pub stats: Arc<WorkerStats>,
}

#[derive(Debug)]
pub struct WorkerGone;

impl WorkerHandle {
    pub fn send(&self, c: WorkerCmd) -> Result<(), WorkerGone> {
        self.tx.send(WorkerMsg::Cmd(c)).map_err(|_| WorkerGone)?;
        self.waker.wake_now();
        Ok(())
    }

    fn ctl(&self, c: Ctl) {
        if self.tx.send(WorkerMsg::Ctl(c)).is_ok() {
            self.waker.wake_now();
        }
    }
}

/// The queues between all workers of a box: `queue(from, to)`.
pub struct Handoff {
    n: usize,
    queues: Vec<ArrayQueue<Fwd>>,
}

impl Handoff {
    pub fn new(n: usize) -> Handoff {
        Handoff {
            n,
            queues: (0..n * n).map(|_| ArrayQueue::new(HANDOFF_QUEUE)).collect(),
        }
    }

    fn queue(&self, from: usize, to: usize) -> &ArrayQueue<Fwd> {
        &self.queues[from * self.n + to]
    }
}

/// The sockets' and queues' side of one worker (`start` wires them up).
pub struct Worker {
    index: usize,
    socket: std::net::UdpSocket,
    core: Core,
    rx: mpsc::Receiver<WorkerMsg>,
    waker: Arc<Waker>,
    /// Every worker's handle (this one's included), for control messages.
    peers: Arc<Mutex<Vec<WorkerHandle>>>,
    handoff: Arc<Handoff>,
    stats: Arc<WorkerStats>,
    reporter: Box<dyn Reporter>,
}

impl Worker {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        index: usize,
        socket: std::net::UdpSocket,
        core: Core,
        handoff: Arc<Handoff>,
        peers: Arc<Mutex<Vec<WorkerHandle>>>,
        stats: Arc<WorkerStats>,
        reporter: Box<dyn Reporter>,
    ) -> io::Result<(Worker, WorkerHandle)> {
        socket.set_nonblocking(true)?;
        let one: libc::c_int = 1;
        // SAFETY: a valid socket fd and an int option value.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        let (tx, rx) = mpsc::channel();
        let waker = Arc::new(Waker::new()?);
        let handle = WorkerHandle {
            tx,
            waker: waker.clone(),
            stats: stats.clone(),
        };
        Ok((
            Worker {
                index,
                socket,
                core,
                rx,
                waker,
                peers,
                handoff,
                stats,
                reporter,
            },
            handle,
        ))
    }

    /// The worker's loop; returns when every handle is gone (the server stopped).
    pub fn run(mut self) {
        let epfd = match epoll_setup(self.socket.as_raw_fd(), self.waker.fd.as_raw_fd()) {
            Ok(fd) => fd,
            Err(e) => {
                tracing::error!(worker = self.index, error = %e, "cannot set up the media worker's epoll");
                return;
            }
        };
        tracing::info!(worker = self.index, "media worker started");
        let mut rxb = RecvBatch::new();
        let mut tx = SendBatch::new(self.socket.as_raw_fd());
        let mut out = Outputs::default();
        let mut slow: Vec<usize> = Vec::new();
        let mut links: Vec<Option<ClientTx>> = Vec::new();
        let mut wake_workers = vec![false; self.handoff.n];
        let epoch = Instant::now();
        let mut next_flush = epoch + FLUSH;
        let mut counts_in = (0u64, 0u64);
        'outer: loop {
            // Another turn at once only if the receive batch was full or another worker
            // handed packets over: the socket is watched level-triggered and commands write
            // the eventfd, so what arrives after a read that left nothing behind wakes the
            // `epoll_wait` below at once (one `recvmmsg` per wake-up, not a second one that
            // finds nothing).
            let mut busy = false;
            // 1. Datagrams waiting in the socket (never waited for).
            let n = rxb.recv(self.socket.as_raw_fd());
            if n > 0 {
                busy = n == RECV_BATCH;
                let (mono, real) = (Instant::now(), SystemTime::now());
                for i in 0..n {
                    let (data, from, ts) = rxb.get(i);
                    let Some(from) = from else { continue };
                    counts_in.0 += 1;
                    counts_in.1 += data.len() as u64;
                    let received = kernel_time(ts, mono, real);
                    self.core.handle(
                        mono,
                        Input::Datagram {
                            from,
                            data,
                            received,
                        },
                        &mut tx,
                        &mut out,
                    );
                    self.route(&mut out, &mut links, &mut slow, &mut wake_workers);
                }
            }
            // 2. Packets other workers handed over.
            let now = Instant::now();
            for from in 0..self.handoff.n {
                if from == self.index {
                    continue;
                }
                let handoff = self.handoff.clone();
                let q = handoff.queue(from, self.index);
                let mut taken = 0;
                while taken < 4 * SEND_BATCH
                    && let Some(f) = q.pop()
                {
                    taken += 1;
                    self.core
                        .handle(now, Input::Forwarded(f), &mut tx, &mut out);
                    self.route(&mut out, &mut links, &mut slow, &mut wake_workers);
                }
                busy |= taken > 0;
            }
            // 3. Commands and control messages (each one wrote the eventfd).
            loop {
                match self.rx.try_recv() {
                    Ok(m) => {
                        let input = match m {
                            WorkerMsg::Cmd(c) => Input::Cmd(c),
                            WorkerMsg::Ctl(c) => Input::Ctl(c),
                        };
                        self.core.handle(Instant::now(), input, &mut tx, &mut out);
                        self.route(&mut out, &mut links, &mut slow, &mut wake_workers);
                    }
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => break 'outer,
                }
            }
            while let Some(slot) = slow.pop() {
                self.core.handle(
                    Instant::now(),
                    Input::SlowReader { slot },
                    &mut tx,
                    &mut out,
                );
                self.route(&mut out, &mut links, &mut slow, &mut wake_workers);
            }
            // 4. Timers that are due, now.
            let now = Instant::now();
            if self.core.poll_timeout().is_some_and(|t| t <= now) {
                self.core.handle(now, Input::Timeout, &mut tx, &mut out);
                self.route(&mut out, &mut links, &mut slow, &mut wake_workers);
            }
            // What this turn produced leaves now.
            tx.flush();
            for (w, wake) in wake_workers.iter_mut().enumerate() {
                if std::mem::take(wake)
                    && let Some(h) = lock(&self.peers).get(w)
                {
                    h.waker.wake();
                }
            }
            if now >= next_flush {
                next_flush = now + FLUSH;
                self.flush_stats(&mut tx, &mut counts_in);
            }
            if busy {
                continue;
            }
            // 5. Nothing to do: sleep until a datagram, a wake-up or the next deadline.
            self.waker.sleeping.store(true, Ordering::SeqCst);
            let pending = (0..self.handoff.n)
                .any(|f| f != self.index && !self.handoff.queue(f, self.index).is_empty());
            if !pending {
                let deadline = self
                    .core
                    .poll_timeout()
                    .map_or(next_flush, |t| t.min(next_flush));
                let now = Instant::now();
                epoll_wait_until(epfd.as_raw_fd(), now, on_grid(deadline, now, epoch));
            }
            self.waker.sleeping.store(false, Ordering::SeqCst);
            self.waker.drain();
        }
        // Every handle is gone: end the sessions left.
        let (reply, _rx) = tokio::sync::oneshot::channel();
        self.core.handle(
            Instant::now(),
            Input::Cmd(WorkerCmd::Shutdown { reply }),
            &mut tx,
            &mut out,
        );
        self.route(&mut out, &mut links, &mut slow, &mut wake_workers);
        tx.flush();
        self.flush_stats(&mut tx, &mut counts_in);
        tracing::info!(worker = self.index, "media worker stopped");
    }

    /// Delivers what one `handle` call produced besides datagrams.
    fn route(
        &mut self,
        out: &mut Outputs,
        links: &mut Vec<Option<ClientTx>>,
        slow: &mut Vec<usize>,
        wake: &mut [bool],
    ) {
        for c in out.clients.drain(..) {
            match c {
                ToClient::Attach { slot, tx } => {
                    if links.len() <= slot {
                        links.resize_with(slot + 1, || None);
                    }
                    links[slot] = Some(tx);
                }
                ToClient::Msg { slot, msg } => {
                    if let Some(Some(tx)) = links.get(slot)
                        && let Err(TrySendError::Full(_)) = tx.try_send(msg)
                        && !slow.contains(&slot)
                    {
                        // The session is not reading: the participant is dropped
                        // (reason `slow_reader`) before this turn ends.
                        slow.push(slot);
                    }
                }
                ToClient::Detach { slot } => {
                    if let Some(l) = links.get_mut(slot) {
                        *l = None;
                    }
                    self.stats.assigned.fetch_sub(1, Ordering::Relaxed);
                }
                ToClient::Refuse { tx, msg } => {
                    let _ = tx.try_send(msg);
                    self.stats.assigned.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
        for (to, f) in out.fwd.drain(..) {
            let to = usize::from(to);
            if to >= self.handoff.n {
                continue;
            }
            match self.handoff.queue(self.index, to).push(f) {
                Ok(()) => wake[to] = true,
                Err(_) => {
                    self.stats.handoff_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if !out.ctl.is_empty() {
            let peers = lock(&self.peers);
            for (dest, c) in out.ctl.drain(..) {
                match dest {
                    Dest::All => {
                        for (w, h) in peers.iter().enumerate() {
                            if w != self.index {
                                h.ctl(c.clone());
                            }
                        }
                    }
                    Dest::Worker(w) => {
                        if let Some(h) = peers.get(usize::from(w)) {
                            h.ctl(c);
                        }
                    }
                }
            }
        }
        for e in out.events.drain(..) {
            match e {
                CoreEvent::Participation(m) => self.reporter.participation(m),
                CoreEvent::RoomClosed(m) => self.reporter.room_closed(m),
                CoreEvent::Chat(m) => self.reporter.chat(m),
                CoreEvent::HostActed(m) => self.reporter.host_acted(m),
                CoreEvent::ControlReply(reply, r) => {
                    let _ = reply.send(r);
                }
                CoreEvent::ShutdownDone(reply) => {
                    let _ = reply.send(());
                }
            }
        }
    }

    fn flush_stats(&mut self, tx: &mut SendBatch, counts_in: &mut (u64, u64)) {
        let s = &self.stats;
        let c = std::mem::take(&mut self.core.counts);
        s.rtp_in.fetch_add(c.rtp_in, Ordering::Relaxed);
        s.rtp_out.fetch_add(c.rtp_out, Ordering::Relaxed);
        s.garbage_in.fetch_add(c.garbage_in, Ordering::Relaxed);
        s.nacks_received
            .fetch_add(c.nacks_received, Ordering::Relaxed);
        s.retransmitted
            .fetch_add(c.retransmitted, Ordering::Relaxed);
        s.keyframe_requests
            .fetch_add(c.keyframe_requests, Ordering::Relaxed);
        s.keyframes_replayed
            .fetch_add(c.keyframes_replayed, Ordering::Relaxed);
        s.audio_held.fetch_add(c.audio_held, Ordering::Relaxed);
        let (p, b) = std::mem::take(counts_in);
        s.packets_in.fetch_add(p, Ordering::Relaxed);
        s.bytes_in.fetch_add(b, Ordering::Relaxed);
        tx.flush_counts(s);
        let (n, rooms, tracks, bwe) = self.core.gauges();
        s.participants.store(n, Ordering::Relaxed);
        s.rooms.store(rooms, Ordering::Relaxed);
        s.tracks.store(tracks, Ordering::Relaxed);
        s.bwe_bps_sum.store(bwe, Ordering::Relaxed);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The kernel's receive time (CLOCK_REALTIME) as an `Instant`, given both clocks read at
/// the end of the batch; `mono` when there is none or it looks wrong.
fn kernel_time(ts: Option<libc::timespec>, mono: Instant, real: SystemTime) -> Instant {
    let Some(ts) = ts else { return mono };
    let Ok(real) = real.duration_since(UNIX_EPOCH) else {
        return mono;
    };
    let at = Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
    match real.checked_sub(at) {
        Some(ago) if ago < Duration::from_secs(1) => mono.checked_sub(ago).unwrap_or(mono),
        _ => mono,
    }
}

fn epoll_setup(socket: RawFd, waker: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: creates a new epoll fd or returns -1.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if ep < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: ep is a fresh, owned descriptor.
    let ep = unsafe { OwnedFd::from_raw_fd(ep) };
    for (fd, token) in [(socket, 1u64), (waker, 2u64)] {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: valid epoll fd, a valid fd to watch and an initialised event.
        if unsafe { libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(ep)
}

/// When to wake for `deadline`: at once or exactly if it is due within [`EXACT`], else at
/// the first [`TIMER_GRID`] tick (counted from `epoch`) at or after it. A late timer is at
/// most one tick late; media never waits for it (it is sent as it arrives).
fn on_grid(deadline: Instant, now: Instant, epoch: Instant) -> Instant {
    if deadline <= now + EXACT {
        return deadline;
    }
    let grid = TIMER_GRID.as_nanos();
    let since = (deadline - epoch).as_nanos();
    let ticks = since.div_ceil(grid);
    epoch + Duration::from_nanos((ticks * grid) as u64)
}

/// Waits for a watched fd or until `deadline`, with nanosecond resolution where the kernel
/// has `epoll_pwait2` (5.11+), else rounded up to the next millisecond.
fn epoll_wait_until(ep: RawFd, now: Instant, deadline: Instant) {
    if deadline <= now {
        return;
    }
    let wait = deadline - now;
    let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 4];
    let ts = libc::timespec {
        tv_sec: wait.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(wait.subsec_nanos() as i32),
    };
    // SAFETY: valid epoll fd, event buffer and timespec; no signal mask.
    let r = unsafe {
        libc::syscall(
            libc::SYS_epoll_pwait2,
            ep,
            evs.as_mut_ptr(),
            evs.len() as libc::c_int,
            &ts as *const libc::timespec,
            std::ptr::null::<libc::sigset_t>(),
            0usize,
        )
    };
    if r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
        let ms = wait.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
        // SAFETY: as above.
        unsafe { libc::epoll_wait(ep, evs.as_mut_ptr(), evs.len() as libc::c_int, ms) };
    }
}

/// Buffers for one `recvmmsg` of up to `RECV_BATCH` datagrams with their receive times.
struct RecvBatch {
    bufs: Vec<[u8; MAX_DATAGRAM]>,
    addrs: Vec<libc::sockaddr_storage>,
    ctrl: Vec<[u64; 8]>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl RecvBatch {
    fn new() -> RecvBatch {
        // SAFETY: sockaddr_storage and mmsghdr are plain C structs; all-zero is valid.
        let zero_addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let zero_hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
        RecvBatch {
            bufs: vec![[0; MAX_DATAGRAM]; RECV_BATCH],
            addrs: vec![zero_addr; RECV_BATCH],
            ctrl: vec![[0; 8]; RECV_BATCH],
            iovs: Vec::with_capacity(RECV_BATCH),
            hdrs: vec![zero_hdr; RECV_BATCH],
        }
    }

    /// Reads what is waiting (non-blocking); returns how many datagrams.
    fn recv(&mut self, fd: RawFd) -> usize {
        self.iovs.clear();
        for b in self.bufs.iter_mut() {
            self.iovs.push(libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            });
        }
        for i in 0..RECV_BATCH {
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = self.ctrl[i].as_mut_ptr().cast();
            h.msg_controllen = std::mem::size_of::<[u64; 8]>();
            h.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
        // SAFETY: every header points at live buffers owned by self, sized as declared.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                RECV_BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        n.max(0) as usize
    }

    /// Datagram `i` of the last `recv`: bytes, source, kernel receive time.
    fn get(&self, i: usize) -> (&[u8], Option<SocketAddr>, Option<libc::timespec>) {
        let h = &self.hdrs[i];
        let len = (h.msg_len as usize).min(MAX_DATAGRAM);
        let from = sockaddr_to(&self.addrs[i]);
        let mut ts = None;
        // SAFETY: the control buffer was filled by the kernel for this header; the CMSG
        // macros walk it within msg_controllen.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&h.msg_hdr);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                    ts = Some(std::ptr::read_unaligned(
                        libc::CMSG_DATA(c).cast::<libc::timespec>(),
                    ));
                }
                c = libc::CMSG_NXTHDR(&h.msg_hdr, c);
            }
        }
        (&self.bufs[i][..len], from, ts)
    }
}

fn sockaddr_to(a: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match libc::c_int::from(a.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let s: &libc::sockaddr_in = unsafe { &*(a as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                u32::from_be(s.sin_addr.s_addr).into(),
                u16::from_be(s.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let s: &libc::sockaddr_in6 = unsafe { &*(a as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                s.sin6_addr.s6_addr.into(),
                u16::from_be(s.sin6_port),
                s.sin6_flowinfo,
                s.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

fn to_sockaddr(a: SocketAddr, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match a {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large enough and aligned for sockaddr_in.
            let s: &mut libc::sockaddr_in =
                unsafe { &mut *(out as *mut _ as *mut libc::sockaddr_in) };
            s.sin_family = libc::AF_INET as libc::sa_family_t;
            s.sin_port = v4.port().to_be();
            s.sin_addr = libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            };
            s.sin_zero = [0; 8];
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(v6) => {
            // SAFETY: sockaddr_storage is large enough and aligned for sockaddr_in6.
            let s: &mut libc::sockaddr_in6 =
                unsafe { &mut *(out as *mut _ as *mut libc::sockaddr_in6) };
            s.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            s.sin6_port = v6.port().to_be();
            s.sin6_flowinfo = v6.flowinfo();
            s.sin6_addr = libc::in6_addr {
                s6_addr: v6.ip().octets(),
            };
            s.sin6_scope_id = v6.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// Datagrams the core wrote, sent together by `sendmmsg` when `SEND_BATCH` are waiting and
/// at the end of every turn; the latency of each forwarded copy is recorded when it is sent.
struct SendBatch {
    fd: RawFd,
    bufs: Vec<[u8; MAX_DATAGRAM]>,
    lens: Vec<usize>,
    addrs: Vec<libc::sockaddr_storage>,
    addr_lens: Vec<libc::socklen_t>,
    received: Vec<Option<Instant>>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    n: usize,
    hist: LocalHist,
    packets: u64,
    bytes: u64,
    dropped: u64,
    batches: u64,
}

impl SendBatch {
    fn new(fd: RawFd) -> SendBatch {
        // SAFETY: plain C structs; all-zero is valid.
        let zero_addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let zero_hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
        SendBatch {
            fd,
            bufs: vec![[0; MAX_DATAGRAM]; SEND_BATCH],
            lens: vec![0; SEND_BATCH],
            addrs: vec![zero_addr; SEND_BATCH],
            addr_lens: vec![0; SEND_BATCH],
            received: vec![None; SEND_BATCH],
            iovs: Vec::with_capacity(SEND_BATCH),
            hdrs: vec![zero_hdr; SEND_BATCH],
            n: 0,
            hist: LocalHist::default(),
            packets: 0,
            bytes: 0,
            dropped: 0,
            batches: 0,
        }
    }

    fn flush(&mut self) {
        let total = self.n;
        if total == 0 {
            return;
        }
        self.iovs.clear();
        for i in 0..total {
            self.iovs.push(libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: self.lens[i],
            });
        }
        for i in 0..total {
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = self.addr_lens[i];
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
        }
        let mut at = 0;
        while at < total {
            // SAFETY: headers [at, total) point at live buffers and addresses owned by self.
            let r = unsafe {
                libc::sendmmsg(
                    self.fd,
                    self.hdrs[at..].as_mut_ptr(),
                    (total - at) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            self.batches += 1;
            if r <= 0 {
                // The first of the rest could not go (socket buffer full): drop it, go on.
                self.dropped += 1;
                at += 1;
                continue;
            }
            let sent_at = Instant::now();
            for i in at..at + r as usize {
                self.packets += 1;
                self.bytes += self.lens[i] as u64;
                if let Some(t) = self.received[i] {
                    self.hist.record(sent_at.saturating_duration_since(t));
                }
            }
            at += r as usize;
        }
        self.n = 0;
    }

    fn flush_counts(&mut self, s: &WorkerStats) {
        s.packets_out
            .fetch_add(std::mem::take(&mut self.packets), Ordering::Relaxed);
        s.bytes_out
            .fetch_add(std::mem::take(&mut self.bytes), Ordering::Relaxed);
        s.dropped_out
            .fetch_add(std::mem::take(&mut self.dropped), Ordering::Relaxed);
        s.send_batches
            .fetch_add(std::mem::take(&mut self.batches), Ordering::Relaxed);
        self.hist.flush_into(&s.latency);
    }
}

impl NetSink for SendBatch {
    fn buffer(&mut self) -> &mut [u8] {
        &mut self.bufs[self.n]
    }

    fn commit(&mut self, len: usize, to: SocketAddr, received: Option<Instant>) {
        let i = self.n;
        self.lens[i] = len;
        self.addr_lens[i] = to_sockaddr(to, &mut self.addrs[i]);
        self.received[i] = received.filter(|_| is_rtp(&self.bufs[i][..len]));
        self.n += 1;
        if self.n == SEND_BATCH {
            self.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_share_grid_ticks_and_near_ones_stay_exact() {
        let epoch = Instant::now();
        let now = epoch + Duration::from_millis(100);
        let ms = |m: f64| now + Duration::from_micros((m * 1000.0) as u64);
        // Due, or due within EXACT (the pacer's next packet): slept for exactly.
        let past = now - Duration::from_millis(1);
        assert_eq!(on_grid(past, now, epoch), past);
        assert_eq!(on_grid(now, now, epoch), now);
        assert_eq!(on_grid(ms(0.15), now, epoch), ms(0.15));
        // Further away: the first tick at or after it, at most one tick late.
        for d in [0.3, 1.0, 4.9, 5.0, 7.3, 24.0, 33.3, 50.0] {
            let w = on_grid(ms(d), now, epoch);
            assert!(w >= ms(d), "{d} ms woke early");
            assert!(w - ms(d) < TIMER_GRID, "{d} ms woke more than a tick late");
            assert_eq!(
                (w - epoch).as_nanos() % TIMER_GRID.as_nanos(),
                0,
                "{d} ms is off the grid"
            );
        }
        // Timers within one tick share one wake-up; a tick's own deadline is not delayed.
        assert_eq!(on_grid(ms(1.2), now, epoch), on_grid(ms(4.8), now, epoch));
        assert_eq!(on_grid(ms(5.0), now, epoch), ms(5.0));
        assert_ne!(on_grid(ms(5.0), now, epoch), on_grid(ms(5.1), now, epoch));
    }
}
