//! Security headers on every HTTP response.

use actix_web::http::header::{HeaderName, HeaderValue};

/// The headers, computed once. HSTS only under TLS.
pub fn security_headers(tls: bool) -> Vec<(HeaderName, HeaderValue)> {
    let mut v = vec![
        (
            "content-security-policy",
            // The web client loads only its own code; media, files and signaling may live on
            // other hosts of the deployment (sfuserver, fsserver), hence https:/wss: sources.
            // 'wasm-unsafe-eval' lets it compile its own WebAssembly (noise suppression,
            // background segmentation, both embedded under /assets); no eval of JS strings.
            "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; \
             img-src 'self' data: blob: https:; media-src 'self' blob:; \
             connect-src 'self' https: wss: ws:; frame-ancestors 'none'; base-uri 'self'; form-action 'self'",
        ),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "strict-origin-when-cross-origin"),
        (
            "permissions-policy",
            "camera=(self), microphone=(self), display-capture=(self), geolocation=()",
        ),
    ];
    if tls {
        v.push(("strict-transport-security", "max-age=31536000"));
    }
    v.into_iter()
        .map(|(k, val)| (HeaderName::from_static(k), HeaderValue::from_static(val)))
        .collect()
}
