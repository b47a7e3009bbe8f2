//! Client API formats: Claude Code (and the SDKs) reach a gateway in three — Anthropic Messages,
//! Bedrock InvokeModel, Vertex rawPredict — and sluice carries each to a Messages-format upstream
//! (the Anthropic API, LiteLLM). This module knows the Bedrock and Vertex shapes: their paths
//! ([`CloudCall::from_path`]), their model ids ([`anthropic_model_id`]) and how a request becomes
//! a Messages request ([`to_messages`]): only the path, the model's place, `anthropic_version`
//! and the betas' place change; everything else in the body is copied byte for byte.
//! [`eventstream`] and [`sse_split`] turn an SSE response into the AWS event-stream a Bedrock
//! client expects.
// Input is parsed here: byte offsets into it must never panic (use `get`, or validate first).
#![cfg_attr(not(test), deny(clippy::indexing_slicing, clippy::string_slice))]

pub mod count_tokens;
pub mod eventstream;
pub mod field_policy;
pub mod sse_split;

/// The API format a client speaks (the access log's `format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientFormat {
    /// The Messages API (`/v1/messages`): Anthropic, LiteLLM, the SDKs.
    Anthropic,
    /// Bedrock InvokeModel.
    Bedrock,
    /// Vertex rawPredict.
    Vertex,
}

impl ClientFormat {
    pub fn label(self) -> &'static str {
        match self {
            ClientFormat::Anthropic => "anthropic",
            ClientFormat::Bedrock => "bedrock",
            ClientFormat::Vertex => "vertex",
        }
    }
}

use crate::json;

/// The `anthropic-version` sent upstream when a Bedrock or Vertex client gave it in the body.
pub const MESSAGES_API_VERSION: &str = "2023-06-01";

/// A Bedrock or Vertex call, as its path says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloudCall {
    /// `POST /model/{id}/invoke` or `/invoke-with-response-stream`.
    BedrockInvoke { model: String, stream: bool },
    /// `POST /model/{id}/count-tokens`: the InvokeModel body, base64, inside
    /// `{"input":{"invokeModel":{"body":…}}}`; answered `{"inputTokens":N}`.
    BedrockCountTokens { model: String },
    /// `POST …/publishers/anthropic/models/{model}:rawPredict` or `:streamRawPredict`.
    VertexPredict { model: String, stream: bool },
    /// `POST …/publishers/anthropic/models/count-tokens:rawPredict` (model in the body).
    VertexCountTokens,
}

impl CloudCall {
    /// Classifies a path (the optional `/bedrock` and `/vertex` prefixes let one sluice serve
    /// all three formats on one port).
    pub fn from_path(path: &[u8]) -> Option<CloudCall> {
        let path = std::str::from_utf8(path).ok()?;
        if let Some(rest) = path
            .strip_prefix("/bedrock")
            .unwrap_or(path)
            .strip_prefix("/model/")
        {
            return bedrock(rest);
        }
        vertex(path.strip_prefix("/vertex").unwrap_or(path))
    }

    /// The model named in the path (not for count-tokens, whose model is in the body).
    pub fn path_model(&self) -> Option<&str> {
        match self {
            CloudCall::BedrockInvoke { model, .. }
            | CloudCall::BedrockCountTokens { model }
            | CloudCall::VertexPredict { model, .. } => Some(model),
            CloudCall::VertexCountTokens => None,
        }
    }

    /// The client's API format.
    pub fn format(&self) -> ClientFormat {
        match self {
            CloudCall::BedrockInvoke { .. } | CloudCall::BedrockCountTokens { .. } => {
                ClientFormat::Bedrock
            }
            CloudCall::VertexPredict { .. } | CloudCall::VertexCountTokens => ClientFormat::Vertex,
        }
    }

    /// Whether the client asked for a stream (the path says so).
    pub fn is_stream(&self) -> bool {
        matches!(
            self,
            CloudCall::BedrockInvoke { stream: true, .. }
                | CloudCall::VertexPredict { stream: true, .. }
        )
    }

    /// Whether the call counts tokens (free: no budget is reserved for it).
    pub fn counts_tokens(&self) -> bool {
        matches!(
            self,
            CloudCall::VertexCountTokens | CloudCall::BedrockCountTokens { .. }
        )
    }

    /// Whether the client wants a Bedrock event-stream back.
    pub fn wants_event_stream(&self) -> bool {
        matches!(self, CloudCall::BedrockInvoke { stream: true, .. })
    }
}

/// Whether `path` is Bedrock's control-plane `GET /inference-profiles` (Claude Code asks first).
pub fn is_inference_profiles(path: &[u8]) -> bool {
    let p = path.strip_prefix(b"/bedrock").unwrap_or(path);
    p == b"/inference-profiles"
}

fn bedrock(rest: &str) -> Option<CloudCall> {
    let (id, action) = rest.rsplit_once('/')?;
    let stream = match action {
        "invoke" => false,
        "invoke-with-response-stream" => true,
        "count-tokens" => {
            return Some(CloudCall::BedrockCountTokens {
                model: model_id(id)?,
            })
        }
        _ => return None,
    };
    let model = model_id(id)?;
    Some(CloudCall::BedrockInvoke { model, stream })
}

/// A model id from a path segment, percent-decoded. Only an ARN (an inference profile) holds a
/// `/`; in anything else an encoded `/` would let one model's name ride inside another's.
fn model_id(segment: &str) -> Option<String> {
    let model = crate::http1::path::percent_decode(segment)?;
    let plain = !model.is_empty() && (!model.contains('/') || model.starts_with("arn:"));
    plain.then_some(model)
}

fn vertex(path: &str) -> Option<CloudCall> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let [version, "projects", _project, "locations", _location, "publishers", "anthropic", "models", last] =
        parts[..]
    else {
        return None;
    };
    if !version.starts_with("v1") {
        return None;
    }
    let (model, action) = last.rsplit_once(':')?;
    let model = model_id(model)?;
    match (model.as_str(), action) {
        ("count-tokens", "rawPredict") => Some(CloudCall::VertexCountTokens),
        (_, "rawPredict") => Some(CloudCall::VertexPredict {
            model,
            stream: false,
        }),
        (_, "streamRawPredict") => Some(CloudCall::VertexPredict {
            model,
            stream: true,
        }),
        _ => None,
    }
}

/// The Anthropic API's id for a provider's model id — the one rule routing, allow-lists and
/// pricing all use: `us.anthropic.claude-sonnet-4-5-20250929-v1:0` and
/// `claude-sonnet-4-5@20250929` are both `claude-sonnet-4-5-20250929`; a context-size variant
/// (`claude-opus-4-8[1m]`) is its model; an inference-profile ARN (and only an ARN: a `/`
/// anywhere else is no separator) names its profile after the last `/`.
pub fn anthropic_model_id(id: &str) -> std::borrow::Cow<'_, str> {
    let id = match id.strip_prefix("arn:") {
        Some(arn) => arn.rsplit('/').next().unwrap_or(arn),
        None => id,
    };
    let name = find_ascii(id, b"claude-")
        .and_then(|i| id.get(i..))
        .unwrap_or(id);
    let name = name.split('[').next().unwrap_or(name);
    let name = strip_version_suffix(name);
    // Vertex writes `claude-opus-4-8@20260101`; every other id is a slice of the input.
    if name.contains('@') {
        std::borrow::Cow::Owned(name.replace('@', "-"))
    } else {
        std::borrow::Cow::Borrowed(name)
    }
}

/// Where ASCII `needle` first occurs in `id`. Model ids are short: a plain scan, without the
/// searcher `str::find` sets up for each call (which showed in the worker's profile).
fn find_ascii(id: &str, needle: &[u8]) -> Option<usize> {
    id.as_bytes()
        .windows(needle.len())
        .position(|w| w == needle)
}

/// `-v1:0` / `-v2` style Bedrock version suffixes.
fn strip_version_suffix(name: &str) -> &str {
    let Some(i) = name.as_bytes().windows(2).rposition(|w| w == b"-v") else {
        return name;
    };
    let (Some(base), Some(suffix)) = (name.get(..i), name.get(i + 2..)) else {
        return name;
    };
    let (major, minor) = suffix.split_once(':').unwrap_or((suffix, "0"));
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if numeric(major) && numeric(minor) {
        base
    } else {
        name
    }
}

/// A request rewritten into the Messages format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Translated {
    /// The upstream path (`/v1/messages` or `/v1/messages/count_tokens`).
    pub path: &'static str,
    pub body: Vec<u8>,
    /// Betas that came in the body's `anthropic_beta` (they go in the header upstream).
    pub betas: Vec<String>,
    /// The `anthropic-version` for the upstream: the body's, when it is a first-party version
    /// date (SDK 2.x writes `2026-10-21`), else [`MESSAGES_API_VERSION`] (for the
    /// `bedrock-2023-05-31` / `vertex-2023-10-16` markers).
    pub version: String,
}

/// Why a body could not be translated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    #[error("the request body is not a JSON object")]
    NotAnObject,
    #[error("anthropic_beta must be a list of strings")]
    BadBetas,
    #[error("a Bedrock count-tokens body must be {{\"input\":{{\"invokeModel\":{{\"body\":<base64 JSON object>}}}}}}, its model, max_tokens and stream each at most once and spelled plainly")]
    BadCountTokens,
}

/// Rewrites a Bedrock or Vertex request body for a Messages upstream serving `upstream_model`.
pub fn to_messages(
    call: &CloudCall,
    body: &[u8],
    upstream_model: &str,
) -> Result<Translated, TranslateError> {
    let unwrapped;
    let body = match call {
        CloudCall::BedrockCountTokens { .. } => {
            unwrapped = count_tokens::invoke_body(body)?;
            &unwrapped[..]
        }
        _ => body,
    };
    let betas = match json::edit::field(body, "anthropic_beta") {
        Some(raw) => {
            serde_json::from_slice::<Vec<String>>(raw).map_err(|_| TranslateError::BadBetas)?
        }
        None => Vec::new(),
    };
    let version = json::edit::field(body, "anthropic_version")
        .and_then(|raw| serde_json::from_slice::<String>(raw).ok())
        .filter(|v| is_version_date(v))
        .unwrap_or_else(|| MESSAGES_API_VERSION.to_string());
    let model = json::edit::json_string(upstream_model);
    let mut prepend: Vec<(&str, &[u8])> = vec![("model", &model)];
    let mut remove = vec!["model", "anthropic_version", "anthropic_beta"];
    match call {
        CloudCall::BedrockInvoke { stream, .. } => {
            remove.push("stream");
            if *stream {
                prepend.push(("stream", b"true"));
            }
        }
        CloudCall::BedrockCountTokens { .. } => remove.push("stream"),
        _ => {}
    }
    let body = json::edit::edit(body, &prepend, &remove).ok_or(TranslateError::NotAnObject)?;
    let path = if call.counts_tokens() {
        "/v1/messages/count_tokens"
    } else {
        "/v1/messages"
    };
    Ok(Translated {
        path,
        body,
        betas,
        version,
    })
}

/// `YYYY-MM-DD`.
fn is_version_date(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
}

/// The `anthropic_version` Bedrock InvokeModel expects in the body.
pub const BEDROCK_VERSION: &str = "bedrock-2023-05-31";

/// What a client sent, as far as translation into Bedrock's shape cares.
#[derive(Clone, Copy, Debug)]
pub enum Source<'a> {
    /// `POST /v1/messages`.
    Messages,
    /// `POST /v1/messages/count_tokens`.
    CountTokens,
    Cloud(&'a CloudCall),
}

/// A request in Bedrock InvokeModel's shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BedrockRequest {
    /// `/model/{id}/invoke` or `/model/{id}/invoke-with-response-stream`.
    pub path: String,
    /// The new body, or `None` when the client's goes as it is (a Bedrock client).
    pub body: Option<Vec<u8>>,
}

/// Rewrites a request for a Bedrock upstream serving `upstream_model`: `betas` (those the
/// upstream takes) go into the body's `anthropic_beta` (Bedrock reads the body), the fields in
/// `drop` are left out. A Bedrock client's body is not touched at all.
pub fn to_bedrock(
    source: Source<'_>,
    body: &[u8],
    upstream_model: &str,
    betas: &[String],
    drop: &[&str],
) -> Result<BedrockRequest, TranslateError> {
    let (stream, handled): (bool, &[&str]) = match source {
        Source::Cloud(CloudCall::BedrockInvoke { stream, .. }) => {
            return Ok(BedrockRequest {
                path: bedrock_path(upstream_model, *stream),
                body: None,
            })
        }
        Source::Cloud(CloudCall::BedrockCountTokens { .. }) => {
            return Ok(BedrockRequest {
                path: bedrock_count_path(upstream_model),
                body: None,
            })
        }
        Source::Messages => (
            json::edit::field(body, "stream") == Some(&b"true"[..]),
            &["model", "stream", "anthropic_beta", "anthropic_version"],
        ),
        Source::Cloud(CloudCall::VertexPredict { stream, .. }) => (
            *stream,
            &["model", "stream", "anthropic_version", "anthropic_beta"],
        ),
        Source::CountTokens | Source::Cloud(CloudCall::VertexCountTokens) => (
            false,
            &["model", "stream", "anthropic_beta", "anthropic_version"],
        ),
    };
    let version = json::edit::json_string(BEDROCK_VERSION);
    let betas_json = serde_json::to_vec(betas).unwrap_or_else(|_| b"[]".to_vec());
    let mut prepend: Vec<(&str, &[u8])> = vec![("anthropic_version", &version)];
    if !betas.is_empty() {
        prepend.push(("anthropic_beta", &betas_json));
    }
    let remove: Vec<&str> = handled.iter().chain(drop).copied().collect();
    let body = json::edit::edit(body, &prepend, &remove).ok_or(TranslateError::NotAnObject)?;
    if matches!(
        source,
        Source::CountTokens | Source::Cloud(CloudCall::VertexCountTokens)
    ) {
        return Ok(BedrockRequest {
            path: bedrock_count_path(upstream_model),
            body: Some(count_tokens::wrap(&body)),
        });
    }
    Ok(BedrockRequest {
        path: bedrock_path(upstream_model, stream),
        body: Some(body),
    })
}

fn bedrock_count_path(model: &str) -> String {
    format!("/model/{}/count-tokens", model.replace('/', "%2F"))
}

/// The betas in a Bedrock body's `anthropic_beta`.
pub fn body_betas(body: &[u8]) -> Result<Vec<String>, TranslateError> {
    match json::edit::field(body, "anthropic_beta") {
        Some(raw) => serde_json::from_slice(raw).map_err(|_| TranslateError::BadBetas),
        None => Ok(Vec::new()),
    }
}

fn bedrock_path(model: &str, stream: bool) -> String {
    let action = if stream {
        "invoke-with-response-stream"
    } else {
        "invoke"
    };
    // `:` travels raw, as every Bedrock client sends it; an ARN's `/` must not split the path.
    format!("/model/{}/{action}", model.replace('/', "%2F"))
}

/// The `anthropic_version` Vertex rawPredict expects in the body.
pub const VERTEX_VERSION: &str = "vertex-2023-10-16";

/// A request in Vertex rawPredict's shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VertexRequest {
    /// `/v1/projects/{p}/locations/{l}/publishers/anthropic/models/{m}:{rawPredict|streamRawPredict}`.
    pub path: String,
    /// The new body, or `None` when the client's goes as it is (a Vertex client).
    pub body: Option<Vec<u8>>,
    /// Betas from a Bedrock body, for the `anthropic-beta` header (Vertex reads the header).
    pub betas: Vec<String>,
}

/// Rewrites a request for a Vertex upstream serving `upstream_model` in `project`/`region`,
/// leaving out the fields in `drop`. A Vertex client's body is not touched at all.
pub fn to_vertex(
    source: Source<'_>,
    body: &[u8],
    upstream_model: &str,
    project: &str,
    region: &str,
    drop: &[&str],
) -> Result<VertexRequest, TranslateError> {
    let base = format!("/v1/projects/{project}/locations/{region}/publishers/anthropic/models");
    let version = json::edit::json_string(VERTEX_VERSION);
    let model = json::edit::json_string(upstream_model);
    let edit = |prepend: &[(&str, &[u8])], remove: &[&str]| {
        let remove: Vec<&str> = remove.iter().chain(drop).copied().collect();
        json::edit::edit(body, prepend, &remove).ok_or(TranslateError::NotAnObject)
    };
    let predict = |stream: bool| {
        format!(
            "{base}/{upstream_model}:{}",
            if stream {
                "streamRawPredict"
            } else {
                "rawPredict"
            }
        )
    };
    Ok(match source {
        Source::Cloud(CloudCall::VertexPredict { stream, .. }) => VertexRequest {
            path: predict(*stream),
            body: None,
            betas: Vec::new(),
        },
        Source::Cloud(CloudCall::VertexCountTokens) => VertexRequest {
            path: format!("{base}/count-tokens:rawPredict"),
            body: Some(edit(&[("model", &model)], &["model"])?),
            betas: Vec::new(),
        },
        Source::CountTokens => VertexRequest {
            path: format!("{base}/count-tokens:rawPredict"),
            body: Some(edit(
                &[("anthropic_version", &version), ("model", &model)],
                &["model", "anthropic_version"],
            )?),
            betas: Vec::new(),
        },
        Source::Messages => {
            let stream = json::edit::field(body, "stream") == Some(&b"true"[..]);
            VertexRequest {
                path: predict(stream),
                body: Some(edit(
                    &[("anthropic_version", &version)],
                    &["model", "anthropic_version"],
                )?),
                betas: Vec::new(),
            }
        }
        Source::Cloud(CloudCall::BedrockCountTokens { .. }) => {
            let inner = count_tokens::invoke_body(body)?;
            let betas = body_betas(&inner)?;
            let remove: Vec<&str> = ["anthropic_version", "anthropic_beta", "stream", "model"]
                .iter()
                .chain(drop)
                .copied()
                .collect();
            let body = json::edit::edit(
                &inner,
                &[("anthropic_version", &version), ("model", &model)],
                &remove,
            )
            .ok_or(TranslateError::NotAnObject)?;
            VertexRequest {
                path: format!("{base}/count-tokens:rawPredict"),
                body: Some(body),
                betas,
            }
        }
        Source::Cloud(CloudCall::BedrockInvoke { stream, .. }) => {
            let betas = body_betas(body)?;
            let mut prepend: Vec<(&str, &[u8])> = vec![("anthropic_version", &version)];
            if *stream {
                prepend.push(("stream", b"true"));
            }
            VertexRequest {
                path: predict(*stream),
                body: Some(edit(
                    &prepend,
                    &["anthropic_version", "anthropic_beta", "stream", "model"],
                )?),
                betas,
            }
        }
    })
}

/// One event-stream message as an SSE event: a `chunk` carries the Anthropic event itself; an
/// `exception` becomes an SSE `error` event of the matching Anthropic type.
pub fn sse_from_message(message: &eventstream::Message, out: &mut Vec<u8>) {
    #[derive(serde::Deserialize)]
    struct Kind {
        #[serde(rename = "type")]
        kind: String,
    }
    if message.header(":message-type") == Some("exception") {
        let kind = match message.header(":exception-type").unwrap_or_default() {
            "throttlingException" => "rate_limit_error",
            "serviceUnavailableException" => "overloaded_error",
            "validationException" => "invalid_request_error",
            _ => "api_error",
        };
        let text = serde_json::from_slice::<serde_json::Value>(&message.payload)
            .ok()
            .and_then(|v| v.get("message")?.as_str().map(str::to_string))
            .unwrap_or_else(|| "the upstream stream failed".into());
        let data = serde_json::json!({"type": "error", "error": {"type": kind, "message": text}});
        out.extend_from_slice(format!("event: error\ndata: {data}\n\n").as_bytes());
        return;
    }
    let Some(event) = message.chunk_event() else {
        return;
    };
    let Ok(kind) = serde_json::from_slice::<Kind>(&event) else {
        return;
    };
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(kind.kind.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(&event);
    out.extend_from_slice(b"\n\n");
}

/// Replaces the body's `model` (an alias routed to another upstream model).
pub fn with_model(body: &[u8], upstream_model: &str) -> Option<Vec<u8>> {
    let model = json::edit::json_string(upstream_model);
    json::edit::edit(body, &[("model", &model)], &["model"])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bedrock_paths_as_every_client_sends_them() {
        let want = |m: &str, stream| {
            Some(CloudCall::BedrockInvoke {
                model: m.into(),
                stream,
            })
        };
        let id = "us.anthropic.claude-sonnet-4-5-20250929-v1:0";
        assert_eq!(
            CloudCall::from_path(format!("/model/{id}/invoke-with-response-stream").as_bytes()),
            want(id, true)
        );
        assert_eq!(
            CloudCall::from_path(b"/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke"),
            want(id, false)
        );
        assert_eq!(
            CloudCall::from_path(format!("/bedrock/model/{id}/invoke").as_bytes()),
            want(id, false)
        );
        let arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/global.anthropic.claude-opus-4-6-v1";
        let encoded = arn.replace(':', "%3A").replace('/', "%2F");
        assert_eq!(
            CloudCall::from_path(format!("/model/{encoded}/invoke").as_bytes()),
            want(arn, false)
        );
        assert_eq!(CloudCall::from_path(b"/model/x/converse"), None);
        assert!(
            is_inference_profiles(b"/inference-profiles")
                && is_inference_profiles(b"/bedrock/inference-profiles")
        );
    }

    #[test]
    fn vertex_paths() {
        let base = "/v1/projects/p/locations/us-east5/publishers/anthropic/models";
        assert_eq!(
            CloudCall::from_path(
                format!("{base}/claude-sonnet-4-5@20250929:streamRawPredict").as_bytes()
            ),
            Some(CloudCall::VertexPredict {
                model: "claude-sonnet-4-5@20250929".into(),
                stream: true
            })
        );
        assert_eq!(
            CloudCall::from_path(format!("/vertex{base}/claude-opus-5-5:rawPredict").as_bytes()),
            Some(CloudCall::VertexPredict {
                model: "claude-opus-5-5".into(),
                stream: false
            })
        );
        assert_eq!(
            CloudCall::from_path(format!("{base}/count-tokens:rawPredict").as_bytes()),
            Some(CloudCall::VertexCountTokens)
        );
        assert_eq!(CloudCall::from_path(b"/v1/messages"), None);
        assert_eq!(
            CloudCall::from_path(format!("{base}/m:predict").as_bytes()),
            None
        );
    }

    #[test]
    fn provider_ids_map_to_anthropic_ids() {
        for (id, want) in [
            (
                "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
                "claude-sonnet-4-5-20250929",
            ),
            (
                "anthropic.claude-haiku-4-5-20251001-v1:0",
                "claude-haiku-4-5-20251001",
            ),
            ("us.anthropic.claude-opus-4-6-v1", "claude-opus-4-6"),
            ("us.anthropic.claude-opus-5-5", "claude-opus-5-5"),
            ("claude-sonnet-4-5@20250929", "claude-sonnet-4-5-20250929"),
            (
                "arn:aws:bedrock:us-east-1:1:inference-profile/global.anthropic.claude-opus-4-6-v1",
                "claude-opus-4-6",
            ),
            ("claude-opus-4-8", "claude-opus-4-8"),
        ] {
            assert_eq!(anthropic_model_id(id), want, "{id}");
        }
    }

    #[test]
    fn bedrock_body_becomes_a_messages_body() {
        let body = br#"{"max_tokens":1,"messages":[{"role":"user","content":"."}],"anthropic_beta":["interleaved-thinking-2025-05-14"],"anthropic_version":"bedrock-2023-05-31"}"#;
        let call = CloudCall::BedrockInvoke {
            model: "x".into(),
            stream: true,
        };
        let t = to_messages(&call, body, "claude-sonnet-4-5-20250929").unwrap();
        assert_eq!(t.path, "/v1/messages");
        assert_eq!(t.betas, ["interleaved-thinking-2025-05-14"]);
        assert_eq!(t.version, "2023-06-01");
        let sdk2 = br#"{"max_tokens":1,"messages":[],"anthropic_version":"2026-10-21"}"#;
        assert_eq!(to_messages(&call, sdk2, "m").unwrap().version, "2026-10-21");
        assert_eq!(
            std::str::from_utf8(&t.body).unwrap(),
            r#"{"model":"claude-sonnet-4-5-20250929","stream":true,"max_tokens":1,"messages":[{"role":"user","content":"."}]}"#
        );
    }

    #[test]
    fn messages_bodies_become_bedrock_bodies() {
        let body = br#"{"model":"claude-sonnet-4-5","max_tokens":5,"stream":true,"messages":[]}"#;
        let betas = ["context-1m-2025-08-07".to_string()];
        let r = to_bedrock(
            Source::Messages,
            body,
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            &betas,
            &["stream"],
        )
        .unwrap();
        assert_eq!(
            r.path,
            "/model/us.anthropic.claude-sonnet-4-5-20250929-v1:0/invoke-with-response-stream"
        );
        assert_eq!(
            std::str::from_utf8(&r.body.unwrap()).unwrap(),
            r#"{"anthropic_version":"bedrock-2023-05-31","anthropic_beta":["context-1m-2025-08-07"],"max_tokens":5,"messages":[]}"#
        );
        let call = CloudCall::BedrockInvoke {
            model: "x".into(),
            stream: false,
        };
        let same = to_bedrock(
            Source::Cloud(&call),
            b"{}",
            "arn:aws:bedrock:r:1:inference-profile/p",
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(
            same.path,
            "/model/arn:aws:bedrock:r:1:inference-profile%2Fp/invoke"
        );
        assert_eq!(same.body, None, "a Bedrock client's body goes unchanged");
        let count = to_bedrock(
            Source::CountTokens,
            br#"{"model":"a","messages":[]}"#,
            "us.anthropic.claude-opus-4-8",
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(
            count.path,
            "/model/us.anthropic.claude-opus-4-8/count-tokens"
        );
        assert_eq!(
            count_tokens::invoke_body(&count.body.unwrap()).unwrap(),
            br#"{"anthropic_version":"bedrock-2023-05-31","messages":[]}"#
        );
        assert_eq!(
            CloudCall::from_path(b"/model/us.anthropic.claude-opus-4-8/count-tokens"),
            Some(CloudCall::BedrockCountTokens {
                model: "us.anthropic.claude-opus-4-8".into()
            })
        );
    }

    #[test]
    fn bodies_become_vertex_bodies() {
        let base = "/v1/projects/p/locations/global/publishers/anthropic/models";
        let body = br#"{"model":"claude-opus-4-8","max_tokens":5,"stream":true,"messages":[]}"#;
        let r = to_vertex(
            Source::Messages,
            body,
            "claude-opus-4-8",
            "p",
            "global",
            &[],
        )
        .unwrap();
        assert_eq!(r.path, format!("{base}/claude-opus-4-8:streamRawPredict"));
        assert_eq!(
            std::str::from_utf8(&r.body.unwrap()).unwrap(),
            r#"{"anthropic_version":"vertex-2023-10-16","max_tokens":5,"stream":true,"messages":[]}"#
        );
        let bedrock = br#"{"max_tokens":5,"messages":[],"anthropic_beta":["b1"],"anthropic_version":"bedrock-2023-05-31"}"#;
        let call = CloudCall::BedrockInvoke {
            model: "m".into(),
            stream: true,
        };
        let r = to_vertex(
            Source::Cloud(&call),
            bedrock,
            "claude-sonnet-4-5@20250929",
            "p",
            "global",
            &[],
        )
        .unwrap();
        assert_eq!(r.betas, ["b1"]);
        assert_eq!(
            std::str::from_utf8(&r.body.unwrap()).unwrap(),
            r#"{"anthropic_version":"vertex-2023-10-16","stream":true,"max_tokens":5,"messages":[]}"#
        );
        let r = to_vertex(
            Source::CountTokens,
            br#"{"model":"a","messages":[]}"#,
            "claude-x@1",
            "p",
            "global",
            &["thinking"],
        )
        .unwrap();
        assert_eq!(r.path, format!("{base}/count-tokens:rawPredict"));
        assert_eq!(
            std::str::from_utf8(&r.body.unwrap()).unwrap(),
            r#"{"anthropic_version":"vertex-2023-10-16","model":"claude-x@1","messages":[]}"#
        );
    }

    #[test]
    fn vertex_bodies_keep_stream_and_count_tokens_keeps_its_fields() {
        let body = br#"{"anthropic_version":"vertex-2023-10-16","messages":[],"stream":true,"max_tokens":9}"#;
        let call = CloudCall::VertexPredict {
            model: "m".into(),
            stream: true,
        };
        let t = to_messages(&call, body, "claude-opus-5-5").unwrap();
        assert_eq!(
            std::str::from_utf8(&t.body).unwrap(),
            r#"{"model":"claude-opus-5-5","messages":[],"stream":true,"max_tokens":9}"#
        );
        let body = br#"{"model":"claude-sonnet-4-5@20250929","messages":[],"anthropic_version":"vertex-2023-10-16"}"#;
        let t = to_messages(
            &CloudCall::VertexCountTokens,
            body,
            "claude-sonnet-4-5-20250929",
        )
        .unwrap();
        assert_eq!(t.path, "/v1/messages/count_tokens");
        assert_eq!(
            std::str::from_utf8(&t.body).unwrap(),
            r#"{"model":"claude-sonnet-4-5-20250929","messages":[]}"#
        );
        assert_eq!(
            to_messages(&CloudCall::VertexCountTokens, b"[1]", "m"),
            Err(TranslateError::NotAnObject)
        );
    }
}
