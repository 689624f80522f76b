//! Relay sockets: one UDP socket per allocation, from the configured port range, wrapped so
//! that the peer policy and the bandwidth cap apply to every packet whatever path the crate
//! took (Send indication or ChannelData out, Data indication or ChannelData back).

use async_trait::async_trait;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::net::UdpSocket;

use super::policy::PeerPolicy;
use super::stats::{Dropped, TurnStats};
use crate::ratelimit::Bucket;

/// Socket buffers for every TURN socket: with the kernel default (208 KiB) a busy relay
/// loses packets in bursts (TURN-NOTES.md); coturn sets the same.
pub const SOCKET_BUFFER: usize = 4 << 20;

/// What every relay socket shares.
pub struct RelayShared {
    /// The address relay sockets bind (the advertised one when it is ours, else unspecified).
    pub bind_ip: IpAddr,
    /// The address written into XOR-RELAYED-ADDRESS (`--ip`).
    pub relay_ip: IpAddr,
    pub port_min: u16,
    pub port_max: u16,
    pub policy: Arc<PeerPolicy>,
    pub stats: Arc<TurnStats>,
    /// Per allocation and direction; 0: unlimited.
    pub bytes_per_sec: u64,
}

/// Hands the crate a wrapped socket for each new allocation.
pub struct RelayGen(pub Arc<RelayShared>);

/// A UDP socket with large buffers, bound to `ip:port`.
pub fn udp_socket(ip: IpAddr, port: u16) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let addr = SocketAddr::new(ip, port);
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    let _ = sock.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = sock.set_send_buffer_size(SOCKET_BUFFER);
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    Ok(sock.into())
}

impl RelayGen {
    fn bind(&self, requested_port: u16) -> Result<std::net::UdpSocket, turn::Error> {
        let s = &self.0;
        if requested_port != 0 {
            if !(s.port_min..=s.port_max).contains(&requested_port) {
                return Err(turn::Error::Other("requested port out of range".into()));
            }
            return udp_socket(s.bind_ip, requested_port)
                .map_err(|e| turn::Error::Other(e.to_string()));
        }
        let span = u32::from(s.port_max - s.port_min) + 1;
        // Random probes first (ports in use are skipped), then one ordered pass so a nearly
        // full range still finds its last free ports.
        let random = (0..32).map(|_| rand::random::<u32>() % span);
        let start = rand::random::<u32>() % span;
        let ordered = (0..span).map(|i| (start + i) % span);
        for off in random.chain(ordered) {
            let port = u16::try_from(u32::from(s.port_min) + off).unwrap_or(s.port_max);
            if let Ok(sock) = udp_socket(s.bind_ip, port) {
                return Ok(sock);
            }
        }
        Err(turn::Error::Other("no free relay port".into()))
    }
}

#[async_trait]
impl turn::relay::RelayAddressGenerator for RelayGen {
    fn validate(&self) -> Result<(), turn::Error> {
        Ok(())
    }

    async fn allocate_conn(
        &self,
        use_ipv4: bool,
        requested_port: u16,
    ) -> Result<(Arc<dyn webrtc_util::Conn + Send + Sync>, SocketAddr), turn::Error> {
        let s = &self.0;
        if use_ipv4 != s.relay_ip.is_ipv4() {
            return Err(turn::Error::Other(
                "the relay address is of the other family".into(),
            ));
        }
        let std_sock = self.bind(requested_port)?;
        let port = std_sock
            .local_addr()
            .map_err(|e| turn::Error::Other(e.to_string()))?
            .port();
        let sock = UdpSocket::from_std(std_sock).map_err(|e| turn::Error::Other(e.to_string()))?;
        let now = Instant::now();
        let bucket = || {
            // Bursts of a quarter second (a video keyframe) pass at full speed.
            let rate = s.bytes_per_sec as f64;
            Mutex::new(Bucket::new(rate, (rate / 4.0).max(16_384.0), now))
        };
        let relayed = SocketAddr::new(s.relay_ip, port);
        // Other allocations on this server may relay to this one (see policy.rs).
        if let Ok(mut r) = s.policy.relays.write() {
            r.insert(relayed);
        }
        let conn = RelaySocket {
            sock,
            relayed,
            shared: s.clone(),
            out: bucket(),
            inbound: bucket(),
        };
        Ok((Arc::new(conn), relayed))
    }
}

struct RelaySocket {
    sock: UdpSocket,
    relayed: SocketAddr,
    shared: Arc<RelayShared>,
    out: Mutex<Bucket>,
    inbound: Mutex<Bucket>,
}

impl Drop for RelaySocket {
    fn drop(&mut self) {
        if let Ok(mut r) = self.shared.policy.relays.write() {
            r.remove(&self.relayed);
        }
    }
}

impl RelaySocket {
    fn within_cap(&self, bucket: &Mutex<Bucket>, n: usize) -> bool {
        if self.shared.bytes_per_sec == 0 {
            return true;
        }
        // Locked only by this allocation's own send path or receive path.
        let mut b = bucket.lock().unwrap_or_else(|p| p.into_inner());
        b.take(n as f64, Instant::now())
    }
}

/// Errors a UDP socket reports for one earlier datagram (ICMP), not for itself.
pub(super) fn transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused
            | ConnectionReset
            | Interrupted
            | WouldBlock
            | HostUnreachable
            | NetworkUnreachable
    )
}

#[async_trait]
impl webrtc_util::Conn for RelaySocket {
    async fn connect(&self, _addr: SocketAddr) -> webrtc_util::Result<()> {
        Err(webrtc_util::Error::Other("connect is not supported".into()))
    }
    async fn recv(&self, _buf: &mut [u8]) -> webrtc_util::Result<usize> {
        Err(webrtc_util::Error::Other("recv is not supported".into()))
    }
    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        let st = &self.shared.stats;
        loop {
            let (n, from) = match self.sock.recv_from(buf).await {
                Ok(x) => x,
                Err(e) if transient(&e) => continue,
                // An error here ends the allocation's relay task.
                Err(e) => return Err(e.into()),
            };
            if !self.shared.policy.allows(from) {
                st.drop_packet(Dropped::ForbiddenPeer);
                continue;
            }
            if !self.within_cap(&self.inbound, n) {
                st.drop_packet(Dropped::Bandwidth);
                continue;
            }
            st.bytes_from_peers.fetch_add(n as u64, Ordering::Relaxed);
            st.packets_from_peers.fetch_add(1, Ordering::Relaxed);
            return Ok((n, from));
        }
    }
    async fn send(&self, _buf: &[u8]) -> webrtc_util::Result<usize> {
        Err(webrtc_util::Error::Other("send is not supported".into()))
    }
    /// Never fails: a refused or dropped packet is counted, not reported, so that a client
    /// cannot make the crate log an error per packet.
    async fn send_to(&self, buf: &[u8], peer: SocketAddr) -> webrtc_util::Result<usize> {
        let st = &self.shared.stats;
        if !self.shared.policy.allows(peer) {
            st.drop_packet(Dropped::ForbiddenPeer);
        } else if !self.within_cap(&self.out, buf.len()) {
            st.drop_packet(Dropped::Bandwidth);
        } else {
            match self.sock.send_to(buf, peer).await {
                Ok(n) => {
                    st.bytes_to_peers.fetch_add(n as u64, Ordering::Relaxed);
                    st.packets_to_peers.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => st.drop_packet(Dropped::SendError),
            }
        }
        Ok(buf.len())
    }
    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        Ok(self.sock.local_addr()?)
    }
    fn remote_addr(&self) -> Option<SocketAddr> {
        None
    }
    /// The socket closes when the allocation drops it.
    async fn close(&self) -> webrtc_util::Result<()> {
        Ok(())
    }
    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}
