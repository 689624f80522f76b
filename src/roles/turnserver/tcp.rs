//! TURN over TCP for a crate that only speaks packets.
//!
//! The `turn` crate reads and writes through one packet connection (`webrtc_util::Conn`). This
//! adaptor accepts TCP connections and presents all of them as one such connection: each
//! STUN message or ChannelData frame read from any connection comes out of `recv_from` with
//! that connection's address; `send_to(addr)` writes to the connection with that address.
//! The same serves TURN over TLS (`turns:`), with a TLS handshake first.
//! Framing is STUN's own (RFC 8656 section 12): a STUN message is 20 bytes plus the length in
//! its header; ChannelData is 4 bytes plus its length, padded to a multiple of 4 over TCP.
//!
//! `close()` is a no-op on purpose: the crate calls it on the listener connection whenever an
//! allocation closes. A connection that ends is reported on the `closed` channel so the guard
//! can delete its allocation at once (the crate has no per-connection delete).
//!
//! Connections are limited in all and per source address from accept on (the slots are
//! shared with the TLS listener), and a connection must hold an allocation within
//! [`UNALLOCATED`] of being served: until then nothing it sends keeps it open (an
//! unauthenticated Binding request every few seconds would otherwise hold a slot forever).
//! Only a connection the guard reports as allocated ([`TcpPacketConn::set_allocated`]) may
//! stay silent for up to [`IDLE`]; when its allocation ends it has [`UNALLOCATED`] again.

use async_trait::async_trait;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::limits::{ConnectionSlots, Slot};
use super::stats::{Dropped, Rejected, TurnStats};

/// The most TCP and TLS connections served at once (each holds two small tasks and buffers).
pub const MAX_CONNECTIONS: usize = 10_000;
/// A connection (after its TLS handshake, which has as long) must hold an allocation this
/// soon; a TURN client allocates at once.
pub const UNALLOCATED: Duration = Duration::from_secs(10);
/// A connection with an allocation must send at least one message per this time (clients
/// refresh long before).
pub const IDLE: Duration = Duration::from_secs(3600);

/// One served connection: its outgoing frames, and whether it holds an allocation.
struct Client {
    tx: mpsc::Sender<Vec<u8>>,
    allocated: watch::Sender<bool>,
}

/// Length of the frame whose first 4 bytes are `hdr`, or `None` if it is neither STUN nor
/// ChannelData (the stream is garbage and the connection is closed).
pub fn frame_len(hdr: [u8; 4]) -> Option<usize> {
    let len = usize::from(u16::from_be_bytes([hdr[2], hdr[3]]));
    match hdr[0] >> 6 {
        0 => Some(20 + len),
        1 => Some((4 + len + 3) & !3),
        _ => None,
    }
}

/// Reads one frame; `Ok(None)` at a clean end of stream.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<Vec<u8>>> {
    let mut hdr = [0u8; 4];
    match r.read_exact(&mut hdr).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = frame_len(hdr).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "not STUN or ChannelData")
    })?;
    let mut frame = vec![0u8; len];
    frame[..4].copy_from_slice(&hdr);
    r.read_exact(&mut frame[4..]).await?;
    if hdr[0] >> 6 == 0 && !stun::message::is_message(&frame) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "no STUN magic cookie",
        ));
    }
    Ok(Some(frame))
}

/// All accepted TCP connections as one packet connection.
pub struct TcpPacketConn {
    local: SocketAddr,
    frames: tokio::sync::Mutex<mpsc::Receiver<(Vec<u8>, SocketAddr)>>,
    writers: Mutex<HashMap<SocketAddr, Client>>,
    stats: Arc<TurnStats>,
}

impl TcpPacketConn {
    /// Starts accepting on `listener` (TURN over TLS when `tls` is given), each connection
    /// in one of `slots`. Returns the connection and the channel on which the addresses of
    /// ended connections arrive.
    pub fn serve(
        listener: tokio::net::TcpListener,
        stats: Arc<TurnStats>,
        tls: Option<tokio_rustls::TlsAcceptor>,
        slots: Arc<ConnectionSlots>,
    ) -> std::io::Result<(Arc<TcpPacketConn>, mpsc::UnboundedReceiver<SocketAddr>)> {
        let local = listener.local_addr()?;
        let (frames_tx, frames_rx) = mpsc::channel(1024);
        let (closed_tx, closed_rx) = mpsc::unbounded_channel();
        let conn = Arc::new(TcpPacketConn {
            local,
            frames: tokio::sync::Mutex::new(frames_rx),
            writers: Mutex::new(HashMap::new()),
            stats,
        });
        let weak = Arc::downgrade(&conn);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors, usually: wait instead of spinning.
                        tracing::warn!(error = %e, "TURN TCP accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Some(conn) = weak.upgrade() else { break };
                let slot = match slots.take(peer.ip()) {
                    Ok(slot) => slot,
                    Err(_) => {
                        // Reset rather than close: no TIME_WAIT left behind per refusal.
                        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                        drop(stream);
                        conn.stats.reject(Rejected::ConnectionLimit);
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let (frames, closed) = (frames_tx.clone(), closed_tx.clone());
                match &tls {
                    None => {
                        let (rd, wr) = stream.into_split();
                        conn.spawn_connection(rd, wr, peer, slot, frames, closed);
                    }
                    Some(acceptor) => {
                        // The handshake runs on its own task: a slow client must not hold up
                        // the accept loop. It holds its slot meanwhile.
                        let acceptor = acceptor.clone();
                        tokio::spawn(async move {
                            if let Ok(Ok(s)) =
                                tokio::time::timeout(UNALLOCATED, acceptor.accept(stream)).await
                            {
                                let (rd, wr) = tokio::io::split(s);
                                conn.spawn_connection(rd, wr, peer, slot, frames, closed);
                            }
                        });
                    }
                }
            }
        });
        Ok((conn, closed_rx))
    }

    fn lock_writers(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Client>> {
        // Poisoning would need a panic while holding the lock; the map stays usable anyway.
        self.writers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The guard says whether the connection from `peer` holds an allocation: only then may
    /// it stay idle for up to [`IDLE`].
    pub fn set_allocated(&self, peer: SocketAddr, allocated: bool) {
        if let Some(c) = self.lock_writers().get(&peer) {
            c.allocated.send_replace(allocated);
        }
    }

    /// Serves one connection (any byte stream: plain TCP or TLS) until it ends; its slot is
    /// given back then.
    fn spawn_connection<R, W>(
        self: &Arc<Self>,
        rd: R,
        wr: W,
        peer: SocketAddr,
        slot: Slot,
        frames: mpsc::Sender<(Vec<u8>, SocketAddr)>,
        closed: mpsc::UnboundedSender<SocketAddr>,
    ) where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(256);
        let (allocated, mut allocated_rx) = watch::channel(false);
        self.lock_writers().insert(peer, Client { tx, allocated });
        self.stats.tcp_connections.fetch_add(1, Ordering::Relaxed);
        let writer = tokio::spawn(async move {
            let mut wr = wr;
            while let Some(frame) = rx.recv().await {
                if wr.write_all(&frame).await.is_err() {
                    break;
                }
            }
            let _ = wr.shutdown().await;
        });
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let _slot = slot;
            let mut rd = tokio::io::BufReader::with_capacity(16 * 1024, rd);
            let mut deadline = Instant::now() + UNALLOCATED;
            let mut last = Instant::now();
            // Ends at end of stream, on garbage, or at the deadline.
            loop {
                let read = read_frame(&mut rd);
                tokio::pin!(read);
                // The read is never cancelled (that would lose a partial frame); the deadline
                // moves while it runs when the connection gets or loses an allocation.
                let frame = loop {
                    tokio::select! {
                        r = &mut read => break r.ok().flatten(),
                        _ = tokio::time::sleep_until(deadline) => break None,
                        Ok(()) = allocated_rx.changed() => {
                            deadline = if *allocated_rx.borrow_and_update() {
                                last + IDLE
                            } else {
                                Instant::now() + UNALLOCATED
                            };
                        }
                    }
                };
                let Some(frame) = frame else { break };
                if frames.send((frame, peer)).await.is_err() {
                    break;
                }
                last = Instant::now();
                if *allocated_rx.borrow() {
                    deadline = last + IDLE;
                }
            }
            writer.abort();
            if let Some(me) = me.upgrade() {
                me.lock_writers().remove(&peer);
                me.stats.tcp_connections.fetch_sub(1, Ordering::Relaxed);
            }
            let _ = closed.send(peer);
        });
    }
}

#[async_trait]
impl webrtc_util::Conn for TcpPacketConn {
    async fn connect(&self, _addr: SocketAddr) -> webrtc_util::Result<()> {
        Err(webrtc_util::Error::Other("connect is not supported".into()))
    }
    async fn recv(&self, _buf: &mut [u8]) -> webrtc_util::Result<usize> {
        Err(webrtc_util::Error::Other("recv is not supported".into()))
    }
    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        let mut rx = self.frames.lock().await;
        loop {
            let (frame, from) = rx
                .recv()
                .await
                .ok_or_else(|| webrtc_util::Error::Other("the TCP listener has stopped".into()))?;
            match buf.get_mut(..frame.len()) {
                Some(dst) => {
                    dst.copy_from_slice(&frame);
                    return Ok((frame.len(), from));
                }
                None => self.stats.drop_packet(Dropped::Overflow),
            }
        }
    }
    async fn send(&self, _buf: &[u8]) -> webrtc_util::Result<usize> {
        Err(webrtc_util::Error::Other("send is not supported".into()))
    }
    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> webrtc_util::Result<usize> {
        let tx = self.lock_writers().get(&target).map(|c| c.tx.clone());
        // A too slow connection loses the packet, as UDP would; a gone one too, silently
        // (the answer to the Refresh that deleted its allocation goes there).
        if let Some(tx) = tx
            && tx.try_send(buf.to_vec()).is_err()
        {
            self.stats.drop_packet(Dropped::Overflow);
        }
        Ok(buf.len())
    }
    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        Ok(self.local)
    }
    fn remote_addr(&self) -> Option<SocketAddr> {
        None
    }
    async fn close(&self) -> webrtc_util::Result<()> {
        Ok(())
    }
    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_lengths() {
        // STUN: 20-byte header + length.
        assert_eq!(frame_len([0x00, 0x03, 0x00, 0x08]), Some(28));
        // ChannelData 0x4000 with 5 bytes: 4 + 5, padded to 12.
        assert_eq!(frame_len([0x40, 0x00, 0x00, 0x05]), Some(12));
        assert_eq!(frame_len([0x40, 0x00, 0x00, 0x04]), Some(8));
        assert_eq!(frame_len([0x80, 0, 0, 0]), None);
    }

    #[tokio::test]
    async fn a_stream_that_is_not_stun_is_refused() {
        // A TLS ClientHello looks like a STUN header by its first bits, but has no cookie.
        let mut bytes = vec![0x16, 0x03, 0x00, 0x08];
        bytes.extend(1..=24u8);
        let mut hello: &[u8] = &bytes;
        assert!(read_frame(&mut hello).await.is_err());
        let mut empty: &[u8] = &[];
        assert!(matches!(read_frame(&mut empty).await, Ok(None)));
    }
}
