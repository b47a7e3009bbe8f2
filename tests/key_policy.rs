//! Per-key policy: a model allow-list (enforced before any upstream is contacted, and applied to
//! `/v1/models` discovery) and an expiry time.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "integration test: a failure is a failed test"
)]

mod common;

use common::*;

fn keys(mock: &Proc) -> String {
    let h = |k: &str| sluice::config::keys::hash_hex(k);
    format!(
        r#"
[[upstreams]]
name = "anthropic"
url = "{}"
[[keys]]
name = "haiku-only"
sha256 = "{}"
models = ["claude-haiku-*"]
[[keys]]
name = "expired"
sha256 = "{}"
expires = "2020-01-01T00:00:00Z"
[[keys]]
name = "current"
sha256 = "{}"
expires = "2099-01-01T00:00:00Z"
"#,
        mock.url(),
        h("sk-haiku"),
        h("sk-expired"),
        h("sk-current")
    )
}

#[test]
fn a_model_allow_list_limits_requests_and_discovery() {
    let mock = mock(&[]);
    let gw = gateway("", &keys(&mock));
    let haiku = r#"{"model":"claude-haiku-4-5","max_tokens":5,"messages":[]}"#;
    let opus = r#"{"model":"claude-opus-4-8","max_tokens":5,"messages":[]}"#;
    assert_eq!(
        request(gw.addr, &messages_request(haiku, "x-api-key: sk-haiku\r\n")).status,
        200
    );
    let refused = request(gw.addr, &messages_request(opus, "x-api-key: sk-haiku\r\n"));
    assert_eq!(refused.status, 403);
    assert_eq!(refused.json()["error"]["type"], "permission_error");
    assert_eq!(
        mock_requests(&mock).len(),
        1,
        "the refused request never reached the upstream"
    );
    // A Bedrock id is matched by its Anthropic id.
    let body = r#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":5,"messages":[]}"#;
    let raw = format!(
        "POST /model/us.anthropic.claude-haiku-4-5-20251001-v1:0/invoke HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer sk-haiku\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(request(gw.addr, &raw).status, 200);
    let models = request(
        gw.addr,
        "GET /v1/models?limit=1000 HTTP/1.1\r\nHost: gw\r\nx-api-key: sk-haiku\r\n\r\n",
    )
    .json();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(
        !ids.is_empty() && ids.iter().all(|id| id.starts_with("claude-haiku-")),
        "{ids:?}"
    );
    let one = request(
        gw.addr,
        "GET /v1/models/claude-opus-4-8 HTTP/1.1\r\nHost: gw\r\nx-api-key: sk-haiku\r\n\r\n",
    );
    assert_eq!(one.status, 404);
    let all = request(
        gw.addr,
        "GET /v1/models?limit=1000 HTTP/1.1\r\nHost: gw\r\nx-api-key: sk-current\r\n\r\n",
    )
    .json();
    assert!(
        all["data"].as_array().unwrap().len() > ids.len(),
        "an unrestricted key sees every model"
    );
}

#[test]
fn an_expired_key_is_refused_with_401() {
    let mock = mock(&[]);
    let gw = gateway("", &keys(&mock));
    let expired = request(
        gw.addr,
        &messages_request(SMALL_BODY, "x-api-key: sk-expired\r\n"),
    );
    assert_eq!(expired.status, 401);
    assert_eq!(expired.json()["error"]["message"], "this key has expired");
    assert_eq!(
        request(
            gw.addr,
            &messages_request(SMALL_BODY, "x-api-key: sk-current\r\n")
        )
        .status,
        200
    );
}
