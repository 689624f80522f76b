//! Talking to the appliance's HTTP API from tests: a client, JSON calls, sign-in through the
//! real SMTP sink.

use super::{Appliance, Mail, SmtpSink, wait_until};
use serde_json::Value;
use std::time::Duration;

/// Set by tests of deployments on self-signed certificates (split hosts on private
/// addresses): the client then plays a browser told to trust them.
pub static TRUST_ANY_CERTIFICATE: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

pub fn client() -> reqwest::Client {
    meeting_appliance::util::install_ring_provider();
    reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(
            TRUST_ANY_CERTIFICATE.load(std::sync::atomic::Ordering::Relaxed),
        )
        .build()
        .expect("reqwest client")
}

/// The web client's page at `path`: its Content-Security-Policy and its HTML.
pub async fn page(app: &Appliance, path: &str) -> (String, String) {
    let page = client().get(app.url(path)).send().await.expect("the page");
    let csp = page
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (csp, page.text().await.expect("the page's text"))
}

/// One answer: status, headers, JSON body (Null when the body is empty or not JSON).
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn error_code(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }
}

pub async fn call(method: &str, url: &str, token: Option<&str>, body: Option<Value>) -> Answer {
    let c = client();
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut rb = c.request(m, url);
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let resp = rb
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.expect("body");
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

/// Raw body with a content type (for malformed-input tests).
pub async fn post_raw(url: &str, content_type: &str, body: Vec<u8>) -> Answer {
    let resp = client()
        .post(url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.expect("body");
    Answer {
        status,
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

/// Mails the sink received for `email`.
pub fn mails_to(sink: &SmtpSink, email: &str) -> Vec<Mail> {
    sink.messages()
        .into_iter()
        .filter(|m| m.to().contains(email))
        .collect()
}

/// Waits for the `n`-th mail to `email` and returns it.
pub fn nth_mail_to(sink: &SmtpSink, email: &str, n: usize) -> Mail {
    wait_until(
        Duration::from_secs(30),
        &format!("mail #{n} to {email}"),
        || {
            let mut v = mails_to(sink, email);
            if v.len() >= n {
                Some(v.swap_remove(n - 1))
            } else {
                None
            }
        },
    )
}

/// The 6-digit code in a sign-in mail.
pub fn code_in(mail: &Mail) -> String {
    let body = mail.text_body();
    let at = body
        .find("Your sign-in code is ")
        .expect("sign-in mail text");
    body[at + 21..at + 27].to_string()
}

/// Requests a code, reads it from the sink, verifies it; returns the session token.
pub async fn sign_in(app: &Appliance, sink: &SmtpSink, email: &str) -> String {
    let lower = email.to_ascii_lowercase();
    let before = mails_to(sink, &lower).len();
    let a = call(
        "POST",
        &app.url("/api/v1/auth/code"),
        None,
        Some(serde_json::json!({"email": email})),
    )
    .await;
    assert_eq!(a.status, 204, "code request: {:?}", a.body);
    let code = code_in(&nth_mail_to(sink, &lower, before + 1));
    let a = call(
        "POST",
        &app.url("/api/v1/auth/verify"),
        None,
        Some(serde_json::json!({"email": email, "code": code})),
    )
    .await;
    assert_eq!(a.status, 200, "verify: {:?}", a.body);
    a.body["token"].as_str().expect("token").to_string()
}

/// `--mailServer 127.0.0.1 --mailPort P --mailFrom …` for a sink.
pub fn mail_args(sink_port: u16) -> Vec<String> {
    vec![
        "--mailServer".into(),
        "127.0.0.1".into(),
        "--mailPort".into(),
        sink_port.to_string(),
        "--mailFrom".into(),
        "meetings@corp.test".into(),
        "--mailTls".into(),
        "none".into(),
    ]
}

/// A signaling session held open: the sfuserver reports its participant as present (notes
/// and files follow presence, not the join answer). Dropped: the participant leaves.
pub struct Presence {
    pub ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
}

/// Enters the media session of a join answer (signaling `join`, waits for `joined`), then
/// polls until the apiserver has recorded the entry (`GET /meetings/{id}/notes` with the join
/// token, or `check` for signed-in people, answers 200).
pub async fn enter(answer: &Value) -> Presence {
    Presence {
        ws: super::signal::open(answer).await.ws,
    }
}

/// Waits until `f` answers true (the apiserver recorded what the sfuserver reported).
pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
