//! Token buckets (per-allocation bandwidth caps, per-source limits on requests that carry no
//! valid credentials), allocation quotas (per username, source address and meeting) and the
//! TCP/TLS connection slots (in all and per source address).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::config::ipnet::canonical;

use crate::ratelimit::Bucket;

/// Most source addresses tracked at once. Above it, buckets that have refilled are forgotten;
/// if all are busy (a flood from many addresses), new sources are refused until some refill.
const MAX_SOURCES: usize = 65_536;

/// One token bucket per source ([`source_key`]).
pub struct SourceLimiter {
    rate: f64,
    burst: f64,
    sources: HashMap<IpAddr, Bucket>,
}

impl SourceLimiter {
    /// `per_second` requests per second and source, bursts of five seconds' worth (a browser
    /// gathering candidates sends a few at once; so does a meeting room full of people behind
    /// one NAT address).
    pub fn new(per_second: u32) -> SourceLimiter {
        let rate = f64::from(per_second.max(1));
        SourceLimiter {
            rate,
            burst: rate * 5.0,
            sources: HashMap::new(),
        }
    }

    /// Whether one more request from `ip` (its [`source_key`]) may be answered now.
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        let ip = source_key(ip);
        if let Some(b) = self.sources.get_mut(&ip) {
            return b.take(1.0, now);
        }
        if self.sources.len() >= MAX_SOURCES {
            self.sources.retain(|_, b| !b.is_full(now));
            if self.sources.len() >= MAX_SOURCES {
                return false;
            }
        }
        let mut b = Bucket::new(self.rate, self.burst, now);
        let ok = b.take(1.0, now);
        self.sources.insert(ip, b);
        ok
    }
}

/// The "one source" a per-address limit counts: the address itself for IPv4 (IPv4-mapped
/// IPv6 included), its /64 for IPv6, since one IPv6 subscriber gets at least a /64 and could
/// otherwise take a fresh address for every request.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// The meeting a TURN REST username belongs to: `expiry:meeting.participant` (what the
/// apiserver hands out). `None` for other usernames (`expiry:participant` from before meetings
/// were named, or coturn-style `expiry:anything`): those count per username and address only.
pub fn meeting_of(username: &str) -> Option<i64> {
    let (_, user) = username.split_once(':')?;
    // The number before the first dot, whatever follows: the apiserver's participant ids are
    // never empty, but `turn_credentials` names the meeting the same for any.
    let (meeting, _participant) = user.split_once('.')?;
    if meeting.is_empty() || !meeting.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    meeting.parse().ok()
}

/// What one allocation counts against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub username: String,
    /// [`source_key`] of the client's address.
    pub source: IpAddr,
    pub meeting: Option<i64>,
}

impl Claim {
    pub fn new(username: String, client: IpAddr) -> Claim {
        Claim {
            meeting: meeting_of(&username),
            source: source_key(client),
            username,
        }
    }
}

/// Which quota an Allocate ran into (each answered 486 Allocation Quota Reached).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaReached {
    User,
    Source,
    Meeting,
}

/// Allocations alive (or being created) per username, source address and meeting.
#[derive(Debug)]
pub struct Quotas {
    pub max_per_user: u32,
    pub max_per_source: u32,
    pub max_per_meeting: u32,
    users: HashMap<String, u32>,
    sources: HashMap<IpAddr, u32>,
    meetings: HashMap<i64, u32>,
}

impl Quotas {
    pub fn new(max_per_user: u32, max_per_source: u32, max_per_meeting: u32) -> Quotas {
        Quotas {
            max_per_user,
            max_per_source,
            max_per_meeting,
            users: HashMap::new(),
            sources: HashMap::new(),
            meetings: HashMap::new(),
        }
    }

    /// Counts one more allocation for `c`, or says which quota is full (counting nothing).
    pub fn take(&mut self, c: &Claim) -> Result<(), QuotaReached> {
        let n = |m: Option<&u32>| m.copied().unwrap_or(0);
        if n(self.users.get(&c.username)) >= self.max_per_user {
            return Err(QuotaReached::User);
        }
        if n(self.sources.get(&c.source)) >= self.max_per_source {
            return Err(QuotaReached::Source);
        }
        if let Some(m) = c.meeting
            && n(self.meetings.get(&m)) >= self.max_per_meeting
        {
            return Err(QuotaReached::Meeting);
        }
        *self.users.entry(c.username.clone()).or_insert(0) += 1;
        *self.sources.entry(c.source).or_insert(0) += 1;
        if let Some(m) = c.meeting {
            *self.meetings.entry(m).or_insert(0) += 1;
        }
        Ok(())
    }

    /// Gives back what [`Quotas::take`] counted for `c`.
    pub fn give_back(&mut self, c: &Claim) {
        fn dec<K: std::hash::Hash + Eq>(map: &mut HashMap<K, u32>, k: &K) {
            if let Some(n) = map.get_mut(k) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    map.remove(k);
                }
            }
        }
        dec(&mut self.users, &c.username);
        dec(&mut self.sources, &c.source);
        if let Some(m) = c.meeting {
            dec(&mut self.meetings, &m);
        }
    }

    /// Whether nothing is counted (every allocation given back).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.sources.is_empty() && self.meetings.is_empty()
    }
}

/// TCP and TLS connections (from accept on, the TLS handshake included), in all and per
/// source address ([`source_key`]). Shared by the TCP and the TLS listener.
#[derive(Debug)]
pub struct ConnectionSlots {
    max_total: usize,
    max_per_source: u32,
    taken: Mutex<(usize, HashMap<IpAddr, u32>)>,
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotRefused {
    Total,
    Source,
}

/// One connection's slot, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<ConnectionSlots>,
    source: IpAddr,
}

impl ConnectionSlots {
    pub fn new(max_total: usize, max_per_source: u32) -> Arc<ConnectionSlots> {
        Arc::new(ConnectionSlots {
            max_total,
            max_per_source,
            taken: Mutex::new((0, HashMap::new())),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, HashMap<IpAddr, u32>)> {
        // Poisoning would need a panic while holding the lock; the counts stay usable.
        self.taken.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn take(self: &Arc<Self>, peer: IpAddr) -> Result<Slot, SlotRefused> {
        let source = source_key(peer);
        let mut t = self.lock();
        if t.0 >= self.max_total {
            return Err(SlotRefused::Total);
        }
        let n = t.1.entry(source).or_insert(0);
        if *n >= self.max_per_source {
            return Err(SlotRefused::Source);
        }
        *n += 1;
        t.0 += 1;
        Ok(Slot {
            slots: self.clone(),
            source,
        })
    }

    /// Connections open now (in all, from `peer`'s source).
    pub fn count(&self, peer: IpAddr) -> (usize, u32) {
        let t = self.lock();
        (t.0, t.1.get(&source_key(peer)).copied().unwrap_or(0))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut t = self.slots.lock();
        t.0 = t.0.saturating_sub(1);
        if let Some(n) = t.1.get_mut(&self.source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                t.1.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn meetings_are_read_from_new_usernames_only() {
        assert_eq!(meeting_of("1700000000:42.pAbC-_x"), Some(42));
        assert_eq!(meeting_of("1700000000:pAbC-_x"), None);
        assert_eq!(meeting_of("1700000000:alice"), None);
        assert_eq!(meeting_of("1700000000"), None);
        // Found by fuzzing (fuzz/regressions/tokens): an empty participant id still names
        // its meeting, as `turn_credentials` writes it.
        assert_eq!(meeting_of("1700000000:42."), Some(42));
        assert_eq!(meeting_of("1700000000:.p"), None);
        assert_eq!(meeting_of("1700000000:-1.p"), None);
        assert_eq!(meeting_of("1700000000:99999999999999999999.p"), None);
        assert_eq!(meeting_of("1:7.p.q:r"), Some(7));
        // What the apiserver hands out.
        let keys = crate::tokens::Keys::derive("s");
        let (u, _) = keys.turn_credentials(
            crate::ids::MeetingId(42),
            &crate::ids::ParticipantId::random(),
            1_700_000_000,
        );
        assert_eq!(meeting_of(&u), Some(42), "{u}");
    }

    #[test]
    fn sources_are_addresses_and_ipv6_64s() {
        assert_eq!(source_key(ip("192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(source_key(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(source_key(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
        assert_eq!(
            source_key(ip("2001:db8:1:2::9")),
            source_key(ip("2001:db8:1:2:ffff::1"))
        );
        assert_ne!(
            source_key(ip("2001:db8:1:2::9")),
            source_key(ip("2001:db8:1:3::9"))
        );
    }

    #[test]
    fn quotas_per_user_source_and_meeting() {
        let mut q = Quotas::new(2, 3, 4);
        let a = ip("192.0.2.1");
        let b = ip("192.0.2.2");
        let c = |u: &str, from| Claim::new(u.into(), from);
        // Per user: the third of one username is refused.
        assert_eq!(q.take(&c("9:1.p1", a)), Ok(()));
        assert_eq!(q.take(&c("9:1.p1", a)), Ok(()));
        assert_eq!(q.take(&c("9:1.p1", b)), Err(QuotaReached::User));
        // Per source: a fresh username from the same address is refused at 3.
        assert_eq!(q.take(&c("9:1.p2", a)), Ok(()));
        assert_eq!(q.take(&c("9:2.p3", a)), Err(QuotaReached::Source));
        // Per meeting: meeting 1 holds 3; one more from another address, then full.
        assert_eq!(q.take(&c("9:1.p4", b)), Ok(()));
        assert_eq!(q.take(&c("9:1.p5", b)), Err(QuotaReached::Meeting));
        // Old usernames count per user and source only.
        assert_eq!(q.take(&c("9:p6", b)), Ok(()));
        // A refusal counted nothing; giving everything back empties the books.
        for (u, from) in [
            ("9:1.p1", a),
            ("9:1.p1", a),
            ("9:1.p2", a),
            ("9:1.p4", b),
            ("9:p6", b),
        ] {
            q.give_back(&c(u, from));
        }
        assert!(q.is_empty(), "{q:?}");
    }

    #[test]
    fn connection_slots_in_all_and_per_source() {
        let s = ConnectionSlots::new(3, 2);
        let a = ip("192.0.2.1");
        let one = s.take(a).expect("1");
        let two = s.take(a).expect("2");
        assert_eq!(s.take(a).err(), Some(SlotRefused::Source));
        let three = s.take(ip("192.0.2.2")).expect("another source");
        assert_eq!(s.take(ip("192.0.2.3")).err(), Some(SlotRefused::Total));
        drop(one);
        assert_eq!(s.count(a), (2, 1));
        let _again = s.take(a).expect("a slot was given back");
        drop((two, three));
        assert_eq!(s.count(a), (1, 1));
    }

    #[test]
    fn limiter_is_per_source() {
        let t0 = Instant::now();
        let mut l = SourceLimiter::new(2);
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        assert_eq!((0..20).filter(|_| l.allow(a, t0)).count(), 10);
        assert!(l.allow(b, t0));
        assert!(l.allow(a, t0 + Duration::from_secs(1)));
    }
}
