//! The identity provider's tokens kept with an SSO session (an OpenID Connect refresh token
//! is a credential), sealed with ChaCha20-Poly1305 under a key derived from the deployment
//! secret: a copy of the database alone does not give them away. A value that does not open
//! (another secret, tampering) reads as no tokens, and the session's next re-check ends it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::aead::{CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use serde::{Deserialize, Serialize};

/// What a session keeps from its provider.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IdpTokens {
    /// OIDC: the refresh token (the re-check redeems it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// OIDC: the access token and when it expires (unix seconds): the re-check's userinfo
    /// call when the provider gave no refresh token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_expires_at: Option<i64>,
    /// OIDC: the ID token, the `id_token_hint` of RP-initiated logout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// LDAP: what the person typed as their login (the re-check searches for it again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<String>,
}

fn key(k: &[u8; 32]) -> LessSafeKey {
    // A 32-byte key is exactly what ChaCha20-Poly1305 takes: this cannot fail.
    LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, k).expect("32-byte ChaCha20 key"))
}

pub fn seal<T: Serialize>(k: &[u8; 32], plain: &T) -> String {
    let mut nonce = [0u8; NONCE_LEN];
    rand::Rng::fill(&mut rand::rng(), &mut nonce[..]);
    // What is sealed are plain structs of strings (tokens, a passcode): serializing them
    // cannot fail, and sealing an empty payload instead would hide a broken type.
    let mut buf = serde_json::to_vec(plain).expect("sealed values serialize");
    // Sealing in place only fails for inputs beyond 256 GiB.
    key(k)
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            ring::aead::Aad::empty(),
            &mut buf,
        )
        .expect("sealing a small buffer");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&buf);
    URL_SAFE_NO_PAD.encode(out)
}

pub fn open<T: serde::de::DeserializeOwned>(k: &[u8; 32], sealed: &str) -> Option<T> {
    let raw = URL_SAFE_NO_PAD.decode(sealed).ok()?;
    if raw.len() < NONCE_LEN {
        return None;
    }
    let (n, rest) = raw.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(n).ok()?;
    let mut buf = rest.to_vec();
    let plain = key(k)
        .open_in_place(nonce, ring::aead::Aad::empty(), &mut buf)
        .ok()?;
    serde_json::from_slice(plain).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_and_refuses_tampering() {
        let k = [7u8; 32];
        let t = IdpTokens {
            refresh_token: Some("rt-secret".into()),
            login: Some("bob".into()),
            ..Default::default()
        };
        let s = seal(&k, &t);
        assert!(!s.contains("rt-secret"));
        assert_eq!(open(&k, &s), Some(t.clone()));
        assert_ne!(seal(&k, &t), s, "a fresh nonce each time");
        assert_eq!(open::<IdpTokens>(&[8u8; 32], &s), None, "another key");
        let mut raw = URL_SAFE_NO_PAD.decode(&s).expect("b64");
        let last = raw.len() - 1;
        raw[last] ^= 1;
        assert_eq!(
            open::<IdpTokens>(&k, &URL_SAFE_NO_PAD.encode(raw)),
            None,
            "tampered"
        );
        assert_eq!(open::<IdpTokens>(&k, "not base64!"), None);
    }
}
