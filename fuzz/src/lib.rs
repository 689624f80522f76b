//! The bodies of the fuzz targets, one function each (fuzz_targets/NAME.rs calls NAME).
//!
//! Each feeds one input to a parser that takes bytes from the network, and checks what must
//! hold for any input: no panic, and where a value was accepted, that it survives a round
//! trip or meets the checks it was accepted under. The same functions run over every file of
//! `fuzz/corpus/NAME` in the normal test suite (tests/it/fuzz_corpus.rs includes this file), on
//! the stable toolchain and without fuzzing.
//!
//! Parsers behind a signature (file grants, join tokens) are reached by signing the input
//! with the test key when its first byte is odd: the input's rest then is the claims' JSON.
//! This replicates the token formats documented in `proto/files.rs` and `tokens.rs`; a
//! check on the first call makes sure the replica still matches the library.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::OnceLock;

use meeting_appliance::bridge::{self, ToApi, ToNode};
use meeting_appliance::ids::{FileId, MeetingId, ParticipantId};
use meeting_appliance::proto::files::{FileGrant, FileOp, FileReceipt, is_file_id};
use meeting_appliance::proto::signal::{ClientMsg, ServerMsg};
use meeting_appliance::tokens::{JoinClaims, Keys, TokenError};

/// The deployment secret of every target.
const SECRET: &str = "fuzzing-deployment-secret";
/// "Now" for expiry checks (unix seconds).
const NOW: i64 = 1_700_000_000;

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys::derive(SECRET))
}

/// The first byte (the mode) and the rest.
fn mode(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((m, rest)) => (*m, rest),
        None => (0, data),
    }
}

/// HMAC-SHA256 over length-prefixed parts (8 bytes big endian each), as `tokens::mac`.
fn hmac_b64(key: &[u8], parts: &[&[u8]]) -> String {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        m.update(&(p.len() as u64).to_be_bytes());
        m.update(p);
    }
    URL_SAFE_NO_PAD.encode(m.finalize().into_bytes())
}

/// Parses `text` as `T`; when it parses, its serialization must parse back to the same value.
fn round_trip<T>(text: &str) -> Option<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let v: T = serde_json::from_str(text).ok()?;
    let back = serde_json::to_string(&v).expect("a parsed message serializes");
    let again: T = serde_json::from_str(&back)
        .unwrap_or_else(|e| panic!("{back} (from {text:?}) does not parse back: {e}"));
    assert_eq!(again, v, "round trip of {text:?}");
    Some(v)
}

/// The signaling messages (`proto::signal`), as the sfuserver reads a client's WebSocket text
/// frames (and the load generator reads the server's).
pub fn signal(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = round_trip::<ClientMsg>(text);
    let _ = round_trip::<ServerMsg>(text);
}

/// SDP from a client: str0m's parser (`SdpOffer::from_sdp_string`, what the sfuserver calls
/// for every client offer), then the offer given to an `Rtc` configured as the sfuserver's
/// (ICE-lite, one host candidate); the answer it makes must parse. Answers and trickled
/// candidates are parsed too. str0m's known payload-type panic is caught (see
/// [`catching_known_str0m_panic`]); any other panic is a crash.
pub fn sdp(data: &[u8]) {
    use str0m::change::{SdpAnswer, SdpOffer};
    use str0m::{Candidate, RtcConfig};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(offer) = SdpOffer::from_sdp_string(text) {
        static DTLS: OnceLock<(
            std::sync::Arc<str0m::config::CryptoProvider>,
            str0m::config::DtlsCert,
        )> = OnceLock::new();
        let (provider, cert) = DTLS.get_or_init(|| {
            let p = std::sync::Arc::new(str0m::crypto::from_feature_flags());
            let cert = p
                .dtls_provider
                .generate_certificate()
                .expect("a DTLS certificate");
            (p, cert)
        });
        let now = std::time::Instant::now();
        let mut rtc = RtcConfig::new()
            .set_ice_lite(true)
            .set_crypto_provider(provider.clone())
            .set_dtls_cert(cert.clone())
            .build(now);
        let host = Candidate::host(([127, 0, 0, 1], 10000).into(), "udp").expect("candidate");
        rtc.add_local_candidate(host);
        let Some(accepted) = catching_known_str0m_panic(|| rtc.sdp_api().accept_offer(offer))
        else {
            return;
        };
        if let Ok(answer) = accepted {
            let s = answer.to_sdp_string();
            if let Err(e) = SdpAnswer::from_sdp_string(&s) {
                panic!("our answer does not parse ({e}):\n{s}\nto the offer:\n{text}");
            }
        }
    }
    let _ = SdpAnswer::from_sdp_string(text);
    for line in text.lines().take(8) {
        let _ = Candidate::from_sdp_string(line);
    }
}

/// Whether a panic message is str0m 0.25's known panic in its payload-type bookkeeping, which
/// a client offer can trigger (the same payload type for an audio and a video codec, e.g.
/// fuzz/known-crashes/sdp/): "Pt locked multiple times: N", "Exhausted all PT ranges".
pub fn is_known_str0m_panic(msg: &str) -> bool {
    msg.starts_with("Pt locked multiple times") || msg.contains("Exhausted all PT ranges")
}

thread_local! {
    static IN_STR0M: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` (a str0m call); `None` if it panicked with [`is_known_str0m_panic`], which is
/// caught so the fuzzer goes on looking for other crashes (the sfuserver must survive it the
/// same way). Any other panic still crashes the target.
pub fn catching_known_str0m_panic<T>(f: impl FnOnce() -> T) -> Option<T> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| info.payload().downcast_ref::<&str>().copied())
                .unwrap_or("");
            if IN_STR0M.get() && is_known_str0m_panic(msg) {
                return;
            }
            previous(info)
        }));
    });
    IN_STR0M.set(true);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    IN_STR0M.set(false);
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            let msg = e
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| e.downcast_ref::<&str>().copied())
                .unwrap_or("");
            assert!(is_known_str0m_panic(msg), "str0m panicked: {msg}");
            None
        }
    }
}

/// STUN/TURN from the network through the turnserver's guard (see
/// `roles::turnserver::fuzz_guard`).
pub fn turn_guard(data: &[u8]) {
    meeting_appliance::roles::turnserver::fuzz_guard(data);
}

/// Bridge frames (JSON text over the bridge WebSocket): the `proto` peek, both directions'
/// frames, and the proofs of a hello and a welcome.
pub fn bridge(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = bridge::frame_proto(text);
    let key = keys().bridge_key();
    if let Some(f) = round_trip::<ToApi>(text)
        && let ToApi::Hello(h) = &f
    {
        assert!(
            !bridge::check_node_proof(key, h, b"binding")
                || h.proof == bridge::node_proof(key, h, b"binding"),
            "a proof that is not ours was accepted"
        );
        let _ = bridge::version_mismatch(bridge::PROTO, "v", h.role, h.proto, &h.version);
    }
    if let Some(ToNode::Welcome { proof, .. }) = round_trip::<ToNode>(text) {
        let _ = bridge::check_api_proof(key, "n", "c", b"binding", &proof);
    }
}

/// `base64url(body) "." base64url(HMAC-SHA256(files key, [purpose, body]))` (tokens.rs).
fn sign_file_token(purpose: &str, json: &[u8]) -> String {
    let body = URL_SAFE_NO_PAD.encode(json);
    let sig = hmac_b64(keys().files_key(), &[purpose.as_bytes(), body.as_bytes()]);
    format!("{body}.{sig}")
}

/// File grants and receipts (the `?t=` of a file URL, the receipt a client hands back).
pub fn file_grant(data: &[u8]) {
    static CHECKED: OnceLock<()> = OnceLock::new();
    let key = keys().files_key();
    let file = FileId("fAAAAAAAAAAAAAAAAAAAAAA".into());
    CHECKED.get_or_init(|| {
        let g = FileGrant {
            op: FileOp::Get,
            meeting: MeetingId(7),
            file: file.clone(),
            fs: "fs:1".into(),
            exp: NOW + 1,
            max_size: None,
            name: None,
            content_type: None,
            uploader: None,
        };
        let json = serde_json::to_vec(&g).expect("json");
        let t = sign_file_token("grant", &json);
        assert_eq!(
            FileGrant::verify(key, &t, FileOp::Get, MeetingId(7), &file, NOW),
            Ok(g),
            "the fuzz target's grant format drifted from proto/files.rs"
        );
    });
    let (m, rest) = mode(data);
    let token = if m & 1 == 1 {
        sign_file_token(if m & 2 == 0 { "grant" } else { "receipt" }, rest)
    } else {
        String::from_utf8_lossy(rest).into_owned()
    };
    for op in [FileOp::Put, FileOp::Get, FileOp::Delete] {
        if let Ok(g) = FileGrant::verify(key, &token, op, MeetingId(7), &file, NOW) {
            assert!(g.op == op && g.meeting == MeetingId(7) && g.file == file && g.exp >= NOW);
            let again = FileGrant::verify(key, &g.sign(key), op, MeetingId(7), &file, NOW);
            assert_eq!(again.as_ref(), Ok(&g));
        }
    }
    if let Ok(r) = FileReceipt::verify(key, &token, NOW) {
        assert!(r.exp >= NOW);
        assert_eq!(FileReceipt::verify(key, &r.sign(key), NOW), Ok(r));
    }
    if is_file_id(&token) {
        assert!(token.len() == 23 && token.is_ascii(), "{token:?}");
    }
}

/// The join key (`tokens::Keys::derive`, purpose `join-token`).
fn join_key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(|| {
        let hk = hkdf::Hkdf::<Sha256>::new(Some(b"meeting-appliance v1"), SECRET.as_bytes());
        let mut k = [0u8; 32];
        hk.expand(b"join-token", &mut k).expect("32 bytes");
        k
    })
}

fn sign_join_token(json: &[u8]) -> String {
    let body = URL_SAFE_NO_PAD.encode(json);
    format!(
        "{body}.{}",
        hmac_b64(join_key(), &[b"join", body.as_bytes()])
    )
}

/// Join tokens (what a client presents to the sfuserver) and TURN REST usernames (what a
/// client presents to the turnserver).
pub fn tokens(data: &[u8]) {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        let c = JoinClaims {
            meeting: MeetingId(7),
            participant: ParticipantId("pabc".into()),
            sfu: "sfu:1".into(),
            name: "N".into(),
            host: false,
            exp: NOW + 1,
            role: Default::default(),
            lobby: false,
            screens_hosts_only: false,
            may_claim_host: false,
        };
        let t = sign_join_token(&serde_json::to_vec(&c).expect("json"));
        assert_eq!(
            keys().verify_join(&t, MeetingId(7), NOW),
            Ok(c),
            "the fuzz target's join token format drifted from tokens.rs"
        );
    });
    let (m, rest) = mode(data);
    match m % 3 {
        0 | 1 => {
            let token = if m % 3 == 1 {
                sign_join_token(rest)
            } else {
                String::from_utf8_lossy(rest).into_owned()
            };
            match keys().verify_join(&token, MeetingId(7), NOW) {
                Ok(c) => {
                    assert!(c.meeting == MeetingId(7) && c.exp >= NOW);
                    let again = keys().verify_join(&keys().sign_join(&c), MeetingId(7), NOW);
                    assert_eq!(again, Ok(c));
                }
                Err(TokenError::BadSignature) => assert!(m % 3 == 0, "our own signature"),
                Err(_) => {}
            }
        }
        _ => {
            // A TURN REST username as the turnserver reads it: the key, and the meeting.
            use meeting_appliance::roles::turnserver::{auth::RestAuth, limits::meeting_of};
            let username = String::from_utf8_lossy(rest);
            let auth = RestAuth::new(keys().turn_secret(), "realm");
            let _ = auth.key(&username, "realm", NOW);
            let _ = meeting_of(&username);
            // What the apiserver hands out for any participant id reads back its meeting.
            let (u, _) =
                keys().turn_credentials(MeetingId(42), &ParticipantId(username.into()), NOW);
            assert_eq!(meeting_of(&u), Some(42), "{u}");
            assert!(auth.key(&u, "realm", NOW).is_ok());
        }
    }
}
