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

/// One at a time per key, within this process: for work that must not run twice at once for
/// the same thing (asking the allocator for a meeting's servers). Entries go when unused.
#[derive(Default)]
pub struct KeyedLocks(
    std::sync::Mutex<std::collections::HashMap<i64, std::sync::Weak<tokio::sync::Mutex<()>>>>,
);

impl KeyedLocks {
    pub async fn lock(&self, key: i64) -> tokio::sync::OwnedMutexGuard<()> {
        let m = {
            let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
            all.retain(|_, w| w.strong_count() > 0);
            match all.get(&key).and_then(std::sync::Weak::upgrade) {
                Some(m) => m,
                None => {
                    let m = std::sync::Arc::new(tokio::sync::Mutex::new(()));
                    all.insert(key, std::sync::Arc::downgrade(&m));
                    m
                }
            }
        };
        m.lock_owned().await
    }
}

#[cfg(test)]
mod keyed_lock_tests {
    use super::KeyedLocks;

    #[tokio::test]
    async fn one_holder_per_key_and_entries_go_when_unused() {
        let locks = KeyedLocks::default();
        let a = locks.lock(1).await;
        let _b = locks.lock(2).await; // another key: not held up
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), locks.lock(1));
        assert!(waiting.await.is_err(), "key 1 is held");
        drop(a);
        let _again = locks.lock(1).await;
        drop(_again);
        drop(_b);
        let _ = locks.lock(3).await;
        assert!(
            locks.0.lock().expect("lock").len() <= 1,
            "unused entries are pruned"
        );
    }
}
