//! Phase 4, forward: rewrite the head (credentials, Host, hop-by-hop fields, the base path),
//! take a pooled connection or open one, send head and body, and wait for the response head.
//! A pooled connection the upstream had already closed fails before any response byte; when the
//! whole body is still held, the request is sent once more on a fresh connection. Nothing is
//! retried once the upstream may have seen the complete request on a live connection.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use monoio::io::{AsyncWriteRent, AsyncWriteRentExt};

use super::client::ClientConn;
use super::exchange::Exchange;
use super::request_body::RequestBody;
use super::{Gateway, GatewayError};
use crate::http1::io::read_some;
use crate::http1::rewrite::{rewrite_request, RequestRewrite};
use crate::http1::{take_response, Http1Error, Method, RequestHead, ResponseHead};
use crate::provider::{Upstream, UpstreamConn};

const READ_CHUNK: usize = 16 * 1024;
/// Bodies up to this size are copied behind the head and sent in the same write.
const COALESCE_BODY: usize = 16 * 1024;

/// An upstream's response head, with the connection and any body bytes read with it.
pub struct UpstreamResponse {
    pub conn: UpstreamConn,
    pub head: ResponseHead,
    pub buf: BytesMut,
}

/// How one attempt failed.
enum AttemptError {
    /// The connection was dead before any response byte: safe to retry with a held body.
    Stale,
    Failed(GatewayError),
}

/// Sends the request to the upstream of `target` and returns its response head.
pub async fn forward(
    client: &mut ClientConn,
    head: &RequestHead,
    body: &RequestBody,
    index: usize,
    upstream: &Upstream,
    gw: &Gateway,
    ex: &mut Exchange,
) -> Result<UpstreamResponse, GatewayError> {
    ex.record.upstream = Some(upstream.name.clone());
    let wire_head = upstream_head(head, body, upstream, gw);
    let replayable = !matches!(body, RequestBody::Partial { .. });
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        ex.record.attempts = attempt;
        let pooled = if attempt == 1 {
            gw.pool.checkout(index)
        } else {
            None
        };
        ex.record.pooled_connection = pooled.is_some();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => {
                let t = Instant::now();
                let conn = gw
                    .connector
                    .connect(upstream, gw.config.timeouts.upstream_connect)
                    .await
                    .map_err(GatewayError::UpstreamConnect)?;
                ex.record.upstream_connect_us = Some(t.elapsed().as_micros() as u64);
                conn
            }
        };
        match send_and_wait(&mut conn, client, &wire_head, body, head.method, gw, ex).await {
            Ok((head, buf)) => return Ok(UpstreamResponse { conn, head, buf }),
            Err(AttemptError::Stale) if ex.record.pooled_connection && replayable => {
                tracing::debug!(upstream = %upstream.name, "stale pooled connection; retrying on a new one");
            }
            Err(AttemptError::Stale) => return Err(GatewayError::UpstreamClosed),
            Err(AttemptError::Failed(e)) => return Err(e),
        }
    }
}

/// The head as the upstream must see it.
fn upstream_head(
    head: &RequestHead,
    body: &RequestBody,
    upstream: &Upstream,
    gw: &Gateway,
) -> Bytes {
    let target = (!upstream.base_path.is_empty()).then(|| {
        let mut t = upstream.base_path.as_bytes().to_vec();
        t.extend_from_slice(head.target());
        t
    });
    let credential = upstream.credential.as_ref().map(|c| c.header_field());
    let plan = RequestRewrite {
        target: target.as_deref(),
        host: upstream.host_header.as_bytes(),
        drop_client_credentials: !gw.config.open_access() || credential.is_some(),
        credential: credential
            .as_ref()
            .map(|(name, value)| (*name, value.as_slice())),
        content_length: match body {
            RequestBody::Whole {
                bytes,
                reframed: true,
            } => Some(bytes.len() as u64),
            _ => None,
        },
    };
    let mut out = Vec::with_capacity(head.bytes.len() + 128);
    rewrite_request(head, &plan, &mut out);
    out.into()
}

async fn send_and_wait(
    conn: &mut UpstreamConn,
    client: &mut ClientConn,
    wire_head: &Bytes,
    body: &RequestBody,
    method: Method,
    gw: &Gateway,
    ex: &mut Exchange,
) -> Result<(ResponseHead, BytesMut), AttemptError> {
    let held = match body {
        RequestBody::Empty => Bytes::new(),
        RequestBody::Whole { bytes, .. } => bytes.clone(),
        RequestBody::Partial { prefix, .. } => prefix.clone(),
    };
    if held.len() <= COALESCE_BODY {
        // One write (one packet on loopback) for head and a small body.
        let mut both = Vec::with_capacity(wire_head.len() + held.len());
        both.extend_from_slice(wire_head);
        both.extend_from_slice(&held);
        let (res, _) = conn.write_all(both).await;
        res.map_err(|_| AttemptError::Stale)?;
    } else {
        let (res, _) = conn.write_all(wire_head.clone()).await;
        res.map_err(|_| AttemptError::Stale)?;
        let (res, _) = conn.write_all(held).await;
        res.map_err(|_| AttemptError::Stale)?;
    }
    conn.flush().await.map_err(|_| AttemptError::Stale)?;
    ex.upstream_sent = Some(Instant::now());
    if let RequestBody::Partial { remaining, .. } = body {
        let t = Instant::now();
        stream_rest(conn, client, *remaining).await?;
        ex.upload_time = t.elapsed();
    }
    ex.body_consumed = true;
    read_response_head(conn, method, gw).await
}

/// Forwards the part of the body the client has not sent yet, as it arrives.
async fn stream_rest(
    conn: &mut UpstreamConn,
    client: &mut ClientConn,
    mut left: u64,
) -> Result<(), AttemptError> {
    while left > 0 {
        if client.buf.is_empty() {
            client.fill_body().await.map_err(AttemptError::Failed)?;
        }
        let take = (client.buf.len() as u64).min(left) as usize;
        let chunk = client.buf.split_to(take).freeze();
        let (res, _) = conn.write_all(chunk).await;
        res.map_err(|e| AttemptError::Failed(GatewayError::UpstreamIo(e)))?;
        left -= take as u64;
    }
    conn.flush()
        .await
        .map_err(|e| AttemptError::Failed(GatewayError::UpstreamIo(e)))
}

async fn read_response_head(
    conn: &mut UpstreamConn,
    method: Method,
    gw: &Gateway,
) -> Result<(ResponseHead, BytesMut), AttemptError> {
    let deadline = Instant::now() + gw.config.timeouts.upstream_first_byte;
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut received_any = false;
    loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        let (res, back) = monoio::time::timeout(wait, read_some(conn, buf, READ_CHUNK))
            .await
            .map_err(|_| AttemptError::Failed(GatewayError::UpstreamTimeout))?;
        buf = back;
        match res {
            Ok(0) | Err(_) if !received_any => return Err(AttemptError::Stale),
            Ok(0) => {
                return Err(AttemptError::Failed(GatewayError::UpstreamProtocol(
                    Http1Error::UnexpectedEof,
                )))
            }
            Err(e) => return Err(AttemptError::Failed(GatewayError::UpstreamIo(e))),
            Ok(_) => received_any = true,
        }
        while let Some(head) = take_response(&mut buf, method, gw.config.limits.head)
            .map_err(|e| AttemptError::Failed(GatewayError::UpstreamProtocol(e)))?
        {
            if (100..200).contains(&head.status) && head.status != 101 {
                continue;
            }
            return Ok((head, buf));
        }
    }
}
