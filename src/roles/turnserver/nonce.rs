//! Stateless nonces: the guard answers requests without credentials with a nonce it can
//! check later without having stored it: the issue time and an HMAC of that time and the
//! client's address, under a key random per process. A spoofed source never sees its nonce;
//! a nonce is good for an hour, from the address it was issued to only.

use hmac::Mac;
use std::net::IpAddr;

/// A nonce is good this long (clients then get 438 and take a new one).
pub const NONCE_TTL: u64 = 3600;

pub struct NonceSigner {
    key: [u8; 32],
}

impl NonceSigner {
    pub fn new(key: [u8; 32]) -> NonceSigner {
        NonceSigner { key }
    }

    /// A nonce for `ip` at unix time `unix`: 8 hex digits of time, 24 of MAC.
    pub fn issue(&self, ip: IpAddr, unix: u64) -> String {
        let ts = u32::try_from(unix).unwrap_or(u32::MAX).to_be_bytes();
        format!("{}{}", hex::encode(ts), hex::encode(self.mac(ts, ip)))
    }

    fn mac(&self, ts: [u8; 4], ip: IpAddr) -> [u8; 12] {
        let full = match crate::config::ipnet::canonical(ip) {
            IpAddr::V4(v4) => crate::tokens::mac(&self.key, &[&ts, &v4.octets()]),
            IpAddr::V6(v6) => crate::tokens::mac(&self.key, &[&ts, &v6.octets()]),
        }
        .finalize()
        .into_bytes();
        let mut out = [0u8; 12];
        out.copy_from_slice(&full[..12]);
        out
    }

    /// Whether `nonce` was issued by us, to `ip`, less than [`NONCE_TTL`] before `unix`.
    pub fn valid(&self, nonce: &str, ip: IpAddr, unix: u64) -> bool {
        let Ok(raw) = hex::decode(nonce) else {
            return false;
        };
        let (Some(ts), Some(mac)) = (raw.get(..4), raw.get(4..)) else {
            return false;
        };
        let Ok(ts) = <[u8; 4]>::try_from(ts) else {
            return false;
        };
        let issued = u64::from(u32::from_be_bytes(ts));
        let fresh = issued <= unix + 5 && unix.saturating_sub(issued) <= NONCE_TTL;
        fresh && ct_eq(mac, &self.mac(ts, ip))
    }
}

/// Equal-time comparison (a mismatch position must not leak through timing).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_are_bound_to_address_and_time() {
        let g = NonceSigner::new([7; 32]);
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        let n = g.issue(a, 1_000_000);
        assert!(g.valid(&n, a, 1_000_000 + 10));
        assert!(!g.valid(&n, b, 1_000_000 + 10));
        assert!(!g.valid(&n, a, 1_000_000 + NONCE_TTL + 1));
        assert!(!g.valid("zz", a, 1_000_000));
        let mut forged = n.clone().into_bytes();
        forged[10] = if forged[10] == b'a' { b'b' } else { b'a' };
        assert!(!g.valid(&String::from_utf8(forged).expect("ascii"), a, 1_000_000));
        // Another process (key) does not accept it.
        assert!(!NonceSigner::new([8; 32]).valid(&n, a, 1_000_000));
    }
}
