//! Embeds the built web client (`web/dist`, from `make web`) into the binary.
//!
//! Runs nothing heavy: it only lists the files `npm run build` left in `web/dist` and writes
//! `include_bytes!` lines for them. Without a build (a fresh clone and plain `cargo run`) the
//! list is empty and the server answers with a page that says how to build the client.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let dist = root.join("web/dist");
    let mut files = Vec::new();
    if dist.join("index.html").is_file() {
        collect(&dist, &dist, &mut files);
        println!("cargo:rerun-if-changed=web/dist");
    } else {
        // Watch web/ so that a later `make web` (which creates web/dist) is picked up.
        println!("cargo:rerun-if-changed=web");
    }
    files.sort();
    let mut out = String::from(
        "/// The built web client: (URL path, content type, bytes).\n\
         pub static WEB_ASSETS: &[(&str, &str, &[u8])] = &[\n",
    );
    for (url, path) in &files {
        let _ = writeln!(
            out,
            "    ({url:?}, {:?}, include_bytes!(concat!(env!(\"CARGO_MANIFEST_DIR\"), {:?}))),",
            content_type(url),
            format!("/{}", path.strip_prefix(&root).unwrap_or(path).display())
        );
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("web_assets.rs");
    std::fs::write(dest, out).expect("write web_assets.rs");
}

fn collect(base: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(base, &p, out);
        } else if let Ok(rel) = p.strip_prefix(base) {
            let url = format!("/{}", rel.to_string_lossy().replace('\\', "/"));
            out.push((url, p));
        }
    }
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, e)| e) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") | Some("mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("json") | Some("map") => "application/json",
        Some("txt") => "text/plain; charset=utf-8",
        Some("wasm") => "application/wasm",
        _ => "application/octet-stream",
    }
}
