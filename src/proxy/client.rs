//! The client side of a connection: its socket (plain or TLS) and receive buffer, with every
//! wait bounded by a timeout. Bytes read past the current request (pipelining) stay in the
//! buffer for the next.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use monoio::buf::IoBuf;
use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;

use super::GatewayError;
use crate::config::{Limits, Timeouts};
use crate::http1::io::read_some;
use crate::http1::{take_request, Http1Error, RequestHead};
use crate::runtime::LocalShutdown;
use crate::tls::certificates::client_names;
use crate::tls::TlsStream;

/// Bytes reserved per read.
const READ_CHUNK: usize = 16 * 1024;
/// Bytes reserved for a read while the connection is idle (waiting for a request head): with
/// io_uring the buffer of a pending read is held for as long as the wait lasts, so an idle
/// connection keeps only this much. A head that does not fit is read on with `READ_CHUNK`.
const IDLE_CHUNK: usize = 2 * 1024;

/// Readies `buf`, empty, for an idle read of `IDLE_CHUNK` bytes. The last request's buffer is
/// used again, rewound to its start, when it is that small and nothing else holds any of it
/// (the last head and body are gone): no allocation, and the reference count `bytes` set up
/// when the head was split off is kept. Otherwise (a larger buffer that grew for a body, or
/// one a parsed head still shares) it goes back to the allocator and a fresh one is taken.
fn reuse_or_renew(buf: &mut BytesMut) {
    if !super::spare_buffers::rewound(buf, IDLE_CHUNK) {
        *buf = BytesMut::with_capacity(IDLE_CHUNK);
    }
}

/// How the client is connected.
pub enum ClientStream {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

impl ClientStream {
    async fn read_some(
        &mut self,
        buf: BytesMut,
        reserve: usize,
    ) -> (std::io::Result<usize>, BytesMut) {
        match self {
            ClientStream::Plain(tcp) => read_some(tcp, buf, reserve).await,
            ClientStream::Tls(tls) => tls.read_some(buf, reserve).await,
        }
    }

    async fn write_all<T: IoBuf + AsRef<[u8]> + 'static>(
        &mut self,
        data: T,
    ) -> (std::io::Result<()>, T) {
        match self {
            ClientStream::Plain(tcp) => {
                let (res, data) = tcp.write_all(data).await;
                (res.map(|_| ()), data)
            }
            ClientStream::Tls(tls) => tls.write_all(data).await,
        }
    }
}

/// A client connection.
pub struct ClientConn {
    stream: ClientStream,
    /// The names of the client certificate verified in the TLS handshake, if any.
    pub certificate: Option<Vec<String>>,
    /// Received bytes not yet consumed.
    pub buf: BytesMut,
    limits: Limits,
    timeouts: Timeouts,
    /// When the current request's body must have arrived (`timeouts.body_total`).
    body_deadline: Option<Instant>,
    /// Part of the current request's body is still unread: after answering it, the
    /// connection cannot carry another request.
    pub(super) body_unread: bool,
    /// The client's address (sign-in rate limits are per address).
    pub peer: Option<std::net::IpAddr>,
}

/// Why a read gave nothing.
#[derive(Debug)]
pub enum ReadFailure {
    TimedOut,
    Io(std::io::Error),
}

impl ClientConn {
    pub fn new(stream: ClientStream, limits: Limits, timeouts: Timeouts) -> Self {
        let certificate = match &stream {
            ClientStream::Tls(tls) => tls.peer_certificate().map(client_names),
            ClientStream::Plain(_) => None,
        };
        let peer = match &stream {
            ClientStream::Tls(tls) => tls.peer_addr(),
            ClientStream::Plain(tcp) => tcp.peer_addr().ok(),
        }
        .map(|a| a.ip());
        Self {
            stream,
            certificate,
            buf: BytesMut::new(),
            limits,
            timeouts,
            body_deadline: None,
            body_unread: false,
            peer,
        }
    }

    /// Whether the client reached sluice over HTTPS.
    pub fn is_tls(&self) -> bool {
        matches!(self.stream, ClientStream::Tls(_))
    }

    /// The current request's body has been read to its end (or it has none).
    pub fn body_read(&self) -> bool {
        !self.body_unread
    }

    /// Reads the next request head. `Ok(None)`: the connection should just close (the client
    /// went away, stayed idle too long, or shutdown began while it was idle).
    pub async fn read_head(
        &mut self,
        shutdown: &LocalShutdown,
        first: bool,
    ) -> Result<Option<RequestHead>, GatewayError> {
        // Set when the first bytes of a head are in the buffer but not all of it: the head must
        // be complete `head_read` after that.
        let mut deadline = None;
        loop {
            if !self.buf.is_empty() {
                if let Some(head) = take_request(&mut self.buf, self.limits.head)? {
                    self.body_deadline = None;
                    self.body_unread = head.framing != crate::http1::BodyFraming::Empty;
                    return Ok(Some(head));
                }
                deadline.get_or_insert_with(|| Instant::now() + self.timeouts.head_read);
            }
            let idle = self.buf.is_empty();
            let wait = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None if first => self.timeouts.head_read,
                None => self.timeouts.idle_keep_alive,
            };
            let read = if idle {
                reuse_or_renew(&mut self.buf);
                monoio::select! {
                    r = self.fill_up_to(wait, IDLE_CHUNK) => r,
                    _ = shutdown.wait() => return Ok(None),
                }
            } else {
                self.fill(wait).await
            };
            match read {
                Ok(0) | Err(ReadFailure::Io(_)) => return Ok(None),
                Ok(_) => {}
                Err(ReadFailure::TimedOut) if idle => return Ok(None),
                Err(ReadFailure::TimedOut) => return Err(GatewayError::HeadTimeout),
            }
        }
    }

    /// Reads more bytes into `buf` within `wait`; `Ok(0)` is end of stream.
    pub async fn fill(&mut self, wait: Duration) -> Result<usize, ReadFailure> {
        self.fill_up_to(wait, READ_CHUNK).await
    }

    async fn fill_up_to(&mut self, wait: Duration, chunk: usize) -> Result<usize, ReadFailure> {
        let buf = std::mem::take(&mut self.buf);
        match monoio::time::timeout(wait, self.stream.read_some(buf, chunk)).await {
            Ok((res, buf)) => {
                self.buf = buf;
                res.map_err(ReadFailure::Io)
            }
            Err(_) => Err(ReadFailure::TimedOut),
        }
    }

    /// Reads more request-body bytes, mapping failures to the errors a body read gives. Each
    /// read waits at most `body_read`, and the whole body at most `body_total`.
    pub async fn fill_body(&mut self) -> Result<(), GatewayError> {
        let now = Instant::now();
        let deadline = *self
            .body_deadline
            .get_or_insert(now + self.timeouts.body_total);
        let wait = self
            .timeouts
            .body_read
            .min(deadline.saturating_duration_since(now));
        match self.fill(wait).await {
            Ok(0) => Err(Http1Error::UnexpectedEof.into()),
            Ok(_) => Ok(()),
            Err(ReadFailure::TimedOut) => Err(GatewayError::BodyTimeout),
            Err(ReadFailure::Io(_)) => Err(Http1Error::UnexpectedEof.into()),
        }
    }

    /// Writes all of `data` within the client-write timeout; hands the buffer back.
    pub async fn write_all<T: IoBuf + AsRef<[u8]> + 'static>(
        &mut self,
        data: T,
    ) -> Result<T, ClientGone> {
        match monoio::time::timeout(self.timeouts.client_write, self.stream.write_all(data)).await {
            Ok((Ok(()), data)) => Ok(data),
            Ok((Err(_), _)) | Err(_) => Err(ClientGone),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Ends a TLS session with close_notify (within the client-write timeout); a plain
    /// connection just closes when dropped.
    pub async fn close(&mut self) {
        if let ClientStream::Tls(tls) = &mut self.stream {
            let _ = monoio::time::timeout(self.timeouts.client_write, tls.close()).await;
        }
    }
}

/// The client stopped reading (or closed) while sluice was writing to it.
#[derive(Debug, Clone, Copy)]
pub struct ClientGone;

#[cfg(test)]
mod tests {
    use super::*;

    /// A buffer as an idle read leaves it after a request of `len` bytes was split off.
    fn after_request(len: usize) -> (BytesMut, bytes::Bytes) {
        let mut buf = BytesMut::with_capacity(IDLE_CHUNK);
        buf.extend_from_slice(&vec![b'x'; len]);
        let request = buf.split_to(len).freeze();
        (buf, request)
    }

    #[test]
    fn an_idle_read_reuses_the_last_small_buffer_once_its_request_is_gone() {
        let (mut buf, request) = after_request(700);
        let start = request.as_ptr();
        drop(request);
        reuse_or_renew(&mut buf);
        assert_eq!(buf.as_ptr(), start);
        assert_eq!((buf.len(), buf.capacity()), (0, IDLE_CHUNK));
    }

    #[test]
    fn an_idle_read_takes_a_fresh_buffer_while_the_last_request_still_holds_it() {
        let (mut buf, request) = after_request(700);
        reuse_or_renew(&mut buf);
        assert_ne!(buf.as_ptr(), request.as_ptr());
        assert_eq!((buf.len(), buf.capacity()), (0, IDLE_CHUNK));
        buf.extend_from_slice(&[b'y'; IDLE_CHUNK]);
        assert!(request.iter().all(|&b| b == b'x'));
    }

    #[test]
    fn an_idle_read_gives_back_a_buffer_that_grew() {
        let mut buf = BytesMut::with_capacity(IDLE_CHUNK);
        buf.extend_from_slice(&[b'x'; 5 * IDLE_CHUNK]);
        let request = buf.split_to(5 * IDLE_CHUNK - 10).freeze();
        let _ = buf.split_to(10);
        drop(request);
        reuse_or_renew(&mut buf);
        assert_eq!((buf.len(), buf.capacity()), (0, IDLE_CHUNK));
    }
}
