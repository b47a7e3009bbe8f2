//! The load generator: a minimal HTTP/1.1 client on keep-alive connections (plain, or TLS through
//! monoio-rustls), driven by one monoio runtime, that measures each exchange (time to the first
//! body byte, and to the last).

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;

use sluice::http1::body::BodyCursor;
use sluice::http1::io::read_some;
use sluice::http1::{take_response, HeadLimits, Method};

/// Where and how the load connects.
#[derive(Clone)]
pub enum Dial {
    Plain(SocketAddr),
    /// TLS with these client settings, sending `localhost` as SNI.
    Tls(SocketAddr, monoio_rustls::TlsConnector),
}

impl From<SocketAddr> for Dial {
    fn from(addr: SocketAddr) -> Self {
        Dial::Plain(addr)
    }
}

/// Latencies of a run, in nanoseconds.
pub struct Latencies {
    pub total: Histogram<u64>,
    pub first_byte: Histogram<u64>,
}

impl Latencies {
    fn new() -> std::io::Result<Self> {
        let h = || Histogram::new_with_bounds(1, 60_000_000_000, 3).map_err(std::io::Error::other);
        Ok(Self {
            total: h()?,
            first_byte: h()?,
        })
    }
}

/// A complete request (head and body) for `path` with `body`, sending the bench's virtual key.
pub fn request(addr: SocketAddr, path: &str, body: &[u8]) -> Bytes {
    request_with(addr, path, body, "x-api-key: sk-bench")
}

/// A complete request with `credential` as its authentication header line.
pub fn request_with(addr: SocketAddr, path: &str, body: &[u8], credential: &str) -> Bytes {
    let mut out = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nanthropic-version: 2023-06-01\r\n{credential}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out.into()
}

/// The requests a load sends, in turn (one, or several that differ only in credentials).
#[derive(Clone)]
pub struct Requests(Vec<Bytes>);

impl Requests {
    pub fn cycle(list: Vec<Bytes>) -> Self {
        Self(list)
    }

    fn nth(&self, i: usize) -> Bytes {
        match self.0.len() {
            0 => Bytes::new(),
            n => self.0[i % n].clone(),
        }
    }
}

impl From<Bytes> for Requests {
    fn from(req: Bytes) -> Self {
        Self(vec![req])
    }
}

/// Sends `count` requests one after another on one connection.
pub async fn sequential(
    dial: impl Into<Dial>,
    reqs: impl Into<Requests>,
    count: usize,
    into: &mut Latencies,
) -> std::io::Result<()> {
    let reqs = reqs.into();
    let mut conn = Conn::dial(&dial.into()).await?;
    for i in 0..count {
        let (first, total) = conn.exchange(reqs.nth(i)).await?;
        let ns = |d: Duration| d.as_nanos().clamp(1, 60_000_000_000) as u64;
        let _ = into.first_byte.record(ns(first));
        let _ = into.total.record(ns(total));
    }
    Ok(())
}

/// Latency of `count` sequential requests.
pub async fn measure(
    dial: impl Into<Dial>,
    reqs: impl Into<Requests>,
    count: usize,
) -> std::io::Result<Latencies> {
    let mut lat = Latencies::new()?;
    sequential(dial, reqs, count, &mut lat).await?;
    Ok(lat)
}

/// Sends `total` requests over `connections` concurrent keep-alive connections; returns the
/// elapsed time.
pub async fn concurrent(
    dial: impl Into<Dial>,
    reqs: impl Into<Requests>,
    connections: usize,
    total: usize,
) -> std::io::Result<Duration> {
    run_concurrent(dial.into(), reqs.into(), connections, total, false).await
}

/// Sends `total` requests from `connections` concurrent clients, each request on a new
/// connection (with TLS: a full handshake each); returns the elapsed time.
pub async fn concurrent_new_connections(
    dial: impl Into<Dial>,
    reqs: impl Into<Requests>,
    connections: usize,
    total: usize,
) -> std::io::Result<Duration> {
    run_concurrent(dial.into(), reqs.into(), connections, total, true).await
}

async fn run_concurrent(
    dial: Dial,
    req: Requests,
    connections: usize,
    total: usize,
    fresh_each: bool,
) -> std::io::Result<Duration> {
    let left = Rc::new(Cell::new(total));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let left = Rc::clone(&left);
        let req = req.clone();
        let dial = dial.clone();
        tasks.push(monoio::spawn(async move {
            let mut conn = Conn::dial(&dial).await?;
            let mut used = false;
            while left.get() > 0 {
                let n = left.get();
                left.set(n - 1);
                if fresh_each && used {
                    conn = Conn::dial(&dial).await?;
                }
                used = true;
                conn.exchange(req.nth(n)).await?;
            }
            Ok::<(), std::io::Error>(())
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(started.elapsed())
}

/// One client connection of the load.
pub struct Conn {
    stream: LoadStream,
    buf: BytesMut,
}

enum LoadStream {
    Plain(TcpStream),
    Tls(Box<monoio_rustls::ClientTlsStream<TcpStream>>),
}

/// How one response arrived.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub first_byte: Duration,
    pub total: Duration,
    /// The longest wait between two pieces of the body.
    pub longest_gap: Duration,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        Self::dial(&Dial::Plain(addr)).await
    }

    /// Connects (and completes the TLS handshake, for a TLS dial).
    pub async fn dial(dial: &Dial) -> std::io::Result<Conn> {
        let addr = match dial {
            Dial::Plain(addr) | Dial::Tls(addr, _) => *addr,
        };
        let tcp = TcpStream::connect_addr(addr).await?;
        tcp.set_nodelay(true)?;
        let stream = match dial {
            Dial::Plain(_) => LoadStream::Plain(tcp),
            Dial::Tls(_, connector) => {
                let name = rustls::pki_types::ServerName::try_from("localhost")
                    .map_err(std::io::Error::other)?;
                let tls = connector
                    .connect(name, tcp)
                    .await
                    .map_err(std::io::Error::other)?;
                LoadStream::Tls(Box::new(tls))
            }
        };
        Ok(Conn {
            stream,
            buf: BytesMut::with_capacity(64 * 1024),
        })
    }

    /// One request/response; returns (time to first body byte, total time).
    async fn exchange(&mut self, req: Bytes) -> std::io::Result<(Duration, Duration)> {
        self.exchange_timed(req)
            .await
            .map(|t| (t.first_byte, t.total))
    }

    /// One request/response, with the longest silence inside the body.
    pub async fn exchange_timed(&mut self, req: Bytes) -> std::io::Result<Timing> {
        let started = Instant::now();
        let mut last_piece = started;
        let mut longest_gap = Duration::ZERO;
        let (res, _) = match &mut self.stream {
            LoadStream::Plain(tcp) => tcp.write_all(req).await,
            LoadStream::Tls(tls) => tls.write_all(req).await,
        };
        res?;
        let head = loop {
            if let Some(head) = take_response(&mut self.buf, Method::Post, HeadLimits::default())
                .map_err(std::io::Error::other)?
            {
                break head;
            }
            self.fill().await?;
        };
        if head.status != 200 {
            return Err(std::io::Error::other(format!("status {}", head.status)));
        }
        let mut cursor = BodyCursor::new(head.framing);
        let mut first = None;
        loop {
            let mut got = false;
            let used = cursor
                .advance(&self.buf, |r| got |= !r.is_empty())
                .map_err(std::io::Error::other)?;
            if got {
                match first {
                    None => first = Some(started.elapsed()),
                    Some(_) => longest_gap = longest_gap.max(last_piece.elapsed()),
                }
                last_piece = Instant::now();
            }
            let _ = self.buf.split_to(used);
            if cursor.is_done() {
                break;
            }
            self.fill().await?;
        }
        let total = started.elapsed();
        Ok(Timing {
            first_byte: first.unwrap_or(total),
            total,
            longest_gap,
        })
    }

    async fn fill(&mut self) -> std::io::Result<()> {
        let buf = std::mem::take(&mut self.buf);
        let (res, back) = match &mut self.stream {
            LoadStream::Plain(tcp) => read_some(tcp, buf, 64 * 1024).await,
            LoadStream::Tls(tls) => read_some(tls.as_mut(), buf, 64 * 1024).await,
        };
        self.buf = back;
        match res? {
            0 => Err(std::io::ErrorKind::UnexpectedEof.into()),
            _ => Ok(()),
        }
    }
}
