//! Small HTTP pieces of serving files: byte ranges, conditional requests, the
//! Content-Disposition header, and which types are shown inline. Pure functions.

/// What a `Range` header asks of a file of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeAnswer {
    /// No range, or one we ignore (several ranges, a malformed header): the whole file, 200.
    Full,
    /// Bytes `start..=end`, 206.
    Partial { start: u64, end: u64 },
    /// 416.
    Unsatisfiable,
}

/// Parses a single `bytes=` range (RFC 9110 section 14.2). An invalid header is ignored, as
/// the RFC allows; several ranges are answered with the whole file, which it allows too.
pub fn range(header: Option<&str>, len: u64) -> RangeAnswer {
    let Some(h) = header else {
        return RangeAnswer::Full;
    };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return RangeAnswer::Full;
    };
    if spec.contains(',') {
        return RangeAnswer::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAnswer::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            None
        } else {
            s.parse().ok()
        }
    };
    if a.is_empty() {
        // Suffix: the last n bytes.
        let Some(n) = num(b) else {
            return RangeAnswer::Full;
        };
        if n == 0 || len == 0 {
            return RangeAnswer::Unsatisfiable;
        }
        return RangeAnswer::Partial {
            start: len.saturating_sub(n),
            end: len - 1,
        };
    }
    let Some(start) = num(a) else {
        return RangeAnswer::Full;
    };
    let end = if b.is_empty() {
        None
    } else {
        match num(b) {
            Some(e) if e >= start => Some(e),
            _ => return RangeAnswer::Full,
        }
    };
    if start >= len {
        return RangeAnswer::Unsatisfiable;
    }
    RangeAnswer::Partial {
        start,
        end: end.map_or(len - 1, |e| e.min(len - 1)),
    }
}

/// Whether an `If-None-Match` header matches the entity tag (weak comparison, `*` matches).
pub fn none_match(header: Option<&str>, etag: &str) -> bool {
    header.is_some_and(|h| {
        h.split(',')
            .map(str::trim)
            .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
    })
}

/// `inline` or `attachment` with the name twice: a plain ASCII fallback and the exact UTF-8
/// name (RFC 6266, RFC 8187).
pub fn content_disposition(inline: bool, name: &str) -> String {
    let kind = if inline { "inline" } else { "attachment" };
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' && c != '%' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = url::form_urlencoded::byte_serialize(name.as_bytes())
        .collect::<String>()
        .replace('+', "%20");
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// Types a browser could run as a page; never shown inline, whatever the configuration says.
const NEVER_INLINE: &[&str] = &[
    "text/html",
    "application/xhtml+xml",
    "image/svg+xml",
    "text/xml",
    "application/xml",
    "text/javascript",
    "application/javascript",
];

/// Whether bytes starting with `head`, declared as `content_type`, are shown inline: the
/// type is allowlisted, never a scriptable one, and for the image types we know the bytes
/// begin with that format's signature (so a page uploaded as "image/png" stays a download).
pub fn shown_inline(content_type: &str, head: &[u8], allow: &[String]) -> bool {
    if NEVER_INLINE.contains(&content_type)
        || !allow.iter().any(|a| a.eq_ignore_ascii_case(content_type))
    {
        return false;
    }
    match content_type {
        "image/png" => head.starts_with(b"\x89PNG\r\n\x1a\n"),
        "image/jpeg" => head.starts_with(&[0xff, 0xd8, 0xff]),
        "image/gif" => head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a"),
        "image/webp" => head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP",
        "image/bmp" => head.starts_with(b"BM"),
        "image/avif" => head.len() >= 12 && &head[4..12] == b"ftypavif",
        "application/pdf" => head.starts_with(b"%PDF-"),
        // A type the operator allowlisted and we have no signature for: trust the operator.
        _ => true,
    }
}

/// An HTTP date (IMF-fixdate) for unix seconds.
pub fn http_date(unix: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp(unix, 0)
        .unwrap_or_default()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeAnswer::*;

    #[test]
    fn ranges() {
        assert_eq!(range(None, 10), Full);
        assert_eq!(range(Some("bytes=0-3"), 10), Partial { start: 0, end: 3 });
        assert_eq!(range(Some("bytes=5-"), 10), Partial { start: 5, end: 9 });
        assert_eq!(range(Some("bytes=5-100"), 10), Partial { start: 5, end: 9 });
        assert_eq!(range(Some("bytes=-3"), 10), Partial { start: 7, end: 9 });
        assert_eq!(range(Some("bytes=-30"), 10), Partial { start: 0, end: 9 });
        assert_eq!(range(Some("bytes=10-"), 10), Unsatisfiable);
        assert_eq!(range(Some("bytes=-0"), 10), Unsatisfiable);
        assert_eq!(range(Some("bytes=0-"), 0), Unsatisfiable);
        assert_eq!(range(Some("bytes=4-2"), 10), Full);
        assert_eq!(range(Some("bytes=0-1,4-5"), 10), Full);
        assert_eq!(range(Some("items=0-1"), 10), Full);
        assert_eq!(range(Some("bytes=x-1"), 10), Full);
        assert_eq!(range(Some("bytes=+1-2"), 10), Full);
        assert_eq!(range(Some("bytes=99999999999999999999999-"), 10), Full);
    }

    #[test]
    fn conditions_and_names() {
        assert!(none_match(Some("\"abc\""), "\"abc\""));
        assert!(none_match(Some("W/\"abc\", \"x\""), "\"abc\""));
        assert!(none_match(Some("*"), "\"abc\""));
        assert!(!none_match(Some("\"abd\""), "\"abc\""));
        assert!(!none_match(None, "\"abc\""));
        assert_eq!(
            content_disposition(false, "Bericht \"Q1\" ü.pdf"),
            "attachment; filename=\"Bericht _Q1_ _.pdf\"; filename*=UTF-8''Bericht%20%22Q1%22%20%C3%BC.pdf"
        );
    }

    #[test]
    fn inline_needs_allowlist_and_matching_bytes() {
        let allow = vec!["image/png".to_string(), "image/svg+xml".to_string()];
        assert!(shown_inline("image/png", b"\x89PNG\r\n\x1a\nrest", &allow));
        assert!(!shown_inline("image/png", b"<html><script>", &allow));
        assert!(!shown_inline("image/svg+xml", b"<svg", &allow));
        assert!(!shown_inline("image/gif", b"GIF89a", &allow));
    }
}
