//! Request and response heads: httparse does the tokenising, this module adds what RFC 9112 asks
//! of a gateway that must not be smuggled through (one Host, one valid Content-Length, never both
//! CL and TE, only `chunked`, CRLF line endings only) and records everything as [`Span`]s into the
//! head's own bytes, so nothing is copied and an untouched head can be written back unchanged.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use memchr::memchr_iter;

use super::Http1Error;

/// Limits applied while a head is still arriving.
#[derive(Clone, Copy, Debug)]
pub struct HeadLimits {
    /// Largest head accepted, request line and terminating blank line included.
    pub max_head_bytes: usize,
    /// Most header fields accepted.
    pub max_headers: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        Self {
            max_head_bytes: 64 * 1024,
            max_headers: 128,
        }
    }
}

/// The hard ceiling on header fields, whatever the configuration says.
pub const MAX_HEADERS_CEILING: usize = 512;

/// A byte range inside a head's bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    /// The bytes this span covers in `buf` (empty if the span does not fit, which parsing never
    /// produces).
    pub fn of<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        buf.get(self.start as usize..self.end as usize)
            .unwrap_or(&[])
    }

    fn within(outer: &[u8], inner: &[u8]) -> Span {
        let start = (inner.as_ptr() as usize).saturating_sub(outer.as_ptr() as usize);
        Span {
            start: start as u32,
            end: (start + inner.len()) as u32,
        }
    }
}

/// A head's header fields, in order. Inline up to the two dozen fields that real clients
/// (Claude Code sends 17–23) and providers send, so parsing a head allocates nothing more.
pub type HeaderLines = smallvec::SmallVec<[HeaderLine; 24]>;

/// One header field: its name, its value (without surrounding white space) and the whole raw
/// line including its CRLF, which is what a rewrite copies when it keeps the field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderLine {
    pub name: Span,
    pub value: Span,
    pub line: Span,
}

/// How a message body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body at all.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the peer closes (responses only).
    UntilClose,
}

/// Request methods sluice serves; anything else is refused before it reaches a phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Patch,
    Options,
}

impl Method {
    fn parse(name: &str) -> Result<Method, Http1Error> {
        Ok(match name {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "OPTIONS" => Method::Options,
            "CONNECT" => return Err(Http1Error::UnsupportedMethod("CONNECT")),
            "TRACE" => return Err(Http1Error::UnsupportedMethod("TRACE")),
            _ => return Err(Http1Error::UnsupportedMethod("unknown")),
        })
    }

    /// The method's name as it goes on the wire.
    pub fn as_str(&self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Patch => "PATCH",
            Method::Options => "OPTIONS",
        }
    }
}

/// A parsed request head. `bytes` is the raw head (request line to blank line); every span
/// points into it.
#[derive(Clone, Debug)]
pub struct RequestHead {
    pub bytes: Bytes,
    pub method: Method,
    /// The request line without its CRLF.
    pub request_line: Span,
    /// The origin-form target (path and query). For an absolute-form target, its path part.
    pub target: Span,
    /// Where the path ends inside `target` (the `?` or the end).
    pub path_end: u32,
    /// The request line carried an absolute-form target (`POST http://host/path`): it is
    /// forwarded in origin-form, never as sent.
    pub absolute_form: bool,
    pub http10: bool,
    pub headers: HeaderLines,
    pub framing: BodyFraming,
    pub keep_alive: bool,
    pub expect_continue: bool,
}

impl RequestHead {
    /// Path and query exactly as received.
    pub fn target(&self) -> &[u8] {
        self.target.of(&self.bytes)
    }

    /// The path, without the query.
    pub fn path(&self) -> &[u8] {
        let t = self.target();
        t.get(..self.path_end as usize).unwrap_or(t)
    }

    /// The query including its `?`, or empty.
    pub fn query(&self) -> &[u8] {
        let t = self.target();
        t.get(self.path_end as usize..).unwrap_or(&[])
    }

    /// The value of the first header called `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        header_value(&self.bytes, &self.headers, name)
    }

    /// The value of a header as text, if it is valid UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Name of header line `h`.
    pub fn name_of(&self, h: &HeaderLine) -> &[u8] {
        h.name.of(&self.bytes)
    }
}

/// A parsed response head.
#[derive(Clone, Debug)]
pub struct ResponseHead {
    pub bytes: Bytes,
    pub status: u16,
    pub http10: bool,
    /// The status line without its CRLF.
    pub status_line: Span,
    pub headers: HeaderLines,
    pub framing: BodyFraming,
    /// Whether the upstream lets us reuse the connection after this response.
    pub keep_alive: bool,
    /// The response carried both Content-Length and Transfer-Encoding: read by the latter,
    /// and its connection never reused.
    pub framed_twice: bool,
}

impl ResponseHead {
    /// The value of the first header called `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        header_value(&self.bytes, &self.headers, name)
    }

    /// The value of a header as text, if it is valid UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }
}

fn header_value<'a>(bytes: &'a [u8], headers: &[HeaderLine], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|h| h.name.of(bytes).eq_ignore_ascii_case(name.as_bytes()))
        .map(|h| h.value.of(bytes))
}

/// Parses a request head from the start of `buf`. `Ok(None)`: not complete yet (read more);
/// `Ok(Some((head, len)))`: a head of `len` bytes (copied into the returned head).
pub fn parse_request(
    buf: &[u8],
    limits: HeadLimits,
) -> Result<Option<(RequestHead, usize)>, Http1Error> {
    Ok(scan_request(buf, limits)?.map(|(mut head, len)| {
        head.bytes = Bytes::copy_from_slice(buf.get(..len).unwrap_or_default());
        (head, len)
    }))
}

/// Like [`parse_request`], but splits the head off the front of `buf` without copying it.
pub fn take_request(
    buf: &mut BytesMut,
    limits: HeadLimits,
) -> Result<Option<RequestHead>, Http1Error> {
    Ok(scan_request(buf, limits)?.map(|(mut head, len)| {
        head.bytes = buf.split_to(len).freeze();
        head
    }))
}

/// Like [`parse_response`], but splits the head off the front of `buf` without copying it.
pub fn take_response(
    buf: &mut BytesMut,
    request_method: Method,
    limits: HeadLimits,
) -> Result<Option<ResponseHead>, Http1Error> {
    Ok(
        scan_response(buf, request_method, limits)?.map(|(mut head, len)| {
            head.bytes = buf.split_to(len).freeze();
            head
        }),
    )
}

/// Parses a response head from the start of `buf`, for a request sent with `request_method`.
pub fn parse_response(
    buf: &[u8],
    request_method: Method,
    limits: HeadLimits,
) -> Result<Option<(ResponseHead, usize)>, Http1Error> {
    Ok(
        scan_response(buf, request_method, limits)?.map(|(mut head, len)| {
            head.bytes = Bytes::copy_from_slice(buf.get(..len).unwrap_or_default());
            (head, len)
        }),
    )
}

fn scan_request(
    buf: &[u8],
    limits: HeadLimits,
) -> Result<Option<(RequestHead, usize)>, Http1Error> {
    let max_headers = limits.max_headers.min(MAX_HEADERS_CEILING);
    // Uninitialised storage: no 16 KiB memset of header slots on every parse.
    let mut raw = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS_CEILING];
    let mut req = httparse::Request::new(&mut []);
    let parsed = req.parse_with_uninit_headers(buf, raw.get_mut(..max_headers).unwrap_or_default());
    let Some(head_len) = head_length(parsed, buf, limits, max_headers)? else {
        return Ok(None);
    };
    let head = buf.get(..head_len).unwrap_or_default();
    check_line_endings(head)?;
    let method = Method::parse(req.method.unwrap_or(""))?;
    let http10 = req.version == Some(0);
    let raw_target = req.path.unwrap_or("");
    let target_span = Span::within(head, raw_target.as_bytes());
    let (target, path_end) = origin_form(raw_target, target_span, method)?;
    let absolute_form = target != target_span;
    let request_line = Span {
        start: (target_span.start as usize - method.as_str().len() - 1) as u32,
        end: line_end(head, target_span.end as usize),
    };
    let headers = header_lines(head, req.headers);
    let facts = HeaderFacts::collect(head, &headers)?;
    if (!http10 && facts.host_count != 1) || facts.host_count > 1 {
        return Err(Http1Error::BadHost);
    }
    let framing = request_framing(&facts, http10)?;
    let keep_alive = if http10 {
        facts.connection_keep_alive && !facts.connection_close
    } else {
        !facts.connection_close
    };
    let parsed = RequestHead {
        bytes: Bytes::new(),
        method,
        request_line,
        target,
        path_end,
        absolute_form,
        http10,
        headers,
        framing,
        keep_alive,
        expect_continue: facts.expect_continue,
    };
    Ok(Some((parsed, head_len)))
}

fn scan_response(
    buf: &[u8],
    request_method: Method,
    limits: HeadLimits,
) -> Result<Option<(ResponseHead, usize)>, Http1Error> {
    let max_headers = limits.max_headers.min(MAX_HEADERS_CEILING);
    let mut raw = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS_CEILING];
    let mut res = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut res,
        buf,
        raw.get_mut(..max_headers).unwrap_or_default(),
    );
    let Some(head_len) = head_length(parsed, buf, limits, max_headers)? else {
        return Ok(None);
    };
    let head = buf.get(..head_len).unwrap_or_default();
    check_line_endings(head)?;
    let status = res.code.unwrap_or(0);
    let http10 = res.version == Some(0);
    let status_line = Span {
        start: 0,
        end: line_end(head, 0),
    };
    let headers = header_lines(head, res.headers);
    let facts = HeaderFacts::collect(head, &headers)?;
    let framing = response_framing(&facts, status, request_method)?;
    // A response framed two ways (Content-Length and Transfer-Encoding) is read by its
    // Transfer-Encoding, but the connection is not trusted with another request.
    let framed_twice = facts.has_transfer_encoding && facts.content_length.is_some();
    let keep_alive = framing != BodyFraming::UntilClose
        && !framed_twice
        && if http10 {
            facts.connection_keep_alive && !facts.connection_close
        } else {
            !facts.connection_close
        };
    let parsed = ResponseHead {
        bytes: Bytes::new(),
        status,
        http10,
        status_line,
        headers,
        framing,
        keep_alive,
        framed_twice,
    };
    Ok(Some((parsed, head_len)))
}

/// The head's length once httparse has found its end, `None` while it is incomplete, or the
/// limit it broke.
fn head_length(
    parsed: httparse::Result<usize>,
    buf: &[u8],
    limits: HeadLimits,
    max_headers: usize,
) -> Result<Option<usize>, Http1Error> {
    match parsed {
        Ok(httparse::Status::Complete(n)) if n > limits.max_head_bytes => {
            Err(Http1Error::HeadTooLarge(limits.max_head_bytes))
        }
        Ok(httparse::Status::Complete(n)) => Ok(Some(n)),
        Ok(httparse::Status::Partial) if buf.len() >= limits.max_head_bytes => {
            Err(Http1Error::HeadTooLarge(limits.max_head_bytes))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(Http1Error::TooManyHeaders(max_headers)),
        Err(e) => Err(Http1Error::Malformed(httparse_reason(e))),
    }
}

fn httparse_reason(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid token",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "invalid HTTP version",
    }
}

/// RFC 9112 lets a recipient accept a bare LF, but two parsers that disagree about line ends
/// are how requests get smuggled: sluice accepts CRLF only, and no CR outside one.
fn check_line_endings(head: &[u8]) -> Result<(), Http1Error> {
    for i in memchr_iter(b'\n', head) {
        if i == 0 || head.get(i - 1) != Some(&b'\r') {
            return Err(Http1Error::Malformed("bare LF"));
        }
    }
    for i in memchr_iter(b'\r', head) {
        if head.get(i + 1) != Some(&b'\n') {
            return Err(Http1Error::Malformed("bare CR"));
        }
    }
    Ok(())
}

/// The end of the line that contains `from` (position of its CR).
fn line_end(head: &[u8], from: usize) -> u32 {
    let rest = head.get(from..).unwrap_or(&[]);
    (from + memchr::memchr(b'\r', rest).unwrap_or(rest.len())) as u32
}

fn header_lines(head: &[u8], parsed: &[httparse::Header<'_>]) -> HeaderLines {
    let mut lines = HeaderLines::with_capacity(parsed.len());
    for h in parsed {
        let name = Span::within(head, h.name.as_bytes());
        let value = if h.value.is_empty() {
            // httparse may hand back a static empty slice: place it right after the colon.
            let colon = line_end(head, name.end as usize);
            Span {
                start: colon,
                end: colon,
            }
        } else {
            Span::within(head, h.value)
        };
        let end = line_end(head, value.end as usize) + 2;
        lines.push(HeaderLine {
            name,
            value,
            line: Span {
                start: name.start,
                end,
            },
        });
    }
    lines
}

fn origin_form(raw: &str, span: Span, method: Method) -> Result<(Span, u32), Http1Error> {
    let bytes = raw.as_bytes();
    let origin = bytes.first() == Some(&b'/') || (raw == "*" && method == Method::Options);
    let (offset, rest) = if origin {
        (0, raw)
    } else if let Some(after) = raw
        .strip_prefix("http://")
        .or_else(|| raw.strip_prefix("https://"))
    {
        // absolute-form: routing ignores the authority; the path is what matters.
        match after.find('/') {
            Some(i) => (
                raw.len() - after.len() + i,
                after.get(i..).unwrap_or_default(),
            ),
            None => return Err(Http1Error::Malformed("absolute-form target without a path")),
        }
    } else {
        return Err(Http1Error::Malformed("request target is not origin-form"));
    };
    let target = Span {
        start: span.start + offset as u32,
        end: span.end,
    };
    let path_end = rest.find('?').unwrap_or(rest.len()) as u32;
    Ok((target, path_end))
}

/// What the framing-relevant headers say, collected in one pass.
#[derive(Default)]
struct HeaderFacts {
    content_length: Option<u64>,
    chunked: bool,
    has_transfer_encoding: bool,
    host_count: usize,
    connection_close: bool,
    connection_keep_alive: bool,
    expect_continue: bool,
}

impl HeaderFacts {
    fn collect(head: &[u8], headers: &[HeaderLine]) -> Result<HeaderFacts, Http1Error> {
        let mut facts = HeaderFacts::default();
        let mut te_codings: Vec<&[u8]> = Vec::new();
        for h in headers {
            let name = h.name.of(head);
            let value = h.value.of(head);
            if name.eq_ignore_ascii_case(b"content-length") {
                if facts.content_length.is_some() {
                    return Err(Http1Error::DuplicateContentLength);
                }
                facts.content_length = Some(parse_content_length(value)?);
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                facts.has_transfer_encoding = true;
                te_codings.extend(value.split(|b| *b == b',').map(trim));
            } else if name.eq_ignore_ascii_case(b"host") {
                if !is_authority(value) {
                    return Err(Http1Error::BadHost);
                }
                facts.host_count += 1;
            } else if name.eq_ignore_ascii_case(b"connection") {
                for token in value.split(|b| *b == b',').map(trim) {
                    facts.connection_close |= token.eq_ignore_ascii_case(b"close");
                    facts.connection_keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            } else if name.eq_ignore_ascii_case(b"expect") {
                if !trim(value).eq_ignore_ascii_case(b"100-continue") {
                    return Err(Http1Error::UnsupportedExpectation);
                }
                facts.expect_continue = true;
            }
        }
        if facts.has_transfer_encoding {
            facts.chunked = transfer_coding_is_chunked(&te_codings)?;
        }
        Ok(facts)
    }
}

/// Whether a Host value is an RFC 3986 authority without user info: a reg-name, IPv4 or
/// bracketed IP literal (unreserved, sub-delims, `%`), an optional `:port`. Empty is allowed
/// (RFC 9112 3.2, a request without an authority).
fn is_authority(value: &[u8]) -> bool {
    value.iter().all(|b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b'%'
                    | b':'
                    | b'['
                    | b']'
            )
    })
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |i| i + 1);
    v.get(start..end).unwrap_or(&[])
}

/// `1*DIGIT`, nothing else: no sign, no comma list, no white space inside, no overflow.
pub fn parse_content_length(value: &[u8]) -> Result<u64, Http1Error> {
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return Err(Http1Error::InvalidContentLength);
    }
    value.iter().try_fold(0u64, |acc, d| {
        acc.checked_mul(10)
            .and_then(|a| a.checked_add(u64::from(d - b'0')))
            .ok_or(Http1Error::InvalidContentLength)
    })
}

/// Only `chunked`, once: any other coding (or `chunked` twice, or an empty element) is refused.
fn transfer_coding_is_chunked(codings: &[&[u8]]) -> Result<bool, Http1Error> {
    match codings {
        [one] if one.eq_ignore_ascii_case(b"chunked") => Ok(true),
        _ if codings.iter().any(|c| c.is_empty()) => {
            Err(Http1Error::Malformed("empty transfer coding"))
        }
        _ => Err(Http1Error::UnsupportedTransferEncoding),
    }
}

fn request_framing(facts: &HeaderFacts, http10: bool) -> Result<BodyFraming, Http1Error> {
    match (facts.has_transfer_encoding, facts.content_length) {
        (true, Some(_)) => Err(Http1Error::ContentLengthWithTransferEncoding),
        (true, None) if http10 => Err(Http1Error::Malformed("Transfer-Encoding in HTTP/1.0")),
        (true, None) => Ok(BodyFraming::Chunked),
        (false, Some(0)) | (false, None) => Ok(BodyFraming::Empty),
        (false, Some(n)) => Ok(BodyFraming::Length(n)),
    }
}

fn response_framing(
    facts: &HeaderFacts,
    status: u16,
    request_method: Method,
) -> Result<BodyFraming, Http1Error> {
    if request_method == Method::Head
        || (100..200).contains(&status)
        || status == 204
        || status == 304
    {
        return Ok(BodyFraming::Empty);
    }
    // RFC 9112 6.3: Transfer-Encoding overrides Content-Length in a response.
    if facts.has_transfer_encoding {
        return Ok(if facts.chunked {
            BodyFraming::Chunked
        } else {
            BodyFraming::UntilClose
        });
    }
    Ok(match facts.content_length {
        Some(0) => BodyFraming::Empty,
        Some(n) => BodyFraming::Length(n),
        None => BodyFraming::UntilClose,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &str) -> Result<Option<(RequestHead, usize)>, Http1Error> {
        parse_request(s.as_bytes(), HeadLimits::default())
    }

    #[test]
    fn parses_a_claude_code_head() {
        let raw = "POST /v1/messages?beta=true HTTP/1.1\r\nx-api-key: sk-test-123\r\nHost: 127.0.0.1:4100\r\nContent-Length: 12\r\n\r\n{\"model\":1}";
        let (head, len) = req(raw).unwrap().unwrap();
        assert_eq!(len, raw.len() - 11);
        assert_eq!(head.method, Method::Post);
        assert_eq!(head.path(), b"/v1/messages");
        assert_eq!(head.query(), b"?beta=true");
        assert_eq!(head.framing, BodyFraming::Length(12));
        assert_eq!(head.header("X-API-KEY"), Some(&b"sk-test-123"[..]));
        assert!(head.keep_alive);
        assert_eq!(
            head.request_line.of(&head.bytes),
            b"POST /v1/messages?beta=true HTTP/1.1"
        );
        assert_eq!(
            head.headers[0].line.of(&head.bytes),
            b"x-api-key: sk-test-123\r\n"
        );
    }

    #[test]
    fn partial_until_blank_line() {
        assert!(req("GET / HTTP/1.1\r\nHost: a\r\n").unwrap().is_none());
    }

    #[test]
    fn smuggling_shapes_are_refused() {
        let cases = [
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", Http1Error::ContentLengthWithTransferEncoding),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", Http1Error::DuplicateContentLength),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\n", Http1Error::InvalidContentLength),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", Http1Error::InvalidContentLength),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", Http1Error::InvalidContentLength),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", Http1Error::UnsupportedTransferEncoding),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", Http1Error::UnsupportedTransferEncoding),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", Http1Error::UnsupportedTransferEncoding),
            ("GET / HTTP/1.1\r\n\r\n", Http1Error::BadHost),
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", Http1Error::BadHost),
            ("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", Http1Error::BadHost),
            ("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", Http1Error::BadHost),
            ("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", Http1Error::BadHost),
            ("GET / HTTP/1.1\r\nHost: a\"b\r\n\r\n", Http1Error::BadHost),
            ("GET / HTTP/1.1\r\nHost: caf\u{e9}\r\n\r\n", Http1Error::BadHost),
            ("CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", Http1Error::UnsupportedMethod("CONNECT")),
        ];
        for (raw, want) in cases {
            assert_eq!(req(raw).err(), Some(want), "{raw:?}");
        }
    }

    #[test]
    fn line_ending_and_fold_abuse_is_refused() {
        for raw in [
            "GET / HTTP/1.1\nHost: a\n\n",
            "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
            "GET / HTTP/1.1\r\nHo\0st: a\r\n\r\n",
        ] {
            assert!(matches!(req(raw), Err(Http1Error::Malformed(_))), "{raw:?}");
        }
    }

    #[test]
    fn limits_give_431_shaped_errors() {
        let big = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
            "a".repeat(70_000)
        );
        assert_eq!(req(&big).err(), Some(Http1Error::HeadTooLarge(65536)));
        let many: String = (0..200).map(|i| format!("X-{i}: v\r\n")).collect();
        let raw = format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n");
        assert_eq!(req(&raw).err(), Some(Http1Error::TooManyHeaders(128)));
    }

    #[test]
    fn absolute_form_routes_on_its_path() {
        let (head, _) = req("GET http://x.test/v1/models?limit=5 HTTP/1.1\r\nHost: x.test\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(head.path(), b"/v1/models");
        assert_eq!(head.query(), b"?limit=5");
        assert!(head.absolute_form);
        let (head, _) = req("GET /v1/models HTTP/1.1\r\nHost: x.test\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!head.absolute_form);
    }

    #[test]
    fn http10_defaults_to_close() {
        let (head, _) = req("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!head.keep_alive);
        let (head, _) = req("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(head.keep_alive);
    }

    #[test]
    fn response_framing_rules() {
        let parse = |s: &str, m| {
            parse_response(s.as_bytes(), m, HeadLimits::default())
                .unwrap()
                .unwrap()
                .0
        };
        assert_eq!(
            parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", Method::Post).framing,
            BodyFraming::Length(5)
        );
        assert_eq!(
            parse(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
                Method::Post
            )
            .framing,
            BodyFraming::Chunked
        );
        assert_eq!(
            parse("HTTP/1.1 200 OK\r\n\r\n", Method::Post).framing,
            BodyFraming::UntilClose
        );
        assert_eq!(
            parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", Method::Head).framing,
            BodyFraming::Empty
        );
        assert_eq!(
            parse("HTTP/1.1 304 Not Modified\r\n\r\n", Method::Get).framing,
            BodyFraming::Empty
        );
        assert!(
            !parse(
                "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
                Method::Get
            )
            .keep_alive
        );
    }
}
