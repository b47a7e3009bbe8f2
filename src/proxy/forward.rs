//! Phase 7, forward: rewrite the head (credentials, Host, hop-by-hop fields, the base path),
//! take a pooled connection or open one, send head and body, and wait for the response head.
//! A pooled connection the upstream had already closed fails before any response byte; when the
//! whole body is still held, the request is sent once more on a fresh connection. Nothing is
//! retried once the upstream may have seen the complete request on a live connection.

use crate::telemetry::trace_context::TraceContext;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use monoio::io::{AsyncWriteRent, AsyncWriteRentExt};

use super::classify::Operation;
use super::client::ClientConn;
use super::request_body::RequestBody;
use super::route::Candidate;
use super::{Gateway, GatewayError};
use crate::format::{self, CloudCall};
use crate::http1::io::read_some;
use crate::http1::rewrite::{rewrite_request, RequestRewrite};
use crate::http1::{take_response, Http1Error, Method, RequestHead, ResponseHead};
use crate::provider::upstream::Provider;
use crate::provider::{bedrock, Upstream, UpstreamConn};

use super::spare_buffers::UPSTREAM_READ;

/// Bodies up to this size are copied behind the head and sent in the same write. A second
/// write costs the worker a ring round trip and the upstream a wake-up on a head that arrives
/// without its body; copying 128 KiB costs less than either. Claude Code's requests are mostly
/// below it (`tuning/profile.md`, concurrency 1).
const COALESCE_BODY: usize = 128 * 1024;

/// The bytes of one upstream request's first write: the head as the upstream must see it and,
/// when the held body is small ([`COALESCE_BODY`]), that body behind it. Built once per
/// deployment tried and written again as it is on a retry (monoio hands a written buffer back).
struct WireRequest {
    bytes: Vec<u8>,
    /// The held body is in `bytes`; otherwise it is written on its own.
    body_included: bool,
}

/// An upstream's response head, with the connection and any body bytes read with it.
pub struct UpstreamResponse {
    pub conn: UpstreamConn,
    pub head: ResponseHead,
    pub buf: BytesMut,
}

/// What the forward phase did upstream, across fallbacks and stale-connection retries: the
/// request's trail keeps it, [`super::finish`] records it.
#[derive(Clone, Debug, Default)]
pub struct AttemptLog {
    /// The upstream last tried.
    pub upstream: Option<Arc<str>>,
    /// Its provider, as the GenAI conventions name it.
    pub provider: Option<&'static str>,
    /// The model id sent to it.
    pub upstream_model: Option<Arc<str>>,
    /// Connections the request was sent on.
    pub count: u32,
    /// The last attempt used a pooled connection.
    pub pooled_connection: bool,
    /// How long opening the last new connection took.
    pub connect_us: Option<u64>,
    /// Each deployment that failed over to the next: `upstream: reason`.
    pub fallbacks: Vec<String>,
    /// What the last attempt's field policy took out: `field:<name>`, `beta:<name>`.
    pub dropped: Vec<String>,
    /// When the request's held part was last written upstream.
    pub sent: Option<Instant>,
    /// Time spent forwarding a streamed body remainder (the client's upload pace).
    pub upload_time: Duration,
}

/// How one attempt failed.
enum AttemptError {
    /// The connection was dead before any response byte: safe to retry with a held body.
    Stale,
    Failed(GatewayError),
}

/// A request on its way upstream: the client's head and body, the translation planned for
/// them, and the upstream (with its index in the config, which keys the pool).
pub struct Outbound<'a> {
    pub head: &'a RequestHead,
    pub body: &'a RequestBody,
    pub translation: &'a Translation,
    pub index: usize,
    pub upstream: &'a Upstream,
    /// The request's trace, when spans are exported: the upstream gets a `traceparent`
    /// naming sluice's span.
    pub trace: Option<&'a TraceContext>,
}

/// Sends the request upstream and returns the response head.
pub async fn forward(
    client: &mut ClientConn,
    out: &Outbound<'_>,
    gw: &Gateway,
    log: &mut AttemptLog,
) -> Result<UpstreamResponse, GatewayError> {
    let Outbound {
        head,
        body,
        translation,
        index,
        upstream,
        trace,
    } = *out;
    log.upstream = Some(upstream.name.clone());
    log.provider = Some(upstream.provider.semconv_name());
    let translated = match &translation.body {
        Some(bytes) => RequestBody::Whole {
            bytes: bytes.clone(),
            reframed: false,
        },
        None => body.clone(),
    };
    let mut wire = wire_request(head, &translated, translation, upstream, trace, gw)?;
    let body = &translated;
    let replayable = !matches!(body, RequestBody::Partial { .. });
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        log.count += 1;
        let pooled = if attempt == 1 {
            gw.pool
                .checkout(index, || gw.records.metrics.count_upstream_discarded())
        } else {
            None
        };
        log.pooled_connection = pooled.is_some();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => {
                let t = Instant::now();
                let conn = gw
                    .connector
                    .connect(upstream, gw.config.timeouts.upstream_connect)
                    .await
                    .map_err(GatewayError::UpstreamConnect)?;
                log.connect_us = Some(t.elapsed().as_micros() as u64);
                conn
            }
        };
        match send_and_wait(&mut conn, client, &mut wire, body, head.method, gw, log).await {
            Ok((head, buf)) => {
                gw.spare_buffers.give_write(wire.bytes);
                return Ok(UpstreamResponse { conn, head, buf });
            }
            Err(AttemptError::Stale) if log.pooled_connection && replayable => {
                tracing::debug!(upstream = %upstream.name, "stale pooled connection; retrying on a new one");
            }
            Err(AttemptError::Stale) => return Err(GatewayError::UpstreamClosed),
            Err(AttemptError::Failed(e)) => return Err(e),
        }
    }
}

/// What the upstream must see that the client did not send: another path, another body (a
/// request translated between formats, or an aliased model), and header changes.
#[derive(Debug, Default)]
pub struct Translation {
    pub path: Option<String>,
    pub body: Option<Bytes>,
    /// Betas from a Bedrock body, merged into `anthropic-beta`.
    pub betas: Vec<String>,
    /// The `anthropic-beta` header to send instead of the client's (empty: none at all).
    pub beta_header: Option<Vec<String>>,
    /// What the upstream's field policy took out: `field:<name>`, `beta:<name>`.
    pub dropped: Vec<String>,
    /// The client's `anthropic-beta` went into the body: leave the header out.
    pub drop_beta_header: bool,
    /// Add this `anthropic-version` (a cloud client carried it in the body).
    pub add_version: Option<String>,
    /// Drop AWS signing fields (they sign the client's request, not sluice's).
    pub drop_aws_signing: bool,
}

/// Plans the translation of `body` (complete, when a translation is needed) for the deployment
/// `candidate` on `upstream`; `model` is the model the client named.
pub fn plan(
    op: &Operation,
    head: &RequestHead,
    body: &RequestBody,
    model: Option<&str>,
    candidate: &Candidate,
    upstream: &Upstream,
) -> Result<Translation, GatewayError> {
    let upstream_model = candidate.upstream_model.as_deref().unwrap_or_default();
    let invalid = |e: format::TranslateError| GatewayError::InvalidRequest(e.to_string());
    let source = match op {
        Operation::Cloud(call) => format::Source::Cloud(call),
        Operation::CountTokens => format::Source::CountTokens,
        _ => format::Source::Messages,
    };
    match &upstream.provider {
        Provider::Bedrock { .. } if !matches!(op, Operation::Cloud(c) if c.format() == format::ClientFormat::Bedrock) =>
        {
            let policy = Policed::new(
                head,
                body.held(),
                &[],
                &upstream.field_policy,
                &["model", "stream", "anthropic_beta", "anthropic_version"],
            );
            let t = format::to_bedrock(
                source,
                body.held(),
                upstream_model,
                &policy.betas,
                &policy.drop_fields(),
            )
            .map_err(invalid)?;
            return Ok(Translation {
                path: Some(t.path),
                body: t.body.map(Bytes::from),
                drop_beta_header: true,
                drop_aws_signing: true,
                dropped: policy.dropped,
                ..Translation::default()
            });
        }
        Provider::Bedrock { .. } => {
            let t = format::to_bedrock(source, body.held(), upstream_model, &[], &[])
                .map_err(invalid)?;
            return Ok(Translation {
                path: Some(t.path),
                drop_aws_signing: true,
                ..Translation::default()
            });
        }
        Provider::Vertex {
            project, region, ..
        } => {
            let vertex_client =
                matches!(op, Operation::Cloud(c) if c.format() == format::ClientFormat::Vertex);
            let unwrapped = match op {
                Operation::Cloud(CloudCall::BedrockCountTokens { .. }) => {
                    Some(format::count_tokens::invoke_body(body.held()).map_err(invalid)?)
                }
                _ => None,
            };
            let inner = unwrapped.as_deref().unwrap_or(body.held());
            let body_betas = match op {
                Operation::Cloud(c) if c.format() == format::ClientFormat::Bedrock => {
                    format::body_betas(inner).map_err(invalid)?
                }
                _ => Vec::new(),
            };
            let policy = if vertex_client {
                Policed::default()
            } else {
                Policed::new(
                    head,
                    inner,
                    &body_betas,
                    &upstream.field_policy,
                    &["model", "anthropic_version"],
                )
            };
            let t = format::to_vertex(
                source,
                body.held(),
                upstream_model,
                project,
                region,
                &policy.drop_fields(),
            )
            .map_err(invalid)?;
            return Ok(Translation {
                path: Some(t.path),
                body: t.body.map(Bytes::from),
                beta_header: (!vertex_client).then_some(policy.betas),
                drop_aws_signing: true,
                dropped: policy.dropped,
                ..Translation::default()
            });
        }
        // The others speak the Messages API.
        _ => {}
    }
    match op {
        Operation::Cloud(call) => {
            let t = format::to_messages(call, body.held(), upstream_model).map_err(invalid)?;
            Ok(Translation {
                path: Some(t.path.to_string()),
                body: Some(t.body.into()),
                betas: t.betas,
                add_version: head
                    .header("anthropic-version")
                    .is_none()
                    .then_some(t.version),
                drop_aws_signing: true,
                ..Translation::default()
            })
        }
        _ => {
            let body = (model != candidate.upstream_model.as_deref())
                .then(|| {
                    format::with_model(body.held(), upstream_model).ok_or_else(|| {
                        GatewayError::InvalidRequest("the request body is not a JSON object".into())
                    })
                })
                .transpose()?;
            Ok(Translation {
                path: unprefixed_target(head),
                body: body.map(Bytes::from),
                ..Translation::default()
            })
        }
    }
}

/// A Messages request's target without the mode prefix its client's base URL put before
/// `/v1/messages` (query kept), when it had one.
fn unprefixed_target(head: &RequestHead) -> Option<String> {
    let path = head.path();
    let bare = super::classify::unprefixed(path).filter(|bare| bare.len() != path.len())?;
    let target = head.target();
    let query = target.get(path.len()..).unwrap_or_default();
    let mut out = String::from_utf8_lossy(bare).into_owned();
    out.push_str(&String::from_utf8_lossy(query));
    Some(out)
}

/// A request as an upstream's field policy lets it through: the betas it takes (the client's
/// header ones, then any from the body) and what it took out.
#[derive(Default)]
struct Policed {
    betas: Vec<String>,
    fields: Vec<String>,
    dropped: Vec<String>,
}

impl Policed {
    /// `handled`: fields the translation moves or removes itself.
    fn new(
        head: &RequestHead,
        body: &[u8],
        body_betas: &[String],
        policy: &format::field_policy::FieldPolicy,
        handled: &[&str],
    ) -> Self {
        use format::field_policy::{fields_to_drop, split_betas};
        let all = client_betas(head)
            .into_iter()
            .chain(body_betas.iter().map(String::as_str));
        let (betas, dropped_betas) = split_betas(all, policy);
        let fields = fields_to_drop(body, policy, handled);
        let dropped = fields
            .iter()
            .map(|f| format!("field:{f}"))
            .chain(dropped_betas.iter().map(|b| format!("beta:{b}")))
            .collect();
        Policed {
            betas,
            fields,
            dropped,
        }
    }

    fn drop_fields(&self) -> Vec<&str> {
        self.fields.iter().map(String::as_str).collect()
    }
}

/// The request's `anthropic-beta` values.
pub fn client_betas(head: &RequestHead) -> Vec<&str> {
    head.header_str("anthropic-beta")
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|b| !b.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Fields that sign a client's AWS request; meaningless (and misleading) once rewritten.
const AWS_SIGNING: [&str; 3] = ["x-amz-date", "x-amz-security-token", "x-amz-content-sha256"];

/// The head as the upstream must see it, and the held body behind it when small. `body` is
/// what will be sent (after translation).
fn wire_request(
    head: &RequestHead,
    body: &RequestBody,
    t: &Translation,
    upstream: &Upstream,
    trace: Option<&TraceContext>,
    gw: &Gateway,
) -> Result<WireRequest, GatewayError> {
    let path: Option<&[u8]> = t.path.as_deref().map(str::as_bytes);
    let target = (!upstream.base_path.is_empty() || path.is_some()).then(|| {
        let mut out = upstream.base_path.as_bytes().to_vec();
        out.extend_from_slice(path.unwrap_or_else(|| head.target()));
        out
    });
    let credential = upstream.credential.as_ref().map(|c| c.header_field());
    let betas = match &t.beta_header {
        Some(list) => (!list.is_empty()).then(|| list.join(",")),
        None => merged_betas(head, &t.betas),
    };
    let mut extra: Vec<(&str, Vec<u8>)> = Vec::new();
    if let Some(b) = &betas {
        extra.push(("anthropic-beta", b.clone().into_bytes()));
    }
    if let Some(version) = &t.add_version {
        extra.push(("anthropic-version", version.clone().into_bytes()));
    }
    let mut drop: Vec<&str> = Vec::new();
    if betas.is_some() || t.drop_beta_header || t.beta_header.is_some() {
        drop.push("anthropic-beta");
    }
    if t.drop_aws_signing {
        drop.extend(AWS_SIGNING);
    }
    let content_length = match (&t.body, body) {
        (Some(new), _) => Some(new.len() as u64),
        (
            None,
            RequestBody::Whole {
                bytes,
                reframed: true,
            },
        ) => Some(bytes.len() as u64),
        _ => None,
    };
    let oauth_token = match upstream.provider.oauth_token() {
        Some(cell) => Some(
            cell.current()
                .map(|t| format!("Bearer {}", t.value))
                .ok_or_else(|| {
                    GatewayError::UpstreamCredentials(format!(
                        "no {} access token for {}",
                        cell.issuer(),
                        upstream.name
                    ))
                })?,
        ),
        None => None,
    };
    let signing = upstream.provider.sigv4().map(|(aws, region, service)| {
        let wire_path = target.as_deref().unwrap_or_else(|| head.target());
        drop.push("content-type");
        let request = bedrock::Signed {
            service,
            region,
            host: &upstream.host_header,
            wire_target: wire_path,
            body: body.held(),
        };
        bedrock::signed_fields(&aws.current(), &request)
    });
    if let Some(trace) = trace {
        drop.extend(["traceparent", "tracestate"]);
        extra.push(("traceparent", trace.traceparent().into_bytes()));
        if let Some(state) = head.header_str("tracestate") {
            extra.push(("tracestate", state.as_bytes().to_vec()));
        }
    }
    if let Provider::AnthropicAws { workspace_id, .. } = &upstream.provider {
        drop.push("anthropic-workspace-id");
        extra.push(("anthropic-workspace-id", workspace_id.clone().into_bytes()));
    }
    let mut extra: Vec<(&str, &[u8])> = extra.iter().map(|(n, v)| (*n, v.as_slice())).collect();
    if let Some(fields) = &signing {
        extra.extend(fields.iter().map(|(n, v)| (*n, v.as_bytes())));
    }
    if let Some(bearer) = &oauth_token {
        extra.push(("authorization", bearer.as_bytes()));
    }
    let plan = RequestRewrite {
        target: target.as_deref(),
        host: upstream.host_header.as_bytes(),
        drop_client_credentials: !gw.state.open_access(&gw.config)
            || credential.is_some()
            || t.drop_aws_signing,
        credential: if signing.is_some() { None } else { credential },
        content_length,
        drop: &drop,
        extra: &extra,
    };
    let held = body.held();
    let body_included = held.len() <= COALESCE_BODY;
    let body_room = if body_included { held.len() } else { 0 };
    let mut bytes = gw.spare_buffers.write(head.bytes.len() + 256 + body_room);
    rewrite_request(head, &plan, &mut bytes);
    if body_included {
        // One write (one packet on loopback) for head and a small body.
        bytes.extend_from_slice(held);
    }
    Ok(WireRequest {
        bytes,
        body_included,
    })
}

/// The client's `anthropic-beta` list with the body's betas appended (no duplicates), when the
/// body had any.
fn merged_betas(head: &RequestHead, from_body: &[String]) -> Option<String> {
    if from_body.is_empty() {
        return None;
    }
    let mut all: Vec<String> = head
        .header_str("anthropic-beta")
        .map(|v| {
            v.split(',')
                .map(|b| b.trim().to_string())
                .filter(|b| !b.is_empty())
                .collect()
        })
        .unwrap_or_default();
    for b in from_body {
        if !all.contains(b) {
            all.push(b.clone());
        }
    }
    Some(all.join(","))
}

async fn send_and_wait(
    conn: &mut UpstreamConn,
    client: &mut ClientConn,
    wire: &mut WireRequest,
    body: &RequestBody,
    method: Method,
    gw: &Gateway,
    log: &mut AttemptLog,
) -> Result<(ResponseHead, BytesMut), AttemptError> {
    let (res, written) = conn.write_all(std::mem::take(&mut wire.bytes)).await;
    wire.bytes = written;
    res.map_err(|_| AttemptError::Stale)?;
    if !wire.body_included {
        let held = match body {
            RequestBody::Empty => Bytes::new(),
            RequestBody::Whole { bytes, .. } => bytes.clone(),
            RequestBody::Partial { prefix, .. } => prefix.clone(),
        };
        let (res, _) = conn.write_all(held).await;
        res.map_err(|_| AttemptError::Stale)?;
    }
    conn.flush().await.map_err(|_| AttemptError::Stale)?;
    let sent = Instant::now();
    log.sent = Some(sent);
    let mut first_byte_from = sent;
    if let RequestBody::Partial { remaining, .. } = body {
        stream_rest(conn, client, *remaining).await?;
        first_byte_from = Instant::now();
        log.upload_time = first_byte_from - sent;
    }
    let deadline = first_byte_from + gw.config.timeouts.upstream_first_byte;
    read_response_head(conn, method, deadline, gw).await
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
    client.body_unread = false;
    conn.flush()
        .await
        .map_err(|e| AttemptError::Failed(GatewayError::UpstreamIo(e)))
}

/// Reads the response head, interim responses skipped, all of it by `deadline` (the request's
/// last byte sent plus the first-byte timeout: no clock read of its own).
async fn read_response_head(
    conn: &mut UpstreamConn,
    method: Method,
    deadline: Instant,
    gw: &Gateway,
) -> Result<(ResponseHead, BytesMut), AttemptError> {
    let deadline = monoio::time::Instant::from_std(deadline);
    let mut buf = gw.spare_buffers.upstream_read();
    let mut received_any = false;
    loop {
        let (res, back) = monoio::time::timeout_at(deadline, read_some(conn, buf, UPSTREAM_READ))
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
            // Interim responses (100, 103) are consumed; sluice never asks to switch
            // protocols, so a 101 is refused, never turned into a tunnel.
            if head.status == 101 {
                gw.records.metrics.count_upstream_discarded();
                return Err(AttemptError::Failed(GatewayError::UpstreamProtocol(
                    Http1Error::Malformed("unsolicited 101 Switching Protocols"),
                )));
            }
            if (100..200).contains(&head.status) {
                continue;
            }
            return Ok((head, buf));
        }
    }
}
