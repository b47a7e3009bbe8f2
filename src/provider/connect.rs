//! Reaching an upstream: DNS resolution on monoio's blocking pool (a worker never blocks on
//! `getaddrinfo`), cached per worker; TCP connect with a timeout and TCP_NODELAY; TLS through
//! monoio-rustls with certificate verification against the webpki roots and SNI.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::net::TcpStream;
use monoio::BufResult;
use monoio_rustls::TlsConnector;
use nix::errno::Errno;
use nix::sys::socket::{self, MsgFlags};
use rustls::pki_types::{CertificateDer, ServerName};
use thiserror::Error;

use super::Upstream;

/// How long a resolved address list is reused.
const DNS_TTL: Duration = Duration::from_secs(30);

/// Why an upstream connection could not be made.
#[derive(Debug, Error)]
pub enum ConnectError {
    #[error("cannot resolve {host}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("connect to {addr} failed: {source}")]
    Tcp { addr: SocketAddr, source: io::Error },
    #[error("connect to {0} timed out")]
    Timeout(String),
    #[error("TLS handshake with {host} failed: {reason}")]
    Tls { host: String, reason: String },
}

/// A connection to an upstream, plain or TLS.
pub enum UpstreamConn {
    Plain(TcpStream),
    /// A TLS stream, and its socket's descriptor (the stream does not lend its socket out).
    Tls(Box<monoio_rustls::ClientTlsStream<TcpStream>>, RawFd),
}

/// What an idle pooled connection shows when looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdleState {
    /// Nothing to read: fit for the next request.
    Quiet,
    /// The upstream closed it (or the socket failed).
    Closed,
    /// The upstream sent bytes no request asked for.
    Unsolicited,
}

impl UpstreamConn {
    /// Whether the upstream sent anything (or closed) while the connection sat idle: bytes no
    /// request asked for must never be read as the answer to the next one. Peeks at the
    /// socket without waiting.
    pub fn idle_state(&self) -> IdleState {
        let fd = match self {
            UpstreamConn::Plain(s) => s.as_raw_fd(),
            UpstreamConn::Tls(_, fd) => *fd,
        };
        let mut probe = [0u8; 1];
        let flags = MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT;
        match socket::recv(fd, &mut probe, flags) {
            Err(Errno::EAGAIN) => IdleState::Quiet,
            Ok(n) if n > 0 => IdleState::Unsolicited,
            _ => IdleState::Closed,
        }
    }
}

impl AsyncReadRent for UpstreamConn {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            UpstreamConn::Plain(s) => s.read(buf).await,
            UpstreamConn::Tls(s, _) => s.read(buf).await,
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            UpstreamConn::Plain(s) => s.readv(buf).await,
            UpstreamConn::Tls(s, _) => s.readv(buf).await,
        }
    }
}

impl AsyncWriteRent for UpstreamConn {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            UpstreamConn::Plain(s) => s.write(buf).await,
            UpstreamConn::Tls(s, _) => s.write(buf).await,
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            UpstreamConn::Plain(s) => s.writev(buf).await,
            UpstreamConn::Tls(s, _) => s.writev(buf).await,
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            UpstreamConn::Plain(s) => s.flush().await,
            UpstreamConn::Tls(s, _) => s.flush().await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            UpstreamConn::Plain(s) => s.shutdown().await,
            UpstreamConn::Tls(s, _) => s.shutdown().await,
        }
    }
}

/// A TLS client configuration: ring, the webpki roots plus `extra_roots`, TLS 1.2 and 1.3,
/// certificate and host name verification always on.
pub fn tls_connector(
    extra_roots: &[CertificateDer<'static>],
) -> Result<TlsConnector, rustls::Error> {
    Ok(TlsConnector::from(client_config(extra_roots)?))
}

/// The rustls client configuration behind [`tls_connector`] (also used by side threads).
pub fn client_config(
    extra_roots: &[CertificateDer<'static>],
) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in extra_roots {
        roots.add(cert.clone())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Resolved addresses by (host, port), with when they were resolved.
type DnsCache = HashMap<(String, u16), (Vec<SocketAddr>, Instant)>;

/// Per-worker connector: the DNS cache (TLS settings come with each upstream).
#[derive(Default)]
pub struct Connector {
    dns: RefCell<DnsCache>,
}

impl Connector {
    pub fn new() -> Self {
        Self::default()
    }

    /// Opens a new connection to `upstream` within `timeout`.
    pub async fn connect(
        &self,
        upstream: &Upstream,
        timeout: Duration,
    ) -> Result<UpstreamConn, ConnectError> {
        let work = async {
            let addrs = self.resolve(&upstream.host, upstream.port).await?;
            let stream = connect_any(&addrs).await?;
            let _ = stream.set_nodelay(true);
            let Some(tls) = upstream.tls_client.as_ref().filter(|_| upstream.tls) else {
                return Ok(UpstreamConn::Plain(stream));
            };
            let name =
                ServerName::try_from(upstream.host.clone()).map_err(|e| ConnectError::Tls {
                    host: upstream.host.clone(),
                    reason: e.to_string(),
                })?;
            let fd = stream.as_raw_fd();
            let tls = tls
                .0
                .connect(name, stream)
                .await
                .map_err(|e| ConnectError::Tls {
                    host: upstream.host.clone(),
                    reason: e.to_string(),
                })?;
            Ok(UpstreamConn::Tls(Box::new(tls), fd))
        };
        monoio::time::timeout(timeout, work)
            .await
            .unwrap_or_else(|_| Err(ConnectError::Timeout(upstream.host_header.clone())))
    }

    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, ConnectError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let key = (host.to_string(), port);
        if let Some((addrs, at)) = self.dns.borrow().get(&key) {
            if at.elapsed() < DNS_TTL {
                return Ok(addrs.clone());
            }
        }
        let lookup = key.clone();
        #[expect(
            clippy::disallowed_methods,
            reason = "the one blocking lookup, on the blocking pool"
        )]
        let resolved = monoio::spawn_blocking(move || {
            (lookup.0.as_str(), lookup.1)
                .to_socket_addrs()
                .map(|a| a.collect::<Vec<_>>())
        })
        .await;
        let fail = |reason: String| ConnectError::Resolve {
            host: host.to_string(),
            reason,
        };
        let addrs = match resolved {
            Ok(Ok(addrs)) if !addrs.is_empty() => addrs,
            Ok(Ok(_)) => return Err(fail("no addresses".into())),
            Ok(Err(e)) => return Err(fail(e.to_string())),
            Err(_) => return Err(fail("resolver thread failed".into())),
        };
        self.dns
            .borrow_mut()
            .insert(key, (addrs.clone(), Instant::now()));
        Ok(addrs)
    }
}

async fn connect_any(addrs: &[SocketAddr]) -> Result<TcpStream, ConnectError> {
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_addr(*addr).await {
            Ok(s) => return Ok(s),
            Err(source) => {
                last = Some(ConnectError::Tcp {
                    addr: *addr,
                    source,
                })
            }
        }
    }
    Err(last.unwrap_or_else(|| ConnectError::Resolve {
        host: String::new(),
        reason: "no addresses".into(),
    }))
}
