//! Head rewriting: copy every raw header line that may pass, change only the fields that must
//! change (credentials, Host, hop-by-hop fields, framing), append what sluice adds. A head that
//! needs no change comes out byte for byte as it came in.

use super::{parse_request, HeadLimits, Http1Error, RequestHead, ResponseHead};

/// Hop-by-hop fields (RFC 9110 7.6.1) that never cross a proxy.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
];

/// What to change when a client request goes upstream.
#[derive(Clone, Debug, Default)]
pub struct RequestRewrite<'a> {
    /// A new request target (path and query), or `None` to keep the client's.
    pub target: Option<&'a [u8]>,
    /// The Host value the upstream expects.
    pub host: &'a [u8],
    /// Remove `x-api-key` and `authorization` from the client.
    pub drop_client_credentials: bool,
    /// The upstream credential to add, as (header name, value).
    pub credential: Option<(&'a str, &'a [u8])>,
    /// Send the body with this Content-Length (the client's framing was re-framed).
    pub content_length: Option<u64>,
    /// Further client fields to leave out (ASCII case-insensitive names).
    pub drop: &'a [&'a str],
    /// Fields to add, after the client's.
    pub extra: &'a [(&'a str, &'a [u8])],
}

/// Writes the upstream request head for `head` into `out`.
pub fn rewrite_request(head: &RequestHead, plan: &RequestRewrite<'_>, out: &mut Vec<u8>) {
    let bytes = &head.bytes[..];
    match plan.target {
        // An absolute-form target is never forwarded as sent: the upstream gets origin-form.
        None if !head.http10 && !head.absolute_form => {
            out.extend_from_slice(head.request_line.of(bytes));
            out.extend_from_slice(b"\r\n");
        }
        target => {
            out.extend_from_slice(head.method.as_str().as_bytes());
            out.push(b' ');
            out.extend_from_slice(target.unwrap_or_else(|| head.target()));
            out.extend_from_slice(b" HTTP/1.1\r\n");
        }
    }
    let connection_tokens = connection_tokens(head.header("connection"));
    let mut wrote_host = false;
    for h in &head.headers {
        let name = h.name.of(bytes);
        if name.eq_ignore_ascii_case(b"host") {
            wrote_host = true;
            if h.value.of(bytes) == plan.host {
                out.extend_from_slice(h.line.of(bytes));
            } else {
                write_field(out, name, plan.host);
            }
            continue;
        }
        let drop = is_hop_by_hop(name)
            || name.eq_ignore_ascii_case(b"expect")
            || name.eq_ignore_ascii_case(b"transfer-encoding")
            || (plan.content_length.is_some() && name.eq_ignore_ascii_case(b"content-length"))
            || (plan.drop_client_credentials && is_credential(name))
            || plan
                .drop
                .iter()
                .any(|d| name.eq_ignore_ascii_case(d.as_bytes()))
            || connection_tokens
                .iter()
                .any(|t| name.eq_ignore_ascii_case(t));
        if !drop {
            out.extend_from_slice(h.line.of(bytes));
        }
    }
    if !wrote_host {
        write_field(out, b"Host", plan.host);
    }
    if let Some((name, value)) = plan.credential {
        write_field(out, name.as_bytes(), value);
    }
    for (name, value) in plan.extra {
        write_field(out, name.as_bytes(), value);
    }
    if let Some(len) = plan.content_length {
        let mut digits = itoa::Buffer::new();
        write_field(out, b"content-length", digits.format(len).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// What to change when an upstream response goes back to the client.
#[derive(Clone, Copy, Debug, Default)]
pub struct ResponseRewrite<'a> {
    /// Tell the client this connection closes after the response.
    pub close: bool,
    /// Upstream fields to leave out (sluice re-frames or re-types the body).
    pub drop: &'a [&'a str],
    /// Upstream fields to leave out by prefix (sluice writes its own of that family).
    pub drop_prefix: Option<&'a str>,
}

/// Writes the client response head for `head` into `out`; `extra` fields are appended.
pub fn rewrite_response(
    head: &ResponseHead,
    plan: ResponseRewrite<'_>,
    extra: &[(&str, &[u8])],
    out: &mut Vec<u8>,
) {
    let bytes = &head.bytes[..];
    out.extend_from_slice(head.status_line.of(bytes));
    out.extend_from_slice(b"\r\n");
    let connection_tokens = connection_tokens(head.header("connection"));
    for h in &head.headers {
        let name = h.name.of(bytes);
        let drop = is_hop_by_hop(name)
            || plan
                .drop
                .iter()
                .any(|d| name.eq_ignore_ascii_case(d.as_bytes()))
            || connection_tokens
                .iter()
                .any(|t| name.eq_ignore_ascii_case(t))
            || plan
                .drop_prefix
                .is_some_and(|prefix| starts_with_ignore_case(name, prefix));
        if !drop {
            out.extend_from_slice(h.line.of(bytes));
        }
    }
    for (name, value) in extra {
        write_field(out, name.as_bytes(), value);
    }
    if plan.close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// `head` with field `name` left out and, when `value` is given, written again with it: the
/// request as sluice normalized it, read back by the same parser.
pub fn with_field(
    head: &RequestHead,
    name: &str,
    value: Option<&[u8]>,
) -> Result<RequestHead, Http1Error> {
    let bytes = &head.bytes[..];
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(head.request_line.of(bytes));
    out.extend_from_slice(b"\r\n");
    for h in &head.headers {
        if !h.name.of(bytes).eq_ignore_ascii_case(name.as_bytes()) {
            out.extend_from_slice(h.line.of(bytes));
        }
    }
    if let Some(value) = value {
        write_field(&mut out, name.as_bytes(), value);
    }
    out.extend_from_slice(b"\r\n");
    let limits = HeadLimits {
        max_head_bytes: out.len(),
        max_headers: head.headers.len() + 1,
    };
    match parse_request(&out, limits)? {
        Some((parsed, _)) => Ok(parsed),
        None => Err(Http1Error::UnexpectedEof),
    }
}

fn write_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn starts_with_ignore_case(name: &[u8], prefix: &str) -> bool {
    name.get(..prefix.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(prefix.as_bytes()))
}

fn is_hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h.as_bytes()))
}

/// The client's credentials, and the workspace (Claude Platform on AWS) that selects an account
/// with them: both go when the client's credentials do.
fn is_credential(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"x-api-key")
        || name.eq_ignore_ascii_case(b"authorization")
        || name.eq_ignore_ascii_case(b"anthropic-workspace-id")
}

fn connection_tokens(value: Option<&[u8]>) -> Vec<&[u8]> {
    value
        .map(|v| {
            v.split(|b| *b == b',')
                .map(|t| t.trim_ascii())
                .filter(|t| !t.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::{parse_request, parse_response, HeadLimits, Method};

    fn head(raw: &str) -> RequestHead {
        parse_request(raw.as_bytes(), HeadLimits::default())
            .unwrap()
            .unwrap()
            .0
    }

    #[test]
    fn swaps_credentials_and_host_keeps_the_rest() {
        let h = head("POST /v1/messages?beta=true HTTP/1.1\r\nx-api-key: sk-client\r\nanthropic-beta: a,b\r\nHost: gw:4100\r\nConnection: keep-alive, X-Drop\r\nX-Drop: 1\r\nX-Claude-Code-Session-Id: s1\r\nContent-Length: 2\r\n\r\n");
        let mut out = Vec::new();
        rewrite_request(
            &h,
            &RequestRewrite {
                host: b"api.anthropic.com",
                drop_client_credentials: true,
                credential: Some(("x-api-key", b"sk-upstream")),
                ..Default::default()
            },
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /v1/messages?beta=true HTTP/1.1\r\nanthropic-beta: a,b\r\nHost: api.anthropic.com\r\nX-Claude-Code-Session-Id: s1\r\nContent-Length: 2\r\nx-api-key: sk-upstream\r\n\r\n"
        );
    }

    #[test]
    fn untouched_head_round_trips() {
        let raw = "GET /v1/models?limit=1000 HTTP/1.1\r\nUser-Agent: claude-code/2.1.330\r\nHost: h:1\r\nX-Odd:   spaced value\r\n\r\n";
        let mut out = Vec::new();
        rewrite_request(
            &head(raw),
            &RequestRewrite {
                host: b"h:1",
                ..Default::default()
            },
            &mut out,
        );
        assert_eq!(out, raw.as_bytes());
    }

    #[test]
    fn response_loses_hop_by_hop_fields() {
        let raw = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nAnthropic-RateLimit-Requests-Limit: 50\r\nTransfer-Encoding: chunked\r\n\r\n";
        let (h, _) = parse_response(raw.as_bytes(), Method::Post, HeadLimits::default())
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        rewrite_response(
            &h,
            ResponseRewrite {
                close: true,
                drop: &[],
                drop_prefix: Some("anthropic-ratelimit-"),
            },
            &[("x-sluice-request-id", b"r1")],
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\nx-sluice-request-id: r1\r\nconnection: close\r\n\r\n"
        );
    }
}
