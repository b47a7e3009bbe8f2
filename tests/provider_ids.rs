//! Provider model ids and field policy, through the built binary against a strict mock (which
//! refuses what Bedrock and Vertex refuse, in their words): a first-party model id routed to a
//! Bedrock or Vertex upstream without `upstream_model` arrives as that provider's id; a model
//! with no id there is a `check-config` error naming the route, or a clear 400 for a wildcard
//! route; `sluice models` prints the mapping; fields and betas a cloud does not take are left
//! out and named in the access record; thinking blocks with signatures, redacted thinking,
//! `cache_control` and server-tool blocks reach every provider byte for byte.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "integration test: a failure is a failed test"
)]

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

/// A gateway in front of a strict mock: `anthropic`, `bedrock` (us-east-1) and `vertex`
/// upstreams, plus `routes` (TOML).
fn gateway_for(mock: &Proc, routes: &str) -> Gateway {
    let config = format!(
        "[[upstreams]]\nname = \"anthropic\"\nurl = \"{url}\"\n[[upstreams]]\nname = \"bedrock\"\nprovider = \"bedrock\"\nurl = \"{url}\"\nregion = \"us-east-1\"\napi_key = \"bedrock-key\"\n[[upstreams]]\nname = \"vertex\"\nprovider = \"vertex\"\nurl = \"{url}\"\nproject = \"p\"\nregion = \"us-east5\"\napi_key = \"vertex-token\"\n{routes}",
        url = mock.url()
    );
    gateway("", &config)
}

/// One exact route per (model, upstream).
fn routes_to(routes: &[(&str, &str)]) -> String {
    routes
        .iter()
        .map(|(model, upstream)| {
            format!("[[routes]]\nmodel = \"{model}\"\nupstream = \"{upstream}\"\n")
        })
        .collect()
}

fn strict_mock() -> Proc {
    mock(&["--strict"])
}

fn body_for(model: &str) -> String {
    format!(
        r#"{{"model":"{model}","max_tokens":16,"messages":[{{"role":"user","content":"hi"}}]}}"#
    )
}

#[test]
fn first_party_ids_reach_bedrock_and_vertex_as_their_own_ids() {
    let mock = strict_mock();
    let gw = gateway_for(
        &mock,
        "[[routes]]\nmodel = \"claude-opus-4-8\"\nupstream = \"bedrock\"\n[[routes]]\nmodel = \"claude-sonnet-4-5*\"\nupstream = \"vertex\"\n[[routes]]\nmodel = \"*\"\nupstream = \"bedrock\"\n",
    );
    let cases = [
        ("claude-opus-4-8", "/model/us.anthropic.claude-opus-4-8/invoke"),
        (
            "claude-sonnet-4-5-20250929",
            "/v1/projects/p/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929:rawPredict",
        ),
        (
            "claude-haiku-4-5",
            "/model/us.anthropic.claude-haiku-4-5-20251001-v1:0/invoke",
        ),
        (
            "claude-opus-6-20270101",
            "/model/us.anthropic.claude-opus-6-20270101-v1:0/invoke",
        ),
    ];
    for (model, _) in cases {
        let resp = request(gw.addr, &messages_request(&body_for(model), ""));
        assert_eq!(
            resp.status,
            200,
            "{model}: {}",
            String::from_utf8_lossy(&resp.body)
        );
    }
    let targets: Vec<String> = mock_requests(&mock)
        .iter()
        .map(|r| r["target"].as_str().unwrap().to_string())
        .collect();
    let expected: Vec<&str> = cases.iter().map(|(_, t)| *t).collect();
    assert_eq!(targets, expected);
    let records = gw.wait_records(cases.len());
    assert_eq!(records[0]["upstream_model"], "us.anthropic.claude-opus-4-8");
    // Before this mapping the first request went out as `/model/claude-opus-4-8/invoke`,
    // which Bedrock (and the strict mock) refuse: 400 "The provided model identifier is invalid."
}

#[test]
fn cloud_clients_reach_the_other_cloud_under_its_id() {
    let mock = strict_mock();
    let gw = gateway_for(
        &mock,
        "[[routes]]\nmodel = \"claude-sonnet-4-5*\"\nupstream = \"vertex\"\n[[routes]]\nmodel = \"*\"\nupstream = \"bedrock\"\n",
    );
    let invoke = r#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;
    let bedrock_client = format!(
        "POST /model/us.anthropic.claude-sonnet-4-5-20250929-v1:0/invoke HTTP/1.1\r\nHost: gw\r\nx-api-key: k\r\nContent-Length: {}\r\n\r\n{invoke}",
        invoke.len()
    );
    let resp = request(gw.addr, &bedrock_client);
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let predict = r#"{"anthropic_version":"vertex-2023-10-16","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;
    let vertex_client = format!(
        "POST /v1/projects/x/locations/us-east5/publishers/anthropic/models/claude-opus-4-6:rawPredict HTTP/1.1\r\nHost: gw\r\nx-api-key: k\r\nContent-Length: {}\r\n\r\n{predict}",
        predict.len()
    );
    let resp = request(gw.addr, &vertex_client);
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let targets: Vec<String> = mock_requests(&mock)
        .iter()
        .map(|r| r["target"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        targets,
        [
            "/v1/projects/p/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929:rawPredict",
            "/model/us.anthropic.claude-opus-4-6-v1/invoke",
        ]
    );
}

#[test]
fn a_model_a_cloud_does_not_offer_is_refused_before_it_leaves() {
    let mock = strict_mock();
    let gw = gateway_for(&mock, "[[routes]]\nmodel = \"*\"\nupstream = \"bedrock\"\n");
    for model in ["claude-mythos-5", "gpt-9"] {
        let resp = request(gw.addr, &messages_request(&body_for(model), ""));
        assert_error(&resp, 400, "invalid_request_error");
        let message = resp.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            message.contains(model) && message.contains("Bedrock"),
            "{message}"
        );
    }
    assert!(mock_requests(&mock).is_empty());
}

fn sluice(args: &[&str]) -> std::process::Output {
    Command::new(gateway_bin()).args(args).output().unwrap()
}

#[test]
fn check_config_names_the_route_and_sluice_models_prints_the_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sluice.toml");
    let upstreams = "[[upstreams]]\nname = \"anthropic\"\nurl = \"http://127.0.0.1:9\"\n[[upstreams]]\nname = \"bedrock-eu\"\nprovider = \"bedrock\"\nregion = \"eu-west-1\"\napi_key = \"k\"\n[[upstreams]]\nname = \"vertex\"\nprovider = \"vertex\"\nproject = \"p\"\nregion = \"global\"\napi_key = \"t\"\n";
    std::fs::write(
        &file,
        format!("{upstreams}[[routes]]\nmodel = \"claude-mythos-5\"\ndeployments = [{{ upstream = \"anthropic\" }}, {{ upstream = \"bedrock-eu\" }}]\n"),
    )
    .unwrap();
    let out = sluice(&["check-config", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("routes[0].deployments[1]") && stderr.contains("not offered on Bedrock"),
        "{stderr}"
    );
    std::fs::write(
        &file,
        format!("{upstreams}[[routes]]\nmodel = \"claude-opus-4-8\"\ndeployments = [{{ upstream = \"bedrock-eu\" }}, {{ upstream = \"vertex\" }}]\n[[routes]]\nmodel = \"claude-sonnet-4-5*\"\nupstream = \"vertex\"\n[model_ids.\"claude-opus-4-8\"]\nvertex = \"claude-opus-4-8@20260601\"\n"),
    )
    .unwrap();
    let out = sluice(&["models", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["ROUTE", "MODEL", "UPSTREAM", "SENT", "UPSTREAM"]);
    for expected in [
        [
            "routes[0]",
            "claude-opus-4-8",
            "bedrock-eu",
            "eu.anthropic.claude-opus-4-8",
        ],
        [
            "routes[0]",
            "claude-opus-4-8",
            "vertex",
            "claude-opus-4-8@20260601",
        ],
        [
            "routes[1]",
            "claude-sonnet-4-5-20250929",
            "vertex",
            "claude-sonnet-4-5@20250929",
        ],
    ] {
        assert!(
            rows.iter().any(|r| r[..] == expected[..]),
            "{expected:?} in\n{text}"
        );
    }
}

/// Claude Code's first-party body shape: fields and betas Bedrock and Vertex do not take.
const FIRST_PARTY_BODY: &str = r#"{"model":"claude-opus-4-8","max_tokens":16,"messages":[{"role":"user","content":"hi"}],"context_management":{"edits":[{"type":"clear_thinking_20251015","keep":"all"}]},"output_config":{"effort":"high"},"metadata":{"user_id":"u"}}"#;
const FIRST_PARTY_BETAS: &str = "anthropic-beta: claude-code-20250219,context-management-2025-06-27,effort-2025-11-24,prompt-caching-scope-2026-01-05\r\n";

#[test]
fn fields_and_betas_a_cloud_does_not_take_are_left_out_and_recorded() {
    let mock = strict_mock();
    let gw = gateway_for(
        &mock,
        "[[routes]]\nmodel = \"claude-opus-4-8\"\nupstream = \"bedrock\"\n[[routes]]\nmodel = \"claude-opus-4-7\"\nupstream = \"vertex\"\n",
    );
    let to_vertex = FIRST_PARTY_BODY.replace("claude-opus-4-8", "claude-opus-4-7");
    for body in [FIRST_PARTY_BODY, &to_vertex] {
        let resp = request(gw.addr, &messages_request(body, FIRST_PARTY_BETAS));
        assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    }
    let seen = mock_requests(&mock);
    let bedrock: Value = serde_json::from_str(seen[0]["body"].as_str().unwrap()).unwrap();
    assert!(bedrock.get("context_management").is_none());
    assert_eq!(bedrock["output_config"]["effort"], "high");
    assert_eq!(
        bedrock["anthropic_beta"],
        serde_json::json!(["claude-code-20250219", "effort-2025-11-24"])
    );
    let vertex_betas: Vec<(String, String)> = header_pairs(&seen[1]["headers"])
        .into_iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("anthropic-beta"))
        .collect();
    assert_eq!(vertex_betas.len(), 1);
    assert_eq!(vertex_betas[0].1, "claude-code-20250219,effort-2025-11-24");
    let records = gw.wait_records(2);
    let dropped = serde_json::json!([
        "field:context_management",
        "beta:context-management-2025-06-27",
        "beta:prompt-caching-scope-2026-01-05"
    ]);
    assert_eq!(records[0]["dropped"], dropped);
    assert_eq!(records[1]["dropped"], dropped);
}

#[test]
fn an_upstream_passes_or_drops_more_than_its_default() {
    let mock = strict_mock();
    let config = format!(
        "[[upstreams]]\nname = \"bedrock\"\nprovider = \"bedrock\"\nurl = \"{}\"\nregion = \"eu-west-1\"\napi_key = \"k\"\ninference_profile = \"global\"\ndrop_fields = [\"metadata\"]\ndrop_betas = [\"effort-2025-11-24\"]\n[[routes]]\nmodel = \"*\"\nupstream = \"bedrock\"\n",
        mock.url()
    );
    let gw = gateway("", &config);
    let resp = request(
        gw.addr,
        &messages_request(FIRST_PARTY_BODY, FIRST_PARTY_BETAS),
    );
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let seen = mock_requests(&mock);
    assert_eq!(
        seen[0]["target"],
        "/model/global.anthropic.claude-opus-4-8/invoke"
    );
    let body: Value = serde_json::from_str(seen[0]["body"].as_str().unwrap()).unwrap();
    assert!(body.get("metadata").is_none());
    assert_eq!(
        body["anthropic_beta"],
        serde_json::json!(["claude-code-20250219"])
    );
}

/// Content blocks that must reach every provider untouched: a signed thinking block, redacted
/// thinking, `cache_control` on system, tool, tool use and tool result blocks, a server tool
/// use and its result (shapes from `../shared/captures`).
const MESSAGES: &str = r#"[{"role":"user","content":[{"type":"text","text":"find it","cache_control":{"type":"ephemeral","ttl":"1h"}}]},{"role":"assistant","content":[{"type":"thinking","thinking":"Let me look.","signature":"EqQBCkYIBxgCKkD+/x=="},{"type":"redacted_thinking","data":"EmwKAhgBEgy3\u00e9"},{"type":"server_tool_use","id":"srvtoolu_01","name":"web_search","input":{"query":"sluice"}},{"type":"web_search_tool_result","tool_use_id":"srvtoolu_01","content":[{"type":"web_search_result","url":"https://example.com","title":"x","encrypted_content":"Eu8BCioI","page_age":null}]},{"type":"tool_use","id":"toolu_01","name":"Bash","input":{"command":"ls"},"cache_control":{"type":"ephemeral"}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_01","content":"a\nb","cache_control":{"type":"ephemeral","ttl":"5m"}}]}]"#;
const SYSTEM: &str = r#"[{"type":"text","text":"x-anthropic-billing-header: cc_version=2.1.330; cch=00000;"},{"type":"text","text":"You are Claude Code.","cache_control":{"type":"ephemeral","ttl":"1h"}}]"#;
const TOOLS: &str = r#"[{"name":"Bash","description":"Run","input_schema":{"type":"object","properties":{"command":{"type":"string"}}},"cache_control":{"type":"ephemeral"}}]"#;
const THINKING: &str = r#"{"type":"enabled","budget_tokens":1024}"#;

#[test]
fn content_blocks_reach_every_provider_byte_for_byte() {
    let mock = strict_mock();
    let gw = gateway_for(
        &mock,
        &routes_to(&[
            ("claude-opus-4-8", "anthropic"),
            ("claude-opus-4-7", "bedrock"),
            ("claude-opus-4-6", "vertex"),
        ]),
    );
    let members = format!(
        r#""max_tokens":16,"system":{SYSTEM},"messages":{MESSAGES},"tools":{TOOLS},"thinking":{THINKING}"#
    );
    let mut sent = Vec::new();
    for model in ["claude-opus-4-8", "claude-opus-4-7", "claude-opus-4-6"] {
        // As a Messages client…
        let body = format!(r#"{{"model":"{model}",{members}}}"#);
        sent.push(messages_request(
            &body,
            "anthropic-beta: interleaved-thinking-2025-05-14\r\n",
        ));
        // …as a Bedrock client…
        let body = format!(r#"{{"anthropic_version":"bedrock-2023-05-31",{members}}}"#);
        sent.push(format!(
            "POST /model/us.anthropic.{model}/invoke HTTP/1.1\r\nHost: gw\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
        // …and as a Vertex client.
        let body = format!(r#"{{"anthropic_version":"vertex-2023-10-16",{members}}}"#);
        sent.push(format!(
            "POST /v1/projects/p/locations/us-east5/publishers/anthropic/models/{model}:rawPredict HTTP/1.1\r\nHost: gw\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    }
    for raw in &sent {
        let resp = request(gw.addr, raw);
        assert_eq!(
            resp.status,
            200,
            "{raw}\n{}",
            String::from_utf8_lossy(&resp.body)
        );
    }
    let seen = mock_requests(&mock);
    assert_eq!(seen.len(), sent.len());
    for r in &seen {
        let body = r["body"].as_str().unwrap().as_bytes();
        for (name, raw) in [
            ("messages", MESSAGES),
            ("system", SYSTEM),
            ("tools", TOOLS),
            ("thinking", THINKING),
        ] {
            assert_eq!(
                sluice::json::edit::field(body, name),
                Some(raw.as_bytes()),
                "{name} changed on the way to {}",
                r["target"]
            );
        }
    }
}

/// A Bedrock CountTokens request (as the AWS SDK sends it) for `model`.
fn bedrock_count_request(model: &str) -> String {
    use base64::Engine;
    let invoke = r#"{"anthropic_version":"bedrock-2023-05-31","anthropic_beta":["context-1m-2025-08-07"],"messages":[{"role":"user","content":"count these words"}]}"#;
    let encoded = base64::engine::general_purpose::STANDARD.encode(invoke);
    let body = format!(r#"{{"input":{{"invokeModel":{{"body":"{encoded}"}}}}}}"#);
    format!(
        "POST /model/{model}/count-tokens HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn inner_body(wrapped: &str) -> Value {
    let bytes = sluice::format::count_tokens::invoke_body(wrapped.as_bytes()).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn token_counting_works_against_bedrock_both_ways() {
    let mock = strict_mock();
    let gw = gateway_for(
        &mock,
        &routes_to(&[
            ("claude-opus-4-8", "bedrock"),
            ("claude-opus-4-7", "anthropic"),
            ("claude-opus-4-6", "vertex"),
        ]),
    );
    let count = |raw: &str, key: &str| {
        let resp = request(gw.addr, raw);
        assert_eq!(
            resp.status,
            200,
            "{raw}\n{}",
            String::from_utf8_lossy(&resp.body)
        );
        let json = resp.json();
        assert_eq!(json.as_object().unwrap().len(), 1, "{json}");
        json[key]
            .as_u64()
            .unwrap_or_else(|| panic!("no {key} in {json}"))
    };
    // A Messages client counting on Bedrock (before: 501 not_supported).
    let first_party = r#"{"model":"claude-opus-4-8","messages":[{"role":"user","content":"count these words"}],"context_management":{"edits":[]}}"#;
    let raw = format!(
        "POST /v1/messages/count_tokens?beta=true HTTP/1.1\r\nHost: gw\r\nanthropic-version: 2023-06-01\r\nanthropic-beta: context-management-2025-06-27,context-1m-2025-08-07\r\nContent-Length: {}\r\n\r\n{first_party}",
        first_party.len()
    );
    assert!(count(&raw, "input_tokens") > 0);
    // A Bedrock client counting on Bedrock, on the Messages API and on Vertex.
    for model in [
        "us.anthropic.claude-opus-4-8",
        "us.anthropic.claude-opus-4-7",
        "us.anthropic.claude-opus-4-6-v1",
    ] {
        assert!(count(&bedrock_count_request(model), "inputTokens") > 0);
    }
    let seen = mock_requests(&mock);
    let targets: Vec<&str> = seen.iter().map(|r| r["target"].as_str().unwrap()).collect();
    assert_eq!(
        targets,
        [
            "/model/us.anthropic.claude-opus-4-8/count-tokens",
            "/model/us.anthropic.claude-opus-4-8/count-tokens",
            "/v1/messages/count_tokens",
            "/v1/projects/p/locations/us-east5/publishers/anthropic/models/count-tokens:rawPredict",
        ]
    );
    let translated = inner_body(seen[0]["body"].as_str().unwrap());
    assert_eq!(translated["anthropic_version"], "bedrock-2023-05-31");
    assert_eq!(
        translated["anthropic_beta"],
        serde_json::json!(["context-1m-2025-08-07"])
    );
    assert!(translated.get("model").is_none() && translated.get("context_management").is_none());
    let to_messages: Value = serde_json::from_str(seen[2]["body"].as_str().unwrap()).unwrap();
    assert_eq!(to_messages["model"], "claude-opus-4-7");
    assert!(to_messages.get("anthropic_version").is_none());
    let to_vertex: Value = serde_json::from_str(seen[3]["body"].as_str().unwrap()).unwrap();
    assert_eq!(to_vertex["model"], "claude-opus-4-6");
    assert_eq!(to_vertex["anthropic_version"], "vertex-2023-10-16");
    let records = gw.wait_records(4);
    assert!(records
        .iter()
        .all(|r| r["operation"] == "count_tokens" && r["cost_usd"] == 0.0));
}

#[test]
fn foundry_takes_entra_id_tokens_by_the_client_credentials_grant() {
    let mock = mock(&["--strict", "--entra-client", "app-1:s3cret"]);
    let config = format!(
        "[[upstreams]]\nname = \"foundry\"\nprovider = \"foundry\"\nurl = \"{url}/anthropic\"\nentra_client_id = \"app-1\"\nentra_client_secret_env = \"SLUICE_TEST_ENTRA_SECRET\"\nentra_token_url = \"{url}/token\"\n[[routes]]\nmodel = \"*\"\nupstream = \"foundry\"\n",
        url = mock.url()
    );
    let gw = gateway_env("", &config, &[], &[("SLUICE_TEST_ENTRA_SECRET", "s3cret")]);
    let resp = request(
        gw.addr,
        &messages_request(&body_for("claude-sonnet-4-5-20250929"), ""),
    );
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let seen = mock_requests(&mock);
    let call = seen.iter().find(|r| r["target"] != "/token").unwrap();
    assert_eq!(call["target"], "/anthropic/v1/messages?beta=true");
    assert!(
        call["headers"].to_string().contains("Bearer entra-mock-"),
        "{}",
        call["headers"]
    );
    let body: Value = serde_json::from_str(call["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["model"], "claude-sonnet-4-5", "Foundry's own id");
}

#[test]
fn an_upstream_serves_only_the_models_it_lists() {
    let mock = mock(&["--bedrock-api-key", "bk", "--require-key", "bk"]);
    let config = format!(
        "[[upstreams]]\nname = \"anthropic\"\nurl = \"{url}\"\n[[upstreams]]\nname = \"mantle\"\nprovider = \"mantle\"\nregion = \"us-east-1\"\nurl = \"{url}/anthropic\"\napi_key = \"bk\"\nmodels = [\"claude-opus-5-5\", \"claude-sonnet-5*\"]\n[[routes]]\nmodel = \"only-mantle\"\nupstream = \"mantle\"\nupstream_model = \"claude-opus-5-5\"\n[[routes]]\nmodel = \"*\"\nbalance = \"ordered\"\naffinity = \"none\"\ndeployments = [{{ upstream = \"mantle\" }}, {{ upstream = \"anthropic\" }}]\n",
        url = mock.url()
    );
    let gw = gateway("", &config);
    for model in ["claude-opus-5-5", "claude-haiku-4-5", "only-mantle"] {
        let resp = request(
            gw.addr,
            &messages_request(&body_for(model), "x-api-key: bk\r\n"),
        );
        assert_eq!(
            resp.status,
            200,
            "{model}: {}",
            String::from_utf8_lossy(&resp.body)
        );
    }
    let records = gw.wait_records(3);
    // Workers write their records independently: compare by model, not by order.
    let mut served: Vec<(&str, &str, &str)> = records
        .iter()
        .map(|r| {
            (
                r["model"].as_str().unwrap(),
                r["upstream"].as_str().unwrap(),
                r["upstream_model"].as_str().unwrap_or(""),
            )
        })
        .collect();
    served.sort();
    assert_eq!(
        served,
        [
            ("claude-haiku-4-5", "anthropic", ""),
            ("claude-opus-5-5", "mantle", "anthropic.claude-opus-5-5"),
            ("only-mantle", "mantle", "claude-opus-5-5"),
        ]
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sluice.toml");
    std::fs::write(
        &file,
        format!(
            "{}[[routes]]\nmodel = \"claude-haiku-4-5\"\nupstream = \"mantle\"\n",
            &config[..config.find("[[routes]]").unwrap()]
        ),
    )
    .unwrap();
    let out = sluice(&["check-config", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("routes[0]") && stderr.contains("does not list `claude-haiku-4-5`"),
        "{stderr}"
    );
}

/// The InvokeModel body inside a Bedrock count request is governed like any body: a `model`
/// spelled with escapes (which sluice and the upstream could read differently) is refused, and
/// nothing reaches the upstream. (The build before forwarded it.)
#[test]
fn a_bedrock_count_body_with_an_ambiguous_model_is_refused() {
    use base64::Engine;
    let mock = strict_mock();
    let gw = gateway_for(&mock, &routes_to(&[("claude-opus-4-7", "anthropic")]));
    let invoke = r#"{"anthropic_version":"bedrock-2023-05-31","m\u006fdel":"claude-opus-4-8","messages":[]}"#;
    let encoded = base64::engine::general_purpose::STANDARD.encode(invoke);
    let body = format!(r#"{{"input":{{"invokeModel":{{"body":"{encoded}"}}}}}}"#);
    let raw = format!(
        "POST /model/us.anthropic.claude-opus-4-7/count-tokens HTTP/1.1\r\nHost: gw\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let resp = request(gw.addr, &raw);
    assert_error(&resp, 400, "invalid_request_error");
    assert!(mock_requests(&mock).is_empty());
}
