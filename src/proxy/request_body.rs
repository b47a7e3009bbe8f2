//! Reading the request body, part of forwarding. A body up to `replay_buffer_bytes` is held
//! whole: its `model` can be read, and a stale pooled upstream connection can be retried with
//! it. A larger body is forwarded as it arrives, after its first part. A chunked body is
//! de-chunked (bounded by `max_body_bytes`) and sent upstream with a Content-Length.

use bytes::Bytes;

use super::client::ClientConn;
use super::GatewayError;
use crate::http1::body::ChunkedDecoder;
use crate::http1::{BodyFraming, Http1Error, RequestHead};

/// The body as far as sluice has it.
#[derive(Clone, Debug)]
pub enum RequestBody {
    Empty,
    /// The complete body.
    Whole {
        bytes: Bytes,
        reframed: bool,
    },
    /// The first part; `remaining` bytes are still with the client.
    Partial {
        prefix: Bytes,
        remaining: u64,
    },
}

impl RequestBody {
    /// What sluice holds of the body.
    pub fn held(&self) -> &[u8] {
        match self {
            RequestBody::Empty => &[],
            RequestBody::Whole { bytes, .. } => bytes,
            RequestBody::Partial { prefix, .. } => prefix,
        }
    }

    /// Total body length.
    pub fn len(&self) -> u64 {
        match self {
            RequestBody::Empty => 0,
            RequestBody::Whole { bytes, .. } => bytes.len() as u64,
            RequestBody::Partial { prefix, remaining } => prefix.len() as u64 + remaining,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Reads the body of `head` (all of it, or its first part).
pub async fn read(
    client: &mut ClientConn,
    head: &RequestHead,
) -> Result<RequestBody, GatewayError> {
    let body = read_framed(client, head).await?;
    client.body_unread = matches!(body, RequestBody::Partial { .. });
    Ok(body)
}

async fn read_framed(
    client: &mut ClientConn,
    head: &RequestHead,
) -> Result<RequestBody, GatewayError> {
    let limits = *client.limits();
    match head.framing {
        BodyFraming::Empty | BodyFraming::UntilClose => Ok(RequestBody::Empty),
        BodyFraming::Length(n) if n > limits.max_body_bytes => {
            Err(Http1Error::BodyTooLarge(limits.max_body_bytes).into())
        }
        BodyFraming::Length(n) => {
            send_continue(client, head).await?;
            let first = n.min(limits.replay_buffer_bytes.max(1) as u64) as usize;
            // Room for all of it up front, so one read can take whatever the socket holds.
            client.buf.reserve(first.saturating_sub(client.buf.len()));
            while client.buf.len() < first {
                client.fill_body().await?;
            }
            if n as usize <= limits.replay_buffer_bytes {
                let bytes = client.buf.split_to(n as usize).freeze();
                return Ok(RequestBody::Whole {
                    bytes,
                    reframed: false,
                });
            }
            let take = client.buf.len().min(n as usize);
            let prefix = client.buf.split_to(take).freeze();
            Ok(RequestBody::Partial {
                remaining: n - take as u64,
                prefix,
            })
        }
        BodyFraming::Chunked => {
            send_continue(client, head).await?;
            read_chunked(client, limits.max_body_bytes).await
        }
    }
}

/// Reads the rest of a partial body into memory (its `model` was not in the first part).
pub async fn complete(
    client: &mut ClientConn,
    body: RequestBody,
) -> Result<RequestBody, GatewayError> {
    let RequestBody::Partial { prefix, remaining } = body else {
        return Ok(body);
    };
    let mut whole = Vec::with_capacity(prefix.len() + remaining as usize);
    whole.extend_from_slice(&prefix);
    let mut left = remaining as usize;
    while left > 0 {
        if client.buf.is_empty() {
            client.fill_body().await?;
        }
        let take = client.buf.len().min(left);
        whole.extend_from_slice(&client.buf.split_to(take));
        left -= take;
    }
    client.body_unread = false;
    Ok(RequestBody::Whole {
        bytes: whole.into(),
        reframed: false,
    })
}

async fn send_continue(client: &mut ClientConn, head: &RequestHead) -> Result<(), GatewayError> {
    if head.expect_continue && client.buf.is_empty() {
        client
            .write_all(CONTINUE)
            .await
            .map_err(|_| GatewayError::ClientHttp(Http1Error::UnexpectedEof))?;
    }
    Ok(())
}

async fn read_chunked(client: &mut ClientConn, max: u64) -> Result<RequestBody, GatewayError> {
    let mut decoder = ChunkedDecoder::new();
    let mut out: Vec<u8> = Vec::new();
    loop {
        let input = &client.buf[..];
        let used = decoder.decode(input, |r| {
            out.extend_from_slice(input.get(r).unwrap_or_default());
        })?;
        let _ = client.buf.split_to(used);
        if out.len() as u64 > max {
            return Err(Http1Error::BodyTooLarge(max).into());
        }
        if decoder.is_done() {
            return Ok(RequestBody::Whole {
                bytes: out.into(),
                reframed: true,
            });
        }
        client.fill_body().await?;
    }
}
