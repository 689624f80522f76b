//! A small TURN client, enough to allocate over UDP or TCP, create permissions, bind channels,
//! send and receive, and see exactly which error a server answers. `meeting-appliance
//! turn-check` uses it; so do the tests (coturn's `turnutils_uclient` is the other client).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use stun::agent::TransactionId;
use stun::attributes::*;
use stun::error_code::ErrorCodeAttribute;
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::*;
use stun::textattrs::TextAttribute;
use stun::xoraddr::XorMappedAddress;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UdpSocket};
use turn::proto::chandata::ChannelData;
use turn::proto::channum::ChannelNumber;
use turn::proto::data::Data;
use turn::proto::dontfrag::DontFragmentAttr;
use turn::proto::lifetime::Lifetime;
use turn::proto::peeraddr::PeerAddress;
use turn::proto::relayaddr::RelayedAddress;
use turn::proto::reqtrans::RequestedTransport;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    /// TURN over TLS: connect with [`TurnClient::connect_tls`].
    Tls,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }
}

#[derive(Debug)]
pub enum TurnError {
    Io(std::io::Error),
    Timeout,
    /// The server answered with an error code.
    Refused {
        code: u16,
        reason: String,
    },
    Protocol(String),
}

impl std::fmt::Display for TurnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TurnError::Io(e) => write!(f, "{e}"),
            TurnError::Timeout => f.write_str("no answer"),
            TurnError::Refused { code, reason } => write!(f, "error {code} {reason}"),
            TurnError::Protocol(s) => write!(f, "unexpected answer: {s}"),
        }
    }
}

impl std::error::Error for TurnError {}

impl From<std::io::Error> for TurnError {
    fn from(e: std::io::Error) -> Self {
        TurnError::Io(e)
    }
}

impl From<stun::Error> for TurnError {
    fn from(e: stun::Error) -> Self {
        TurnError::Protocol(e.to_string())
    }
}

impl TurnError {
    /// The STUN error code, if the server answered with one.
    pub fn code(&self) -> Option<u16> {
        match self {
            TurnError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// What an Allocate got.
#[derive(Clone, Debug)]
pub struct Allocation {
    pub relayed: SocketAddr,
    /// The client's address as the server sees it.
    pub mapped: SocketAddr,
    pub lifetime: u32,
}

/// Data relayed to this client.
#[derive(Clone, Debug)]
pub struct Received {
    /// The peer, for a Data indication.
    pub peer: Option<SocketAddr>,
    /// The channel, for ChannelData.
    pub channel: Option<u16>,
    pub data: Vec<u8>,
}

enum Io {
    Udp(UdpSocket),
    Tcp(BufReader<TcpStream>),
    Tls(Box<BufReader<tokio_rustls::client::TlsStream<TcpStream>>>),
}

pub struct TurnClient {
    io: Io,
    server: SocketAddr,
    username: String,
    password: String,
    realm: String,
    nonce: String,
    key: Option<Vec<u8>>,
    /// Data that arrived while waiting for a response.
    inbox: VecDeque<Vec<u8>>,
    /// How long one request may take (retransmissions included).
    pub timeout: Duration,
}

impl TurnClient {
    pub async fn connect(
        server: SocketAddr,
        transport: Transport,
        username: &str,
        password: &str,
    ) -> Result<TurnClient, TurnError> {
        TurnClient::connect_from(None, server, transport, username, password).await
    }

    /// [`TurnClient::connect`] from the local address `local` (e.g. 127.0.0.2, to be
    /// another client address on loopback); `None`: the one the system picks.
    pub async fn connect_from(
        local: Option<std::net::IpAddr>,
        server: SocketAddr,
        transport: Transport,
        username: &str,
        password: &str,
    ) -> Result<TurnClient, TurnError> {
        let io = match transport {
            Transport::Udp => {
                let any: std::net::IpAddr = if server.is_ipv4() {
                    [0, 0, 0, 0].into()
                } else {
                    [0u16; 8].into()
                };
                Io::Udp(UdpSocket::bind((local.unwrap_or(any), 0)).await?)
            }
            Transport::Tcp => Io::Tcp(BufReader::new(tcp_connect(local, server).await?)),
            Transport::Tls => {
                return Err(TurnError::Protocol(
                    "TLS needs a server name: use connect_tls".into(),
                ));
            }
        };
        Ok(TurnClient::with_io(io, server, username, password))
    }

    /// TURN over TLS to `server`, checking its certificate for `name` against `ca_pem` (a
    /// private CA) or else the public web roots.
    pub async fn connect_tls(
        server: SocketAddr,
        name: &str,
        ca_pem: Option<&str>,
        username: &str,
        password: &str,
    ) -> Result<TurnClient, TurnError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, ServerName};
        let mut roots = rustls::RootCertStore::empty();
        match ca_pem {
            Some(pem) => {
                for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                    let c = c.map_err(|e| TurnError::Protocol(format!("the CA file: {e}")))?;
                    roots
                        .add(c)
                        .map_err(|e| TurnError::Protocol(format!("the CA file: {e}")))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TurnError::Protocol(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from(name.to_string())
            .map_err(|e| TurnError::Protocol(format!("{name:?}: {e}")))?;
        let tcp = tcp_connect(None, server).await?;
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
        let tls = tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
            .await
            .map_err(|_| TurnError::Timeout)??;
        let io = Io::Tls(Box::new(BufReader::new(tls)));
        Ok(TurnClient::with_io(io, server, username, password))
    }

    fn with_io(io: Io, server: SocketAddr, username: &str, password: &str) -> TurnClient {
        TurnClient {
            io,
            server,
            username: username.to_string(),
            password: password.to_string(),
            realm: String::new(),
            nonce: String::new(),
            key: None,
            inbox: VecDeque::new(),
            timeout: Duration::from_secs(5),
        }
    }

    pub fn transport(&self) -> Transport {
        match self.io {
            Io::Udp(_) => Transport::Udp,
            Io::Tcp(_) => Transport::Tcp,
            Io::Tls(_) => Transport::Tls,
        }
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match &self.io {
            Io::Udp(s) => s.local_addr(),
            Io::Tcp(s) => s.get_ref().local_addr(),
            Io::Tls(s) => s.get_ref().get_ref().0.local_addr(),
        }
    }

    async fn send_raw(&mut self, raw: &[u8]) -> std::io::Result<()> {
        match &mut self.io {
            Io::Udp(s) => s.send_to(raw, self.server).await.map(|_| ()),
            Io::Tcp(s) => s.get_mut().write_all(raw).await,
            Io::Tls(s) => {
                let s = s.get_mut();
                s.write_all(raw).await?;
                s.flush().await
            }
        }
    }

    async fn recv_raw(&mut self, until: Instant) -> Result<Vec<u8>, TurnError> {
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match &mut self.io {
                Io::Udp(s) => {
                    let mut buf = vec![0u8; 65536];
                    let (n, from) = tokio::time::timeout(left, s.recv_from(&mut buf))
                        .await
                        .map_err(|_| TurnError::Timeout)??;
                    if from != self.server {
                        continue;
                    }
                    buf.truncate(n);
                    return Ok(buf);
                }
                Io::Tcp(s) => return read_stream_frame(s, left).await,
                Io::Tls(s) => return read_stream_frame(s.as_mut(), left).await,
            }
        }
    }

    /// Sends `msg` and waits for the response with its transaction id; over UDP, resends
    /// with doubling intervals.
    async fn transact(&mut self, msg: &Message) -> Result<Message, TurnError> {
        let until = Instant::now() + self.timeout;
        let udp = matches!(self.io, Io::Udp(_));
        let mut rto = Duration::from_millis(250);
        loop {
            self.send_raw(&msg.raw).await?;
            let resend_at = if udp {
                (Instant::now() + rto).min(until)
            } else {
                until
            };
            rto *= 2;
            loop {
                let raw = match self.recv_raw(resend_at).await {
                    Ok(r) => r,
                    Err(TurnError::Timeout) if Instant::now() < until => break,
                    Err(e) => return Err(e),
                };
                if is_message(&raw) {
                    let mut m = Message::new();
                    m.raw = raw.clone();
                    if m.decode().is_ok()
                        && m.transaction_id == msg.transaction_id
                        && (m.typ.class == CLASS_SUCCESS_RESPONSE
                            || m.typ.class == CLASS_ERROR_RESPONSE)
                    {
                        return Ok(m);
                    }
                }
                self.inbox.push_back(raw);
            }
        }
    }

    fn build(&self, method: Method, attrs: Vec<Box<dyn Setter>>) -> Result<Message, TurnError> {
        let mut all: Vec<Box<dyn Setter>> = vec![
            Box::new(TransactionId::new()),
            Box::new(MessageType::new(method, CLASS_REQUEST)),
        ];
        all.extend(attrs);
        if let Some(key) = &self.key {
            all.push(Box::new(TextAttribute::new(
                ATTR_USERNAME,
                self.username.clone(),
            )));
            all.push(Box::new(TextAttribute::new(ATTR_REALM, self.realm.clone())));
            all.push(Box::new(TextAttribute::new(ATTR_NONCE, self.nonce.clone())));
            all.push(Box::new(MessageIntegrity(key.clone())));
        }
        all.push(Box::new(FINGERPRINT));
        let mut m = Message::new();
        m.build(&all)?;
        Ok(m)
    }

    /// A request with the long-term credential dance: 401 → take realm and nonce, sign,
    /// resend; 438 → take the new nonce, resend.
    async fn request(
        &mut self,
        method: Method,
        attrs: impl Fn() -> Vec<Box<dyn Setter>>,
    ) -> Result<Message, TurnError> {
        for _ in 0..4 {
            let signed = self.key.is_some();
            let msg = self.build(method, attrs())?;
            let res = self.transact(&msg).await?;
            if res.typ.class == CLASS_SUCCESS_RESPONSE {
                return Ok(res);
            }
            let mut ec = ErrorCodeAttribute::default();
            ec.get_from(&res)?;
            let code = ec.code.0;
            let text = |t| TextAttribute::get_from_as(&res, t).map(|a| a.text);
            match code {
                401 if !signed => {
                    self.realm = text(ATTR_REALM)?;
                    self.nonce = text(ATTR_NONCE)?;
                    self.key = Some(
                        MessageIntegrity::new_long_term_integrity(
                            self.username.clone(),
                            self.realm.clone(),
                            self.password.clone(),
                        )
                        .0,
                    );
                }
                438 => self.nonce = text(ATTR_NONCE)?,
                _ => {
                    return Err(TurnError::Refused {
                        code,
                        reason: String::from_utf8_lossy(&ec.reason).into_owned(),
                    });
                }
            }
        }
        Err(TurnError::Protocol(
            "the server keeps asking for credentials".into(),
        ))
    }

    /// STUN Binding: this client's address as the server sees it.
    pub async fn binding(&mut self) -> Result<SocketAddr, TurnError> {
        let mut m = Message::new();
        m.build(&[Box::new(TransactionId::new()), Box::new(BINDING_REQUEST)])?;
        let res = self.transact(&m).await?;
        let mut a = XorMappedAddress::default();
        a.get_from(&res)?;
        Ok(SocketAddr::new(a.ip, a.port))
    }

    pub async fn allocate(
        &mut self,
        lifetime: Option<u32>,
        dont_fragment: bool,
    ) -> Result<Allocation, TurnError> {
        let res = self
            .request(METHOD_ALLOCATE, || {
                let mut a: Vec<Box<dyn Setter>> = vec![Box::new(RequestedTransport {
                    protocol: turn::proto::PROTO_UDP,
                })];
                if let Some(l) = lifetime {
                    a.push(Box::new(Lifetime(Duration::from_secs(u64::from(l)))));
                }
                if dont_fragment {
                    a.push(Box::new(DontFragmentAttr));
                }
                a
            })
            .await?;
        let mut relayed = RelayedAddress::default();
        relayed.get_from(&res)?;
        let mut mapped = XorMappedAddress::default();
        mapped.get_from(&res)?;
        let mut l = Lifetime::default();
        l.get_from(&res)?;
        Ok(Allocation {
            relayed: SocketAddr::new(relayed.ip, relayed.port),
            mapped: SocketAddr::new(mapped.ip, mapped.port),
            lifetime: u32::try_from(l.0.as_secs()).unwrap_or(u32::MAX),
        })
    }

    /// Refresh; 0 deletes the allocation. Returns the granted lifetime.
    pub async fn refresh(&mut self, lifetime: u32) -> Result<u32, TurnError> {
        let res = self
            .request(METHOD_REFRESH, || {
                vec![Box::new(Lifetime(Duration::from_secs(u64::from(lifetime))))]
            })
            .await?;
        let mut l = Lifetime::default();
        l.get_from(&res)?;
        Ok(u32::try_from(l.0.as_secs()).unwrap_or(u32::MAX))
    }

    pub async fn create_permission(&mut self, peers: &[SocketAddr]) -> Result<(), TurnError> {
        self.request(METHOD_CREATE_PERMISSION, || {
            peers
                .iter()
                .map(|p| {
                    Box::new(PeerAddress {
                        ip: p.ip(),
                        port: p.port(),
                    }) as Box<dyn Setter>
                })
                .collect()
        })
        .await
        .map(|_| ())
    }

    pub async fn channel_bind(&mut self, number: u16, peer: SocketAddr) -> Result<(), TurnError> {
        self.request(METHOD_CHANNEL_BIND, || {
            vec![
                Box::new(ChannelNumber(number)),
                Box::new(PeerAddress {
                    ip: peer.ip(),
                    port: peer.port(),
                }),
            ]
        })
        .await
        .map(|_| ())
    }

    /// A Send indication (no answer).
    pub async fn send_indication(
        &mut self,
        peer: SocketAddr,
        data: &[u8],
    ) -> Result<(), TurnError> {
        let mut m = Message::new();
        m.build(&[
            Box::new(TransactionId::new()),
            Box::new(MessageType::new(METHOD_SEND, CLASS_INDICATION)),
            Box::new(PeerAddress {
                ip: peer.ip(),
                port: peer.port(),
            }),
            Box::new(Data(data.to_vec())),
        ])?;
        self.send_raw(&m.raw).await?;
        Ok(())
    }

    pub async fn send_channel(&mut self, number: u16, data: &[u8]) -> Result<(), TurnError> {
        let mut c = ChannelData {
            data: data.to_vec(),
            number: ChannelNumber(number),
            raw: vec![],
        };
        c.encode();
        self.send_raw(&c.raw).await?;
        Ok(())
    }

    /// The next relayed data (Data indication or ChannelData), waiting up to `wait`.
    pub async fn recv_data(&mut self, wait: Duration) -> Result<Received, TurnError> {
        let until = Instant::now() + wait;
        loop {
            let raw = match self.inbox.pop_front() {
                Some(r) => r,
                None => self.recv_raw(until).await?,
            };
            if ChannelData::is_channel_data(&raw) {
                let mut c = ChannelData {
                    raw,
                    ..Default::default()
                };
                if c.decode().is_ok() {
                    return Ok(Received {
                        peer: None,
                        channel: Some(c.number.0),
                        data: c.data,
                    });
                }
                continue;
            }
            let mut m = Message::new();
            m.raw = raw;
            if m.decode().is_err() || m.typ != MessageType::new(METHOD_DATA, CLASS_INDICATION) {
                continue;
            }
            let mut peer = PeerAddress::default();
            let mut data = Data::default();
            if peer.get_from(&m).is_ok() && data.get_from(&m).is_ok() {
                return Ok(Received {
                    peer: Some(SocketAddr::new(peer.ip, peer.port)),
                    channel: None,
                    data: data.0,
                });
            }
        }
    }
}

async fn tcp_connect(
    local: Option<std::net::IpAddr>,
    server: SocketAddr,
) -> Result<TcpStream, TurnError> {
    let connect = async {
        match local {
            None => TcpStream::connect(server).await,
            Some(ip) => {
                let sock = if server.is_ipv4() {
                    tokio::net::TcpSocket::new_v4()?
                } else {
                    tokio::net::TcpSocket::new_v6()?
                };
                sock.bind(SocketAddr::new(ip, 0))?;
                sock.connect(server).await
            }
        }
    };
    let s = tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .map_err(|_| TurnError::Timeout)??;
    let _ = s.set_nodelay(true);
    Ok(s)
}

async fn read_stream_frame<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
    left: Duration,
) -> Result<Vec<u8>, TurnError> {
    match tokio::time::timeout(left, super::tcp::read_frame(r)).await {
        Err(_) => Err(TurnError::Timeout),
        Ok(Ok(Some(f))) => Ok(f),
        Ok(Ok(None)) => Err(TurnError::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the server closed the connection",
        ))),
        Ok(Err(e)) => Err(e.into()),
    }
}
