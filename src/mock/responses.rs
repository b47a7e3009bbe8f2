//! What the mock says: Messages JSON, the SSE event sequence Claude Code expects (one event per
//! chunk, `ping` included), count_tokens, the model list and errors. Usage is derived from the
//! request the way the lab's logging upstream did it: input tokens = body length / 4.

use serde_json::json;

/// Usage the mock reports for a request body of `body_len` bytes answering `reply`.
pub fn usage_for(body_len: usize, reply: &str) -> (u64, u64) {
    let input = (body_len / 4).max(1) as u64;
    let output = (reply.split_whitespace().count().max(1)) as u64;
    (input, output)
}

/// A complete non-streaming Messages response.
pub fn message_json(model: &str, reply: &str, input: u64, output: u64) -> Vec<u8> {
    json!({
        "id": "msg_mock_01",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": reply}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": usage_json(input, output),
    })
    .to_string()
    .into_bytes()
}

fn usage_json(input: u64, output: u64) -> serde_json::Value {
    json!({
        "input_tokens": input,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output,
        "service_tier": "standard",
    })
}

/// The SSE events of a streamed answer, each a complete `event:`/`data:` block.
pub fn sse_events(model: &str, reply: &str, input: u64, output: u64) -> Vec<Vec<u8>> {
    stream_events(model, reply, input, output)
        .into_iter()
        .map(|e| {
            let name = e["type"].as_str().unwrap_or("unknown").to_string();
            format!("event: {name}\ndata: {e}\n\n").into_bytes()
        })
        .collect()
}

/// The same answer as Bedrock streams it: one event-stream `chunk` frame per event, with
/// `amazon-bedrock-invocationMetrics` on `message_stop`.
pub fn bedrock_frames(model: &str, reply: &str, input: u64, output: u64) -> Vec<Vec<u8>> {
    let mut events = stream_events(model, reply, input, output);
    if let Some(stop) = events.last_mut() {
        stop["amazon-bedrock-invocationMetrics"] = json!({
            "inputTokenCount": input, "outputTokenCount": output, "invocationLatency": 12, "firstByteLatency": 5,
        });
    }
    events
        .iter()
        .map(|e| sluice::format::eventstream::chunk_frame(e.to_string().as_bytes()))
        .collect()
}

/// The events of a streamed answer, as JSON.
fn stream_events(model: &str, reply: &str, input: u64, output: u64) -> Vec<serde_json::Value> {
    let mut start_usage = usage_json(input, 1);
    start_usage["output_tokens"] = json!(1);
    let mut events = vec![
        json!({"type": "message_start", "message": {
            "id": "msg_mock_01", "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": null, "stop_sequence": null, "usage": start_usage}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "ping"}),
    ];
    let words: Vec<&str> = reply.split_inclusive(' ').collect();
    for piece in if words.is_empty() { vec![""] } else { words } {
        events.push(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}));
    }
    events.push(json!({"type": "content_block_stop", "index": 0}));
    events.push(json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
        "usage": {"input_tokens": input, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": output}}));
    events.push(json!({"type": "message_stop"}));
    events
}

/// `{"input_tokens": N}`.
pub fn count_tokens_json(input: u64) -> Vec<u8> {
    json!({"input_tokens": input}).to_string().into_bytes()
}

/// A one-page model list.
pub fn models_json() -> Vec<u8> {
    json!({
        "data": [{"type": "model", "id": "claude-mock-1", "display_name": "Mock", "created_at": "2025-01-01T00:00:00Z"}],
        "first_id": "claude-mock-1", "last_id": "claude-mock-1", "has_more": false,
    })
    .to_string()
    .into_bytes()
}

/// An Anthropic error body for `status`.
pub fn error_json(status: u16) -> Vec<u8> {
    let kind = match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    };
    json!({"type": "error", "error": {"type": kind, "message": format!("mock error {status}")}, "request_id": "req_mock"})
        .to_string()
        .into_bytes()
}
