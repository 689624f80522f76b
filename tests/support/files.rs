//! Files over real HTTP: a raw HTTP/1.1 client for what URL libraries will not do (stream a
//! generated body of any size, chunked bodies, hang up in the middle of a body, send `../`
//! paths as they are), downloads hashed while they stream, the upload flow of the API
//! (grant → PUT → commit), and the resident memory of a process from `/proc`.
//!
//! The raw client is blocking (std sockets); call it from `spawn_blocking` in async tests.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::io::{self, BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::api::call;

/// Deterministic pseudo-random bytes (xorshift64*), so a test can make and check 200 MiB
/// without keeping them.
pub struct Pattern(u64);

impl Pattern {
    pub fn new(seed: u64) -> Pattern {
        Pattern(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// `len` bytes of the pattern `seed`.
pub fn pattern_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    Pattern::new(seed).fill(&mut v);
    v
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// "http://host:port/p?q" → ("host:port", "/p?q").
pub fn split_url(url: &str) -> (String, String) {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    match rest.find('/') {
        Some(i) => (rest[..i].to_string(), rest[i..].to_string()),
        None => (rest.to_string(), "/".to_string()),
    }
}

/// One response as read off the socket.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn error_code(&self) -> String {
        self.json()["error"].as_str().unwrap_or("").to_string()
    }
}

fn connect(addr: &str) -> io::Result<TcpStream> {
    let s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    s.set_write_timeout(Some(Duration::from_secs(120)))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Reads a response head (skipping 1xx) and returns (status, headers).
fn read_head(r: &mut impl BufRead) -> io::Result<(u16, Vec<(String, String)>)> {
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "no response"));
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad status line {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            r.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        if !(100..200).contains(&status) {
            return Ok((status, headers));
        }
    }
}

/// Reads a body (content-length, chunked or to EOF), giving each piece to `sink`.
fn read_body(
    r: &mut impl BufRead,
    headers: &[(String, String)],
    head_request: bool,
    mut sink: impl FnMut(&[u8]),
) -> io::Result<()> {
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    if head_request {
        return Ok(());
    }
    let mut buf = vec![0u8; 256 * 1024];
    if let Some(len) = get("content-length").and_then(|v| v.parse::<u64>().ok()) {
        let mut left = len;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = r.read(&mut buf[..want])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "body cut short",
                ));
            }
            sink(&buf[..n]);
            left -= n as u64;
        }
    } else if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|e| io::Error::other(format!("chunk size {size:?}: {e}")))?;
            if n == 0 {
                let mut end = String::new();
                r.read_line(&mut end)?;
                break;
            }
            let mut chunk = vec![0u8; n];
            r.read_exact(&mut chunk)?;
            sink(&chunk);
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf)?;
        }
    } else {
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                break;
            }
            sink(&buf[..n]);
        }
    }
    Ok(())
}

fn read_response(s: TcpStream, head_request: bool) -> io::Result<RawResponse> {
    let mut r = BufReader::new(s);
    let (status, headers) = read_head(&mut r)?;
    let mut body = Vec::new();
    read_body(&mut r, &headers, head_request, |b| {
        body.extend_from_slice(b)
    })?;
    Ok(RawResponse {
        status,
        headers,
        body,
    })
}

/// Sends `head` (request line and headers, without the blank line) and `body` exactly as given.
pub fn raw(addr: &str, head: &str, body: &[u8]) -> io::Result<RawResponse> {
    let mut s = connect(addr)?;
    let is_head = head.starts_with("HEAD ");
    s.write_all(format!("{head}\r\nConnection: close\r\n\r\n").as_bytes())?;
    s.write_all(body)?;
    read_response(s, is_head)
}

/// A request to `url` with extra header lines and a body (Content-Length is added).
pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> RawResponse {
    let (addr, path) = split_url(url);
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}");
    for (k, v) in headers {
        head.push_str(&format!("\r\n{k}: {v}"));
    }
    if method != "GET" && method != "HEAD" {
        head.push_str(&format!("\r\nContent-Length: {}", body.len()));
    }
    raw(&addr, &head, body).unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

/// PUTs `len` bytes of pattern `seed` with a Content-Length, hashing as it writes.
/// Returns the response, the sha256 of what was sent, and how long the body took.
pub fn put_pattern(
    url: &str,
    content_type: &str,
    len: u64,
    seed: u64,
) -> (RawResponse, String, Duration) {
    let (addr, path) = split_url(url);
    let mut s = connect(&addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).expect("send head");
    let mut p = Pattern::new(seed);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut left = len;
    let started = Instant::now();
    while left > 0 {
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        p.fill(&mut buf[..n]);
        h.update(&buf[..n]);
        s.write_all(&buf[..n])
            .unwrap_or_else(|e| panic!("sending the body: {e}"));
        left -= n as u64;
    }
    let resp = read_response(s, false).expect("upload response");
    (resp, hex::encode(h.finalize()), started.elapsed())
}

/// PUTs `total` pattern bytes in 64 KiB pieces, declaring `declared` as Content-Length, or
/// with chunked transfer encoding (no length declared) when `declared` is `None`. The server
/// may answer and hang up before the body ends (a limit hit): then the write error is
/// ignored and the answer read. `Err` when there is no answer at all.
pub fn put_stream(
    url: &str,
    declared: Option<u64>,
    total: u64,
    seed: u64,
) -> Result<RawResponse, String> {
    let (addr, path) = split_url(url);
    let mut s = connect(&addr).map_err(|e| e.to_string())?;
    let reader = s.try_clone().map_err(|e| e.to_string())?;
    // Read concurrently: the answer may come while we are still sending.
    let answer = thread::spawn(move || read_response(reader, false));
    let framing = match declared {
        Some(n) => format!("Content-Length: {n}"),
        None => "Transfer-Encoding: chunked".to_string(),
    };
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/octet-stream\r\n{framing}\r\nConnection: close\r\n\r\n"
    );
    let chunked = declared.is_none();
    let mut p = Pattern::new(seed);
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = total;
    let mut send = || -> io::Result<()> {
        s.write_all(head.as_bytes())?;
        while left > 0 {
            let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            p.fill(&mut buf[..n]);
            if chunked {
                s.write_all(format!("{n:x}\r\n").as_bytes())?;
            }
            s.write_all(&buf[..n])?;
            if chunked {
                s.write_all(b"\r\n")?;
            }
            left -= n as u64;
        }
        if chunked {
            s.write_all(b"0\r\n\r\n")?;
        }
        Ok(())
    };
    let sent = send();
    match answer.join() {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(format!("no answer ({e}); sending: {sent:?}")),
        Err(_) => Err("reader thread panicked".into()),
    }
}

/// Declares `declared` bytes, sends `send` of them, then closes the connection (a client
/// that went away mid-upload).
pub fn put_then_hang_up(url: &str, declared: u64, send: u64, seed: u64) {
    let (addr, path) = split_url(url);
    let mut s = connect(&addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/octet-stream\r\nContent-Length: {declared}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).expect("send head");
    let data = pattern_bytes(seed, usize::try_from(send).expect("size"));
    s.write_all(&data).expect("send part of the body");
    s.flush().expect("flush");
    drop(s);
}

/// GETs `url` (with extra headers), hashing the body as it streams. Returns the response
/// without body, the body's length and sha256, and how long the body took.
pub fn get_hashed(url: &str, headers: &[(&str, &str)]) -> (RawResponse, u64, String, Duration) {
    let (addr, path) = split_url(url);
    let mut s = connect(&addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let mut head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close");
    for (k, v) in headers {
        head.push_str(&format!("\r\n{k}: {v}"));
    }
    head.push_str("\r\n\r\n");
    s.write_all(head.as_bytes()).expect("send request");
    let mut r = BufReader::with_capacity(256 * 1024, s);
    let (status, hdrs) = read_head(&mut r).expect("response head");
    let mut h = Sha256::new();
    let mut len = 0u64;
    let started = Instant::now();
    read_body(&mut r, &hdrs, false, |b| {
        h.update(b);
        len += b.len() as u64;
    })
    .expect("response body");
    (
        RawResponse {
            status,
            headers: hdrs,
            body: Vec::new(),
        },
        len,
        hex::encode(h.finalize()),
        started.elapsed(),
    )
}

/// Resident memory of a process in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Samples a process's RSS every 10 ms until stopped; keeps the highest value.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    max: Arc<AtomicU64>,
    samples: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl RssSampler {
    pub fn start(pid: u32) -> RssSampler {
        let (stop, max, samples) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let thread = {
            let (stop, max, samples) = (stop.clone(), max.clone(), samples.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    if let Some(kib) = rss_kib(pid) {
                        max.fetch_max(kib, Ordering::SeqCst);
                        samples.fetch_add(1, Ordering::SeqCst);
                    }
                    thread::sleep(Duration::from_millis(10));
                }
            })
        };
        RssSampler {
            stop,
            max,
            samples,
            thread: Some(thread),
        }
    }

    /// Stops; returns (highest RSS in KiB, number of samples).
    pub fn stop(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        (
            self.max.load(Ordering::SeqCst),
            self.samples.load(Ordering::SeqCst),
        )
    }
}

/// `POST /api/v1/meetings/{id}/files` with Bearer `token`; returns (status, body).
pub async fn grant(base: &str, token: &str, meeting: i64, body: Value) -> (u16, Value) {
    let a = call(
        "POST",
        &format!("{base}/api/v1/meetings/{meeting}/files"),
        Some(token),
        Some(body),
    )
    .await;
    (a.status, a.body)
}

/// The whole flow for small files: grant, PUT the bytes, commit the receipt. Returns the
/// file as the API lists it.
pub async fn upload(
    base: &str,
    token: &str,
    meeting: i64,
    name: &str,
    content_type: &str,
    data: Vec<u8>,
) -> Value {
    let (s, g) = grant(
        base,
        token,
        meeting,
        json!({"name": name, "content_type": content_type, "size": data.len()}),
    )
    .await;
    assert_eq!(s, 201, "upload grant: {g:?}");
    let url = g["upload_url"].as_str().expect("upload_url").to_string();
    let ct = content_type.to_string();
    let put =
        tokio::task::spawn_blocking(move || request("PUT", &url, &[("Content-Type", &ct)], &data))
            .await
            .expect("PUT thread");
    assert_eq!(
        put.status,
        201,
        "PUT: {:?}",
        String::from_utf8_lossy(&put.body)
    );
    commit(base, token, meeting, &g["id"], &put.json()["receipt"]).await
}

/// Commits an upload's receipt; asserts 201 and returns the file.
pub async fn commit(base: &str, token: &str, meeting: i64, id: &Value, receipt: &Value) -> Value {
    let id = id.as_str().expect("file id");
    let a = call(
        "POST",
        &format!("{base}/api/v1/meetings/{meeting}/files/{id}/commit"),
        Some(token),
        Some(json!({"receipt": receipt})),
    )
    .await;
    assert_eq!(a.status, 201, "commit: {:?}", a.body);
    a.body
}

/// Every file under `dir`, relative paths, sorted (what is on disk).
pub fn tree(dir: &std::path::Path) -> Vec<String> {
    fn walk(base: &std::path::Path, d: &std::path::Path, out: &mut Vec<String>) {
        if let Ok(entries) = std::fs::read_dir(d) {
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(base, &p, out);
                } else {
                    out.push(
                        p.strip_prefix(base)
                            .unwrap_or(&p)
                            .to_string_lossy()
                            .into_owned(),
                    );
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}
