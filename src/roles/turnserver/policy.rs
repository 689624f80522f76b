//! Which peers a TURN allocation may relay to: the fix for "TURN as SSRF".
//!
//! A TURN server relays UDP for anyone holding credentials, and every participant holds some.
//! Without a policy, a participant could ask it to send to `127.0.0.1:53`, `10.0.0.5:161` or
//! the cloud metadata service at `169.254.169.254`: addresses only the server can reach.
//! So peers in loopback, private, link-local, multicast and reserved ranges are refused, and
//! so are this box's own addresses (every interface's, and the configured public IP of a
//! cloud VM behind 1:1 NAT, which no interface has): a public address of the box reaches its
//! own services (the apiserver, `/metrics`, a database) from the box itself. Except:
//! - ranges the operator lists in `turn.allowed_peers` (listing one of the box's own
//!   addresses opens it too);
//! - this deployment's own sfuservers (a single box relays to its own SFU, often on loopback
//!   or a private address, and that must work with no extra setting);
//! - this server's own live relay addresses (two participants both behind strict firewalls
//!   meet through two allocations on this server).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::{Arc, RwLock};

use crate::config::IpNet;
use crate::config::ipnet::canonical;

/// A peer that is always allowed: an address and a port range (an sfuserver's media ports).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedPeer {
    pub ip: IpAddr,
    pub ports: RangeInclusive<u16>,
}

impl TrustedPeer {
    fn matches(&self, peer: SocketAddr) -> bool {
        canonical(peer.ip()) == canonical(self.ip) && self.ports.contains(&peer.port())
    }
}

/// Peers learned at run time (the sfuservers the node registry reports), shared with the
/// relays.
pub type TrustedPeers = Arc<RwLock<Vec<TrustedPeer>>>;

#[derive(Clone, Debug, Default)]
pub struct PeerPolicy {
    pub allowed: Vec<IpNet>,
    pub trusted: Vec<TrustedPeer>,
    /// The deployment's sfuservers as the node registry reports them (split deployment).
    pub learned: TrustedPeers,
    /// The relayed addresses of this server's live allocations (kept by `relay.rs`).
    pub relays: Arc<RwLock<HashSet<SocketAddr>>>,
    /// This box's own addresses.
    pub own: OwnAddresses,
}

/// This box's own addresses: the configured ones (the public IP, this process's sfuserver)
/// and those of its interfaces, re-read by [`OwnAddresses::refresh`] (addresses come and go:
/// DHCP, VPNs, a second address added by hand).
#[derive(Clone, Debug, Default)]
pub struct OwnAddresses {
    configured: Vec<IpAddr>,
    interfaces: Arc<RwLock<HashSet<IpAddr>>>,
}

impl OwnAddresses {
    /// `configured` and the interfaces' addresses as they are now.
    pub fn new(configured: impl IntoIterator<Item = IpAddr>) -> OwnAddresses {
        let own = OwnAddresses {
            configured: configured
                .into_iter()
                .map(canonical)
                .filter(|ip| !ip.is_unspecified())
                .collect(),
            interfaces: Default::default(),
        };
        own.refresh();
        own
    }

    /// Reads the interfaces' addresses again (keeps the last list if that fails).
    pub fn refresh(&self) {
        match if_addrs::get_if_addrs() {
            Ok(list) => {
                let ips: HashSet<IpAddr> = list.iter().map(|i| canonical(i.ip())).collect();
                if let Ok(mut w) = self.interfaces.write()
                    && *w != ips
                {
                    tracing::debug!(addresses = ?ips, "turnserver: this box's addresses (never relayed to)");
                    *w = ips;
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot list this box's addresses"),
        }
    }

    /// Whether `ip` (canonical) is one of this box's addresses.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.configured.contains(&ip) || self.interfaces.read().is_ok_and(|s| s.contains(&ip))
    }
}

impl PeerPolicy {
    pub fn allows(&self, peer: SocketAddr) -> bool {
        let ip = canonical(peer.ip());
        // Checked per packet: the common case (a public peer) decides on the first two tests.
        (!is_restricted(ip) && !self.own.contains(ip))
            || self.trusted.iter().any(|t| t.matches(peer))
            || self
                .learned
                .read()
                .is_ok_and(|l| l.iter().any(|t| t.matches(peer)))
            || self.allowed.iter().any(|n| n.contains(ip))
            || self
                .relays
                .read()
                .is_ok_and(|r| r.contains(&SocketAddr::new(ip, peer.port())))
    }
}

/// Addresses a relay must not reach unless told to: everything that is not globally routed
/// unicast.
pub fn is_restricted(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => restricted_v4(v4),
        IpAddr::V6(v6) => restricted_v6(v6),
    }
}

fn restricted_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_unspecified()
        || a == 0 // "this network": 0.x.x.x reaches the host itself
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || a >= 240 // reserved
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT, cloud internals)
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
}

fn restricted_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated) fec0::/10
        || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1) // local-use NAT64 64:ff9b:1::/48 (RFC 8215)
        || embedded_v4(ip).is_some_and(restricted_v4)
}

/// The IPv4 address inside NAT64 (64:ff9b::/96), 6to4 (2002::/16) and IPv4-compatible
/// (::/96) addresses, which reach IPv4 hosts.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let o = ip.octets();
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return Some(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    if s[..6] == [0, 0, 0, 0, 0, 0] {
        return Some(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    #[test]
    fn private_ranges_are_refused_by_default() {
        let p = PeerPolicy::default();
        for bad in [
            "127.0.0.1:53",
            "10.0.0.1:161",
            "172.16.3.4:1",
            "192.168.1.1:80",
            "169.254.169.254:80",
            "224.0.0.1:5353",
            "0.0.0.0:9",
            "100.100.100.200:80",
            "255.255.255.255:9",
            "[::1]:53",
            "[fe80::1]:9",
            "[fd00::1]:9",
            "[::ffff:127.0.0.1]:53",
            "[64:ff9b::a00:1]:9",
            "[2002:a00:1::]:9",
            "[64:ff9b:1::1]:9",
            "[64:ff9b:1:ffff::8.8.8.8]:53",
        ] {
            assert!(!p.allows(sa(bad)), "{bad} must be refused");
        }
        for good in ["8.8.8.8:53", "1.2.3.4:3478", "[2001:4860::8888]:53"] {
            assert!(p.allows(sa(good)), "{good} must be allowed");
        }
    }

    #[test]
    fn trusted_peers_and_allowlist() {
        let p = PeerPolicy {
            allowed: vec!["10.0.0.0/24".parse().expect("net")],
            trusted: vec![TrustedPeer {
                ip: "127.0.0.1".parse().expect("ip"),
                ports: 10000..=10001,
            }],
            learned: Default::default(),
            relays: Default::default(),
            own: Default::default(),
        };
        assert!(!p.allows(sa("10.9.0.3:20000")));
        p.learned.write().expect("lock").push(TrustedPeer {
            ip: "10.9.0.3".parse().expect("ip"),
            ports: 20000..=20000,
        });
        assert!(p.allows(sa("10.9.0.3:20000")));
        assert!(!p.allows(sa("10.9.0.3:20001")));
        assert!(p.allows(sa("127.0.0.1:10001")));
        assert!(!p.allows(sa("127.0.0.1:10002")));
        p.relays
            .write()
            .expect("lock")
            .insert(sa("127.0.0.1:50000"));
        assert!(p.allows(sa("127.0.0.1:50000")));
        assert!(!p.allows(sa("127.0.0.1:50001")));
        assert!(p.allows(sa("10.0.0.9:1")));
        assert!(!p.allows(sa("10.0.1.9:1")));
    }

    #[test]
    fn own_addresses_are_refused_except_relays_and_trusted_ports() {
        // 203.0.113.9 stands for the public IP of a VM behind 1:1 NAT (on no interface).
        let p = PeerPolicy {
            trusted: vec![TrustedPeer {
                ip: "203.0.113.9".parse().expect("ip"),
                ports: 10000..=10000,
            }],
            own: OwnAddresses::new(["203.0.113.9".parse().expect("ip")]),
            ..Default::default()
        };
        assert!(!p.allows(sa("203.0.113.9:8080")));
        assert!(!p.allows(sa("[::ffff:203.0.113.9]:22")));
        assert!(p.allows(sa("203.0.113.9:10000")), "our sfuserver");
        p.relays
            .write()
            .expect("lock")
            .insert(sa("203.0.113.9:50000"));
        assert!(p.allows(sa("203.0.113.9:50000")), "our relay");
        assert!(p.allows(sa("203.0.113.10:8080")), "another host");
        // The interfaces are read: loopback is always one of them.
        assert!(p.own.contains("127.0.0.1".parse().expect("ip")));
    }
}
