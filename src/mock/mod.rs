//! The built-in mock upstream: an Anthropic-compatible server for trying sluice offline, for the
//! integration tests and for the bench. It speaks the real wire formats (Messages JSON, SSE in
//! chunked framing, one event per chunk, `ping` included), keeps a log of what it received
//! (`GET /__mock/requests`, so tests can check that requests arrived byte for byte), and
//! misbehaves on demand, steered per request by `x-mock-*` headers, which sluice forwards like
//! any other header:
//!
//! | header | effect |
//! | --- | --- |
//! | `x-mock-status: 529` | answer that status with an Anthropic error body |
//! | `x-mock-error-body: {…}` | with `x-mock-status`: this error body instead (a cloud's own) |
//! | `x-mock-delay-ms: N` | wait before the response head |
//! | `x-mock-event-delay-ms: N` | wait between SSE events |
//! | `x-mock-reply: text` | answer with this text |
//! | `x-mock-reply-bytes: N` | answer with a text of N bytes |
//! | `x-mock-fail: reset-before-head` | close without answering |
//! | `x-mock-fail: partial-head` | send half a response head, then close |
//! | `x-mock-fail: huge-head` | answer with a head larger than any sane limit |
//! | `x-mock-fail: truncate-chunked` | send a chunked JSON body without its last chunk, close |
//! | `x-mock-fail: truncate-after:N` | stream N events, then close mid-body |
//! | `x-mock-fail: stall-after:N` | stream N events, then go silent (connection open) |
//! | `x-mock-fail: garbage` | answer with bytes that are not HTTP |
//! | `x-mock-fail: stall` | never answer (until the peer gives up) |
//! | `x-mock-fail: close-after-response` | answer normally, then close without saying so |
//! | `x-mock-fail: close-delimited` | answer without Content-Length, end the body by closing |
//! | `x-mock-fail: extra-response` | answer, then append a second response nobody asked for |
//! | `x-mock-fail: late-extra-bytes` | answer, then 200 ms later send a second response |
//! | `x-mock-fail: body-after-204` | a 204, then bytes after it |
//! | `x-mock-fail: cl-and-te` | a response with Content-Length and Transfer-Encoding |
//! | `x-mock-fail: bare-lf` | a response head with bare LF line ends |
//! | `x-mock-fail: unsolicited-101` | a 101 Switching Protocols nobody asked for |
//! | `x-mock-fail: interim-103` | a 103 Early Hints before the response |
//! | `x-mock-close: 1` | answer with `Connection: close` and close |

#![expect(
    clippy::disallowed_types,
    reason = "the mock's request log is a test aid shared by its workers, not a gateway hot path"
)]

pub mod responses;
mod strict;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use monoio::io::AsyncWriteRentExt;
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use serde::Serialize;

use crate::cli::MockArgs;
use sluice::http1::body::BodyCursor;
use sluice::http1::io::read_some;
use sluice::http1::{take_request, HeadLimits, Method, RequestHead};
use sluice::runtime::{self, listener::bind_listeners, shutdown_pair};

/// Requests kept in the log.
const LOG_CAPACITY: usize = 2000;
/// Bodies kept as text in the log up to this size.
const LOGGED_BODY: usize = 512 * 1024;

/// One request as the mock received it.
#[derive(Clone, Debug, Serialize)]
pub struct Received {
    /// The request line exactly as received.
    pub request_line: String,
    pub method: String,
    pub target: String,
    /// Header fields exactly as received, in order.
    pub headers: Vec<(String, String)>,
    pub body_len: usize,
    pub body_sha256: String,
    /// The body as text (lossy), when it is at most 512 KiB.
    pub body: Option<String>,
}

/// State shared by the mock's workers (not a hot path: a mutex is fine here).
pub struct MockState {
    args: MockArgs,
    log: Mutex<VecDeque<Received>>,
    served: AtomicU64,
    /// Vertex access tokens issued by the token endpoint.
    issued: Mutex<Vec<String>>,
    /// Conversations whose prefix this mock has cached (`--prompt-cache-tokens`).
    cached: Mutex<std::collections::HashSet<String>>,
}

impl MockState {
    /// `answer` with its prompt-cache usage: `tokens` read when this conversation (its first
    /// message) was seen here before, else written.
    fn with_prompt_cache(
        &self,
        request: &serde_json::Value,
        answer: &[u8],
        tokens: u64,
    ) -> Vec<u8> {
        let conversation = request["messages"][0].to_string();
        let seen = self
            .cached
            .lock()
            .map(|mut c| !c.insert(conversation))
            .unwrap_or(false);
        let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(answer) else {
            return answer.to_vec();
        };
        let (read, written) = if seen { (tokens, 0) } else { (0, tokens) };
        value["usage"]["cache_read_input_tokens"] = read.into();
        value["usage"]["cache_creation_input_tokens"] = written.into();
        value["usage"]["cache_creation"]["ephemeral_1h_input_tokens"] = written.into();
        value.to_string().into_bytes()
    }

    pub fn new(args: MockArgs) -> Self {
        Self {
            args,
            log: Mutex::new(VecDeque::new()),
            served: AtomicU64::new(0),
            issued: Mutex::new(Vec::new()),
            cached: Mutex::new(std::collections::HashSet::new()),
        }
    }

    fn remember(&self, head: &RequestHead, body: &[u8]) {
        if self.args.no_request_log {
            return;
        }
        let entry = Received {
            request_line: String::from_utf8_lossy(head.request_line.of(&head.bytes)).into_owned(),
            method: head.method.as_str().to_string(),
            target: String::from_utf8_lossy(head.target()).into_owned(),
            headers: head
                .headers
                .iter()
                .map(|h| {
                    (
                        String::from_utf8_lossy(h.name.of(&head.bytes)).into_owned(),
                        String::from_utf8_lossy(h.value.of(&head.bytes)).into_owned(),
                    )
                })
                .collect(),
            body_len: body.len(),
            body_sha256: sluice::digest::sha256_hex(body),
            body: (body.len() <= LOGGED_BODY).then(|| String::from_utf8_lossy(body).into_owned()),
        };
        if let Ok(mut log) = self.log.lock() {
            if log.len() >= LOG_CAPACITY {
                log.pop_front();
            }
            log.push_back(entry);
        }
    }

    fn log_json(&self) -> Vec<u8> {
        let log = self
            .log
            .lock()
            .map(|l| l.iter().cloned().collect::<Vec<_>>())
            .unwrap_or_default();
        serde_json::to_vec(&serde_json::json!({
            "served": self.served.load(Ordering::Relaxed),
            "requests": log,
        }))
        .unwrap_or_default()
    }

    fn reset(&self) {
        if let Ok(mut log) = self.log.lock() {
            log.clear();
        }
        self.served.store(0, Ordering::Relaxed);
    }
}

/// Errors starting the mock.
#[derive(Debug, thiserror::Error)]
pub enum MockError {
    #[error("cannot listen on {0}: {1}")]
    Listen(String, std::io::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Runs the mock until SIGTERM or SIGINT.
pub fn run(args: &MockArgs) -> Result<(), MockError> {
    sluice::runtime::raise_fd_limit();
    let addr = args.listen.parse().map_err(|_| {
        MockError::Listen(args.listen.clone(), std::io::ErrorKind::InvalidInput.into())
    })?;
    let listeners = bind_listeners(addr, args.workers)
        .map_err(|e| MockError::Listen(args.listen.clone(), e))?;
    let bound = listeners
        .first()
        .and_then(|l| l.local_addr().ok())
        .unwrap_or(addr);
    let state = Arc::new(MockState::new(args.clone()));
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
        _ => None,
    };
    let (mut trigger, shutdown) = shutdown_pair();
    let workers = runtime::spawn_workers(
        "sluice-mock",
        runtime::IoDriver::Auto,
        listeners.into_iter().map(|l| vec![l]).collect(),
        &shutdown,
        Arc::new(|| {}),
        move |worker, listeners, shutdown| {
            let shutdown = runtime::LocalShutdown::follow(shutdown);
            let state = Arc::clone(&state);
            let tls = tls.clone();
            let settings = runtime::AcceptSettings {
                worker,
                active: std::rc::Rc::default(),
                max_connections: 100_000,
                grace: Duration::from_secs(5),
                on_panic: Arc::new(|| {}),
            };
            let listener = listeners.into_iter().next();
            let serve_one = move |stream| {
                let state = Arc::clone(&state);
                let tls = tls.clone();
                async move {
                    match tls {
                        None => serve(stream, state).await,
                        Some(acceptor) => {
                            if let Ok(tls_stream) = acceptor.accept(stream).await {
                                serve(tls_stream, state).await;
                            }
                        }
                    }
                }
            };
            async move {
                if let Some(listener) = listener {
                    runtime::accept_loop(listener, shutdown, settings, serve_one).await;
                }
            }
        },
    )?;
    drop(shutdown);
    let signals = runtime::catch_termination_signals()?;
    sluice::server::announce(bound);
    runtime::wait_for_termination(signals, || {})?;
    trigger.trigger();
    for w in workers {
        let _ = w.join();
    }
    Ok(())
}

/// A TLS acceptor for the mock's certificate and key.
fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<monoio_rustls::TlsAcceptor, MockError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |e: String| MockError::Io(std::io::Error::other(e));
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|c| c.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad(format!("{}: {e}", cert.display())))?;
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| bad(format!("{}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|e| bad(e.to_string()))?;
    Ok(monoio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Per-request behaviour, from the `x-mock-*` headers and the mock's defaults.
struct Behavior {
    status: Option<u16>,
    delay: Duration,
    event_delay: Duration,
    reply: String,
    fail: Option<String>,
    close: bool,
    error_body: Option<String>,
}

impl Behavior {
    fn of(head: &RequestHead, args: &MockArgs) -> Self {
        let num = |name: &str| {
            head.header_str(name)
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        Behavior {
            status: num("x-mock-status")
                .map(|s| s as u16)
                .or(args.always_status),
            delay: Duration::from_millis(num("x-mock-delay-ms").unwrap_or(args.delay_ms)),
            event_delay: Duration::from_millis(
                num("x-mock-event-delay-ms").unwrap_or(args.event_delay_ms),
            ),
            reply: match num("x-mock-reply-bytes") {
                Some(n) => "x".repeat(n.min(64 << 20) as usize),
                None => head
                    .header_str("x-mock-reply")
                    .unwrap_or(&args.reply)
                    .to_string(),
            },
            fail: head
                .header_str("x-mock-fail")
                .map(str::to_string)
                .or_else(|| args.always_fail.clone()),
            close: head.header("x-mock-close").is_some() || !head.keep_alive,
            error_body: head.header_str("x-mock-error-body").map(str::to_string),
        }
    }
}

async fn serve<S: AsyncReadRent + AsyncWriteRent>(mut stream: S, state: Arc<MockState>) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let limits = HeadLimits {
        max_head_bytes: 256 * 1024,
        max_headers: 512,
    };
    loop {
        let head = loop {
            match take_request(&mut buf, limits) {
                Ok(Some(head)) => break head,
                Ok(None) => {}
                Err(_) => {
                    let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec()).await;
                    return;
                }
            }
            let (res, back) = read_some(&mut stream, buf, 64 * 1024).await;
            buf = back;
            if !matches!(res, Ok(n) if n > 0) {
                return;
            }
        };
        if head.expect_continue {
            let _ = stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec())
                .await;
        }
        let Some(body) = read_body(&mut stream, &mut buf, &head).await else {
            return;
        };
        let behavior = Behavior::of(&head, &state.args);
        let keep = respond(&mut stream, &head, &body, &behavior, &state).await;
        // close-after-response: answer as if keeping the connection, then drop it (a stale
        // pooled connection for whoever reuses it).
        if !keep || behavior.fail.as_deref() == Some("close-after-response") {
            return;
        }
    }
}

async fn read_body<S: AsyncReadRent>(
    stream: &mut S,
    buf: &mut BytesMut,
    head: &RequestHead,
) -> Option<Vec<u8>> {
    let mut cursor = BodyCursor::new(head.framing);
    let mut body = Vec::new();
    loop {
        let input = &buf[..];
        let used = cursor
            .advance(input, |r| body.extend_from_slice(&input[r]))
            .ok()?;
        let _ = buf.split_to(used);
        if cursor.is_done() {
            return Some(body);
        }
        let (res, back) = read_some(stream, std::mem::take(buf), 64 * 1024).await;
        *buf = back;
        if !matches!(res, Ok(n) if n > 0) {
            return None;
        }
    }
}

/// The bytes a misframed answer carries after its response: a whole second response that no
/// request asked for. A gateway that pools the connection would hand it to the next client.
const LEAKED: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 24\r\n\r\n{\"leaked\":\"LEAKED-1234\"}";

/// Answers with a response whose framing leaves bytes behind, or that no proxy may reuse;
/// keeps the connection open as if all were well.
async fn misframed<S: AsyncWriteRent>(stream: &mut S, fail: &str, b: &Behavior) -> bool {
    let json = responses::message_json("claude-mock-1", &b.reply, 1, 1);
    let ok_head = |sep: &str| {
        format!(
            "HTTP/1.1 200 OK{sep}content-type: application/json{sep}content-length: {}{sep}{sep}",
            json.len()
        )
        .into_bytes()
    };
    let mut out = match fail {
        "bare-lf" => ok_head("\n"),
        "body-after-204" => b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
        "unsolicited-101" => {
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n"
                .to_vec()
        }
        "interim-103" => {
            let mut out = b"HTTP/1.1 103 Early Hints\r\nlink: </a>; rel=preload\r\n\r\n".to_vec();
            out.extend(ok_head("\r\n"));
            out
        }
        "cl-and-te" => format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n",
            json.len()
        )
        .into_bytes(),
        _ => ok_head("\r\n"),
    };
    if !matches!(fail, "body-after-204" | "unsolicited-101") {
        out.extend_from_slice(&json);
    }
    if fail == "cl-and-te" {
        out.extend_from_slice(b"\r\n0\r\n\r\n");
    }
    if fail != "interim-103" && fail != "late-extra-bytes" {
        out.extend_from_slice(LEAKED);
    }
    if stream.write_all(out).await.0.is_err() {
        return false;
    }
    if fail == "late-extra-bytes" {
        // After the response has been read: the bytes arrive while the connection is idle.
        monoio::time::sleep(Duration::from_millis(200)).await;
        return stream.write_all(LEAKED.to_vec()).await.0.is_ok();
    }
    true
}

/// Answers one request; returns whether to keep the connection.
async fn respond<S: AsyncWriteRent>(
    stream: &mut S,
    head: &RequestHead,
    body: &[u8],
    b: &Behavior,
    state: &MockState,
) -> bool {
    let path = head.path();
    if path == b"/__mock/requests" {
        return write_json(stream, 200, &state.log_json(), false, 0).await;
    }
    if path == b"/__mock/reset" {
        state.reset();
        return write_json(stream, 200, b"{}", false, 0).await;
    }
    state.served.fetch_add(1, Ordering::Relaxed);
    state.remember(head, body);
    if !b.delay.is_zero() {
        monoio::time::sleep(b.delay).await;
    }
    if let Some(fail) = b.fail.as_deref() {
        match fail {
            "reset-before-head" => return false,
            "garbage" => {
                let _ = stream.write_all(b"NOT HTTP AT ALL\r\n\r\n".to_vec()).await;
                return false;
            }
            "stall" => {
                monoio::time::sleep(Duration::from_secs(3600)).await;
                return false;
            }
            "partial-head" => {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: appl".to_vec())
                    .await;
                return false;
            }
            "huge-head" => {
                let mut out = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nx-huge: ".to_vec();
                out.extend(std::iter::repeat_n(b'a', 200 * 1024));
                out.extend_from_slice(b"\r\n\r\n");
                let _ = stream.write_all(out).await;
                return false;
            }
            "extra-response" | "body-after-204" | "cl-and-te" | "bare-lf" | "unsolicited-101"
            | "interim-103" | "late-extra-bytes" => {
                return misframed(stream, fail, b).await;
            }
            "truncate-chunked" => {
                let json = responses::message_json("claude-mock-1", &b.reply, 1, 1);
                let half = &json[..json.len() / 2];
                let mut out = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n",
                    half.len()
                )
                .into_bytes();
                out.extend_from_slice(half);
                out.extend_from_slice(b"\r\n");
                let _ = stream.write_all(out).await;
                return false;
            }
            _ => {}
        }
    }
    if path == b"/token" && head.method == Method::Post {
        let (status, json) = match issue_token(body, state) {
            Ok(token) => (
                200,
                serde_json::json!({"access_token": token, "expires_in": "3599", "token_type": "Bearer"}),
            ),
            Err(why) => (
                400,
                serde_json::json!({"error": "invalid_grant", "error_description": why}),
            ),
        };
        return write_json(stream, status, json.to_string().as_bytes(), b.close, 0).await;
    }
    match sluice::format::CloudCall::from_path(path) {
        Some(sluice::format::CloudCall::BedrockInvoke {
            model,
            stream: streaming,
        }) => {
            let call = BedrockCall::Invoke { streaming };
            return respond_bedrock(stream, head, body, b, state, &model, call).await;
        }
        Some(sluice::format::CloudCall::BedrockCountTokens { model }) => {
            return respond_bedrock(stream, head, body, b, state, &model, BedrockCall::Count).await;
        }
        Some(call) => return respond_vertex(stream, head, body, b, state, call).await,
        None => {}
    }
    if let Err(why) = messages_auth(head, body, state) {
        let error = serde_json::json!({"type": "error", "error": {"type": "authentication_error", "message": why}});
        return write_json(stream, 401, error.to_string().as_bytes(), b.close, 0).await;
    }
    if let Some(status) = b.status {
        return write_status(stream, status, b, state).await;
    }
    if head.method == Method::Head {
        // What a GET would carry, announced but not sent (RFC 9110 9.3.2).
        let announced =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 123\r\n\r\n";
        return stream.write_all(announced.to_vec()).await.0.is_ok() && !b.close;
    }
    if b.fail.as_deref() == Some("close-delimited") {
        let mut out = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n".to_vec();
        out.extend_from_slice(&responses::message_json("claude-mock-1", &b.reply, 1, 1));
        let _ = stream.write_all(out).await;
        return false;
    }
    if path.ends_with(b"/v1/models") {
        return write_json(stream, 200, &responses::models_json(), b.close, 0).await;
    }
    if let Some((status, why)) = state
        .args
        .strict
        .then(|| strict::messages_refusal(body))
        .flatten()
    {
        return write_json(stream, status, why.as_bytes(), b.close, 0).await;
    }
    let parsed: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let (input, output) = responses::usage_for(body.len(), &b.reply);
    if path.ends_with(b"/count_tokens") {
        return write_json(
            stream,
            200,
            &responses::count_tokens_json(input),
            b.close,
            0,
        )
        .await;
    }
    let model = parsed["model"]
        .as_str()
        .unwrap_or("claude-mock-1")
        .to_string();
    if parsed["stream"].as_bool() == Some(true) {
        return write_sse(stream, &model, b, input, output).await;
    }
    let mut answer = responses::message_json(&model, &b.reply, input, output);
    if let Some(tokens) = state.args.prompt_cache_tokens {
        answer = state.with_prompt_cache(&parsed, &answer, tokens);
    }
    write_json(stream, 200, &answer, b.close, 0).await
}

/// An Anthropic error body with `status` (and `retry-after` for 429/529, as configured).
async fn write_status<S: AsyncWriteRent>(
    stream: &mut S,
    status: u16,
    b: &Behavior,
    state: &MockState,
) -> bool {
    let body = match &b.error_body {
        Some(body) => body.clone().into_bytes(),
        None => responses::error_json(status),
    };
    write_json(stream, status, &body, b.close, state.args.retry_after).await
}

/// What a Bedrock request asks for.
#[derive(Clone, Copy)]
enum BedrockCall {
    Invoke {
        streaming: bool,
    },
    /// CountTokens: the InvokeModel body inside `input.invokeModel.body` (base64).
    Count,
}

/// Bedrock InvokeModel and CountTokens: authenticated by SigV4 (or a Bedrock API key) when the
/// mock was given keys; answers JSON, an event-stream for `invoke-with-response-stream`, or
/// `{"inputTokens":N}` for a count.
async fn respond_bedrock<S: AsyncWriteRent>(
    stream: &mut S,
    head: &RequestHead,
    body: &[u8],
    b: &Behavior,
    state: &MockState,
    model: &str,
    call: BedrockCall,
) -> bool {
    if let Err(why) = bedrock_auth(head, body, &state.args) {
        let msg = serde_json::json!({ "message": why }).to_string();
        return write_json(stream, 403, msg.as_bytes(), b.close, 0).await;
    }
    if let Some(status) = b.status {
        return write_status(stream, status, b, state).await;
    }
    let invoke = match call {
        BedrockCall::Invoke { .. } => std::borrow::Cow::Borrowed(body),
        BedrockCall::Count => match sluice::format::count_tokens::invoke_body(body) {
            Ok(inner) => std::borrow::Cow::Owned(inner),
            Err(_) => {
                let msg = r#"{"message":"1 validation error detected: Value at 'input' failed to satisfy constraint"}"#;
                return write_json(stream, 400, msg.as_bytes(), b.close, 0).await;
            }
        },
    };
    if let Some((status, why)) = state
        .args
        .strict
        .then(|| strict::bedrock_refusal(model, &invoke))
        .flatten()
    {
        return write_json(stream, status, why.as_bytes(), b.close, 0).await;
    }
    let (input, output) = responses::usage_for(invoke.len(), &b.reply);
    match call {
        BedrockCall::Count => {
            let answer = serde_json::json!({ "inputTokens": input }).to_string();
            write_json(stream, 200, answer.as_bytes(), b.close, 0).await
        }
        BedrockCall::Invoke { streaming: false } => {
            let answer = responses::message_json(model, &b.reply, input, output);
            write_json(stream, 200, &answer, b.close, 0).await
        }
        BedrockCall::Invoke { streaming: true } => {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/vnd.amazon.eventstream\r\nx-amzn-bedrock-content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
            if stream.write_all(head.as_bytes().to_vec()).await.0.is_err() {
                return false;
            }
            let frames = responses::bedrock_frames(model, &b.reply, input, output);
            write_chunks(stream, frames, b).await
        }
    }
}

/// A Messages request's credentials, as the provider the mock plays checks them: the key
/// (`--require-key`, as `x-api-key` or Bearer) or a SigV4 signature (`--sigv4-service`), the
/// fields `--require-header` names, and on a Claude Platform on Google Cloud path
/// (`…/workspaces/{w}/invoke/v1/messages`) a Google token.
fn messages_auth(head: &RequestHead, body: &[u8], state: &MockState) -> Result<(), String> {
    let args = &state.args;
    let keyed = args
        .require_key
        .as_deref()
        .is_some_and(|k| presents(head, k));
    let signed = || {
        let service = args.sigv4_service.as_deref()?;
        Some(sigv4_check(head, body, args, service))
    };
    match (&args.require_key, signed()) {
        (_, _) if keyed => {}
        (_, Some(result)) => result?,
        (Some(_), None) => return Err("invalid x-api-key".into()),
        (None, None) => {}
    }
    if args.entra_client.is_some() {
        let bearer = head
            .header_str("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        let issued = state.issued.lock().map_err(|_| "lock")?;
        if !issued.iter().any(|t| t == bearer) {
            return Err("the Entra ID token is missing or was not issued here".into());
        }
    }
    for wanted in &args.require_header {
        let (name, value) = wanted.split_once(':').unwrap_or((wanted, ""));
        if head.header_str(name.trim()) != Some(value.trim()) {
            return Err(format!("{name} must be {value}"));
        }
    }
    let path = String::from_utf8_lossy(head.path());
    if path.contains("/workspaces/") && path.contains("/invoke/") && !vertex_authorized(head, state)
    {
        return Err("Request had invalid authentication credentials.".into());
    }
    Ok(())
}

/// Checks a request's SigV4 signature (service `bedrock`) against the mock's key pair, or its
/// Bedrock API key.
fn bedrock_auth(head: &RequestHead, body: &[u8], args: &MockArgs) -> Result<(), String> {
    let auth = head.header_str("authorization").unwrap_or_default();
    if let Some(key) = &args.bedrock_api_key {
        if auth.strip_prefix("Bearer ") == Some(key.as_str()) {
            return Ok(());
        }
    }
    if args.aws_access_key.is_none() {
        return if args.bedrock_api_key.is_some() {
            Err("bad Bedrock API key".into())
        } else {
            Ok(())
        };
    }
    sigv4_check(head, body, args, "bedrock")
}

/// Checks a request's SigV4 signature for signing name `service` against the mock's key pair.
fn sigv4_check(
    head: &RequestHead,
    body: &[u8],
    args: &MockArgs,
    service: &str,
) -> Result<(), String> {
    let (Some(access), Some(secret)) = (&args.aws_access_key, &args.aws_secret_key) else {
        return Err("the mock has no AWS key pair".into());
    };
    let target = String::from_utf8_lossy(head.target()).into_owned();
    let scope = sluice::provider::sigv4::Scope {
        service,
        regions: &[],
    };
    sluice::provider::sigv4::verify(
        "POST",
        &target,
        |n| head.header_str(n),
        sluice::provider::sigv4::Payload::Body(body),
        scope,
        |id| (id == access).then(|| secret.clone()),
    )
    .map(|_| ())
    .map_err(|e| match e {
        sluice::provider::sigv4::VerifyError::Mismatch => {
            "The request signature we calculated does not match the signature you provided."
                .to_string()
        }
        other => other.to_string(),
    })
}

/// Vertex rawPredict / streamRawPredict / count-tokens, behind the mock's token check.
async fn respond_vertex<S: AsyncWriteRent>(
    stream: &mut S,
    head: &RequestHead,
    body: &[u8],
    b: &Behavior,
    state: &MockState,
    call: sluice::format::CloudCall,
) -> bool {
    use sluice::format::CloudCall;
    if !vertex_authorized(head, state) {
        let json = r#"{"error":{"code":401,"message":"Request had invalid authentication credentials.","status":"UNAUTHENTICATED"}}"#;
        return write_json(stream, 401, json.as_bytes(), b.close, 0).await;
    }
    if let Some(status) = b.status {
        return write_status(stream, status, b, state).await;
    }
    if let Some((status, why)) = state
        .args
        .strict
        .then(|| strict::vertex_refusal(call.path_model(), head.header_str("anthropic-beta"), body))
        .flatten()
    {
        return write_json(stream, status, why.as_bytes(), b.close, 0).await;
    }
    let (input, output) = responses::usage_for(body.len(), &b.reply);
    match call {
        CloudCall::VertexPredict {
            model,
            stream: true,
        } => write_sse(stream, &model, b, input, output).await,
        CloudCall::VertexPredict { model, .. } => {
            write_json(
                stream,
                200,
                &responses::message_json(&model, &b.reply, input, output),
                b.close,
                0,
            )
            .await
        }
        _ => {
            write_json(
                stream,
                200,
                &responses::count_tokens_json(input),
                b.close,
                0,
            )
            .await
        }
    }
}

/// Whether a Vertex request carries a token the mock issued (or its static token). Without
/// `--gcp-public-key` or `--vertex-token` every request is accepted.
fn vertex_authorized(head: &RequestHead, state: &MockState) -> bool {
    if state.args.gcp_public_key.is_none() && state.args.vertex_token.is_none() {
        return true;
    }
    let Some(token) = head
        .header_str("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    state.args.vertex_token.as_deref() == Some(token)
        || state
            .issued
            .lock()
            .map(|issued| issued.iter().any(|t| t == token))
            .unwrap_or(false)
}

/// The JWT-bearer grant: checks the RS256 assertion against the service account's public key
/// and its claims, then issues a token.
fn issue_token(form: &[u8], state: &MockState) -> Result<String, String> {
    use base64::Engine;
    let pairs: Vec<(String, String)> = form_urlencoded::parse(form).into_owned().collect();
    let value = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if value("grant_type") == Some("client_credentials") {
        let expected = state
            .args
            .entra_client
            .as_deref()
            .ok_or("no --entra-client")?;
        let (id, secret) = expected.split_once(':').unwrap_or((expected, ""));
        let scoped = value("scope") == Some("https://cognitiveservices.azure.com/.default");
        if value("client_id") != Some(id) || value("client_secret") != Some(secret) || !scoped {
            return Err("invalid_client".into());
        }
        let mut issued = state.issued.lock().map_err(|_| "lock")?;
        let token = format!("entra-mock-{}", issued.len() + 1);
        issued.push(token.clone());
        return Ok(token);
    }
    let key_path = state
        .args
        .gcp_public_key
        .as_ref()
        .ok_or("no --gcp-public-key")?;
    let public_key = std::fs::read(key_path).map_err(|e| e.to_string())?;
    let form = String::from_utf8_lossy(form);
    let field = |name: &str| {
        form.split('&')
            .find_map(|kv| kv.strip_prefix(name))
            .unwrap_or_default()
            .to_string()
    };
    if field("grant_type=") != "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer" {
        return Err("unsupported grant_type".into());
    }
    let assertion = field("assertion=");
    let parts: Vec<&str> = assertion.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        return Err("malformed assertion".into());
    };
    let b64 = |s: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|e| e.to_string())
    };
    let signature = b64(signature)?;
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        public_key,
    )
    .verify(format!("{header}.{claims}").as_bytes(), &signature)
    .map_err(|_| "bad assertion signature".to_string())?;
    let header: serde_json::Value =
        serde_json::from_slice(&b64(header)?).map_err(|e| e.to_string())?;
    let claims: serde_json::Value =
        serde_json::from_slice(&b64(claims)?).map_err(|e| e.to_string())?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let ok = header["alg"] == "RS256"
        && claims["scope"]
            .as_str()
            .is_some_and(|s| s.contains("cloud-platform"))
        && claims["aud"]
            .as_str()
            .is_some_and(|a| a.ends_with("/token"))
        && claims["exp"].as_u64().is_some_and(|e| e > now)
        && claims["iss"].as_str().is_some_and(|i| !i.is_empty());
    if !ok {
        return Err(format!("bad claims {claims}"));
    }
    let mut issued = state.issued.lock().map_err(|_| "lock")?;
    let token = format!("ya29.mock-{}", issued.len() + 1);
    issued.push(token.clone());
    Ok(token)
}

fn presents(head: &RequestHead, key: &str) -> bool {
    head.header_str("x-api-key") == Some(key)
        || head
            .header_str("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            == Some(key)
}

async fn write_json<S: AsyncWriteRent>(
    stream: &mut S,
    status: u16,
    body: &[u8],
    close: bool,
    retry_after: u64,
) -> bool {
    // 204 has no body and no length; 304 announces the representation's length but sends none.
    let (body, length) = match status {
        204 => (&[][..], String::new()),
        304 => (&[][..], "content-length: 50\r\n".to_string()),
        _ => (
            body,
            format!(
                "content-type: application/json\r\ncontent-length: {}\r\n",
                body.len()
            ),
        ),
    };
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\n{length}request-id: req_mock_{status}\r\n",
        sluice::proxy::error::reason_phrase(status),
    );
    if status == 429 || status == 529 {
        out.push_str(&format!("retry-after: {}\r\n", retry_after.max(1)));
    }
    if status == 200 {
        out.push_str(API_RATE_LIMITS);
    }
    if close {
        out.push_str("connection: close\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    let (res, _) = stream.write_all(bytes).await;
    res.is_ok() && !close
}

/// The limits the Anthropic API reports on its answers (of the upstream credential).
const API_RATE_LIMITS: &str =
    "anthropic-ratelimit-requests-limit: 4000\r\nanthropic-ratelimit-requests-remaining: 3999\r\n";

async fn write_sse<S: AsyncWriteRent>(
    stream: &mut S,
    model: &str,
    b: &Behavior,
    input: u64,
    output: u64,
) -> bool {
    let mut head = String::from(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\nrequest-id: req_mock_stream\r\nanthropic-organization-id: org-mock\r\n",
    );
    head.push_str(API_RATE_LIMITS);
    if b.close {
        head.push_str("connection: close\r\n");
    }
    head.push_str("\r\n");
    if stream.write_all(head.into_bytes()).await.0.is_err() {
        return false;
    }
    let events = responses::sse_events(model, &b.reply, input, output);
    write_chunks(stream, events, b).await
}

/// Writes each item as one chunk (after `event_delay`), then the terminating chunk; with
/// `truncate-after:N` it stops after N items, mid-body, as a failing upstream would.
async fn write_chunks<S: AsyncWriteRent>(
    stream: &mut S,
    items: Vec<Vec<u8>>,
    b: &Behavior,
) -> bool {
    let after = |prefix: &str| {
        b.fail
            .as_deref()
            .and_then(|f| f.strip_prefix(prefix))
            .and_then(|n| n.parse::<usize>().ok())
    };
    let (truncate_after, stall_after) = (after("truncate-after:"), after("stall-after:"));
    for (i, item) in items.into_iter().enumerate() {
        if truncate_after == Some(i) {
            return false;
        }
        if stall_after == Some(i) {
            monoio::time::sleep(Duration::from_secs(3600)).await;
            return false;
        }
        if !b.event_delay.is_zero() {
            monoio::time::sleep(b.event_delay).await;
        }
        let mut chunk = format!("{:x}\r\n", item.len()).into_bytes();
        chunk.extend_from_slice(&item);
        chunk.extend_from_slice(b"\r\n");
        if stream.write_all(chunk).await.0.is_err() {
            return false;
        }
    }
    stream.write_all(b"0\r\n\r\n".to_vec()).await.0.is_ok() && !b.close
}
