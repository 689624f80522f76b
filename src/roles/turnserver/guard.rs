//! The guard: a packet connection between the network and the `turn` crate that reads every
//! STUN request before the crate does, and adds what the crate lacks (TURN-NOTES.md):
//!
//! - **Credentials, checked first.** Requests without MESSAGE-INTEGRITY get a 401 from the
//!   guard itself, with a *stateless* nonce (a timestamp and an HMAC of it and the client's
//!   address). Authenticated requests must carry such a nonce, a REST username that has not
//!   expired, our realm, and a MESSAGE-INTEGRITY made with the right password; otherwise 401
//!   (or 438 for an old nonce). Only then does the crate see the request, with the nonce
//!   swapped for one the crate issued to the guard and the integrity recomputed with the same
//!   key. So the crate's nonce table (which grows by one entry per unauthenticated request and
//!   is never pruned) holds a handful of entries, and nothing unauthenticated reaches it.
//! - **Rate limits** on everything without valid credentials, per source address.
//! - **403 Forbidden** for CreatePermission/ChannelBind to refused peers (the crate would say
//!   yes; the relay socket would then drop the packets silently).
//! - **486 Allocation Quota Reached** per username, per source address and per meeting (read
//!   from the username), counting allocations from the crate's answers and close
//!   notifications. Each allocation's claim is kept with it, so it is given back exactly once.
//! - **Lifetime cap**, and **DONT-FRAGMENT accepted** (the crate answers 420 to it): both by
//!   rewriting the request before re-signing it.
//! - **437 Allocation Mismatch** for requests and data from clients without an allocation,
//!   instead of the crate's error log line per packet.
//! - **TCP**: when a TURN-over-TCP connection ends, its allocation is deleted at once (an
//!   injected, signed Refresh with lifetime 0), not after its lifetime; and the connection
//!   learns when it holds an allocation (only then may it stay idle for long, see `tcp.rs`).
//!
//! The nonces are in `nonce.rs`, the messages the guard rewrites and writes in `messages.rs`.
//!
//! The crate runs each listener's requests one at a time in one task (`Server::read_loop`):
//! `recv_from`, handle, `recv_from`... The guard relies on that to fetch the crate's nonce: it
//! returns a synthetic unauthenticated Refresh from [`SYNTH`], and the crate's 401 answer,
//! sent to [`SYNTH`] before the next `recv_from`, is caught in `send_to`.

use super::relay::transient;
use async_trait::async_trait;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use stun::agent::TransactionId;
use stun::attributes::*;
use stun::error_code::*;
use stun::integrity::MessageIntegrity;
use stun::message::*;
use stun::textattrs::TextAttribute;
use tokio::sync::mpsc;
use webrtc_util::Conn;

use super::auth::{AuthReject, RestAuth};
use super::limits::{Claim, QuotaReached, Quotas, SourceLimiter};
use super::messages::{Rewrite, answer, challenge, xor_peer_addresses};
use super::nonce::NonceSigner;
use super::policy::PeerPolicy;
use super::stats::{Rejected, TurnStats};
use super::tcp::TcpPacketConn;

/// The made-up source of the guard's own requests to the crate.
pub const SYNTH: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
/// The crate refuses its own nonces after an hour; the guard fetches a new one before that.
const CRATE_NONCE_REFRESH: Duration = Duration::from_secs(50 * 60);
const CRATE_NONCE_MAX_AGE: Duration = Duration::from_secs(55 * 60);
/// The crate's allocation lifetime when a request names none (RFC 8656: 10 minutes).
const DEFAULT_LIFETIME: u32 = 600;
/// The crate turns any LIFETIME of an hour or more into the default; stay below.
pub const MAX_LIFETIME: u32 = 3599;
/// Allocate requests the crate has not answered within this time are forgotten.
const PENDING_TTL: Duration = Duration::from_secs(30);
const MAX_DEFERRED: usize = 1024;

/// What the UDP and the TCP guard share.
pub struct GuardShared {
    pub auth: RestAuth,
    pub policy: Arc<PeerPolicy>,
    pub stats: Arc<TurnStats>,
    pub limiter: Mutex<SourceLimiter>,
    /// Allocations per username, source and meeting, including those the crate is still
    /// creating; shared by every listener.
    pub quotas: Mutex<Quotas>,
    /// Seconds, at most [`MAX_LIFETIME`].
    pub max_lifetime: u32,
    /// Signs the guard's nonces; random per process (a restart makes clients re-challenge).
    pub nonces: NonceSigner,
}

impl GuardShared {
    fn release(&self, claim: &Claim) {
        lock(&self.quotas).give_back(claim);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks would be a bug; the data stays usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Credentials a TCP client last used, to delete its allocation when it disconnects.
struct Creds {
    username: String,
    realm: String,
    key: Vec<u8>,
}

#[derive(Default)]
struct State {
    crate_nonce: Option<(String, Instant)>,
    /// A synthetic request went to the crate and its answer has not been seen yet.
    fetching: bool,
    fetch_failed: Option<Instant>,
    deferred: VecDeque<Rewrite>,
    /// Allocate transaction id → (what it counts against, when).
    pending: HashMap<[u8; 12], (Claim, Instant)>,
    /// Clients with an allocation on this listener, and what it counts against.
    allocated: HashMap<SocketAddr, Claim>,
    tcp_clients: HashMap<SocketAddr, Creds>,
}

enum Verdict {
    Pass(usize),
    Drop,
    Reply(Vec<u8>),
    Deferred,
}

enum Next {
    Packet(usize, SocketAddr),
    Closed(SocketAddr),
}

pub struct Guard {
    inner: Arc<dyn Conn + Send + Sync>,
    shared: Arc<GuardShared>,
    state: Mutex<State>,
    /// TCP only: addresses of connections that ended.
    closed: Option<tokio::sync::Mutex<mpsc::UnboundedReceiver<SocketAddr>>>,
    /// TCP only: the connections, told which of them hold an allocation.
    tcp: Option<Arc<TcpPacketConn>>,
}

impl Guard {
    /// The guard of a packet listener (UDP).
    pub fn new(inner: Arc<dyn Conn + Send + Sync>, shared: Arc<GuardShared>) -> Guard {
        Guard {
            inner,
            shared,
            state: Mutex::new(State::default()),
            closed: None,
            tcp: None,
        }
    }

    /// The guard of a TCP or TLS listener, with the channel of its ended connections.
    pub fn new_tcp(
        conn: Arc<TcpPacketConn>,
        shared: Arc<GuardShared>,
        closed: mpsc::UnboundedReceiver<SocketAddr>,
    ) -> Guard {
        Guard {
            inner: conn.clone(),
            shared,
            state: Mutex::new(State::default()),
            closed: Some(tokio::sync::Mutex::new(closed)),
            tcp: Some(conn),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// The crate closed an allocation (lifetime over, Refresh 0, shutdown).
    pub fn allocation_closed(&self, client: SocketAddr) {
        let Some(claim) = self.state().allocated.remove(&client) else {
            return;
        };
        self.shared.release(&claim);
        self.shared
            .stats
            .allocations
            .fetch_sub(1, Ordering::Relaxed);
        if let Some(tcp) = &self.tcp {
            tcp.set_allocated(client, false);
        }
    }

    /// Work that comes before reading the network: fetching the crate's nonce, handing over
    /// a request that waited for it.
    fn prelude(&self, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
        let now = Instant::now();
        let mut st = self.state();
        if st.fetching {
            // The crate did not answer the synthetic request (that would be a bug).
            st.fetching = false;
            if !usable(&st.crate_nonce, now) {
                tracing::error!(
                    "the TURN engine gave no nonce; authenticated requests are dropped for 5 s"
                );
                st.fetch_failed = Some(now);
                for _ in st.deferred.drain(..) {
                    self.shared.stats.reject(Rejected::Malformed);
                }
            }
        }
        let need = st
            .crate_nonce
            .as_ref()
            .is_none_or(|(_, t)| now.saturating_duration_since(*t) > CRATE_NONCE_REFRESH);
        let may = st
            .fetch_failed
            .is_none_or(|t| now.saturating_duration_since(t) > Duration::from_secs(5));
        if need && may {
            let mut m = Message::new();
            let built = m.build(&[
                Box::new(TransactionId::new()),
                Box::new(MessageType::new(METHOD_REFRESH, CLASS_REQUEST)),
            ]);
            if built.is_ok() && m.raw.len() <= buf.len() {
                buf[..m.raw.len()].copy_from_slice(&m.raw);
                st.fetching = true;
                return Some((m.raw.len(), SYNTH));
            }
        }
        while let Some(job) = st.deferred.pop_front() {
            let Some(nonce) = st
                .crate_nonce
                .as_ref()
                .filter(|(_, t)| now.saturating_duration_since(*t) < CRATE_NONCE_MAX_AGE)
                .map(|(n, _)| n.clone())
            else {
                st.deferred.push_front(job);
                break;
            };
            match job.finish(&nonce) {
                Ok(raw) if raw.len() <= buf.len() => {
                    buf[..raw.len()].copy_from_slice(&raw);
                    return Some((raw.len(), job.src));
                }
                _ => self.shared.stats.reject(Rejected::Malformed),
            }
        }
        None
    }

    async fn next_packet(&self, buf: &mut [u8]) -> webrtc_util::Result<Next> {
        loop {
            let r = match &self.closed {
                Some(closed) => {
                    // Only the crate's read loop gets here, one call at a time.
                    let mut closed = closed.lock().await;
                    tokio::select! {
                        biased;
                        Some(addr) = closed.recv() => return Ok(Next::Closed(addr)),
                        r = self.inner.recv_from(buf) => r,
                    }
                }
                None => self.inner.recv_from(buf).await,
            };
            match r {
                Ok((n, src)) => return Ok(Next::Packet(n, src)),
                // An ICMP error for an earlier datagram: the listener itself is fine.
                Err(webrtc_util::Error::Io(e)) if transient(&e.0) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// A TCP client went away: delete its allocation now rather than at its expiry.
    fn tcp_closed(&self, addr: SocketAddr) {
        let mut st = self.state();
        let Some(c) = st.tcp_clients.remove(&addr) else {
            return;
        };
        if !st.allocated.contains_key(&addr) {
            return;
        }
        let mut msg = Message::new();
        let built = msg.build(&[
            Box::new(TransactionId::new()),
            Box::new(MessageType::new(METHOD_REFRESH, CLASS_REQUEST)),
            Box::new(TextAttribute::new(ATTR_USERNAME, c.username)),
            Box::new(TextAttribute::new(ATTR_REALM, c.realm)),
            Box::new(TextAttribute::new(ATTR_NONCE, String::new())),
            Box::new(turn::proto::lifetime::Lifetime(Duration::ZERO)),
        ]);
        if built.is_ok() && st.deferred.len() < MAX_DEFERRED {
            st.deferred.push_back(Rewrite {
                msg,
                key: c.key,
                strip_dont_fragment: false,
                lifetime: None,
                src: addr,
            });
        }
    }

    fn limit(&self, src: SocketAddr, now: Instant) -> bool {
        let ok = lock(&self.shared.limiter).allow(src.ip(), now);
        if !ok {
            self.shared.stats.reject(Rejected::RateLimited);
        }
        ok
    }

    fn inspect(&self, buf: &mut [u8], n: usize, src: SocketAddr) -> Verdict {
        let stats = &self.shared.stats;
        let Some(data) = buf.get(..n) else {
            return Verdict::Drop;
        };
        if n >= 4 && data[0] >> 6 == 1 {
            // ChannelData: the hot path; one set lookup.
            return if self.state().allocated.contains_key(&src) {
                Verdict::Pass(n)
            } else {
                stats.reject(Rejected::Malformed);
                Verdict::Drop
            };
        }
        if !is_message(data) {
            stats.reject(Rejected::Malformed);
            return Verdict::Drop;
        }
        let mut m = Message::new();
        m.raw.clear();
        m.raw.extend_from_slice(data);
        if m.decode().is_err() {
            stats.reject(Rejected::Malformed);
            return Verdict::Drop;
        }
        let now = Instant::now();
        match (m.typ.class, m.typ.method) {
            (CLASS_INDICATION, METHOD_SEND) if self.state().allocated.contains_key(&src) => {
                Verdict::Pass(n)
            }
            (CLASS_REQUEST, METHOD_BINDING) => {
                if self.limit(src, now) {
                    Verdict::Pass(n)
                } else {
                    Verdict::Drop
                }
            }
            (
                CLASS_REQUEST,
                METHOD_ALLOCATE | METHOD_REFRESH | METHOD_CREATE_PERMISSION | METHOD_CHANNEL_BIND,
            ) => self.request(m, src, buf, now),
            _ => {
                stats.reject(Rejected::Malformed);
                Verdict::Drop
            }
        }
    }

    fn request(&self, m: Message, src: SocketAddr, buf: &mut [u8], now: Instant) -> Verdict {
        let stats = &self.shared.stats;
        let unix = u64::try_from(crate::util::now()).unwrap_or(0);
        // Anything refused before the credentials are known is rate limited.
        let refuse = |why: Option<Rejected>, answer: Vec<u8>| {
            if !self.limit(src, now) {
                return Verdict::Drop;
            }
            if let Some(why) = why {
                stats.reject(why);
            }
            Verdict::Reply(answer)
        };
        if !m.contains(ATTR_MESSAGE_INTEGRITY) {
            return refuse(None, self.challenge(&m, CODE_UNAUTHORIZED, src, unix));
        }
        let text = |t| TextAttribute::get_from_as(&m, t).map(|a| a.text);
        let (Ok(nonce), Ok(username), Ok(realm)) =
            (text(ATTR_NONCE), text(ATTR_USERNAME), text(ATTR_REALM))
        else {
            return refuse(
                Some(Rejected::Malformed),
                answer(&m, CODE_BAD_REQUEST, None),
            );
        };
        if !self.shared.nonces.valid(&nonce, src.ip(), unix) {
            return refuse(
                Some(Rejected::StaleNonce),
                self.challenge(&m, CODE_STALE_NONCE, src, unix),
            );
        }
        let key =
            match self
                .shared
                .auth
                .key(&username, &realm, i64::try_from(unix).unwrap_or(i64::MAX))
            {
                Ok(k) => k,
                Err(why) => {
                    let why = match why {
                        AuthReject::Expired => Rejected::ExpiredCredentials,
                        AuthReject::WrongRealm => Rejected::WrongRealm,
                        AuthReject::Malformed => Rejected::BadCredentials,
                    };
                    return refuse(Some(why), self.challenge(&m, CODE_UNAUTHORIZED, src, unix));
                }
            };
        if MessageIntegrity(key.clone()).check(&mut m.clone()).is_err() {
            return refuse(
                Some(Rejected::BadCredentials),
                self.challenge(&m, CODE_UNAUTHORIZED, src, unix),
            );
        }

        // Authenticated. From here on, answers are signed with the client's key.
        let mut st = self.state();
        if self.closed.is_some() {
            st.tcp_clients.insert(
                src,
                Creds {
                    username: username.clone(),
                    realm,
                    key: key.clone(),
                },
            );
        }
        let has_allocation = st.allocated.contains_key(&src);
        let method = m.typ.method;
        let mut job = Rewrite {
            msg: m,
            key,
            strip_dont_fragment: false,
            lifetime: None,
            src,
        };
        let m = &job.msg;
        match method {
            METHOD_ALLOCATE => {
                self.forget_stale_pending(&mut st, now);
                // A client with an allocation (the crate answers 437) or a retransmission of a
                // pending Allocate is not counted again.
                if !has_allocation && !st.pending.contains_key(&m.transaction_id.0) {
                    let claim = Claim::new(username, src.ip());
                    if let Err(full) = lock(&self.shared.quotas).take(&claim) {
                        stats.reject(match full {
                            QuotaReached::User => Rejected::Quota,
                            QuotaReached::Source => Rejected::QuotaSource,
                            QuotaReached::Meeting => Rejected::QuotaMeeting,
                        });
                        return Verdict::Reply(answer(m, CODE_ALLOC_QUOTA_REACHED, Some(&job.key)));
                    }
                    st.pending.insert(m.transaction_id.0, (claim, now));
                }
                job.strip_dont_fragment = m.contains(ATTR_DONT_FRAGMENT);
                job.lifetime = self.capped_lifetime(m);
            }
            METHOD_REFRESH => {
                if !has_allocation {
                    return Verdict::Reply(answer(m, CODE_ALLOC_MISMATCH, Some(&job.key)));
                }
                job.lifetime = self.capped_lifetime(m);
            }
            _ => {
                if !has_allocation {
                    return Verdict::Reply(answer(m, CODE_ALLOC_MISMATCH, Some(&job.key)));
                }
                if xor_peer_addresses(m)
                    .iter()
                    .any(|p| !self.shared.policy.allows(*p))
                {
                    stats.reject(Rejected::ForbiddenPeer);
                    return Verdict::Reply(answer(m, CODE_FORBIDDEN, Some(&job.key)));
                }
            }
        }
        let nonce = st
            .crate_nonce
            .as_ref()
            .filter(|(_, t)| now.saturating_duration_since(*t) < CRATE_NONCE_MAX_AGE)
            .map(|(n, _)| n.clone());
        match nonce {
            Some(nonce) => match job.finish(&nonce) {
                Ok(raw) if raw.len() <= buf.len() => {
                    buf[..raw.len()].copy_from_slice(&raw);
                    Verdict::Pass(raw.len())
                }
                _ => {
                    stats.reject(Rejected::Malformed);
                    Verdict::Drop
                }
            },
            None if st.deferred.len() < MAX_DEFERRED => {
                st.deferred.push_back(job);
                Verdict::Deferred
            }
            None => Verdict::Drop,
        }
    }

    fn forget_stale_pending(&self, st: &mut State, now: Instant) {
        let stale: Vec<[u8; 12]> = st
            .pending
            .iter()
            .filter(|(_, (_, t))| now.saturating_duration_since(*t) > PENDING_TTL)
            .map(|(k, _)| *k)
            .collect();
        for k in stale {
            if let Some((claim, _)) = st.pending.remove(&k) {
                self.shared.release(&claim);
            }
        }
    }

    /// The LIFETIME to write instead of the requested one, if it is above the cap.
    fn capped_lifetime(&self, m: &Message) -> Option<u32> {
        let requested = m
            .get(ATTR_LIFETIME)
            .ok()
            .and_then(|v| <[u8; 4]>::try_from(v.as_slice()).ok())
            .map(u32::from_be_bytes)
            .unwrap_or(DEFAULT_LIFETIME);
        (requested > self.shared.max_lifetime).then_some(self.shared.max_lifetime)
    }

    /// 401 or 438 with our realm and a fresh nonce for this client.
    fn challenge(&self, m: &Message, code: ErrorCode, src: SocketAddr, unix: u64) -> Vec<u8> {
        let nonce = self.shared.nonces.issue(src.ip(), unix);
        challenge(m, code, self.shared.auth.realm(), nonce)
    }
}

impl Guard {
    /// The crate's answer to an Allocate, success (0x0103) or error (0x0113), going to
    /// `target`: settles the pending request's claim.
    fn settle(&self, buf: &[u8], target: SocketAddr) {
        if buf.len() < 20 || buf[0] != 0x01 || (buf[1] != 0x03 && buf[1] != 0x13) {
            return;
        }
        let mut tid = [0u8; 12];
        tid.copy_from_slice(&buf[8..20]);
        let mut st = self.state();
        let Some((claim, _)) = st.pending.remove(&tid) else {
            return;
        };
        if buf[1] == 0x13 {
            drop(st);
            self.shared.release(&claim);
            return;
        }
        let s = &self.shared.stats;
        match st.allocated.insert(target, claim) {
            // The crate allows one allocation per client; should a second ever succeed,
            // the first's claim is not counted twice.
            Some(old) => {
                drop(st);
                self.shared.release(&old);
            }
            None => {
                drop(st);
                s.allocations.fetch_add(1, Ordering::Relaxed);
            }
        }
        s.allocations_created.fetch_add(1, Ordering::Relaxed);
        if let Some(tcp) = &self.tcp {
            tcp.set_allocated(target, true);
        }
    }
}

fn usable(nonce: &Option<(String, Instant)>, now: Instant) -> bool {
    nonce
        .as_ref()
        .is_some_and(|(_, t)| now.saturating_duration_since(*t) < CRATE_NONCE_MAX_AGE)
}

#[async_trait]
impl Conn for Guard {
    async fn connect(&self, _addr: SocketAddr) -> webrtc_util::Result<()> {
        Err(webrtc_util::Error::Other("connect is not supported".into()))
    }
    async fn recv(&self, _buf: &mut [u8]) -> webrtc_util::Result<usize> {
        Err(webrtc_util::Error::Other("recv is not supported".into()))
    }
    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        loop {
            if let Some(out) = self.prelude(buf) {
                return Ok(out);
            }
            let (n, src) = match self.next_packet(buf).await? {
                Next::Packet(n, src) => (n, src),
                Next::Closed(addr) => {
                    self.tcp_closed(addr);
                    continue;
                }
            };
            match self.inspect(buf, n, src) {
                Verdict::Pass(len) => return Ok((len, src)),
                Verdict::Drop | Verdict::Deferred => {}
                Verdict::Reply(answer) => {
                    let _ = self.inner.send_to(&answer, src).await;
                }
            }
        }
    }
    async fn send(&self, _buf: &[u8]) -> webrtc_util::Result<usize> {
        Err(webrtc_util::Error::Other("send is not supported".into()))
    }
    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> webrtc_util::Result<usize> {
        if target == SYNTH {
            // The crate's answer to the guard's own request: keep its nonce.
            let mut m = Message::new();
            m.raw.clear();
            m.raw.extend_from_slice(buf);
            let nonce = m
                .decode()
                .ok()
                .and_then(|_| TextAttribute::get_from_as(&m, ATTR_NONCE).ok());
            let mut st = self.state();
            st.fetching = false;
            if let Some(n) = nonce {
                st.crate_nonce = Some((n.text, Instant::now()));
                st.fetch_failed = None;
            }
            return Ok(buf.len());
        }
        self.settle(buf, target);
        self.inner.send_to(buf, target).await
    }
    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        self.inner.local_addr()
    }
    fn remote_addr(&self) -> Option<SocketAddr> {
        None
    }
    /// Never closes the listener: the crate calls this whenever an allocation closes.
    async fn close(&self) -> webrtc_util::Result<()> {
        Ok(())
    }
    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

/// A listener that drops everything (the fuzz entry point's).
struct NullConn;

#[async_trait]
impl Conn for NullConn {
    async fn connect(&self, _addr: SocketAddr) -> webrtc_util::Result<()> {
        Ok(())
    }
    async fn recv(&self, _buf: &mut [u8]) -> webrtc_util::Result<usize> {
        Err(webrtc_util::Error::Other("nothing to receive".into()))
    }
    async fn recv_from(&self, _buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        Err(webrtc_util::Error::Other("nothing to receive".into()))
    }
    async fn send(&self, buf: &[u8]) -> webrtc_util::Result<usize> {
        Ok(buf.len())
    }
    async fn send_to(&self, buf: &[u8], _target: SocketAddr) -> webrtc_util::Result<usize> {
        Ok(buf.len())
    }
    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        Ok(SocketAddr::from(([192, 0, 2, 100], 3478)))
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

/// `input` as a series of records `[flags, source, length (2 bytes, big-endian), bytes…]`,
/// each given to a UDP guard as a datagram from one of 8 sources; see
/// [`crate::roles::turnserver::fuzz_guard`]. Returns how many allocations were created and
/// how many Allocates were refused for a quota.
pub fn fuzz(input: &[u8]) -> (u64, u64) {
    const REALM: &str = "fuzz";
    let auth = RestAuth::new("fuzz-turn-secret", REALM);
    let shared = Arc::new(GuardShared {
        auth: auth.clone(),
        policy: Arc::new(PeerPolicy::default()),
        stats: Arc::new(TurnStats::default()),
        limiter: Mutex::new(SourceLimiter::new(1_000_000)),
        // Small quotas, so that inputs reach every refusal.
        quotas: Mutex::new(Quotas::new(3, 4, 5)),
        max_lifetime: 600,
        nonces: NonceSigner::new([7; 32]),
    });
    let guard = Guard::new(Arc::new(NullConn), shared.clone());
    guard.state().crate_nonce = Some(("crate-nonce".into(), Instant::now()));
    let unix = u64::try_from(crate::util::now()).unwrap_or(0);
    let mut rest = input;
    while let [flags, source, l0, l1, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*l0, *l1])).min(tail.len());
        let (data, next) = tail.split_at(len);
        rest = next;
        let src = SocketAddr::from((
            [192, 0, 2, 1 + (source & 3)],
            1000 + u16::from(source >> 2 & 1),
        ));
        let mut buf = vec![0u8; 1500];
        let packet = if flags & 1 == 1 {
            // Signed with valid credentials, to reach what comes after authentication.
            let username = match flags >> 5 {
                0 => "4000000000:p-old-form".to_string(),
                n => format!("4000000000:{}.p{}", n & 3, source & 7),
            };
            match signed(
                data,
                &username,
                REALM,
                &shared.nonces.issue(src.ip(), unix),
                &auth,
                flags & 2 == 2,
            ) {
                Some(p) => p,
                None => continue,
            }
        } else {
            data.to_vec()
        };
        let n = packet.len().min(buf.len());
        buf[..n].copy_from_slice(&packet[..n]);
        let verdict = guard.inspect(&mut buf, n, src);
        if let Verdict::Pass(len) = verdict
            && len >= 20
            && buf[0..2] == [0x00, 0x03]
        {
            // What the crate would answer to the Allocate it was handed.
            let mut reply = vec![0x01, if flags & 4 == 4 { 0x03 } else { 0x13 }, 0, 0];
            reply.extend_from_slice(&buf[4..20]);
            guard.settle(&reply, src);
        }
        if flags & 8 == 8 {
            guard.allocation_closed(src);
        }
    }
    // Every allocation ends, every pending Allocate is answered: nothing stays counted.
    let (pending, allocated): (Vec<[u8; 12]>, Vec<SocketAddr>) = {
        let st = guard.state();
        (
            st.pending.keys().copied().collect(),
            st.allocated.keys().copied().collect(),
        )
    };
    for tid in pending {
        let mut reply = vec![0x01, 0x13, 0, 0, 0x21, 0x12, 0xA4, 0x42];
        reply.extend_from_slice(&tid);
        guard.settle(&reply, SYNTH);
    }
    for a in allocated {
        guard.allocation_closed(a);
    }
    assert!(
        lock(&shared.quotas).is_empty(),
        "claims left counted: {:?}",
        lock(&shared.quotas)
    );
    assert_eq!(shared.stats.allocations.load(Ordering::Relaxed), 0);
    let st = &shared.stats;
    (
        st.allocations_created.load(Ordering::Relaxed),
        [
            Rejected::Quota,
            Rejected::QuotaSource,
            Rejected::QuotaMeeting,
        ]
        .iter()
        .map(|r| st.rejected(*r))
        .sum(),
    )
}

/// `data` decoded as STUN and signed with `username`'s key, or `None` if it does not decode.
fn signed(
    data: &[u8],
    username: &str,
    realm: &str,
    nonce: &str,
    auth: &RestAuth,
    fingerprint: bool,
) -> Option<Vec<u8>> {
    let mut m = Message::new();
    m.raw.clear();
    m.raw.extend_from_slice(data);
    m.decode().ok()?;
    let key = auth.key(username, realm, 0).ok()?;
    let mut out = Message::new();
    out.typ = m.typ;
    out.transaction_id = m.transaction_id;
    out.write_header();
    for a in &m.attributes.0 {
        match a.typ {
            ATTR_USERNAME | ATTR_REALM | ATTR_NONCE | ATTR_MESSAGE_INTEGRITY | ATTR_FINGERPRINT => {
            }
            _ => out.add(a.typ, &a.value),
        }
    }
    out.add(ATTR_USERNAME, username.as_bytes());
    out.add(ATTR_REALM, realm.as_bytes());
    out.add(ATTR_NONCE, nonce.as_bytes());
    MessageIntegrity(key).add_to(&mut out).ok()?;
    if fingerprint {
        stun::fingerprint::FINGERPRINT.add_to(&mut out).ok()?;
    }
    Some(out.raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(flags: u8, source: u8, data: &[u8]) -> Vec<u8> {
        let mut v = vec![flags, source];
        v.extend_from_slice(&u16::try_from(data.len()).expect("short").to_be_bytes());
        v.extend_from_slice(data);
        v
    }

    /// The fuzz entry point reaches what is behind authentication: allocations are made and
    /// quotas refuse (user 3, source 4, meeting 5 there), and everything is given back.
    #[test]
    fn fuzz_entry_reaches_allocations_and_quotas() {
        let mut alloc = Message::new();
        alloc
            .build(&[
                Box::new(TransactionId::new()),
                Box::new(MessageType::new(METHOD_ALLOCATE, CLASS_REQUEST)),
                Box::new(turn::proto::reqtrans::RequestedTransport {
                    protocol: turn::proto::PROTO_UDP,
                }),
            ])
            .expect("build");
        // Meeting 1 (bits 5-7 = 1) from sources 0..8: port 1000 and 1001 of 4 addresses.
        let mut input = Vec::new();
        for source in 0..8u8 {
            let mut m = alloc.clone();
            m.transaction_id = TransactionId::new();
            m.write_transaction_id();
            input.extend(record(1 | 4 | 0x20, source, &m.raw));
        }
        let (created, refused) = fuzz(&input);
        assert_eq!((created, refused), (5, 3), "the meeting's 5, then 486");
        // Unsigned, the same never gets past the 401.
        let unsigned: Vec<u8> = (0..8u8).flat_map(|s| record(4, s, &alloc.raw)).collect();
        assert_eq!(fuzz(&unsigned), (0, 0));
    }
}
