//! HTTP/1.1 wire format only: head scanning (over httparse, returning spans into the receive
//! buffer), body framing (Content-Length, chunked, close-delimited) and head rewriting. Nothing
//! here knows about models, keys or providers; the proxy phases build on it, and so does the
//! built-in mock upstream.
// Input is parsed here: byte offsets into it must never panic (use `get`, or validate first).
#![cfg_attr(not(test), deny(clippy::indexing_slicing, clippy::string_slice))]

pub mod body;
pub mod error;
pub mod head;
pub mod io;
pub mod path;
pub mod rewrite;

pub use error::Http1Error;
pub use head::{
    parse_request, parse_response, take_request, take_response, BodyFraming, HeadLimits,
    HeaderLine, Method, RequestHead, ResponseHead, Span,
};
