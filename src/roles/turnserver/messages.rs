//! The STUN messages the guard writes: requests rewritten for the crate (its nonce instead
//! of ours, DONT-FRAGMENT removed, LIFETIME capped, re-signed), the error answers it gives
//! itself, and reading every XOR-PEER-ADDRESS of a request.

use std::net::{IpAddr, SocketAddr};
use stun::agent::TransactionId;
use stun::attributes::*;
use stun::error_code::*;
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::*;
use stun::textattrs::TextAttribute;

/// A validated request waiting to be handed to the crate: rewritten, re-signed with `key`.
pub struct Rewrite {
    pub msg: Message,
    pub key: Vec<u8>,
    pub strip_dont_fragment: bool,
    pub lifetime: Option<u32>,
    pub src: SocketAddr,
}

impl Rewrite {
    /// The request as the crate gets it: the crate's nonce instead of ours, DONT-FRAGMENT
    /// removed, LIFETIME capped, and MESSAGE-INTEGRITY (and FINGERPRINT if there was one)
    /// recomputed.
    pub fn finish(&self, crate_nonce: &str) -> Result<Vec<u8>, stun::Error> {
        let m = &self.msg;
        let mut out = Message::new();
        out.typ = m.typ;
        out.transaction_id = m.transaction_id;
        out.write_header();
        let mut lifetime_written = false;
        for a in &m.attributes.0 {
            match a.typ {
                ATTR_MESSAGE_INTEGRITY => break,
                ATTR_FINGERPRINT => {}
                ATTR_DONT_FRAGMENT if self.strip_dont_fragment => {}
                ATTR_NONCE => out.add(ATTR_NONCE, crate_nonce.as_bytes()),
                ATTR_LIFETIME if self.lifetime.is_some() => {
                    if let Some(l) = self.lifetime {
                        out.add(ATTR_LIFETIME, &l.to_be_bytes());
                        lifetime_written = true;
                    }
                }
                _ => out.add(a.typ, &a.value),
            }
        }
        if let (Some(l), false) = (self.lifetime, lifetime_written) {
            out.add(ATTR_LIFETIME, &l.to_be_bytes());
        }
        MessageIntegrity(self.key.clone()).add_to(&mut out)?;
        if m.contains(ATTR_FINGERPRINT) {
            FINGERPRINT.add_to(&mut out)?;
        }
        Ok(out.raw)
    }
}

/// 401 or 438 with `realm` and `nonce` (for the client to sign its next request with).
pub fn challenge(m: &Message, code: ErrorCode, realm: &str, nonce: String) -> Vec<u8> {
    let mut out = Message::new();
    let built = out.build(&[
        Box::new(TransactionIdSetter(m.transaction_id)),
        Box::new(MessageType::new(m.typ.method, CLASS_ERROR_RESPONSE)),
        Box::new(ErrorCodeAttribute {
            code,
            reason: reason(code).as_bytes().to_vec(),
        }),
        Box::new(TextAttribute::new(ATTR_REALM, realm.to_string())),
        Box::new(TextAttribute::new(ATTR_NONCE, nonce)),
    ]);
    if built.is_ok() && m.contains(ATTR_FINGERPRINT) {
        let _ = FINGERPRINT.add_to(&mut out);
    }
    out.raw
}

/// An error answer; signed when the request was authenticated (`key`).
pub fn answer(m: &Message, code: ErrorCode, key: Option<&[u8]>) -> Vec<u8> {
    let mut out = Message::new();
    let mut ok = out
        .build(&[
            Box::new(TransactionIdSetter(m.transaction_id)),
            Box::new(MessageType::new(m.typ.method, CLASS_ERROR_RESPONSE)),
            Box::new(ErrorCodeAttribute {
                code,
                reason: reason(code).as_bytes().to_vec(),
            }),
        ])
        .is_ok();
    if let (Some(key), true) = (key, ok) {
        ok = MessageIntegrity(key.to_vec()).add_to(&mut out).is_ok();
    }
    if ok && m.contains(ATTR_FINGERPRINT) {
        let _ = FINGERPRINT.add_to(&mut out);
    }
    out.raw
}

fn reason(code: ErrorCode) -> &'static str {
    match code.0 {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        437 => "Allocation Mismatch",
        438 => "Stale Nonce",
        486 => "Allocation Quota Reached",
        _ => "Error",
    }
}

/// Sets a given transaction id (stun's `TransactionId` setter makes the message keep it, but
/// `Message::build` resets first, so the id must come through a setter).
pub struct TransactionIdSetter(pub TransactionId);

impl Setter for TransactionIdSetter {
    fn add_to(&self, m: &mut Message) -> Result<(), stun::Error> {
        m.transaction_id = self.0;
        m.write_transaction_id();
        Ok(())
    }
}

/// Every XOR-PEER-ADDRESS of a message (CreatePermission may carry several).
pub fn xor_peer_addresses(m: &Message) -> Vec<SocketAddr> {
    let cookie = MAGIC_COOKIE.to_be_bytes();
    m.attributes
        .0
        .iter()
        .filter(|a| a.typ == ATTR_XOR_PEER_ADDRESS)
        .filter_map(|a| {
            let v = &a.value;
            let port = u16::from_be_bytes([*v.get(2)?, *v.get(3)?]) ^ 0x2112;
            let ip = match v.get(1)? {
                1 => {
                    let b = v.get(4..8)?;
                    IpAddr::from([
                        b[0] ^ cookie[0],
                        b[1] ^ cookie[1],
                        b[2] ^ cookie[2],
                        b[3] ^ cookie[3],
                    ])
                }
                2 => {
                    let b = v.get(4..20)?;
                    let mut key = [0u8; 16];
                    key[..4].copy_from_slice(&cookie);
                    key[4..].copy_from_slice(&m.transaction_id.0);
                    let mut o = [0u8; 16];
                    for i in 0..16 {
                        o[i] = b[i] ^ key[i];
                    }
                    IpAddr::from(o)
                }
                _ => return None,
            };
            Some(SocketAddr::new(ip, port))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rewritten_request_is_signed_and_stripped() {
        let key = turn::auth::generate_auth_key("9999999999:u", "r", "pw");
        let mut m = Message::new();
        m.build(&[
            Box::new(TransactionId::new()),
            Box::new(MessageType::new(METHOD_ALLOCATE, CLASS_REQUEST)),
            Box::new(turn::proto::reqtrans::RequestedTransport {
                protocol: turn::proto::PROTO_UDP,
            }),
            Box::new(turn::proto::dontfrag::DontFragmentAttr),
            Box::new(turn::proto::lifetime::Lifetime(Duration::from_secs(90000))),
            Box::new(TextAttribute::new(ATTR_USERNAME, "9999999999:u".into())),
            Box::new(TextAttribute::new(ATTR_REALM, "r".into())),
            Box::new(TextAttribute::new(ATTR_NONCE, "ours".into())),
            Box::new(MessageIntegrity(key.clone())),
            Box::new(FINGERPRINT),
        ])
        .expect("build");
        let job = Rewrite {
            msg: m.clone(),
            key: key.clone(),
            strip_dont_fragment: true,
            lifetime: Some(600),
            src: "192.0.2.1:1".parse().expect("addr"),
        };
        let raw = job.finish("theirs").expect("finish");
        let mut out = Message::new();
        out.raw = raw;
        out.decode().expect("decodes");
        assert_eq!(out.transaction_id, m.transaction_id);
        assert!(!out.contains(ATTR_DONT_FRAGMENT));
        assert_eq!(
            TextAttribute::get_from_as(&out, ATTR_NONCE)
                .expect("nonce")
                .text,
            "theirs"
        );
        assert_eq!(
            out.get(ATTR_LIFETIME).expect("lifetime"),
            600u32.to_be_bytes()
        );
        MessageIntegrity(key)
            .check(&mut out.clone())
            .expect("re-signed");
        stun::fingerprint::FINGERPRINT
            .check(&out)
            .expect("fingerprint kept");
        // And the peer addresses of a CreatePermission are all read.
        let mut cp = Message::new();
        cp.build(&[
            Box::new(TransactionId::new()),
            Box::new(MessageType::new(METHOD_CREATE_PERMISSION, CLASS_REQUEST)),
            Box::new(turn::proto::peeraddr::PeerAddress {
                ip: "10.0.0.1".parse().expect("ip"),
                port: 5,
            }),
            Box::new(turn::proto::peeraddr::PeerAddress {
                ip: "fe80::1".parse().expect("ip"),
                port: 6,
            }),
        ])
        .expect("build");
        assert_eq!(
            xor_peer_addresses(&cp),
            vec![
                "10.0.0.1:5".parse::<SocketAddr>().expect("addr"),
                "[fe80::1]:6".parse().expect("addr")
            ]
        );
    }
}
