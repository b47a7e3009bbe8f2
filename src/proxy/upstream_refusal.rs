//! An upstream's refusal, told in sluice's words where the upstream's own could leak what the
//! caller must not see; the operator's log gets the upstream's words.
//!
//! - A cloud upstream (Bedrock, Vertex) refusing a Messages client: cloud messages name the
//!   operator's account, role or project, so the client gets the Anthropic envelope with the
//!   refusal's type and a generic message. Two kinds of message pass, because Claude Code's
//!   recovery matches them: a 400 or 413 that is already an Anthropic envelope (the model's own
//!   "prompt is too long…"), and a request too large for the model, told as Bedrock's exact
//!   `Input is too long.` (Vertex's size error too).
//! - Any upstream refusing a customer-routed caller ([`crate::cri`]): a generic message, or
//!   `capability_rejected: <class>` when the refusal is over something the caller can change
//!   ([`super::capability`]).

use super::forward::UpstreamResponse;
use crate::http1::body::BodyCursor;
use crate::http1::io::read_some;

/// The most of a refusal's body read.
const MAX_BODY: usize = 64 * 1024;

/// Error types of the Anthropic envelope a client knows.
const KNOWN_TYPES: [&str; 11] = [
    "invalid_request_error",
    "authentication_error",
    "permission_error",
    "not_found_error",
    "request_too_large",
    "rate_limit_error",
    "not_supported",
    "overloaded_error",
    "api_error",
    "billing_error",
    "policy_blocked",
];

/// What a Messages client is told about a cloud upstream's refusal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamRefusal {
    pub status: u16,
    pub kind: &'static str,
    pub message: String,
    /// The upstream's `retry-after`, in seconds.
    pub retry_after: Option<u64>,
}

/// Who the refusal is told to.
#[derive(Clone, Copy, Debug)]
pub enum Audience<'a> {
    /// A Messages client of a cloud upstream.
    CloudClient,
    /// A customer-routed caller, with its request's `anthropic-beta` values.
    CustomerRouted { betas: &'a [&'a str] },
}

/// Reads the refusal's body (at most 64 KiB, within `idle`) and says what `audience` is told,
/// and what the upstream said (for the log).
pub async fn read(
    mut resp: UpstreamResponse,
    idle: std::time::Duration,
    audience: Audience<'_>,
) -> (UpstreamRefusal, String) {
    let body = read_body(&mut resp, idle).await;
    let retry_after = resp
        .head
        .header_str("retry-after")
        .and_then(|v| v.trim().parse().ok());
    let said = String::from_utf8_lossy(&body).into_owned();
    let mut refusal = match audience {
        Audience::CloudClient => told(resp.head.status, &body),
        Audience::CustomerRouted { betas } => {
            told_to_customer_routed(resp.head.status, &body, betas)
        }
    };
    refusal.retry_after = retry_after;
    (refusal, said)
}

/// The refusal as told to a customer-routed caller: the type, and the capability class or a
/// generic message.
pub fn told_to_customer_routed(status: u16, body: &[u8], betas: &[&str]) -> UpstreamRefusal {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let kind = parsed
        .as_ref()
        .and_then(anthropic_envelope)
        .map(|(kind, _)| kind)
        .unwrap_or_else(|| kind_of(status));
    let message = upstream_message(parsed.as_ref());
    let message = match super::capability::class_of(status, message, betas) {
        Some(class) => format!("capability_rejected: {class}"),
        None => generic(status).to_string(),
    };
    UpstreamRefusal {
        status,
        kind,
        message,
        retry_after: None,
    }
}

/// The message inside an upstream's error body, whatever its shape.
fn upstream_message(parsed: Option<&serde_json::Value>) -> &str {
    parsed
        .and_then(|v| {
            v.get("message")
                .or_else(|| v.get("error")?.get("message"))
                .or_else(|| v.get("Message"))
        })
        .and_then(|m| m.as_str())
        .unwrap_or_default()
}

/// The refusal as told to the client, from the upstream's status and body.
pub fn told(status: u16, body: &[u8]) -> UpstreamRefusal {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let envelope = parsed.as_ref().and_then(anthropic_envelope);
    let kind = envelope
        .map(|(kind, _)| kind)
        .unwrap_or_else(|| kind_of(status));
    let upstream_message = upstream_message(parsed.as_ref());
    let message = match envelope {
        Some((_, message)) if status == 400 || status == 413 => truncated(message, 1000),
        _ if status == 400 && too_long(upstream_message) => "Input is too long.".to_string(),
        _ => generic(status).to_string(),
    };
    UpstreamRefusal {
        status,
        kind,
        message,
        retry_after: None,
    }
}

/// `{"type":"error","error":{"type":<known>,"message":<non-empty>}}`.
fn anthropic_envelope(v: &serde_json::Value) -> Option<(&'static str, &str)> {
    if v.get("type")?.as_str()? != "error" {
        return None;
    }
    let error = v.get("error")?;
    let kind = error.get("type")?.as_str()?;
    let kind = KNOWN_TYPES.into_iter().find(|k| *k == kind)?;
    let message = error.get("message")?.as_str().filter(|m| !m.is_empty())?;
    Some((kind, message))
}

/// Bedrock's `Input is too long.` or Vertex's `the request size (N bytes) exceeds M MB limit`.
fn too_long(message: &str) -> bool {
    let m = message.trim().to_ascii_lowercase();
    if m.trim_end_matches('.') == "input is too long" {
        return true;
    }
    let Some(rest) = m
        .strip_prefix("the request size (")
        .or_else(|| m.strip_prefix("the message size ("))
    else {
        return false;
    };
    let Some((digits, rest)) = rest.split_once(" bytes) exceeds ") else {
        return false;
    };
    let limit = rest
        .trim_end_matches('.')
        .trim_end_matches("limit")
        .trim_end();
    let limit = limit.trim_end_matches("mb").trim_end();
    !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !limit.is_empty()
        && limit.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

fn kind_of(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        501 => "not_supported",
        529 => "overloaded_error",
        _ => "api_error",
    }
}

fn generic(status: u16) -> &'static str {
    match status {
        400 => "upstream rejected the request",
        401 => "upstream authentication failed: check the gateway operator",
        403 => "upstream denied the request: check the gateway operator",
        404 => "upstream resource not found",
        413 => "request too large for this upstream",
        429 => "upstream rate limit exceeded",
        501 => "upstream does not support this endpoint",
        529 => "upstream overloaded",
        _ => "upstream error",
    }
}

fn truncated(message: &str, max_chars: usize) -> String {
    message.chars().take(max_chars).collect()
}

/// The body, as far as it arrives within `idle` and up to [`MAX_BODY`].
async fn read_body(resp: &mut UpstreamResponse, idle: std::time::Duration) -> Vec<u8> {
    let mut cursor = BodyCursor::new(resp.head.framing);
    let mut body = Vec::new();
    let mut buf = std::mem::take(&mut resp.buf);
    loop {
        let taken = cursor.advance(&buf, |range| {
            if let Some(data) = buf.get(range) {
                let room = MAX_BODY.saturating_sub(body.len());
                body.extend_from_slice(data.get(..room.min(data.len())).unwrap_or_default());
            }
        });
        let Ok(taken) = taken else {
            return body;
        };
        let _ = buf.split_to(taken);
        if cursor.is_done() || body.len() >= MAX_BODY {
            return body;
        }
        let pending = std::mem::take(&mut buf);
        match monoio::time::timeout(idle, read_some(&mut resp.conn, pending, 8192)).await {
            Ok((Ok(n), back)) if n > 0 => buf = back,
            _ => return body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_messages_are_replaced_but_the_type_stays() {
        let r = told(
            403,
            br#"{"message":"User: arn:aws:sts::123456789012:assumed-role/x is not authorized"}"#,
        );
        assert_eq!(r.kind, "permission_error");
        assert!(!r.message.contains("123456789012"));
        let r = told(
            429,
            br#"{"error":{"code":429,"message":"Quota exceeded for project my-proj","status":"RESOURCE_EXHAUSTED"}}"#,
        );
        assert_eq!(
            (r.kind, r.message.as_str()),
            ("rate_limit_error", "upstream rate limit exceeded")
        );
        let r = told(
            500,
            br#"{"type":"error","error":{"type":"overloaded_error","message":"in project p-1"}}"#,
        );
        assert_eq!(r.kind, "overloaded_error");
        assert_eq!(r.message, "upstream error");
    }

    #[test]
    fn context_overflow_messages_pass_for_the_client_to_recover() {
        let prompt = br#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}"#;
        assert_eq!(
            told(400, prompt).message,
            "prompt is too long: 210000 tokens > 200000 maximum"
        );
        assert_eq!(
            told(400, br#"{"message":"Input is too long."}"#).message,
            "Input is too long."
        );
        let vertex = br#"{"error":{"code":400,"message":"The request size (31457280 bytes) exceeds 30.000MB limit.","status":"FAILED_PRECONDITION"}}"#;
        assert_eq!(told(400, vertex).message, "Input is too long.");
        assert_eq!(
            told(
                400,
                br#"{"message":"Malformed input request: 123456789012"}"#
            )
            .message,
            "upstream rejected the request"
        );
    }
}
