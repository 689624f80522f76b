//! The browser client (`web/`, built by `make web` into `web/dist` and embedded by `build.rs`):
//! `/` and `/m/{code}` answer with its page (which carries its first script, boot.js, inline),
//! `/assets/*` with its hashed, immutable files.
//! A binary built without the client answers `/` with a page that says how to build it.

use actix_web::{HttpResponse, web};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest, Sha256};

include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/m/{code}", web::get().to(index))
        .route("/assets/{file:.+}", web::get().to(asset));
}

/// Development: `APPLIANCE_WEB_DIR=web/dist` serves the client from that directory (read on
/// every request) instead of the copy built into the binary, so `npm run build` needs no
/// rebuild of the binary.
fn find(path: &str) -> Option<(&'static str, Body)> {
    let (ct, embedded) = WEB_ASSETS
        .iter()
        .find(|(p, _, _)| *p == path)
        .map(|(_, ct, body)| (*ct, Some(*body)))
        .unwrap_or((content_type(path), None));
    if let Some(dir) = std::env::var_os("APPLIANCE_WEB_DIR") {
        if path.contains("..") {
            return None;
        }
        let file = std::path::Path::new(&dir).join(path.trim_start_matches('/'));
        return std::fs::read(file).ok().map(|b| (ct, Body::Owned(b)));
    }
    embedded.map(|b| (ct, Body::Static(b)))
}

enum Body {
    Static(&'static [u8]),
    Owned(Vec<u8>),
}

impl Body {
    fn bytes(self) -> actix_web::web::Bytes {
        match self {
            Body::Static(b) => actix_web::web::Bytes::from_static(b),
            Body::Owned(v) => actix_web::web::Bytes::from(v),
        }
    }
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, e)| e) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}

/// The page's Content-Security-Policy: the default one (tls::headers) with images only from
/// this box and the fsservers that hold note files (the configured pool and the fsservers
/// that registered), so notes cannot make readers' browsers fetch anything elsewhere (no
/// tracking pixels). `data:` stays for the page's own blank icon. Scripts: the default's
/// files from this box, and the page's own inline script (boot.js) by its hash, so no
/// other inline script runs.
async fn page_csp(st: &super::ApiState, page: &[u8]) -> String {
    let mut sources = vec!["'self'".to_string(), "data:".into(), "blob:".into()];
    let registered =
        crate::db::models::node::of_role(&st.db, crate::proto::NodeRole::Fsserver.name())
            .await
            .unwrap_or_default();
    let addresses = st
        .cfg
        .allocator
        .fs
        .iter()
        .map(|p| p.address.clone())
        .chain(registered.into_iter().map(|n| n.address));
    for a in addresses {
        // Only plain host:port values (they came from config or the registry; be strict);
        // this box itself is 'self'.
        if a != st.own_address
            && a.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        {
            let origin = st.base_url(&a, false);
            if !sources.contains(&origin) {
                sources.push(origin);
            }
        }
    }
    let base = crate::tls::headers::security_headers(false)
        .into_iter()
        .find(|(k, _)| k.as_str() == "content-security-policy")
        .and_then(|(_, v)| v.to_str().ok().map(str::to_owned))
        .unwrap_or_default();
    base.split(';')
        .map(|d| {
            if d.trim().starts_with("img-src") {
                format!(" img-src {}", sources.join(" "))
            } else if d.trim().starts_with("script-src") {
                inline_scripts(page).fold(d.to_string(), |d, script| {
                    format!("{d} 'sha256-{}'", BASE64.encode(Sha256::digest(script)))
                })
            } else {
                d.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// The contents of the page's inline scripts: `<script>` tags without attributes (the
/// build's own tags all have a `src`).
fn inline_scripts(page: &[u8]) -> impl Iterator<Item = &[u8]> {
    const OPEN: &[u8] = b"<script>";
    const CLOSE: &[u8] = b"</script>";
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    let mut rest = page;
    std::iter::from_fn(move || {
        let start = find(rest, OPEN)? + OPEN.len();
        let len = find(&rest[start..], CLOSE)?;
        let script = &rest[start..start + len];
        rest = &rest[start + len + CLOSE.len()..];
        Some(script)
    })
}

/// The single page of the client; never cached, so a new build is picked up at once.
async fn index(st: web::Data<super::ApiState>) -> HttpResponse {
    let (ct, body) = match find("/index.html") {
        Some((ct, body)) => (ct, body.bytes()),
        None => (
            "text/html; charset=utf-8",
            actix_web::web::Bytes::from_static(FALLBACK.as_bytes()),
        ),
    };
    HttpResponse::Ok()
        .content_type(ct)
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("Content-Security-Policy", page_csp(&st, &body).await))
        .body(body)
}

const FALLBACK: &str = "<!doctype html><meta charset=utf-8><title>Meetings</title>\
<h1>meeting-appliance</h1><p>The HTTP API is running at <code>/api/v1</code>, but this binary \
was built without the web client. Run <code>make web</code> (needs Node.js and npm), then build \
the binary again (<code>cargo build --release</code>).</p>";

/// Built files carry a content hash in their names: cache them for good.
async fn asset(name: web::Path<String>) -> HttpResponse {
    file(
        &format!("/assets/{}", name.into_inner()),
        "public, max-age=31536000, immutable",
    )
}

/// One of the client's files, with how long it may be cached; 404 if there is none.
fn file(path: &str, cache: &'static str) -> HttpResponse {
    match find(path) {
        Some((ct, body)) => HttpResponse::Ok()
            .content_type(ct)
            .insert_header(("Cache-Control", cache))
            .body(body.bytes()),
        None => HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("Not found"),
    }
}
