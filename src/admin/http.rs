//! Just enough HTTP/1.1 for the admin API: one request per connection (closed after the reply),
//! a bounded head and body, and one deadline for the whole request (a client that trickles
//! bytes is cut off with a 408 when it passes).

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::error::AdminError;

/// The console's session cookie (see `console::session`).
pub const SESSION_COOKIE: &str = "sluice_console";

const MAX_HEAD: usize = 16 * 1024;
const MAX_BODY: usize = 64 * 1024;
/// The whole request (head and body) must arrive within this.
const TIMEOUT: Duration = Duration::from_secs(5);

pub struct AdminRequest {
    pub method: String,
    pub path: String,
    query: String,
    /// `Authorization: Bearer …` or `x-api-key`.
    pub credential: Option<String>,
    /// The console's session cookie.
    pub session_cookie: Option<String>,
    /// `Origin` and `Host`, to refuse cross-site form posts to the console.
    pub origin: Option<String>,
    pub host: Option<String>,
    pub body: Vec<u8>,
}

impl AdminRequest {
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }
}

pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    /// Further header fields (the console's cookie, redirects, security policy).
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(status: u16, value: &Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: value.to_string().into_bytes(),
        }
    }

    pub fn error(status: u16, kind: &str, message: &str) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: crate::proxy::error::error_body(kind, message, ""),
        }
    }

    /// The same answer with one more header field.
    pub fn with_header(mut self, name: &'static str, value: String) -> Reply {
        self.headers.push((name, value));
        self
    }
}

/// Reads some bytes before `deadline`; a timeout is a 408, any other failure `bad`.
fn read_by(
    stream: &mut TcpStream,
    chunk: &mut [u8],
    deadline: Instant,
    what: &str,
) -> Result<usize, AdminError> {
    let late = || AdminError::TooSlow;
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(late());
    }
    stream
        .set_read_timeout(Some(left))
        .map_err(|_| AdminError::invalid(what))?;
    match stream.read(chunk) {
        Ok(n) => Ok(n),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Err(late()),
        Err(_) => Err(AdminError::invalid(what)),
    }
}

/// Reads one request, or the error reply to send instead.
pub fn read_request(stream: &mut TcpStream) -> Result<AdminRequest, AdminError> {
    let bad = |m: &str| AdminError::invalid(m);
    let deadline = Instant::now() + TIMEOUT;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_len = loop {
        let n = read_by(stream, &mut chunk, deadline, "incomplete request")?;
        if n == 0 {
            return Err(bad("incomplete request"));
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if let Some(end) = memchr::memmem::find(&buf, b"\r\n\r\n") {
            break end + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err(AdminError::HeadTooLarge);
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(buf.get(..head_len).unwrap_or_default()) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(bad("malformed request head")),
    }
    let header = |name: &str| {
        parsed
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .map(str::trim)
    };
    let length: usize = match header("content-length") {
        Some(v) => v.parse().map_err(|_| bad("invalid content-length"))?,
        None => 0,
    };
    if length > MAX_BODY {
        return Err(AdminError::BodyTooLarge);
    }
    let credential = header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| header("x-api-key"))
        .map(str::to_string);
    let session_cookie = header("cookie").and_then(|cookies| {
        cookies
            .split(';')
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == SESSION_COOKIE)
            .map(|(_, value)| value.to_string())
    });
    let (path, query) = parsed
        .path
        .unwrap_or("/")
        .split_once('?')
        .map_or((parsed.path.unwrap_or("/"), ""), |(p, q)| (p, q));
    let request = AdminRequest {
        method: parsed.method.unwrap_or("GET").to_string(),
        path: path.to_string(),
        query: query.to_string(),
        credential,
        session_cookie,
        origin: header("origin").map(str::to_string),
        host: header("host").map(str::to_string),
        body: Vec::new(),
    };
    let mut body = buf.split_off(head_len);
    while body.len() < length {
        let n = read_by(stream, &mut chunk, deadline, "incomplete body")?;
        if n == 0 {
            return Err(bad("incomplete body"));
        }
        body.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
    body.truncate(length);
    Ok(AdminRequest { body, ..request })
}

pub fn write_reply(stream: &mut TcpStream, reply: &Reply) {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n",
        reply.status,
        crate::proxy::error::reason_phrase(reply.status),
        reply.content_type,
        reply.body.len()
    );
    for (name, value) in &reply.headers {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let _ = stream.set_write_timeout(Some(TIMEOUT));
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(&reply.body));
}
