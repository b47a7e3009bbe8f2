//! Errors of the HTTP/1.1 wire layer. Each variant names one way a peer broke RFC 9112 (or our
//! limits); `proxy::error` maps them to exactly one response.

use thiserror::Error;

/// A framing or syntax fault in a request or response head or body.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Http1Error {
    #[error("malformed HTTP head: {0}")]
    Malformed(&'static str),
    #[error("head exceeds {0} bytes")]
    HeadTooLarge(usize),
    #[error("more than {0} header fields")]
    TooManyHeaders(usize),
    #[error("request carries both Content-Length and Transfer-Encoding")]
    ContentLengthWithTransferEncoding,
    #[error("duplicate Content-Length")]
    DuplicateContentLength,
    #[error("invalid Content-Length")]
    InvalidContentLength,
    #[error("unsupported Transfer-Encoding (only chunked is accepted)")]
    UnsupportedTransferEncoding,
    #[error("missing or duplicate Host header")]
    BadHost,
    #[error("unsupported expectation")]
    UnsupportedExpectation,
    #[error("method not supported: {0}")]
    UnsupportedMethod(&'static str),
    #[error("malformed chunked body: {0}")]
    BadChunk(&'static str),
    #[error("body exceeds {0} bytes")]
    BodyTooLarge(u64),
    #[error("connection closed before the message was complete")]
    UnexpectedEof,
}
