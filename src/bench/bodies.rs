//! The request bodies the bench sends. Also compiled into the criterion benches (`#[path]`), so
//! they measure the same body; it needs nothing but serde_json.

/// A request shaped like Claude Code's main request: `model` first, ~77 KB of messages, system
/// blocks and tool schemas.
pub fn claude_code_sized_body(stream: bool) -> Vec<u8> {
    let filler = |n: usize| "lorem ipsum dolor sit amet ".repeat(n / 27 + 1)[..n].to_string();
    let tools: Vec<serde_json::Value> = (0..24)
        .map(|i| {
            serde_json::json!({
                "name": format!("Tool{i}"),
                "description": filler(1500),
                "input_schema": {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
                    "properties": {"command": {"type": "string", "description": filler(200)}}, "required": ["command"]},
            })
        })
        .collect();
    let body = serde_json::json!({
        "model": "claude-opus-4-8",
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": format!("<system-reminder>\n{}</system-reminder>\n", filler(6000))},
                {"type": "text", "text": "echo hello", "cache_control": {"type": "ephemeral"}}]},
            {"role": "system", "content": filler(6000)},
        ],
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.330.476; cc_entrypoint=sdk-cli;"},
            {"type": "text", "text": "You are a Claude agent, built on Anthropic's Claude Agent SDK.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": filler(12000), "cache_control": {"type": "ephemeral"}},
        ],
        "tools": tools,
        "metadata": {"user_id": "{\"device_id\":\"077e\",\"account_uuid\":\"\",\"session_id\":\"01430f9c\"}"},
        "max_tokens": 64000,
        "thinking": {"type": "adaptive"},
        "stream": stream,
    });
    body.to_string().into_bytes()
}
