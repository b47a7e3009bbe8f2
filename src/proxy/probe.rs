//! Bedrock Mantle availability probes. Before its first turn, Claude Code in Mantle mode asks
//! several models for a one-token answer to `.` to find one the account may use. A probe that
//! got this far named a model sluice routes and the caller may use, so sluice answers it
//! itself — the route and the allow-list are the answer, and no upstream is paid for it; a
//! model that is not routed or not allowed was already refused, and the CLI moves on to the
//! next.

use super::classify::Operation;
use super::client::ClientConn;
use super::local::{write_answer, Answered};
use super::GatewayError;
use crate::http1::RequestHead;
use crate::json::edit::field;

/// Whether this request is a Mantle availability probe: a Messages request for a cloud model id
/// (`anthropic.claude-…`), `max_tokens` 1, one user message `.`, not streamed.
pub fn is_probe(op: &Operation, model: Option<&str>, body: &[u8]) -> bool {
    if *op != Operation::Messages || !model.is_some_and(crate::provider::model_ids::is_cloud_id) {
        return false;
    }
    let one_dot = field(body, "messages")
        .and_then(|raw| serde_json::from_slice::<serde_json::Value>(raw).ok())
        .is_some_and(|m| m == serde_json::json!([{"role": "user", "content": "."}]));
    field(body, "max_tokens") == Some(&b"1"[..]) && one_dot && field(body, "stream").is_none()
}

/// Answers a probe for `model` with a one-token message.
pub async fn answer(
    client: &mut ClientConn,
    head: &RequestHead,
    model: &str,
    request_id: &str,
) -> Result<Answered, GatewayError> {
    let body = serde_json::json!({
        "id": format!("msg_probe_{request_id}"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": "."}],
        "stop_reason": "max_tokens",
        "stop_sequence": null,
        "usage": {"input_tokens": 0, "output_tokens": 0}
    })
    .to_string();
    let keep_alive = head.keep_alive && client.body_read();
    write_answer(
        client,
        (200, &[], body.as_bytes()),
        false,
        (request_id, keep_alive),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_probe_shape_is_a_probe() {
        let probe = br#"{"model":"anthropic.claude-opus-5-5","max_tokens":1,"messages":[{"role":"user","content":"."}],"system":[]}"#;
        let model = Some("anthropic.claude-opus-5-5");
        assert!(is_probe(&Operation::Messages, model, probe));
        assert!(!is_probe(
            &Operation::Messages,
            Some("claude-opus-5-5"),
            probe
        ));
        assert!(!is_probe(&Operation::CountTokens, model, probe));
        let real = br#"{"model":"anthropic.claude-opus-5-5","max_tokens":1,"messages":[{"role":"user","content":"hi"}]}"#;
        assert!(!is_probe(&Operation::Messages, model, real));
        let long = br#"{"model":"anthropic.claude-opus-5-5","max_tokens":10,"messages":[{"role":"user","content":"."}]}"#;
        assert!(!is_probe(&Operation::Messages, model, long));
    }
}
