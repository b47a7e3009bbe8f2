//! One HTTPS client connection: a rustls `ServerConnection` driven over a monoio TCP stream.
//!
//! Written here rather than taken from monoio-rustls (which sluice uses for its upstream
//! connections) because the gateway needs the session after the handshake: the verified client
//! certificate is an identity. Reads are bounded: ciphertext is fed to rustls only as fast as
//! its plaintext is taken, so a fast client cannot grow a buffer, and an idle connection reads
//! with a small buffer, as the plain path does.

use std::io::{BufRead, Write};
use std::sync::Arc;

use bytes::BytesMut;
use monoio::buf::IoBuf;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use rustls::pki_types::CertificateDer;
use rustls::{ServerConfig, ServerConnection};

/// The largest TLS record on the wire (16 KiB of payload plus header and expansion).
const MAX_RECORD: usize = 16 * 1024 + 256 + 5;
/// The most ciphertext one socket read takes.
const MAX_READ: usize = 4 * MAX_RECORD;

/// Why a handshake did not complete.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("the client closed the connection during the handshake")]
    Closed,
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// An established TLS connection.
pub struct TlsStream {
    tcp: TcpStream,
    conn: ServerConnection,
    /// Ciphertext received and not yet given to rustls (from `fed` on).
    received: Vec<u8>,
    fed: usize,
    /// Plaintext rustls holds, ready to be taken.
    plaintext_ready: usize,
    /// The client closed (close_notify or end of stream).
    closed: bool,
    /// Encrypted bytes on their way out (kept to reuse the allocation).
    sending: Vec<u8>,
}

impl TlsStream {
    /// The client's address.
    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        self.tcp.peer_addr().ok()
    }

    /// Runs the server side of the handshake; `received` holds the bytes already read off the
    /// socket (the start of the ClientHello).
    pub async fn accept(
        tcp: TcpStream,
        config: Arc<ServerConfig>,
        received: Vec<u8>,
    ) -> Result<Self, HandshakeError> {
        let mut stream = Self {
            tcp,
            conn: ServerConnection::new(config)?,
            received,
            fed: 0,
            plaintext_ready: 0,
            closed: false,
            sending: Vec::new(),
        };
        while stream.conn.is_handshaking() {
            if stream.conn.wants_write() {
                stream.flush().await?;
                continue;
            }
            stream.receive(MAX_RECORD).await?;
            if stream.closed && stream.conn.is_handshaking() {
                return Err(HandshakeError::Closed);
            }
        }
        // The last flight and the session tickets.
        stream.flush().await?;
        Ok(stream)
    }

    /// The client's certificate, when it presented one (verified during the handshake).
    pub fn peer_certificate(&self) -> Option<&CertificateDer<'static>> {
        self.conn
            .peer_certificates()
            .and_then(|chain| chain.first())
    }

    /// Reads plaintext onto the end of `buf`: all that the ciphertext already received holds
    /// (rustls takes it 4 KiB at a time), reading the socket only when none is left. The first
    /// socket read takes at most `reserve` bytes (an idle connection waits on a small buffer);
    /// once a record has started arriving, reads take up to `MAX_READ` (64 KiB). `Ok(0)` is the end of
    /// the stream.
    pub async fn read_some(
        &mut self,
        mut buf: BytesMut,
        reserve: usize,
    ) -> (std::io::Result<usize>, BytesMut) {
        let mut got = 0;
        let mut read_size = reserve;
        loop {
            if self.plaintext_ready > 0 {
                match self.take_plaintext(&mut buf) {
                    Ok(n) => got += n,
                    Err(e) => return (Err(e), buf),
                }
            }
            let pending = self.fed < self.received.len();
            if (got > 0 && (!pending || got >= reserve)) || self.closed {
                return (Ok(got), buf);
            }
            if let Err(e) = self.receive(read_size).await {
                return (Err(e), buf);
            }
            read_size = MAX_READ;
        }
    }

    /// Encrypts and sends all of `data`.
    pub async fn write_all<T: IoBuf + AsRef<[u8]>>(&mut self, data: T) -> (std::io::Result<()>, T) {
        let mut rest = data.as_ref();
        while !rest.is_empty() {
            let written = match self.conn.writer().write(rest) {
                Ok(n) => n,
                Err(e) => return (Err(e), data),
            };
            rest = rest.get(written..).unwrap_or_default();
            if let Err(e) = self.flush().await {
                return (Err(e), data);
            }
        }
        let flushed = self.flush().await;
        (flushed, data)
    }

    /// Sends close_notify (best effort: the connection is closing anyway).
    pub async fn close(&mut self) {
        self.conn.send_close_notify();
        let _ = self.flush().await;
    }

    /// Appends the plaintext rustls holds to `buf` (copied once, from rustls's own buffer).
    fn take_plaintext(&mut self, buf: &mut BytesMut) -> std::io::Result<usize> {
        let mut reader = self.conn.reader();
        let mut taken = 0;
        loop {
            let chunk = match reader.fill_buf() {
                Ok(chunk) => chunk,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                break;
            }
            let n = chunk.len();
            buf.extend_from_slice(chunk);
            reader.consume(n);
            taken += n;
        }
        self.plaintext_ready = self.plaintext_ready.saturating_sub(taken);
        Ok(taken)
    }

    /// Gives rustls the next ciphertext (reading the socket when none is left) and processes
    /// it; an alert rustls wants to send on failure is sent.
    async fn receive(&mut self, reserve: usize) -> std::io::Result<()> {
        if self.fed >= self.received.len() {
            // The last read's buffer is reused when it is the right size (a body read after a
            // body read); an idle wait gets a small one.
            let want = reserve.clamp(1, MAX_READ);
            let mut buf = std::mem::take(&mut self.received);
            if buf.capacity() < want || buf.capacity() > 2 * want {
                buf = Vec::with_capacity(want);
            }
            buf.clear();
            let (read, buf) = self.tcp.read(buf).await;
            self.received = buf;
            self.fed = 0;
            if read? == 0 {
                self.closed = true;
                return Ok(());
            }
        }
        let mut rest = self.received.get(self.fed..).unwrap_or_default();
        let before = rest.len();
        self.conn.read_tls(&mut rest)?;
        self.fed += before - rest.len();
        match self.conn.process_new_packets() {
            Ok(state) => {
                self.plaintext_ready = state.plaintext_bytes_to_read();
                self.closed |= state.peer_has_closed();
            }
            Err(e) => {
                let _ = self.flush().await;
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e));
            }
        }
        if self.conn.wants_write() && !self.conn.is_handshaking() {
            self.flush().await?;
        }
        Ok(())
    }

    /// Sends every encrypted byte rustls has queued.
    async fn flush(&mut self) -> std::io::Result<()> {
        while self.conn.wants_write() {
            let mut out = std::mem::take(&mut self.sending);
            out.clear();
            self.conn.write_tls(&mut out)?;
            let (sent, out) = self.tcp.write_all(out).await;
            self.sending = out;
            sent?;
        }
        Ok(())
    }
}
