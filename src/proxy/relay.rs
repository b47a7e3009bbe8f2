//! The relay: the upstream's response goes to the client as it arrives. Each read from the
//! upstream is written to the client before the next read (so a slow client slows the upstream
//! read, and memory per stream stays at one buffer) and the meter sees the payload in place.
//! Three output modes: the upstream's bytes as they are (chunked framing passed through byte for
//! byte), de-chunked for an HTTP/1.0 client, or — for a Bedrock client streaming from a Messages
//! upstream — each SSE event re-framed as an AWS event-stream message. If the upstream fails after
//! the response started, the stream ends the way the client's format ends a failed stream (an SSE
//! `error` event, or an event-stream `exception` frame) when the failure falls between chunks, and
//! the connection is closed. When told to, the relay holds back the bytes that end the response
//! and hands them back ([`Held`]): the request path settles the budget and commits the record
//! before it writes them.

use std::time::Instant;

use bytes::BytesMut;

use super::client::ClientConn;
use super::exchange::Response;
use super::forward::UpstreamResponse;
use super::spare_buffers::UPSTREAM_READ;
use super::Gateway;
use crate::format::count_tokens::CountAnswer;
use crate::format::sse_split::SseSplitter;
use crate::format::{self, eventstream};
use crate::http1::body::BodyCursor;
use crate::http1::io::read_some;
use crate::http1::rewrite::{rewrite_response, ResponseRewrite};
use crate::http1::{BodyFraming, Http1Error, RequestHead, ResponseHead};
use crate::provider::UpstreamConn;
use crate::record::UpstreamRequestId;
use crate::usage::json::JsonMeter;
use crate::usage::sse::SseMeter;
use crate::usage::Metered;

/// The SSE event that ends a stream the upstream broke.
const STREAM_ERROR_EVENT: &[u8] = b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"the upstream connection failed mid-stream\"}}\n\n";

const EVENT_STREAM_TYPE: &[u8] = b"application/vnd.amazon.eventstream";

/// The format change a relay makes (client format ≠ upstream format).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conversion {
    None,
    /// A Messages upstream's SSE to a Bedrock client.
    SseToEventStream,
    /// A Bedrock upstream's event-stream to a Messages or Vertex client.
    EventStreamToSse,
    /// A token count between Bedrock's answer shape and the Messages API's.
    Count(CountAnswer),
}

/// The largest token-count answer sluice rewrites (it is a few bytes).
const COUNT_ANSWER_MAX: usize = 64 * 1024;

/// A meter for whatever the response carries.
enum Meter {
    Sse(Box<SseMeter>),
    /// An event-stream passed through as it is: frames are decoded on the side for usage.
    EventStream(Box<(eventstream::Decoder, SseMeter)>),
    Json(JsonMeter),
    /// A JSON body that came whole with the head and goes out as it is: read in place from
    /// the client's buffer once it is there ([`Meter::read_whole`]) instead of copied.
    WholeJson {
        skip_model: bool,
    },
    /// What a [`Meter::WholeJson`] read.
    Read(Metered),
    None,
}

impl Meter {
    /// The meter for a response: SSE and event streams as they pass, JSON copied as it
    /// passes unless all of it came with the head and is relayed unchanged.
    fn choose(
        kind: BodyKind,
        response: (&ResponseHead, &BytesMut),
        output: &Output,
        model_named: bool,
    ) -> Self {
        let (head, buf) = response;
        if kind == BodyKind::Sse || matches!(output, Output::SseFromEvents { .. }) {
            return Meter::Sse(Box::default());
        }
        if kind == BodyKind::Events {
            return Meter::EventStream(Box::default());
        }
        if !head
            .header("content-type")
            .is_some_and(|t| t.starts_with(b"application/json"))
        {
            return Meter::None;
        }
        let whole = matches!(head.framing, BodyFraming::Length(n) if buf.len() as u64 >= n);
        match (whole && matches!(output, Output::Raw), model_named) {
            (true, skip_model) => Meter::WholeJson { skip_model },
            (false, true) => Meter::Json(JsonMeter::skipping_model()),
            (false, false) => Meter::Json(JsonMeter::new()),
        }
    }

    /// Reads a [`Meter::WholeJson`]'s body, now written to the client's buffer.
    fn read_whole(&mut self, body: &[u8]) {
        if let Meter::WholeJson { skip_model } = *self {
            *self = Meter::Read(JsonMeter::read_whole(body, skip_model));
        }
    }

    fn feed(&mut self, data: &[u8]) {
        match self {
            Meter::Sse(m) => m.feed(data),
            Meter::EventStream(m) => {
                let (decoder, sse) = &mut **m;
                decoder.feed(data);
                let mut text = Vec::new();
                while let Ok(Some(message)) = decoder.next_message() {
                    format::sse_from_message(&message, &mut text);
                }
                sse.feed(&text);
            }
            Meter::Json(m) => m.feed(data),
            Meter::WholeJson { .. } | Meter::Read(_) | Meter::None => {}
        }
    }

    fn finish(self) -> Metered {
        match self {
            Meter::Sse(m) => m.finish(),
            Meter::EventStream(m) => m.1.finish(),
            Meter::Json(m) => m.finish(),
            Meter::Read(metered) => metered,
            Meter::WholeJson { .. } | Meter::None => Metered::default(),
        }
    }
}

/// How the body reaches the client.
enum Output {
    /// The upstream's bytes as they are.
    Raw,
    /// Payload only, delimited by closing (an HTTP/1.0 client).
    Dechunked,
    /// SSE events as event-stream messages, in sluice's own chunks (or close-delimited).
    EventStream {
        splitter: SseSplitter,
        chunked: bool,
    },
    /// Event-stream messages as SSE events, in sluice's own chunks (or close-delimited).
    SseFromEvents {
        decoder: Box<eventstream::Decoder>,
        chunked: bool,
    },
    /// A token count held whole and written in the client's shape at its end.
    Count {
        answer: CountAnswer,
        held: Vec<u8>,
        chunked: bool,
    },
}

impl Output {
    fn choose(
        req: &RequestHead,
        head: &ResponseHead,
        sse: bool,
        events: bool,
        conversion: Conversion,
    ) -> Output {
        if conversion == Conversion::SseToEventStream && sse && head.status == 200 {
            Output::EventStream {
                splitter: SseSplitter::new(),
                chunked: !req.http10,
            }
        } else if conversion == Conversion::EventStreamToSse && events && head.status == 200 {
            Output::SseFromEvents {
                decoder: Box::default(),
                chunked: !req.http10,
            }
        } else if let (Conversion::Count(answer), 200) = (conversion, head.status) {
            Output::Count {
                answer,
                held: Vec::new(),
                chunked: !req.http10,
            }
        } else if req.http10 && head.framing == BodyFraming::Chunked {
            Output::Dechunked
        } else {
            Output::Raw
        }
    }

    /// Sluice frames the body itself (it cannot reuse the upstream's framing).
    fn reframes(&self) -> bool {
        !matches!(self, Output::Raw)
    }
}

/// What the relay needs besides the response.
pub struct RelayPlan<'a> {
    /// The client's request head (its HTTP version and keep-alive).
    pub req: &'a RequestHead,
    /// Fields sluice adds to the response head.
    pub added_headers: &'a [(&'static str, compact_str::CompactString)],
    /// Leave out the upstream's identity and quota fields (a customer-routed caller).
    pub strip_upstream_identity: bool,
    /// The request body was read to its end (otherwise the connection closes after this
    /// response).
    pub body_read: bool,
    /// Hold back the bytes that end the response (a budget to settle or a ledger commit must
    /// come first): they are handed back in [`Held::tail`].
    pub hold_last: bool,
    pub conversion: Conversion,
    /// The request named its model: the response's own `model` (which prices the usage only
    /// when the request named none) need not be copied.
    pub model_named: bool,
}

/// The relay's result: the response as the client has it so far, and how it ended.
pub struct Relayed {
    pub response: Response,
    pub ended: Result<Held, Broken>,
}

/// A response relayed up to its held-back end.
pub struct Held {
    /// The bytes that end the response (empty when nothing was held back).
    pub tail: Vec<u8>,
    /// The client connection may carry another request.
    pub keep_alive: bool,
    /// The upstream connection, when its response ended exactly on its framing with nothing
    /// after it: it may go back to the pool once the tail is written.
    pub reusable: Option<UpstreamConn>,
}

/// Relays the response, all but the held-back end.
pub async fn relay(
    client: &mut ClientConn,
    resp: UpstreamResponse,
    plan: &RelayPlan<'_>,
    gw: &Gateway,
) -> Relayed {
    let UpstreamResponse {
        mut conn,
        head,
        mut buf,
    } = resp;
    let req = plan.req;
    let content_type = head.header("content-type").unwrap_or(b"");
    let sse = content_type.starts_with(b"text/event-stream");
    let events = content_type.starts_with(EVENT_STREAM_TYPE);
    let mut response = Response {
        status: head.status,
        upstream_request_id: head.header_str("request-id").map(UpstreamRequestId::new),
        stream: sse || events,
        upstream_head: Some(Instant::now()),
        ..Response::default()
    };
    let mut output = Output::choose(req, &head, sse, events, plan.conversion);
    let own_chunks = matches!(
        output,
        Output::EventStream { chunked: true, .. }
            | Output::SseFromEvents { chunked: true, .. }
            | Output::Count { chunked: true, .. }
    );
    let close = !req.keep_alive
        || !plan.body_read
        || head.framing == BodyFraming::UntilClose
        || (output.reframes() && !own_chunks)
        || gw.shutdown.is_fired();
    let kind = match (sse, events) {
        (true, _) => BodyKind::Sse,
        (_, true) => BodyKind::Events,
        _ => BodyKind::Other,
    };
    let mut meter = Meter::choose(kind, (&head, &buf), &output, plan.model_named);
    let mut cursor = BodyCursor::new(head.framing);
    // Room for the head with sluice's fields and the body bytes that came with it: one
    // allocation, never grown.
    let added: usize = plan
        .added_headers
        .iter()
        .map(|(name, value)| name.len() + value.len() + 4)
        .sum();
    let mut out = gw
        .spare_buffers
        .write(head.bytes.len() + added + 64 + buf.len());
    write_head(
        &head,
        (&output, plan.strip_upstream_identity),
        close,
        plan.added_headers,
        &mut out,
    );
    let head_len = out.len();
    // The first body bytes that came with the head go out in the same write.
    let first = take_body(&mut cursor, &mut buf, &mut meter, &mut output, &mut out);
    response.bytes = (out.len() - head_len) as u64;
    if first.is_ok() {
        meter.read_whole(out.get(head_len..).unwrap_or_default());
    }
    let mut tail = Vec::new();
    if first.is_err() {
        response.metered = meter.finish();
        return Relayed {
            response,
            ended: Err(Broken::UpstreamProtocol),
        };
    } else if plan.hold_last && cursor.is_done() {
        tail = out;
    } else {
        match client.write_all(out).await {
            Ok(written) => gw.spare_buffers.give_write(written),
            Err(_) => {
                response.metered = meter.finish();
                return Relayed {
                    response,
                    ended: Err(Broken::Client),
                };
            }
        }
        response.client_head_sent = Some(Instant::now());
    }
    let mut streamed = Streamed {
        cursor: &mut cursor,
        buf: &mut buf,
        meter: &mut meter,
        output: &mut output,
        hold_last: plan.hold_last,
        bytes: 0,
    };
    let ended = pump(client, &mut conn, &mut streamed, gw).await;
    response.bytes += streamed.bytes;
    response.metered = meter.finish();
    if response.metered.usage.is_none() {
        response.metered.usage = bedrock_header_usage(&head);
    }
    let ended = match ended {
        Ok(last) => {
            tail.extend_from_slice(&last.unwrap_or_default());
            if own_chunks {
                tail.extend_from_slice(b"0\r\n\r\n");
            }
            Ok(Held {
                tail,
                keep_alive: !close,
                reusable: reusable(conn, &head, &cursor, &buf, gw),
            })
        }
        Err(Broken::Client) => Err(Broken::Client),
        Err(broken) => {
            end_broken_stream(client, &cursor, &output, kind, head.framing).await;
            Err(broken)
        }
    };
    drop(head);
    gw.spare_buffers.give_upstream_read(buf);
    Relayed { response, ended }
}

/// The upstream connection, if it may be pooled again: only when the response ended exactly on
/// its framing with nothing buffered after it (bytes after it belong to no request and must
/// never reach the next client; bytes that arrive later are seen at the next checkout).
fn reusable(
    conn: UpstreamConn,
    head: &ResponseHead,
    cursor: &BodyCursor,
    buf: &BytesMut,
    gw: &Gateway,
) -> Option<UpstreamConn> {
    if head.framed_twice {
        gw.records.metrics.count_upstream_discarded();
    }
    if !(head.keep_alive && cursor.is_done()) {
        return None;
    }
    if !buf.is_empty() {
        gw.records.metrics.count_upstream_discarded();
        return None;
    }
    Some(conn)
}

/// The fields sluice writes into a response head — its framing's two and the ones it adds
/// (quota, budget warnings, the usage notice) — held inline, not allocated per response.
type ExtraFields<'a> = smallvec::SmallVec<[(&'a str, &'a [u8]); super::ADDED_RESPONSE_FIELDS + 2]>;

fn write_head(
    head: &ResponseHead,
    (output, strip_identity): (&Output, bool),
    close: bool,
    added: &[(&'static str, compact_str::CompactString)],
    out: &mut Vec<u8>,
) {
    let (reframed, content_type, chunked): (&[&str], Option<&[u8]>, bool) = match output {
        Output::Raw => (&[], None, false),
        Output::Dechunked => (&["transfer-encoding", "content-length"], None, false),
        Output::EventStream { chunked, .. } => (REFRAMED, Some(EVENT_STREAM_TYPE), *chunked),
        Output::SseFromEvents { chunked, .. } => (
            REFRAMED,
            Some(b"text/event-stream; charset=utf-8"),
            *chunked,
        ),
        Output::Count { chunked, .. } => (REFRAMED, Some(b"application/json"), *chunked),
    };
    let mut extra = ExtraFields::new();
    if let Some(ct) = content_type {
        extra.push(("content-type", ct));
    }
    if chunked {
        extra.push(("transfer-encoding", b"chunked"));
    }
    extra.extend(added.iter().map(|(name, value)| (*name, value.as_bytes())));
    // Limits sluice reports replace the upstream's (which describe sluice's own credential).
    let prefix = super::usage_notice::RATE_LIMIT_PREFIX;
    let drop_prefix = (strip_identity || added.iter().any(|(name, _)| name.starts_with(prefix)))
        .then_some(prefix);
    let stripped: Vec<&str>;
    let drop = if strip_identity {
        stripped = reframed.iter().chain(&UPSTREAM_IDENTITY).copied().collect();
        &stripped[..]
    } else {
        reframed
    };
    let rewrite = ResponseRewrite {
        close,
        drop,
        drop_prefix,
    };
    rewrite_response(head, rewrite, &extra, out);
}

/// What names the operator's upstream account and route, kept from customer-routed callers
/// (with `anthropic-ratelimit-*`).
const UPSTREAM_IDENTITY: [&str; 4] = ["request-id", "anthropic-organization-id", "cf-ray", "via"];

/// The upstream's framing fields, replaced when sluice re-frames a body in another type.
const REFRAMED: &[&str] = &["content-type", "content-length", "transfer-encoding"];

/// Bedrock's `X-Amzn-Bedrock-*-Token-Count` headers, for a response whose body carried no usage.
fn bedrock_header_usage(head: &ResponseHead) -> Option<crate::usage::Usage> {
    let count = |name: &str| {
        head.header_str(name)
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let input = count("x-amzn-bedrock-input-token-count")?;
    Some(crate::usage::Usage {
        input_tokens: input,
        output_tokens: count("x-amzn-bedrock-output-token-count").unwrap_or(0),
        cache_read_input_tokens: count("x-amzn-bedrock-cache-read-input-token-count").unwrap_or(0),
        cache_creation_input_tokens: count("x-amzn-bedrock-cache-write-input-token-count")
            .unwrap_or(0),
        ..crate::usage::Usage::default()
    })
}

/// Why a response ended before its framing said it would: each a distinct access-log label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Broken {
    /// The client stopped reading or closed.
    Client,
    /// The upstream's body was not what its framing or format said.
    UpstreamProtocol,
    /// The upstream closed before the body's end.
    UpstreamTruncated,
    /// The upstream connection failed mid-body.
    UpstreamReset,
    /// The upstream stayed silent past `timeouts.stream_idle`.
    UpstreamIdle,
    /// `durability = "sync"`: the record could not be committed before the last byte.
    LedgerSync,
}

impl Broken {
    /// The access record's `error`.
    pub fn label(self) -> &'static str {
        match self {
            Broken::Client => "client_gone",
            Broken::UpstreamProtocol => "upstream_protocol",
            Broken::UpstreamTruncated => "upstream_truncated",
            Broken::UpstreamReset => "upstream_reset",
            Broken::UpstreamIdle => "upstream_stream_idle",
            Broken::LedgerSync => "ledger_sync_failed",
        }
    }
}

/// The state of a body being relayed.
struct Streamed<'a> {
    cursor: &'a mut BodyCursor,
    buf: &'a mut BytesMut,
    meter: &'a mut Meter,
    output: &'a mut Output,
    /// Return the piece that ends the body instead of writing it.
    hold_last: bool,
    /// Body bytes relayed (or held back) so far.
    bytes: u64,
}

/// Relays the rest of the body; returns the piece that ends it when told to hold it back.
async fn pump(
    client: &mut ClientConn,
    conn: &mut UpstreamConn,
    streamed: &mut Streamed<'_>,
    gw: &Gateway,
) -> Result<Option<bytes::Bytes>, Broken> {
    let hold_last = streamed.hold_last;
    let cursor = &mut *streamed.cursor;
    let buf = &mut *streamed.buf;
    let meter = &mut *streamed.meter;
    let output = &mut *streamed.output;
    let idle = gw.config.timeouts.stream_idle;
    // Where sluice writes the SSE itself (from a Bedrock event-stream, which carries no pings),
    // it pings the client while the upstream is silent: Claude Code drops a stream after five
    // silent minutes.
    let pings = match output {
        Output::SseFromEvents { chunked, .. } => Some((gw.config.timeouts.ping_interval, *chunked)),
        _ => None,
    };
    while !cursor.is_done() {
        let taken = std::mem::take(buf);
        let (res, back) = read_or_ping(client, conn, taken, idle, pings).await?;
        *buf = back;
        match res {
            Ok(0) => {
                return cursor
                    .on_eof()
                    .map(|()| None)
                    .map_err(|_| Broken::UpstreamTruncated)
            }
            Ok(_) => {}
            Err(_) => return Err(Broken::UpstreamReset),
        }
        let piece = if let Output::Raw = output {
            let n = advance(cursor, buf, meter).map_err(|_| Broken::UpstreamProtocol)?;
            buf.split_to(n).freeze()
        } else {
            let mut out = Vec::new();
            take_body(cursor, buf, meter, output, &mut out)
                .map_err(|_| Broken::UpstreamProtocol)?;
            bytes::Bytes::from(out)
        };
        streamed.bytes += piece.len() as u64;
        if hold_last && cursor.is_done() {
            return Ok(Some(piece));
        }
        if !piece.is_empty() {
            client.write_all(piece).await.map_err(|_| Broken::Client)?;
        }
    }
    Ok(None)
}

/// Reads the upstream within `idle`; with `pings`, writes an SSE `ping` to the client each
/// interval of silence. The pending read is never dropped between pings (dropping it could lose
/// bytes the kernel already received): it is pinned and polled again.
async fn read_or_ping(
    client: &mut ClientConn,
    conn: &mut UpstreamConn,
    buf: BytesMut,
    idle: std::time::Duration,
    pings: Option<(std::time::Duration, bool)>,
) -> Result<(std::io::Result<usize>, BytesMut), Broken> {
    const PING: &[u8] = b"event: ping\ndata: {\"type\":\"ping\"}\n\n";
    // One clock read per call: the wake-ups are fixed from it.
    let started = Instant::now();
    let give_up = started + idle;
    let mut next_ping = pings.map(|(every, _)| started + every);
    let mut read = std::pin::pin!(read_some(conn, buf, UPSTREAM_READ));
    loop {
        let wake = next_ping.map_or(give_up, |ping| ping.min(give_up));
        let until = monoio::time::Instant::from_std(wake);
        match monoio::time::timeout_at(until, read.as_mut()).await {
            Ok(done) => return Ok(done),
            Err(_) if wake >= give_up => return Err(Broken::UpstreamIdle),
            Err(_) => {
                let (Some((every, chunked)), Some(ping)) = (pings, next_ping) else {
                    return Err(Broken::UpstreamIdle);
                };
                next_ping = Some(ping + every);
                let mut piece = Vec::new();
                push_piece(&mut piece, PING, chunked);
                client.write_all(piece).await.map_err(|_| Broken::Client)?;
            }
        }
    }
}

/// Moves the body bytes at the front of `buf` into `out`, in the output's form.
fn take_body(
    cursor: &mut BodyCursor,
    buf: &mut BytesMut,
    meter: &mut Meter,
    output: &mut Output,
    out: &mut Vec<u8>,
) -> Result<(), Http1Error> {
    match output {
        Output::Raw => {
            let n = advance(cursor, buf, meter)?;
            out.extend_from_slice(&buf.split_to(n));
        }
        Output::Dechunked => {
            let input = &buf[..];
            let n = cursor.advance(input, |r| {
                let piece = input.get(r).unwrap_or_default();
                meter.feed(piece);
                out.extend_from_slice(piece);
            })?;
            let _ = buf.split_to(n);
        }
        Output::EventStream { splitter, chunked } => {
            let input = &buf[..];
            let mut frames = Vec::new();
            let mut too_large = false;
            let n = cursor.advance(input, |r| {
                let piece = input.get(r).unwrap_or_default();
                meter.feed(piece);
                too_large |= splitter
                    .feed(piece, |event| {
                        frames.extend_from_slice(&eventstream::chunk_frame(event))
                    })
                    .is_err();
            })?;
            let _ = buf.split_to(n);
            if too_large {
                return Err(Http1Error::BadChunk("SSE event too large to re-frame"));
            }
            push_piece(out, &frames, *chunked);
        }
        Output::SseFromEvents { decoder, chunked } => {
            let input = &buf[..];
            let n = cursor.advance(input, |r| decoder.feed(input.get(r).unwrap_or_default()))?;
            let _ = buf.split_to(n);
            let mut sse = Vec::new();
            while let Some(message) = decoder
                .next_message()
                .map_err(|_| Http1Error::BadChunk("malformed event-stream frame"))?
            {
                format::sse_from_message(&message, &mut sse);
            }
            meter.feed(&sse);
            push_piece(out, &sse, *chunked);
        }
        Output::Count {
            answer,
            held,
            chunked,
        } => {
            let input = &buf[..];
            let n = cursor.advance(input, |r| {
                held.extend_from_slice(input.get(r).unwrap_or_default())
            })?;
            let _ = buf.split_to(n);
            if held.len() > COUNT_ANSWER_MAX {
                return Err(Http1Error::BadChunk("token count answer too large"));
            }
            if cursor.is_done() {
                let rewritten = answer.rewrite(held).unwrap_or_else(|| std::mem::take(held));
                push_piece(out, &rewritten, *chunked);
            }
        }
    }
    Ok(())
}

/// What kind of streaming body a response carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BodyKind {
    Sse,
    Events,
    Other,
}

/// Appends `data` as a last piece, then the terminating chunk when chunking.
fn finish_with(out: &mut Vec<u8>, data: &[u8], chunked: bool) {
    push_piece(out, data, chunked);
    if chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
}

/// Appends `data` as one chunk (or as it is, when not chunking).
fn push_piece(out: &mut Vec<u8>, data: &[u8], chunked: bool) {
    if data.is_empty() {
        return;
    }
    if chunked {
        out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    } else {
        out.extend_from_slice(data);
    }
}

fn advance(
    cursor: &mut BodyCursor,
    buf: &BytesMut,
    meter: &mut Meter,
) -> Result<usize, Http1Error> {
    let input = &buf[..];
    cursor.advance(input, |r| meter.feed(input.get(r).unwrap_or_default()))
}

/// Ends a response whose upstream failed after it started, in the client's own format.
async fn end_broken_stream(
    client: &mut ClientConn,
    cursor: &BodyCursor,
    output: &Output,
    kind: BodyKind,
    framing: BodyFraming,
) {
    let exception = || {
        eventstream::exception_frame(
            "internalServerException",
            "the upstream connection failed mid-stream",
        )
    };
    let sse_error = [b"\n\n".as_slice(), STREAM_ERROR_EVENT].concat();
    let at_boundary = matches!((framing, cursor), (BodyFraming::Chunked, BodyCursor::Chunked(d)) if d.at_chunk_boundary());
    let mut tail = Vec::new();
    match (output, kind) {
        (Output::EventStream { chunked, .. }, _) => finish_with(&mut tail, &exception(), *chunked),
        (Output::SseFromEvents { chunked, .. }, _) => finish_with(&mut tail, &sse_error, *chunked),
        (Output::Raw, BodyKind::Sse) if at_boundary => finish_with(&mut tail, &sse_error, true),
        (Output::Raw, BodyKind::Events) if at_boundary => {
            finish_with(&mut tail, &exception(), true)
        }
        (Output::Raw, BodyKind::Sse) if framing == BodyFraming::UntilClose => {
            tail.extend_from_slice(&sse_error)
        }
        (Output::Dechunked, BodyKind::Sse) => tail.extend_from_slice(&sse_error),
        _ => return,
    }
    let _ = client.write_all(tail).await;
}
