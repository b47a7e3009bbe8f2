//! Upstream providers: what an upstream is ([`upstream`]), how sluice reaches it ([`connect`]:
//! DNS off the worker thread, TCP with TCP_NODELAY, TLS with verification and SNI) and the
//! per-worker keep-alive [`pool`].
// Input is parsed here: byte offsets into it must never panic (use `get`, or validate first).
#![cfg_attr(not(test), deny(clippy::indexing_slicing, clippy::string_slice))]

pub mod connect;
pub mod error;
pub mod pool;
pub mod upstream;

pub use connect::UpstreamConn;
pub use upstream::Upstream;
pub mod aws_credentials;
pub mod bedrock;
pub mod blocking_http;
pub mod credential_command;
pub mod health;
pub mod model_ids;
pub mod oauth;
pub mod sigv4;
