//! The physical ceiling for an SFU on this machine: the work no SFU can avoid, and nothing else.
//! One thread on the "server" CPU receives SRTP (AEAD_AES_256_GCM, ~1 200-byte packets) on one
//! UDP socket, decrypts it, and for each of M subscribers rewrites the RTP header, encrypts it
//! with that subscriber's key and sends it to that subscriber's socket. A sender and a counting
//! receiver run on the other CPU. The sender pre-encrypts its packets and sends as fast as it
//! can (or at `--rate`), so the forwarder's core saturates and its forwarded packets per
//! CPU-second is the ceiling that `meeting-appliance loadtest` figures are compared with.
//! Same crypto provider (str0m's aws-lc-rs) as the sfuserver. Loopback only.
//!
//!   cargo run --release --example raw_forwarder -- --subscribers 50 --seconds 5
//!
//! With `--mmsg 1` the copies of one received packet leave in one `sendmmsg` (as the
//! sfuserver sends them) instead of one `sendto` each.
//!
//! With `--sleep-receivers 1` the receiver sleeps in `epoll` on the subscribers' sockets, as
//! the load generator's participants do, instead of polling them; each send then pays the
//! wake-up of a sleeping reader, as the sfuserver's sends to the generator do. With `--rate`
//! at the generator's rate this measures the raw forwarding cost at the same load as a
//! `loadtest` fan-out (the forwarder then sleeps between packets, as the sfuserver does).
//!
//! Prints one line: `RAW subscribers=M seconds=S in_pps=… out_pps=… out_mbps=… cpu_cores=…
//! out_pps_per_core=…`.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use meeting_appliance::loadtest::srtp::{Rewrite, SrtpContext, provider, rtp_packet};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pin(cpu: u64) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET and sched_setaffinity(0 = this thread)
    // only read and write that set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn thread_cpu_s() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write into.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

fn main() -> std::io::Result<()> {
    let subs = arg("--subscribers", 10) as usize;
    let seconds = arg("--seconds", 5);
    let rate = arg("--rate", 0);
    let len = arg("--len", 1200) as usize;
    let server_cpu = arg("--server-cpu", 1);
    let gen_cpu = arg("--gen-cpu", 0);
    let mmsg = arg("--mmsg", 0) == 1;
    let sleep_receivers = arg("--sleep-receivers", 0) == 1;

    let fwd_sock = UdpSocket::bind("127.0.0.1:0")?;
    fwd_sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    let fwd_addr = fwd_sock.local_addr()?;
    let sub_socks: Vec<UdpSocket> = (0..subs)
        .map(|_| UdpSocket::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()?;
    let sub_addrs: Vec<SocketAddr> = sub_socks
        .iter()
        .map(UdpSocket::local_addr)
        .collect::<Result<_, _>>()?;
    for s in &sub_socks {
        s.set_nonblocking(true)?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let received_bytes = Arc::new(AtomicU64::new(0));

    // The forwarder.
    let fwd = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            pin(server_cpu);
            let p = provider();
            let mut rx = SrtpContext::new(&p, [1; 32], [2; 12], false);
            let mut outs: Vec<(SrtpContext, Rewrite, SocketAddr)> = sub_addrs
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    let k = (i as u8).wrapping_add(10);
                    (
                        SrtpContext::new(&p, [k; 32], [k; 12], true),
                        Rewrite {
                            ssrc: 0x5000 + i as u32,
                            seq_offset: i as u16 * 7,
                            ts_offset: i as u32 * 3,
                            pt: 96,
                        },
                        *a,
                    )
                })
                .collect();
            let mut buf = vec![0u8; 2048];
            let mut plain = vec![0u8; 2048];
            let mut work = vec![0u8; 2048];
            let mut out = vec![0u8; 2048];
            let mut batch = Batch::new(&sub_addrs);
            let (mut pin_, mut pout) = (0u64, 0u64);
            let mut started: Option<(Instant, f64)> = None;
            while !stop.load(Ordering::Relaxed) {
                let Ok((n, _)) = fwd_sock.recv_from(&mut buf) else {
                    continue;
                };
                if started.is_none() {
                    started = Some((Instant::now(), thread_cpu_s()));
                }
                pin_ += 1;
                let Some(m) = rx.unprotect(&buf[..n], &mut plain) else {
                    continue;
                };
                if mmsg {
                    for (i, (ctx, rw, _)) in outs.iter_mut().enumerate() {
                        work[..m].copy_from_slice(&plain[..m]);
                        rw.apply(&mut work[..m]);
                        batch.lens[i] = ctx.protect(&work[..m], &mut batch.bufs[i]).unwrap_or(0);
                    }
                    pout += batch.send(&fwd_sock);
                    continue;
                }
                for (ctx, rw, addr) in &mut outs {
                    work[..m].copy_from_slice(&plain[..m]);
                    rw.apply(&mut work[..m]);
                    if let Some(k) = ctx.protect(&work[..m], &mut out)
                        && fwd_sock.send_to(&out[..k], *addr).is_ok()
                    {
                        pout += 1;
                    }
                }
            }
            let (t0, c0) = started.unwrap_or((Instant::now(), thread_cpu_s()));
            (pin_, pout, t0.elapsed().as_secs_f64(), thread_cpu_s() - c0)
        })
    };

    // The counting receiver (generator CPU).
    let rcv = {
        let (stop, received, received_bytes) =
            (stop.clone(), received.clone(), received_bytes.clone());
        std::thread::spawn(move || {
            pin(gen_cpu);
            let mut buf = vec![0u8; 2048];
            if sleep_receivers {
                receive_sleeping(&sub_socks, &stop, &received, &received_bytes, &mut buf);
                return;
            }
            while !stop.load(Ordering::Relaxed) {
                let mut got = false;
                for s in &sub_socks {
                    while let Ok(n) = s.recv(&mut buf) {
                        received.fetch_add(1, Ordering::Relaxed);
                        received_bytes.fetch_add(n as u64, Ordering::Relaxed);
                        got = true;
                    }
                }
                if !got {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        })
    };

    // The sender (generator CPU): pre-encrypted packets, as fast as possible or at --rate.
    pin(gen_cpu);
    let p = provider();
    let mut tx = SrtpContext::new(&p, [1; 32], [2; 12], true);
    let ring: Vec<Vec<u8>> = (0..4096u32)
        .map(|i| {
            let pkt = rtp_packet(i as u16, i * 3000, 0x1111, len);
            let mut s = vec![0u8; len + 32];
            let n = tx.protect(&pkt, &mut s).unwrap_or(0);
            s.truncate(n);
            s
        })
        .collect();
    let send_sock = UdpSocket::bind("127.0.0.1:0")?;
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let mut i = 0usize;
    let r0 = received.load(Ordering::Relaxed);
    while Instant::now() < end {
        let _ = send_sock.send_to(&ring[i % ring.len()], fwd_addr);
        i += 1;
        if rate > 0 {
            let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
            if let Some(d) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let (pin_, pout, secs, cpu) = fwd.join().unwrap_or((0, 0, 1.0, 0.0));
    let _ = rcv.join();
    let got = received.load(Ordering::Relaxed) - r0;
    let bytes = received_bytes.load(Ordering::Relaxed);
    let out_pps = got as f64 / secs;
    println!(
        "RAW subscribers={subs} seconds={secs:.2} sent={i} in_pps={:.0} forwarded={pout} out_pps={out_pps:.0} out_mbps={:.1} cpu_cores={:.2} out_pps_per_core={:.0}",
        pin_ as f64 / secs,
        bytes as f64 * 8.0 / secs / 1e6,
        cpu / secs,
        if cpu > 0.0 { got as f64 / cpu } else { 0.0 },
    );
    Ok(())
}

/// Counts what reaches the subscribers' sockets, sleeping in `epoll` (level-triggered) until
/// one is readable, as a load generator's event loop does.
fn receive_sleeping(
    socks: &[UdpSocket],
    stop: &AtomicBool,
    received: &AtomicU64,
    received_bytes: &AtomicU64,
    buf: &mut [u8],
) {
    use std::os::fd::AsRawFd;
    // SAFETY: creates a new epoll fd or returns -1.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(ep >= 0, "epoll_create1");
    for (i, s) in socks.iter().enumerate() {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: i as u64,
        };
        // SAFETY: valid epoll fd, a valid socket fd and an initialised event.
        unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, s.as_raw_fd(), &mut ev) };
    }
    let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 64];
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: valid epoll fd and event buffer.
        let n = unsafe { libc::epoll_wait(ep, evs.as_mut_ptr(), evs.len() as libc::c_int, 100) };
        for ev in &evs[..n.max(0) as usize] {
            let s = &socks[ev.u64 as usize];
            while let Ok(n) = s.recv(buf) {
                received.fetch_add(1, Ordering::Relaxed);
                received_bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    }
    // SAFETY: closes the epoll fd made above.
    unsafe { libc::close(ep) };
}

/// One datagram per subscriber, sent with `sendmmsg` (64 per call); no allocation per send.
struct Batch {
    bufs: Vec<Vec<u8>>,
    lens: Vec<usize>,
    addrs: Vec<libc::sockaddr_in>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl Batch {
    fn new(to: &[SocketAddr]) -> Batch {
        let addrs = to
            .iter()
            .map(|a| {
                let SocketAddr::V4(v4) = a else {
                    panic!("loopback IPv4 only")
                };
                libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: v4.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from(*v4.ip()).to_be(),
                    },
                    sin_zero: [0; 8],
                }
            })
            .collect();
        Batch {
            bufs: vec![vec![0u8; 2048]; to.len()],
            lens: vec![0; to.len()],
            addrs,
            iovs: Vec::with_capacity(to.len()),
            // SAFETY: mmsghdr is a plain C struct; zero is a valid start.
            hdrs: (0..to.len())
                .map(|_| unsafe { std::mem::zeroed() })
                .collect(),
        }
    }

    fn send(&mut self, sock: &UdpSocket) -> u64 {
        use std::os::fd::AsRawFd;
        self.iovs.clear();
        for (b, l) in self.bufs.iter_mut().zip(&self.lens) {
            self.iovs.push(libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: *l,
            });
        }
        for (i, h) in self.hdrs.iter_mut().enumerate() {
            h.msg_hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_in).cast();
            h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_hdr.msg_iov = &mut self.iovs[i];
            h.msg_hdr.msg_iovlen = 1;
        }
        let mut sent = 0u64;
        for chunk in self.hdrs.chunks_mut(64) {
            // SAFETY: every header points at live buffers and addresses owned by self.
            let r = unsafe {
                libc::sendmmsg(
                    sock.as_raw_fd(),
                    chunk.as_mut_ptr(),
                    chunk.len() as libc::c_uint,
                    0,
                )
            };
            sent += r.max(0) as u64;
        }
        sent
    }
}
