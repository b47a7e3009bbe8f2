//! Phase 1, classify: method and path → what the request is. Routing matches the path only;
//! the query (`?beta=true`) travels on untouched.
//!
//! A path is classified only in canonical form ([`crate::http1::path`]): one that an upstream
//! could normalize into something else is refused, so the operation sluice governs is the one
//! the upstream executes. Forwarding is an explicit list: the governed operations (Messages,
//! count tokens, Bedrock InvokeModel, Vertex rawPredict), and as pass-through only the Files API,
//! which names no model and costs nothing. Message batches carry a model per request inside
//! their body: refused unless `server.message_batches = "governed"` ([`super::batches`]).
//! Anything else is 404.

use super::GatewayError;
use crate::config::file::Signal;
use crate::format::{ClientFormat, CloudCall};
use crate::http1::{path, Method, RequestHead};
use crate::signin::SigninCall;

/// A Message Batches API call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchCall {
    /// `POST /v1/messages/batches`: names a model per batched request.
    Create,
    /// Listing, reading, results, cancelling, deleting: no model, no cost.
    Other,
}

/// What a request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    /// `POST /v1/messages`
    Messages,
    /// `POST /v1/messages/count_tokens`
    CountTokens,
    /// `GET /v1/models`, answered by sluice.
    ListModels,
    /// `GET /v1/models/{id}`, answered by sluice.
    GetModel(String),
    /// `GET /healthz`
    Health,
    /// `GET /metrics`: Prometheus text.
    Metrics,
    /// `HEAD /` and `HEAD /api/hello`: Claude Code's connection warm-up.
    WarmUp,
    /// A Bedrock InvokeModel or Vertex rawPredict call.
    Cloud(CloudCall),
    /// Bedrock's control-plane `GET /inference-profiles`, answered by sluice.
    InferenceProfiles,
    /// The Files API (`/v1/files`, `/v1/files/{id}`, `/v1/files/{id}/content`): forwarded
    /// unchanged to the default upstream; it names no model and costs nothing.
    Passthrough,
    /// The Message Batches API (`/v1/messages/batches…`): refused, or governed per batched
    /// request ([`super::batches`]).
    MessageBatches(BatchCall),
    /// `GET /managed/settings`: the caller's policy document, answered by sluice.
    ManagedSettings,
    /// `GET /api/oauth/usage`: the caller's spend against their budgets (Claude Code's `/usage`).
    Usage,
    /// `POST /v1/metrics|logs|traces`: an OpenTelemetry export, relayed or dropped.
    Telemetry(Signal),
    /// A sign-in endpoint (Claude Code's `/login`), answered by the sign-in threads.
    SignIn(SigninCall),
    /// Anything else.
    Unknown,
}

impl Operation {
    /// The label the access log and metrics use.
    pub fn label(&self) -> &'static str {
        match self {
            Operation::Messages => "messages",
            Operation::CountTokens => "count_tokens",
            Operation::ListModels => "models",
            Operation::GetModel(_) => "model",
            Operation::Health => "health",
            Operation::Metrics => "metrics",
            Operation::WarmUp => "warm_up",
            Operation::Cloud(call) if call.counts_tokens() => "count_tokens",
            Operation::Cloud(_) => "messages",
            Operation::InferenceProfiles => "inference_profiles",
            Operation::Passthrough => "passthrough",
            Operation::MessageBatches(_) => "message_batches",
            Operation::SignIn(_) => "signin",
            Operation::ManagedSettings => "managed_settings",
            Operation::Usage => "usage",
            Operation::Telemetry(_) => "telemetry",
            Operation::Unknown => "unknown",
        }
    }

    /// Whether the request's model (in its body or path) picks the upstream.
    pub fn routes_by_model(&self) -> bool {
        matches!(
            self,
            Operation::Messages | Operation::CountTokens | Operation::Cloud(_)
        )
    }

    /// The client's API format.
    pub fn format(&self) -> ClientFormat {
        match self {
            Operation::Cloud(call) => call.format(),
            Operation::InferenceProfiles => ClientFormat::Bedrock,
            _ => ClientFormat::Anthropic,
        }
    }

    /// Whether sluice answers this itself.
    pub fn is_local(&self) -> bool {
        !matches!(
            self,
            Operation::Messages
                | Operation::CountTokens
                | Operation::Passthrough
                | Operation::Cloud(_)
                | Operation::MessageBatches(_)
        )
    }
}

/// Classifies a request head; a path that is not in canonical form is refused.
pub fn classify(head: &RequestHead) -> Result<Operation, GatewayError> {
    let path = head.path();
    path::check(path).map_err(|p| GatewayError::AmbiguousPath(p.reason()))?;
    let get_or_head = matches!(head.method, Method::Get | Method::Head);
    let messages_path = unprefixed(path);
    Ok(match (head.method, path) {
        (Method::Post, _) if messages_path == Some(b"/v1/messages") => Operation::Messages,
        (Method::Post, _) if messages_path == Some(b"/v1/messages/count_tokens") => {
            Operation::CountTokens
        }
        (_, b"/v1/models") if get_or_head => Operation::ListModels,
        (_, b"/healthz") if get_or_head => Operation::Health,
        (_, b"/managed/settings") if get_or_head => Operation::ManagedSettings,
        (_, b"/api/oauth/usage") if get_or_head => Operation::Usage,
        (Method::Post, b"/v1/metrics") => Operation::Telemetry(Signal::Metrics),
        (Method::Post, b"/v1/logs") => Operation::Telemetry(Signal::Logs),
        (Method::Post, b"/v1/traces") => Operation::Telemetry(Signal::Traces),
        (_, b"/metrics") if get_or_head => Operation::Metrics,
        (Method::Head, b"/") | (Method::Head, b"/api/hello") => Operation::WarmUp,
        (m, p) if SigninCall::from_request(m == Method::Post, m == Method::Get, p).is_some() => {
            SigninCall::from_request(m == Method::Post, m == Method::Get, p)
                .map_or(Operation::Unknown, Operation::SignIn)
        }
        (_, p) if get_or_head && crate::format::is_inference_profiles(p) => {
            Operation::InferenceProfiles
        }
        (Method::Post, p) if CloudCall::from_path(p).is_some() => {
            CloudCall::from_path(p).map_or(Operation::Unknown, Operation::Cloud)
        }
        (_, p) if get_or_head && p.starts_with(b"/v1/models/") => model_id(p),
        (Method::Post, b"/v1/messages/batches") => Operation::MessageBatches(BatchCall::Create),
        (_, b"/v1/messages/batches") if get_or_head => Operation::MessageBatches(BatchCall::Other),
        (_, p) if is_batch_path(p) => Operation::MessageBatches(BatchCall::Other),
        (_, p) if is_files_path(p) => Operation::Passthrough,
        _ => Operation::Unknown,
    })
}

/// The path prefixes a Messages-format client may put before `/v1/messages` (its base URL's
/// path): the provider mode it runs in (Foundry, Bedrock Mantle, Claude Platform on AWS or on
/// Google Cloud), then the `/anthropic` those providers' own base URLs end in, each optional.
const MODE_PREFIXES: [&[u8]; 4] = [
    b"/foundry",
    b"/mantle",
    b"/anthropic-aws",
    b"/anthropic-google-cloud",
];

/// A Messages path without its mode prefixes, when it has any; the path itself otherwise.
pub fn unprefixed(path: &[u8]) -> Option<&[u8]> {
    let rest = MODE_PREFIXES
        .iter()
        .find_map(|p| path.strip_prefix(*p).filter(|r| r.starts_with(b"/")))
        .unwrap_or(path);
    let rest = rest
        .strip_prefix(b"/anthropic")
        .filter(|r| r.starts_with(b"/"))
        .unwrap_or(rest);
    rest.starts_with(b"/v1/messages").then_some(rest)
}

/// `GET /v1/models/{id}` → the id, if it is one plain segment.
fn model_id(path: &[u8]) -> Operation {
    let id = path.strip_prefix(b"/v1/models/").unwrap_or_default();
    match std::str::from_utf8(id) {
        Ok(id) if !id.is_empty() && !id.contains('/') && !path::has_escapes(id.as_bytes()) => {
            Operation::GetModel(id.to_string())
        }
        _ => Operation::Unknown,
    }
}

/// `/v1/messages/batches/{id}`, `…/{id}/results` or `…/{id}/cancel`, the id plain.
fn is_batch_path(path: &[u8]) -> bool {
    let Some(rest) = path.strip_prefix(b"/v1/messages/batches/") else {
        return false;
    };
    let id = rest
        .strip_suffix(b"/results")
        .or_else(|| rest.strip_suffix(b"/cancel"))
        .unwrap_or(rest);
    is_plain_id(id)
}

/// A plain resource id: letters, digits, `_` and `-`.
fn is_plain_id(id: &[u8]) -> bool {
    !id.is_empty()
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

/// `/v1/files`, `/v1/files/{id}` or `/v1/files/{id}/content`, the id plain letters, digits,
/// `_` and `-`.
fn is_files_path(path: &[u8]) -> bool {
    let Some(rest) = path.strip_prefix(b"/v1/files") else {
        return false;
    };
    match rest.strip_prefix(b"/") {
        None => rest.is_empty(),
        Some(id_and_more) => match id_and_more.strip_suffix(b"/content") {
            Some(id) => is_plain_id(id),
            None => is_plain_id(id_and_more),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::{parse_request, HeadLimits};

    fn op(line: &str) -> Operation {
        let raw = format!("{line} HTTP/1.1\r\nHost: h\r\n\r\n");
        classify(
            &parse_request(raw.as_bytes(), HeadLimits::default())
                .unwrap()
                .unwrap()
                .0,
        )
        .unwrap()
    }

    #[test]
    fn routes_on_the_path_only() {
        assert_eq!(op("POST /v1/messages?beta=true"), Operation::Messages);
        assert_eq!(
            op("POST /v1/messages/count_tokens?beta=true"),
            Operation::CountTokens
        );
        for prefixed in [
            "POST /anthropic/v1/messages?beta=true",
            "POST /foundry/anthropic/v1/messages",
            "POST /mantle/v1/messages",
            "POST /anthropic-aws/v1/messages",
            "POST /anthropic-google-cloud/v1/messages",
        ] {
            assert_eq!(op(prefixed), Operation::Messages, "{prefixed}");
        }
        assert_eq!(
            op("POST /foundry/anthropic/v1/messages/count_tokens"),
            Operation::CountTokens
        );
        assert_eq!(op("POST /foundryx/v1/messages"), Operation::Unknown);
        assert_eq!(
            op("POST /anthropic/anthropic/v1/messages"),
            Operation::Unknown
        );
        assert_eq!(op("GET /v1/models?limit=1000"), Operation::ListModels);
        assert_eq!(
            op("GET /v1/models/claude-opus-4-8"),
            Operation::GetModel("claude-opus-4-8".into())
        );
        assert_eq!(op("HEAD /"), Operation::WarmUp);
        assert_eq!(op("HEAD /api/hello"), Operation::WarmUp);
        assert_eq!(op("GET /healthz"), Operation::Health);
        assert_eq!(op("GET /metrics"), Operation::Metrics);
        assert_eq!(
            op("POST /v1/messages/batches"),
            Operation::MessageBatches(BatchCall::Create)
        );
        assert_eq!(
            op("GET /v1/messages/batches/b_1/results"),
            Operation::MessageBatches(BatchCall::Other)
        );
        assert_eq!(op("GET /v1/messages/batches/a:b"), Operation::Unknown);
        assert_eq!(op("GET /"), Operation::Unknown);
        assert_eq!(op("GET /v1/messages"), Operation::Unknown);
        assert_eq!(op("POST /v1/complete"), Operation::Unknown);
        assert_eq!(op("GET /v1/files"), Operation::Passthrough);
        assert_eq!(
            op("GET /v1/files/file_01-x/content"),
            Operation::Passthrough
        );
        assert_eq!(op("DELETE /v1/files/file_01"), Operation::Passthrough);
        assert_eq!(op("GET /v1/files/a:b"), Operation::Unknown);
        assert_eq!(op("GET /v1/files/%3A"), Operation::Unknown);
        assert_eq!(
            op("GET /inference-profiles?type=SYSTEM_DEFINED"),
            Operation::InferenceProfiles
        );
        assert!(matches!(
            op("POST /model/us.anthropic.claude-sonnet-4-5-20250929-v1:0/invoke"),
            Operation::Cloud(_)
        ));
        assert!(matches!(
            op("POST /v1/projects/p/locations/global/publishers/anthropic/models/claude-opus-5-5:streamRawPredict"),
            Operation::Cloud(CloudCall::VertexPredict { stream: true, .. })
        ));
    }

    #[test]
    fn ambiguous_paths_are_refused_not_classified() {
        for line in [
            "POST /v1/messages/",
            "POST /v1//messages",
            "POST //v1/messages",
            "POST /v1/m%65ssages",
            "POST /v1/messages;x",
            "POST /v1/x/../messages",
        ] {
            let raw = format!("{line} HTTP/1.1\r\nHost: h\r\n\r\n");
            let head = parse_request(raw.as_bytes(), HeadLimits::default())
                .unwrap()
                .unwrap()
                .0;
            assert!(
                matches!(classify(&head), Err(GatewayError::AmbiguousPath(_))),
                "{line}"
            );
        }
    }
}
