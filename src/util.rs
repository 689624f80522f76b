//! Small helpers with no better home.

use std::time::{SystemTime, UNIX_EPOCH};

/// Makes ring rustls's process-wide crypto provider. str0m brings aws-lc-rs for its own DTLS;
/// with two providers compiled in, rustls refuses to guess and panics at the first TLS config.
/// Idempotent: installing fails only when a provider is already installed.
pub fn install_ring_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Unix seconds now.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Unix time in milliseconds (orders events within a second, e.g. raised hands).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Equal-time comparison of two strings (hashes), so a mismatch position does not leak.
pub fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Lower-cases and checks an email address; `None` if it is not one.
pub fn normalize_email(s: &str) -> Option<String> {
    let s = s.trim().to_ascii_lowercase();
    if s.len() > 254 || s.contains(char::is_whitespace) {
        return None;
    }
    let addr: lettre::Address = s.parse().ok()?;
    if !addr.domain().contains('.') && addr.domain() != "localhost" {
        return None;
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(
            normalize_email(" Ann@Example.COM "),
            Some("ann@example.com".into())
        );
        assert_eq!(normalize_email("nope"), None);
        assert_eq!(normalize_email("a b@example.com"), None);
        assert_eq!(normalize_email("a@nodot"), None);
        assert!(ct_eq("abc", "abc") && !ct_eq("abc", "abd") && !ct_eq("abc", "ab"));
    }
}
