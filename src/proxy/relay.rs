//! Phase 5, relay: the upstream's response goes to the client as it arrives. Each read from the
//! upstream is written to the client before the next read (so a slow client slows the upstream
//! read, and memory per stream stays at one buffer), the chunked framing is passed through byte
//! for byte, and the meter sees the payload in place. If the upstream fails after the response
//! has started, an SSE stream ends with an `error` event (when the failure falls between
//! chunks) and the connection is closed; any other body is cut off by closing.

use std::time::Instant;

use bytes::BytesMut;

use super::client::ClientConn;
use super::exchange::Exchange;
use super::forward::UpstreamResponse;
use super::Gateway;
use crate::http1::body::BodyCursor;
use crate::http1::io::read_some;
use crate::http1::rewrite::{rewrite_response, ResponseRewrite};
use crate::http1::{BodyFraming, Http1Error, RequestHead};
use crate::usage::json::JsonMeter;
use crate::usage::sse::SseMeter;
use crate::usage::Metered;

const READ_CHUNK: usize = 16 * 1024;

/// The SSE event that ends a stream the upstream broke.
const STREAM_ERROR_EVENT: &[u8] = b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"the upstream connection failed mid-stream\"}}\n\n";

/// A meter for whatever the response carries.
enum Meter {
    Sse(Box<SseMeter>),
    Json(JsonMeter),
    None,
}

impl Meter {
    fn feed(&mut self, data: &[u8]) {
        match self {
            Meter::Sse(m) => m.feed(data),
            Meter::Json(m) => m.feed(data),
            Meter::None => {}
        }
    }

    fn finish(self) -> Metered {
        match self {
            Meter::Sse(m) => m.finish(),
            Meter::Json(m) => m.finish(),
            Meter::None => Metered::default(),
        }
    }
}

/// How the relay of one response works on the wire.
struct Plan {
    dechunk: bool,
    close: bool,
    sse: bool,
}

/// Relays the response; returns whether the client connection may carry another request.
pub async fn relay(
    client: &mut ClientConn,
    req: &RequestHead,
    resp: UpstreamResponse,
    upstream: usize,
    gw: &Gateway,
    ex: &mut Exchange,
) -> bool {
    let UpstreamResponse {
        mut conn,
        head,
        mut buf,
    } = resp;
    ex.upstream_head = Some(Instant::now());
    ex.record.status = head.status;
    ex.record.upstream_request_id = head.header_str("request-id").map(str::to_string);
    let content_type = head.header("content-type").unwrap_or(b"");
    let sse = content_type.starts_with(b"text/event-stream");
    ex.record.stream = sse;
    let plan = Plan {
        dechunk: req.http10 && head.framing == BodyFraming::Chunked,
        close: !req.keep_alive
            || !ex.body_consumed
            || (head.framing == BodyFraming::UntilClose)
            || gw.shutdown.is_fired(),
        sse,
    };
    let mut meter = if sse {
        Meter::Sse(Box::default())
    } else if content_type.starts_with(b"application/json") {
        Meter::Json(JsonMeter::new())
    } else {
        Meter::None
    };
    let mut cursor = BodyCursor::new(head.framing);
    let mut out = Vec::with_capacity(head.bytes.len() + 64 + buf.len());
    let rewrite = ResponseRewrite {
        close: plan.close,
        dechunk: plan.dechunk,
    };
    rewrite_response(&head, rewrite, &[], &mut out);
    // The first body bytes that came with the head go out in the same write.
    let head_len = out.len();
    let first = take_body(&mut cursor, &mut buf, &mut meter, &plan, &mut out);
    ex.record.response_bytes = (out.len() - head_len) as u64;
    if first.is_err() || client.write_all(out).await.is_err() {
        ex.metered = meter.finish();
        ex.record.error = Some(if first.is_err() {
            "upstream_protocol"
        } else {
            "client_gone"
        });
        return false;
    }
    ex.client_head_sent = Some(Instant::now());
    let ended = pump(
        client,
        &mut conn,
        &mut cursor,
        &mut buf,
        &mut meter,
        &plan,
        gw,
        ex,
    )
    .await;
    ex.metered = meter.finish();
    match ended {
        Ok(()) => {
            if head.keep_alive && cursor.is_done() && buf.is_empty() {
                gw.pool.checkin(upstream, conn);
            }
            !plan.close
        }
        Err(Broken::Client) => {
            ex.record.error = Some("client_gone");
            false
        }
        Err(Broken::Upstream(label)) => {
            ex.record.error = Some(label);
            end_broken_stream(client, &cursor, &plan, head.framing).await;
            false
        }
    }
}

/// Who broke the relay.
enum Broken {
    Client,
    Upstream(&'static str),
}

#[allow(clippy::too_many_arguments)]
async fn pump(
    client: &mut ClientConn,
    conn: &mut crate::provider::UpstreamConn,
    cursor: &mut BodyCursor,
    buf: &mut BytesMut,
    meter: &mut Meter,
    plan: &Plan,
    gw: &Gateway,
    ex: &mut Exchange,
) -> Result<(), Broken> {
    let idle = gw.config.timeouts.stream_idle;
    while !cursor.is_done() {
        let taken = std::mem::take(buf);
        let (res, back) =
            match monoio::time::timeout(idle, read_some(conn, taken, READ_CHUNK)).await {
                Ok(r) => r,
                Err(_) => return Err(Broken::Upstream("upstream_stream_idle")),
            };
        *buf = back;
        match res {
            Ok(0) => {
                return cursor
                    .on_eof()
                    .map_err(|_| Broken::Upstream("upstream_truncated"))
            }
            Ok(_) => {}
            Err(_) => return Err(Broken::Upstream("upstream_reset")),
        }
        let mut out = Vec::new();
        let piece = if plan.dechunk {
            take_body(cursor, buf, meter, plan, &mut out)
                .map_err(|_| Broken::Upstream("upstream_protocol"))?;
            bytes::Bytes::from(out)
        } else {
            let n =
                advance(cursor, buf, meter).map_err(|_| Broken::Upstream("upstream_protocol"))?;
            buf.split_to(n).freeze()
        };
        ex.record.response_bytes += piece.len() as u64;
        if !piece.is_empty() {
            client.write_all(piece).await.map_err(|_| Broken::Client)?;
        }
    }
    Ok(())
}

/// Moves the body bytes at the front of `buf` into `out` (de-chunked if planned).
fn take_body(
    cursor: &mut BodyCursor,
    buf: &mut BytesMut,
    meter: &mut Meter,
    plan: &Plan,
    out: &mut Vec<u8>,
) -> Result<(), Http1Error> {
    if plan.dechunk {
        let input = &buf[..];
        let n = cursor.advance(input, |r| {
            meter.feed(&input[r.clone()]);
            out.extend_from_slice(&input[r]);
        })?;
        let _ = buf.split_to(n);
    } else {
        let n = advance(cursor, buf, meter)?;
        out.extend_from_slice(&buf.split_to(n));
    }
    Ok(())
}

fn advance(
    cursor: &mut BodyCursor,
    buf: &BytesMut,
    meter: &mut Meter,
) -> Result<usize, Http1Error> {
    let input = &buf[..];
    cursor.advance(input, |r| meter.feed(&input[r]))
}

/// Ends a response whose upstream failed after it started.
async fn end_broken_stream(
    client: &mut ClientConn,
    cursor: &BodyCursor,
    plan: &Plan,
    framing: BodyFraming,
) {
    if !plan.sse {
        return;
    }
    let mut tail = Vec::new();
    match (framing, cursor) {
        (BodyFraming::Chunked, BodyCursor::Chunked(d))
            if !plan.dechunk && d.at_chunk_boundary() =>
        {
            let event = [b"\n\n".as_slice(), STREAM_ERROR_EVENT].concat();
            tail.extend_from_slice(format!("{:x}\r\n", event.len()).as_bytes());
            tail.extend_from_slice(&event);
            tail.extend_from_slice(b"\r\n0\r\n\r\n");
        }
        (BodyFraming::UntilClose, _) | (BodyFraming::Chunked, _)
            if plan.dechunk || framing == BodyFraming::UntilClose =>
        {
            tail.extend_from_slice(b"\n\n");
            tail.extend_from_slice(STREAM_ERROR_EVENT);
        }
        _ => return,
    }
    let _ = client.write_all(tail).await;
}
