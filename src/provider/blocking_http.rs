//! A minimal blocking HTTP/1.1 client for side threads (token endpoints, health checks): one
//! request per connection, TLS with
//! verification when the URL is https, bounded by a timeout. Never used by a worker.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};

use super::error::SideRequestError;
use super::upstream::Upstream;
use crate::http1::body::BodyCursor;
use crate::http1::{parse_response, HeadLimits, Method};

const TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BODY: usize = 1024 * 1024;

/// POSTs `body` with `content_type` to `url`; returns (status, response body).
pub fn post(
    url: &str,
    content_type: &str,
    body: &[u8],
    extra_roots: &[CertificateDer<'static>],
) -> Result<(u16, Vec<u8>), SideRequestError> {
    send(
        "POST",
        url,
        &[("Content-Type", content_type)],
        body,
        extra_roots,
    )
    .map(|r| (r.status, r.body))
}

/// POSTs `body` to `url` with the given header fields; returns (status, response body).
pub fn post_with(
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    extra_roots: &[CertificateDer<'static>],
) -> Result<(u16, Vec<u8>), SideRequestError> {
    send("POST", url, headers, body, extra_roots).map(|r| (r.status, r.body))
}

/// GETs `url` with extra header fields; returns (status, response body).
pub fn get(
    url: &str,
    headers: &[(&str, &str)],
    extra_roots: &[CertificateDer<'static>],
) -> Result<(u16, Vec<u8>), SideRequestError> {
    send("GET", url, headers, b"", extra_roots).map(|r| (r.status, r.body))
}

/// An answer with how long it may be cached.
pub struct Fetched {
    pub status: u16,
    /// `Cache-Control: max-age`, in seconds.
    pub max_age: Option<u64>,
    pub body: Vec<u8>,
}

/// GETs `url`; the answer says how long it may be cached.
pub fn fetch(
    url: &str,
    extra_roots: &[CertificateDer<'static>],
) -> Result<Fetched, SideRequestError> {
    send("GET", url, &[], b"", extra_roots)
}

fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    extra_roots: &[CertificateDer<'static>],
) -> Result<Fetched, SideRequestError> {
    let target = Upstream::from_url("side", url, None)?;
    let path = if target.base_path.is_empty() {
        "/".to_string()
    } else {
        target.base_path.clone()
    };
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\n",
        target.host_header
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    #[expect(clippy::disallowed_methods, reason = "a side thread's blocking lookup")]
    let addrs: Vec<_> = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|source| SideRequestError::Resolve {
            host: target.host.clone(),
            source,
        })?
        .collect();
    let addr = addrs
        .first()
        .ok_or_else(|| SideRequestError::NoAddress(target.host.clone()))?;
    let tcp =
        TcpStream::connect_timeout(addr, TIMEOUT).map_err(|source| SideRequestError::Connect {
            addr: *addr,
            source,
        })?;
    tcp.set_read_timeout(Some(TIMEOUT))
        .map_err(SideRequestError::Socket)?;
    tcp.set_write_timeout(Some(TIMEOUT))
        .map_err(SideRequestError::Socket)?;
    if target.tls {
        let config = super::connect::client_config(extra_roots)?;
        let name = ServerName::try_from(target.host.clone())
            .map_err(|_| SideRequestError::ServerName(target.host.clone()))?;
        let conn = rustls::ClientConnection::new(Arc::clone(&config), name)?;
        exchange(rustls::StreamOwned::new(conn, tcp), &request)
    } else {
        exchange(tcp, &request)
    }
}

fn exchange(mut stream: impl Read + Write, request: &[u8]) -> Result<Fetched, SideRequestError> {
    stream.write_all(request).map_err(SideRequestError::Send)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let (head, used) = loop {
        if let Some(parsed) = parse_response(&buf, Method::Post, HeadLimits::default())? {
            break parsed;
        }
        let n = stream.read(&mut chunk).map_err(SideRequestError::Receive)?;
        if n == 0 {
            return Err(SideRequestError::Closed);
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    };
    let mut rest = buf.split_off(used);
    let mut cursor = BodyCursor::new(head.framing);
    let mut body = Vec::new();
    let max_age = head.header_str("cache-control").and_then(max_age);
    let done = |body| Fetched {
        status: head.status,
        max_age,
        body,
    };
    loop {
        let input = std::mem::take(&mut rest);
        cursor.advance(&input, |r| {
            body.extend_from_slice(input.get(r).unwrap_or_default())
        })?;
        if cursor.is_done() || body.len() > MAX_BODY {
            return Ok(done(body));
        }
        let n = stream.read(&mut chunk).map_err(SideRequestError::Receive)?;
        if n == 0 {
            cursor.on_eof()?;
            return Ok(done(body));
        }
        rest.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}

/// The `max-age` of a `Cache-Control` value.
fn max_age(value: &str) -> Option<u64> {
    value.split(',').find_map(|d| {
        let (name, seconds) = d.trim().split_once('=')?;
        name.eq_ignore_ascii_case("max-age")
            .then(|| seconds.trim().parse().ok())
            .flatten()
    })
}
