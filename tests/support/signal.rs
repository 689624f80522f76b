//! A signaling client for tests that speak the sfuserver's WebSocket protocol directly
//! (attacks, refusals): JSON messages with deadlines, the close reason, what was seen.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// One signaling session.
pub struct Session {
    pub ws: WebSocketStream<TcpStream>,
    pub participant: String,
    /// Every message seen so far, in order.
    pub seen: Vec<Value>,
    /// The reason in the server's close frame, once it came.
    pub close_reason: Option<String>,
}

/// The signal URL's `host:port`.
pub fn signal_addr(answer: &Value) -> String {
    let u =
        url::Url::parse(answer["sfu"]["signal_url"].as_str().expect("signal_url")).expect("url");
    format!(
        "{}:{}",
        u.host_str().expect("host"),
        u.port_or_known_default().expect("port")
    )
}

/// Opens signaling with a join answer over `tcp` and sends `join`; does not wait for `joined`.
pub async fn connect_over(tcp: TcpStream, answer: &Value) -> Session {
    let url = answer["sfu"]["signal_url"].as_str().expect("signal_url");
    let (ws, _) = tokio_tungstenite::client_async(url, tcp)
        .await
        .expect("websocket upgrade");
    let mut s = Session {
        ws,
        participant: answer["participant_id"]
            .as_str()
            .expect("participant_id")
            .to_string(),
        seen: Vec::new(),
        close_reason: None,
    };
    assert!(
        s.send(json!({"type": "join", "token": answer["token"]}))
            .await,
        "send join"
    );
    s
}

/// As [`connect_over`], dialing the signal URL.
pub async fn connect(answer: &Value) -> Session {
    let tcp = TcpStream::connect(signal_addr(answer))
        .await
        .expect("connect");
    connect_over(tcp, answer).await
}

/// Opens signaling over `tcp` and waits for `joined`.
pub async fn open_over(tcp: TcpStream, answer: &Value) -> Session {
    let mut s = connect_over(tcp, answer).await;
    s.until("joined", Duration::from_secs(10)).await;
    s
}

/// Opens signaling and waits for `joined`.
pub async fn open(answer: &Value) -> Session {
    let mut s = connect(answer).await;
    s.until("joined", Duration::from_secs(10)).await;
    s
}

impl Session {
    pub async fn send(&mut self, v: Value) -> bool {
        self.ws.send(Message::text(v.to_string())).await.is_ok()
    }

    /// The next JSON message, or None when the session ended.
    pub async fn next(&mut self, deadline: Duration) -> Option<Value> {
        loop {
            match tokio::time::timeout(deadline, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    let v: Value = serde_json::from_str(&t).expect("server sends JSON");
                    self.seen.push(v.clone());
                    return Some(v);
                }
                Ok(Some(Ok(Message::Close(frame)))) => {
                    self.close_reason = frame.map(|f| f.reason.to_string());
                    return None;
                }
                Ok(None) | Ok(Some(Err(_))) => return None,
                Ok(Some(Ok(_))) => continue,
                Err(_) => panic!("nothing from the server for {deadline:?}"),
            }
        }
    }

    /// Reads until a message of type `ty` (panics if the session ends first).
    pub async fn until(&mut self, ty: &str, deadline: Duration) -> Value {
        let end = Instant::now() + deadline;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let m = self
                .next(left.max(Duration::from_millis(1)))
                .await
                .unwrap_or_else(|| panic!("session ended while waiting for {ty}"));
            if m["type"] == ty {
                return m;
            }
        }
    }

    /// Reads until the session ends: the `closed` message's reason (or the close frame's).
    pub async fn until_closed(&mut self, deadline: Duration) -> Option<String> {
        let end = Instant::now() + deadline;
        let mut reason = None;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "the session was not closed within {deadline:?}"
            );
            match self.next(left).await {
                None => return reason.or_else(|| self.close_reason.take()),
                Some(m) if m["type"] == "closed" => {
                    reason = m["reason"].as_str().map(str::to_string);
                }
                Some(_) => {}
            }
        }
    }

    /// A ping the media worker answers (the signaling session hands it to the worker).
    pub async fn alive(&mut self) {
        assert!(self.send(json!({"type": "ping"})).await, "send ping");
        self.until("pong", Duration::from_secs(10)).await;
    }

    /// The reason of the `participant_left` for `who` (seen already or still to come).
    pub async fn left_reason(&mut self, who: &str, deadline: Duration) -> String {
        let is_it = |m: &Value| m["type"] == "participant_left" && m["participant_id"] == who;
        if let Some(m) = self.seen.iter().find(|m| is_it(m)) {
            return m["reason"].as_str().unwrap_or("").to_string();
        }
        let end = Instant::now() + deadline;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let m = self.until("participant_left", left).await;
            if is_it(&m) {
                return m["reason"].as_str().unwrap_or("").to_string();
            }
        }
    }
}
