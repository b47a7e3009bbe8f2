//! `--strict`: the mock refuses what the real clouds refuse, in their own words — a model id
//! not in the provider's form, a top-level body field or a beta outside the provider's
//! documented lists. These lists model the providers and are kept apart from sluice's own
//! field policy on purpose: a test then checks sluice against the provider, not against itself.

/// The body fields Bedrock InvokeModel and Vertex rawPredict both document for Anthropic models.
const COMMON_FIELDS: &[&str] = &[
    "anthropic_version",
    "max_tokens",
    "messages",
    "system",
    "metadata",
    "thinking",
    "tools",
    "tool_choice",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "output_config",
];

/// Bedrock also takes betas in the body; Vertex takes `stream` there.
fn takes_field(bedrock: bool, key: &str) -> bool {
    COMMON_FIELDS.contains(&key) || key == if bedrock { "anthropic_beta" } else { "stream" }
}

/// The betas the clouds take (Vertex also web search).
const CLOUD_BETAS: &[&str] = &[
    "claude-code-20250219",
    "interleaved-thinking-2025-05-14",
    "context-1m-2025-08-07",
    "tool-search-tool-2025-10-19",
    "thinking-token-count-2026-05-13",
    "effort-2025-11-24",
    "computer-use-2025-01-24",
    "computer-use-2025-11-24",
    "token-efficient-tools-2025-02-19",
    "fine-grained-tool-streaming-2025-05-14",
    "output-128k-2025-02-19",
];

const PROFILES: &[&str] = &["us", "eu", "apac", "jp", "au", "us-gov", "global"];

/// Why Bedrock would refuse this request: (status, Bedrock's error body).
pub fn bedrock_refusal(model: &str, body: &[u8]) -> Option<(u16, String)> {
    let refuse =
        |message: String| Some((400, serde_json::json!({ "message": message }).to_string()));
    if !bedrock_model_id(model) {
        return refuse("The provided model identifier is invalid.".into());
    }
    let parsed: serde_json::Value = serde_json::from_slice(body).ok()?;
    let object = parsed.as_object()?;
    if let Some(key) = object.keys().find(|k| !takes_field(true, k)) {
        return refuse(format!(
            "Malformed input request: #: extraneous key [{key}] is not permitted, please reformat your input and try again."
        ));
    }
    let betas = object.get("anthropic_beta").and_then(|b| b.as_array());
    if betas.is_some_and(|b| {
        b.iter()
            .any(|x| !x.as_str().is_some_and(|x| CLOUD_BETAS.contains(&x)))
    }) {
        return refuse("invalid beta flag".into());
    }
    None
}

/// Bedrock model ids: `[profile.]anthropic.…` or an ARN.
fn bedrock_model_id(model: &str) -> bool {
    if model.starts_with("arn:aws:bedrock:") {
        return true;
    }
    let bare = match model.split_once('.') {
        Some((p, rest)) if PROFILES.contains(&p) => rest,
        _ => model,
    };
    bare.strip_prefix("anthropic.claude-").is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.:".contains(&b))
    })
}

/// Why Vertex would refuse this request: (status, Vertex's error body). `betas` is the
/// `anthropic-beta` header; `body` is `None` for count-tokens (whose model is in the body).
pub fn vertex_refusal(
    model: Option<&str>,
    betas: Option<&str>,
    body: &[u8],
) -> Option<(u16, String)> {
    let error = |code: u16, status: &str, message: String| {
        let body =
            serde_json::json!({"error": {"code": code, "message": message, "status": status}});
        Some((code, body.to_string()))
    };
    let parsed: serde_json::Value = serde_json::from_slice(body).ok()?;
    let object = parsed.as_object()?;
    let model = model.or_else(|| object.get("model").and_then(|m| m.as_str()))?;
    if !vertex_model_id(model) {
        return error(
            404,
            "NOT_FOUND",
            format!("Publisher Model `publishers/anthropic/models/{model}` was not found or your project does not have access to it."),
        );
    }
    let allowed = |k: &str| takes_field(false, k) || k == "model";
    if let Some(key) = object.keys().find(|k| !allowed(k)) {
        return error(
            400,
            "INVALID_ARGUMENT",
            format!("{key}: Extra inputs are not permitted"),
        );
    }
    let unknown: Vec<&str> = betas
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|b| !b.is_empty() && !CLOUD_BETAS.contains(b) && *b != "web-search-2025-03-05")
        .collect();
    if !unknown.is_empty() {
        let list = unknown
            .iter()
            .map(|b| format!("`{b}`"))
            .collect::<Vec<_>>()
            .join(", ");
        return error(
            400,
            "INVALID_ARGUMENT",
            format!("Unexpected value(s) {list} for the `anthropic-beta` header."),
        );
    }
    None
}

/// Vertex model ids: `claude-…`, dated as `claude-…@YYYYMMDD`, never a first-party dated id
/// or a Bedrock id.
fn vertex_model_id(model: &str) -> bool {
    let (name, date) = model.split_once('@').unwrap_or((model, ""));
    let dated_first_party = name
        .rsplit_once('-')
        .is_some_and(|(_, d)| d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit()));
    name.starts_with("claude-")
        && !dated_first_party
        && (date.is_empty() || (date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit())))
}

/// Why the Anthropic API would refuse a Messages request: a model id that is a cloud's
/// (`anthropic.claude-…`, `claude-…@date`), answered 404 `not_found_error` as the API does.
pub fn messages_refusal(body: &[u8]) -> Option<(u16, String)> {
    let parsed: serde_json::Value = serde_json::from_slice(body).ok()?;
    let model = parsed.get("model")?.as_str()?;
    let cloud = model.contains("anthropic.") || model.contains('@') || model.starts_with("arn:");
    cloud.then(|| {
        let error = serde_json::json!({"type": "error", "error": {"type": "not_found_error", "message": format!("model: {model}")}});
        (404, error.to_string())
    })
}
