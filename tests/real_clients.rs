//! Real clients through sluice to the mock upstream: the Claude Code CLI (the latest version
//! we test and an older generation, which differ in warm-up, discovery, body sizes and betas)
//! and the official anthropic Python SDK. The clients are installed by
//! `scripts/install-real-clients` (run here if needed); if that fails, these tests fail loudly.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "integration test: a failure is a failed test"
)]

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

const CLIENT_KEY: &str = "sk-test-123";

/// A gateway with a virtual key for the client and its own key for the upstream.
fn governed_gateway(mock: &Proc) -> Gateway {
    let hash = sluice::config::keys::hash_hex(CLIENT_KEY);
    let config = format!(
        "[[keys]]\nname = \"dev\"\nsha256 = \"{hash}\"\nteam = \"platform\"\n[[upstreams]]\nname = \"anthropic\"\nurl = \"{}\"\napi_key = \"sk-upstream-secret\"\n",
        mock.url()
    );
    gateway("", &config)
}

/// How Claude Code reaches the gateway.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// `ANTHROPIC_BASE_URL` with the virtual key as `ANTHROPIC_API_KEY`.
    FirstParty,
    /// Bedrock format, the virtual key as `AWS_BEARER_TOKEN_BEDROCK`.
    Bedrock,
    /// Vertex format with skipped Google auth, the virtual key in `ANTHROPIC_CUSTOM_HEADERS`.
    Vertex,
    /// Microsoft Foundry mode, the virtual key as `ANTHROPIC_FOUNDRY_API_KEY`.
    Foundry,
    /// Bedrock Mantle mode, the virtual key as `AWS_BEARER_TOKEN_BEDROCK`.
    Mantle,
    /// Claude Platform on AWS, the virtual key as `ANTHROPIC_AWS_API_KEY`.
    AnthropicAws,
    /// Claude Platform on Google Cloud with skipped Google auth, the key in custom headers.
    AnthropicGoogleCloud,
}

fn run_claude_code(version: &str, mode: Mode, gw: &Gateway, extra_env: &[(&str, &str)]) -> Value {
    run_claude_code_at(version, mode, &gw.url(), gw, extra_env)
}

/// Runs Claude Code against `url` (the gateway's plain or HTTPS address).
fn run_claude_code_at(
    version: &str,
    mode: Mode,
    url: &str,
    gw: &Gateway,
    extra_env: &[(&str, &str)],
) -> Value {
    let bin = real_clients().join(format!("claude-code-{version}/node_modules/.bin/claude"));
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(&bin);
    cmd.args(["-p", "echo hello", "--output-format", "json"])
        .current_dir(home.path())
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", home.path())
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_ERROR_REPORTING", "1")
        .env("DISABLE_AUTOUPDATER", "1");
    match mode {
        Mode::FirstParty => cmd
            .env("ANTHROPIC_BASE_URL", url)
            .env("ANTHROPIC_API_KEY", CLIENT_KEY),
        Mode::Bedrock => cmd
            .env("CLAUDE_CODE_USE_BEDROCK", "1")
            .env("ANTHROPIC_BEDROCK_BASE_URL", url)
            .env("AWS_BEARER_TOKEN_BEDROCK", CLIENT_KEY)
            .env("AWS_REGION", "us-east-1"),
        Mode::Foundry => cmd
            .env("CLAUDE_CODE_USE_FOUNDRY", "1")
            .env(
                "ANTHROPIC_FOUNDRY_BASE_URL",
                format!("{url}/foundry/anthropic"),
            )
            .env("ANTHROPIC_FOUNDRY_API_KEY", CLIENT_KEY),
        Mode::Mantle => cmd
            .env("CLAUDE_CODE_USE_MANTLE", "1")
            .env(
                "ANTHROPIC_BEDROCK_MANTLE_BASE_URL",
                format!("{url}/mantle/anthropic"),
            )
            .env(key_var(extra_env, "AWS_BEARER_TOKEN_BEDROCK"), CLIENT_KEY)
            .env("AWS_REGION", "us-east-1"),
        Mode::AnthropicAws => cmd
            .env("CLAUDE_CODE_USE_ANTHROPIC_AWS", "1")
            .env("ANTHROPIC_AWS_BASE_URL", format!("{url}/anthropic-aws"))
            .env(key_var(extra_env, "ANTHROPIC_AWS_API_KEY"), CLIENT_KEY)
            .env("ANTHROPIC_AWS_WORKSPACE_ID", "wrkspc_client")
            .env("AWS_REGION", "us-east-1"),
        Mode::AnthropicGoogleCloud => cmd
            .env("CLAUDE_CODE_USE_ANTHROPIC_GOOGLE_CLOUD", "1")
            .env("CLAUDE_CODE_SKIP_ANTHROPIC_GOOGLE_CLOUD_AUTH", "1")
            .env(
                "ANTHROPIC_GOOGLE_CLOUD_BASE_URL",
                format!("{url}/anthropic-google-cloud"),
            )
            .env("ANTHROPIC_GOOGLE_CLOUD_PROJECT", "p")
            .env("ANTHROPIC_GOOGLE_CLOUD_LOCATION", "us-east5")
            .env("ANTHROPIC_GOOGLE_CLOUD_WORKSPACE_ID", "ws1")
            .env(
                "ANTHROPIC_CUSTOM_HEADERS",
                format!("x-api-key: {CLIENT_KEY}"),
            ),
        Mode::Vertex => cmd
            .env("CLAUDE_CODE_USE_VERTEX", "1")
            .env("CLAUDE_CODE_SKIP_VERTEX_AUTH", "1")
            .env("ANTHROPIC_VERTEX_BASE_URL", format!("{url}/v1"))
            .env("ANTHROPIC_VERTEX_PROJECT_ID", "p")
            .env("CLOUD_ML_REGION", "us-east5")
            .env(
                "ANTHROPIC_CUSTOM_HEADERS",
                format!("x-api-key: {CLIENT_KEY}"),
            ),
    };
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run claude");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "claude {version} ({mode:?}) exited {:?}\nstdout: {stdout}\nstderr: {}\nsluice: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr),
        gw.stderr_text()
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|_| panic!("claude {version} printed {stdout}"))
}

/// The variable a mode's key goes in: `var`, or an unused one when the client signs with AWS keys
/// from `extra_env` instead.
fn key_var(extra_env: &[(&str, &str)], var: &'static str) -> &'static str {
    if extra_env.iter().any(|(k, _)| *k == "AWS_ACCESS_KEY_ID") {
        "SLUICE_TEST_UNUSED_KEY"
    } else {
        var
    }
}

fn check_claude_code(version: &str, mode: Mode, extra_env: &[(&str, &str)], discovery: bool) {
    let mock = mock(&[]);
    let gw = governed_gateway(&mock);
    let result = run_claude_code(version, mode, &gw, extra_env);
    assert_eq!(result["is_error"], false, "{result}");
    assert_eq!(result["result"], "hello");
    let reported = result["total_cost_usd"].as_f64().unwrap();
    // Every request Claude Code made is in the log once its process has exited.
    let messages = wait_for(std::time::Duration::from_secs(10), || {
        let records = gw.records();
        // Claude Code's own total leaves out Bedrock's max_tokens:1 availability probes (sluice
        // records and prices them: they are real upstream spend), so compare the streamed turns.
        let priced: Vec<Value> = records
            .into_iter()
            .filter(|r| r["operation"] == "messages" && r["stream"] == true)
            .collect();
        let sum: f64 = priced.iter().map(|r| r["cost_usd"].as_f64().unwrap()).sum();
        ((sum - reported).abs() < 1e-9).then_some(priced)
    })
    .unwrap_or_else(|| {
        panic!(
            "claude {version} reported ${reported}; sluice recorded {:?}",
            gw.records()
        )
    });
    assert!(!messages.is_empty());
    for r in &messages {
        assert_eq!(r["identity"], "key:dev");
        assert_eq!(r["stream"], true);
        assert_eq!(r["stream_complete"], true);
        assert!(
            r["session_id"].as_str().is_some_and(|s| !s.is_empty()),
            "{r}"
        );
    }
    if discovery {
        let models = gw
            .records()
            .into_iter()
            .find(|r| r["operation"] == "models");
        let models = models.expect("gateway model discovery asked sluice for /v1/models");
        assert_eq!(models["status"], 200);
        assert_eq!(models["identity"], "key:dev");
    }
    let upstream_saw = serde_json::to_string(&mock_requests(&mock)).unwrap();
    assert!(
        !upstream_saw.contains(CLIENT_KEY),
        "the client key reached the upstream"
    );
    assert!(upstream_saw.contains("sk-upstream-secret"));
    assert!(
        upstream_saw.contains("anthropic-beta") && upstream_saw.contains("claude-code-20250219")
    );
}

#[test]
fn claude_code_latest_runs_through_sluice_and_costs_agree() {
    check_claude_code(
        "2.1.330",
        Mode::FirstParty,
        &[("CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY", "1")],
        true,
    );
}

#[test]
fn claude_code_older_generation_runs_through_sluice_and_costs_agree() {
    check_claude_code("2.1.197", Mode::FirstParty, &[], false);
}

#[test]
fn claude_code_with_an_auth_token_runs_through_sluice() {
    let mock = mock(&[]);
    let gw = governed_gateway(&mock);
    // ANTHROPIC_AUTH_TOKEN is sent as Authorization: Bearer.
    let result = run_claude_code(
        "2.1.330",
        Mode::FirstParty,
        &gw,
        &[
            ("ANTHROPIC_AUTH_TOKEN", CLIENT_KEY),
            ("ANTHROPIC_API_KEY", ""),
        ],
    );
    assert_eq!(result["is_error"], false, "{result}");
}

#[test]
fn claude_code_latest_in_bedrock_mode() {
    check_claude_code("2.1.330", Mode::Bedrock, &[], false);
}

#[test]
fn claude_code_older_generation_in_bedrock_mode() {
    check_claude_code("2.1.197", Mode::Bedrock, &[], false);
}

#[test]
fn claude_code_latest_in_vertex_mode() {
    check_claude_code("2.1.330", Mode::Vertex, &[], false);
}

#[test]
fn claude_code_older_generation_in_vertex_mode() {
    check_claude_code("2.1.197", Mode::Vertex, &[], false);
}

#[test]
fn python_sdk_bedrock_and_vertex_clients_succeed_through_sluice() {
    let mock = mock(&[]);
    // Open access: the SigV4-signing Bedrock client has no virtual key to present.
    let gw = gateway_with(
        &mock.url(),
        "",
        &["--upstream-api-key", "sk-upstream-secret"],
    );
    let python = real_clients().join("venv/bin/python");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/sdk_cloud.py");
    let out = Command::new(python)
        .arg(script)
        .arg(gw.url())
        .arg("sk-bearer")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "SDK script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    for call in ["bedrock_sigv4", "bedrock_stream", "vertex", "vertex_stream"] {
        assert_eq!(got[call]["text"], "hello", "{call}: {got}");
    }
    let events: Vec<&str> = got["bedrock_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(
        (events.first(), events.last()),
        (Some(&"message_start"), Some(&"message_stop"))
    );
    assert!(got["vertex_count_tokens"].as_u64().unwrap() > 0);
    let records = gw.wait_records(6);
    let bedrock_stream = records
        .iter()
        .find(|r| r["format"] == "bedrock" && r["stream"] == true)
        .unwrap();
    assert_eq!(
        bedrock_stream["input_tokens"],
        got["bedrock_stream"]["input"]
    );
    assert_eq!(
        bedrock_stream["output_tokens"],
        got["bedrock_stream"]["output"]
    );
    assert!(records.iter().all(|r| r["status"] == 200), "{records:?}");
    let upstream_saw = serde_json::to_string(&mock_requests(&mock)).unwrap();
    assert!(!upstream_saw.contains("AKIDLABEXAMPLE000000") && !upstream_saw.contains("sk-bearer"));
}

/// Runs `tests/clients/sdk_first_party.py` against `gw` and returns what it printed.
fn run_first_party_sdk_script(gw: &Gateway) -> Value {
    let python = real_clients().join("venv/bin/python");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/sdk_first_party.py");
    let out = Command::new(python)
        .arg(script)
        .arg(gw.url())
        .arg(CLIENT_KEY)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "SDK script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn python_sdk_calls_succeed_through_sluice() {
    let mock = mock(&[]);
    let gw = governed_gateway(&mock);
    let got = run_first_party_sdk_script(&gw);
    assert_eq!(got["create"]["text"], "hello");
    assert_eq!(got["stream"]["text"], "hello");
    assert_eq!(got["beta"], "hello");
    assert_eq!(got["bad_key"], "authentication_error");
    let events: Vec<&str> = got["raw_stream_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(events.first(), Some(&"message_start"));
    assert_eq!(events.last(), Some(&"message_stop"));
    assert!(got["count_tokens"].as_u64().unwrap() > 0);
    assert!(got["models"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m == "claude-opus-4-8"));
    let records = gw.wait_records(7);
    let create = records
        .iter()
        .find(|r| r["model"] == "claude-haiku-4-5" && r["stream"] == false)
        .unwrap();
    assert_eq!(create["input_tokens"], got["create"]["input"]);
    assert_eq!(create["output_tokens"], got["create"]["output"]);
    let stream = records
        .iter()
        .find(|r| r["model"] == "claude-opus-4-8" && r["stream"] == true)
        .unwrap();
    assert_eq!(stream["input_tokens"], got["stream"]["input"]);
    assert!(stream["cost_usd"].as_f64().unwrap() > 0.0);
}

#[test]
fn claude_code_reaches_a_bedrock_upstream_through_sluice() {
    let mock = mock(&[
        "--aws-access-key",
        "AKIDSLUICETEST000000",
        "--aws-secret-key",
        "sluice-test-secret",
    ]);
    let hash = sluice::config::keys::hash_hex(CLIENT_KEY);
    let config = format!(
        "[[keys]]\nname = \"dev\"\nsha256 = \"{hash}\"\n[[upstreams]]\nname = \"bedrock\"\nprovider = \"bedrock\"\nregion = \"us-east-1\"\nurl = \"{}\"\naws_access_key_id = \"AKIDSLUICETEST000000\"\naws_secret_access_key = \"sluice-test-secret\"\n[[routes]]\nmodel = \"claude-*\"\ndeployments = [{{ upstream = \"bedrock\", upstream_model = \"us.anthropic.claude-opus-4-8-v1\" }}]\n",
        mock.url()
    );
    let gw = gateway("", &config);
    let result = run_claude_code("2.1.330", Mode::FirstParty, &gw, &[]);
    assert_eq!(result["is_error"], false, "{result}");
    assert_eq!(result["result"], "hello");
    // Claude Code prices the model it asked for (Opus 5.5); sluice charges the model the route
    // served (Opus 4.8 on Bedrock: $5 / $25 per MTok), so an alias never costs less than it
    // serves. Both price the same token counts.
    let reported = result["total_cost_usd"].as_f64().unwrap();
    let streamed = |r: &&serde_json::Value| r["operation"] == "messages" && r["stream"] == true;
    let records = wait_for(std::time::Duration::from_secs(10), || {
        let records = gw.records();
        records.iter().any(|r| streamed(&r)).then_some(records)
    })
    .unwrap();
    let (mut recorded, mut served_price, mut asked_price) = (0.0, 0.0, 0.0);
    for r in records.iter().filter(streamed) {
        let (input, output) = (
            r["input_tokens"].as_f64().unwrap(),
            r["output_tokens"].as_f64().unwrap(),
        );
        recorded += r["cost_usd"].as_f64().unwrap();
        served_price += (input * 5.0 + output * 25.0) / 1e6;
        asked_price += (input * 4.0 + output * 20.0) / 1e6;
    }
    assert!(
        (recorded - served_price).abs() < 1e-9,
        "sluice recorded ${recorded}, the served model's price is ${served_price}: {records:?}"
    );
    assert!(
        (reported - asked_price).abs() < 1e-9,
        "claude reported ${reported}, the asked model's price is ${asked_price}"
    );
    let upstream_saw = mock_requests(&mock);
    assert!(upstream_saw.iter().all(|r| r["target"]
        .as_str()
        .unwrap()
        .starts_with("/model/us.anthropic.claude-opus-4-8-v1/")));
    assert!(upstream_saw.iter().all(|r| r["body"]
        .as_str()
        .unwrap()
        .starts_with("{\"anthropic_version\":\"bedrock-2023-05-31\"")));
}

/// First-party Claude Code through sluice to a Bedrock and to a Vertex upstream, with no
/// `upstream_model` anywhere: sluice sends each provider its own model id and leaves out the
/// first-party fields and betas the provider refuses. The mock is strict, as the clouds are (the
/// build before provider ids sent `/model/claude-opus-5-5/…`, which it refuses).
#[test]
fn claude_code_first_party_reaches_bedrock_and_vertex_under_their_ids() {
    for (provider, extra, prefix) in [
        (
            "bedrock",
            "region = \"us-east-1\"\napi_key = \"k\"\n",
            "/model/us.anthropic.claude-",
        ),
        (
            "vertex",
            "project = \"p\"\nregion = \"us-east5\"\napi_key = \"t\"\n",
            "/v1/projects/p/locations/us-east5/publishers/anthropic/models/claude-",
        ),
    ] {
        let mock = mock(&["--strict"]);
        let hash = sluice::config::keys::hash_hex(CLIENT_KEY);
        let config = format!(
            "[[keys]]\nname = \"dev\"\nsha256 = \"{hash}\"\n[[upstreams]]\nname = \"cloud\"\nprovider = \"{provider}\"\nurl = \"{}\"\n{extra}[[routes]]\nmodel = \"*\"\nupstream = \"cloud\"\n",
            mock.url()
        );
        let gw = gateway("", &config);
        let result = run_claude_code("2.1.330", Mode::FirstParty, &gw, &[]);
        assert_eq!(result["is_error"], false, "{provider}: {result}");
        assert_eq!(result["result"], "hello");
        let seen = mock_requests(&mock);
        assert!(!seen.is_empty());
        for r in &seen {
            let target = r["target"].as_str().unwrap();
            assert!(target.starts_with(prefix), "{provider}: {target}");
        }
        let records = gw.wait_records(seen.len());
        assert!(
            records.iter().any(|r| r["dropped"]
                .to_string()
                .contains("field:context_management")),
            "{provider}: {records:?}"
        );
    }
}

/// A gateway with a gateway-issued AWS key pair (and the usual virtual key).
fn sigv4_gateway(mock: &Proc) -> Gateway {
    let hash = sluice::config::keys::hash_hex(CLIENT_KEY);
    let config = format!(
        "[[keys]]\nname = \"dev\"\nsha256 = \"{hash}\"\n[[aws_keys]]\nname = \"aws-dev\"\naccess_key_id = \"AKIDSLUICEISSUED0001\"\nsecret_access_key = \"sluice-issued/secret\"\nteam = \"platform\"\n[[upstreams]]\nname = \"anthropic\"\nurl = \"{}\"\napi_key = \"sk-upstream-secret\"\n",
        mock.url()
    );
    gateway("", &config)
}

#[test]
fn the_python_sdk_signs_with_a_sluice_issued_aws_key() {
    let mock = mock(&[]);
    let gw = sigv4_gateway(&mock);
    let python = real_clients().join("venv/bin/python");
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/sdk_bedrock_sigv4.py");
    let out = Command::new(python)
        .arg(script)
        .args([
            gw.url().as_str(),
            "AKIDSLUICEISSUED0001",
            "sluice-issued/secret",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "SDK script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["create"], "hello");
    assert_eq!(got["stream"], "hello");
    assert_eq!(got["bad_secret"], "401");
    let records = gw.wait_records(3);
    assert_eq!(
        records
            .iter()
            .filter(|r| r["identity"] == "key:aws-dev" && r["status"] == 200)
            .count(),
        2
    );
    assert!(records.iter().any(|r| r["status"] == 401));
    assert!(!serde_json::to_string(&mock_requests(&mock))
        .unwrap()
        .contains("AKIDSLUICEISSUED0001"));
}

#[test]
fn claude_code_in_bedrock_mode_signs_with_a_sluice_issued_aws_key() {
    let mock = mock(&[]);
    let gw = sigv4_gateway(&mock);
    let result = run_claude_code(
        "2.1.330",
        Mode::Bedrock,
        &gw,
        &[
            ("AWS_BEARER_TOKEN_BEDROCK", ""),
            ("AWS_ACCESS_KEY_ID", "AKIDSLUICEISSUED0001"),
            ("AWS_SECRET_ACCESS_KEY", "sluice-issued/secret"),
        ],
    );
    assert_eq!(result["is_error"], false, "{result}");
    let records = gw.records();
    let streamed = records
        .iter()
        .find(|r| r["stream"] == true)
        .expect("a streamed turn");
    assert_eq!(streamed["identity"], "key:aws-dev");
    assert_eq!(streamed["status"], 200);
}

/// Scrapes `/metrics` and parses it with prometheus_client's own parser: one JSON per sample.
fn scrape_and_parse(gw: &Gateway) -> Vec<Value> {
    let resp = request(gw.addr, "GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n");
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let python = real_clients().join("venv/bin/python");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/parse_metrics.py");
    let mut child = Command::new(python)
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &resp.body).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser rejected /metrics: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&resp.body)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Sum of the samples named `name` whose labels include every pair in `labels`.
fn sum_samples(samples: &[Value], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s["name"] == name)
        .filter(|s| labels.iter().all(|(k, v)| s["labels"][*k] == *v))
        .map(|s| s["value"].as_f64().unwrap())
        .sum()
}

#[test]
fn prometheus_parses_metrics_that_match_the_access_log() {
    let mock = mock(&[]);
    let gw = governed_gateway(&mock);
    run_first_party_sdk_script(&gw);
    gw.wait_records(7);
    // Counters are published by the record writer every 200 ms: scrape until they caught up.
    let proxied = |records: &[Value]| {
        records
            .iter()
            .filter(|r| r["operation"] != "metrics")
            .cloned()
            .collect::<Vec<Value>>()
    };
    let (records, samples) = wait_for(Duration::from_secs(10), || {
        let records = proxied(&gw.records());
        let samples = scrape_and_parse(&gw);
        let counted = sum_samples(&samples, "sluice_requests_total", &[])
            - sum_samples(
                &samples,
                "sluice_requests_total",
                &[("operation", "metrics")],
            );
        (counted as usize == records.len()).then_some((records, samples))
    })
    .expect("/metrics catches up with the access log");
    let ok_messages = records
        .iter()
        .filter(|r| r["operation"] == "messages" && r["status"] == 200)
        .count();
    assert_eq!(
        sum_samples(
            &samples,
            "sluice_requests_total",
            &[("operation", "messages"), ("status", "200")]
        ) as usize,
        ok_messages
    );
    assert!(
        sum_samples(
            &samples,
            "sluice_rejections_total",
            &[("reason", "unauthorized")]
        ) >= 1.0
    );
    let input: u64 = records
        .iter()
        .filter(|r| r["model"] == "claude-haiku-4-5" && r["upstream"].is_string())
        .map(|r| r["input_tokens"].as_u64().unwrap())
        .sum();
    assert!(input > 0);
    let labels = [
        ("model", "claude-haiku-4-5"),
        ("team", "platform"),
        ("kind", "input"),
    ];
    assert_eq!(
        sum_samples(&samples, "sluice_tokens_total", &labels) as u64,
        input
    );
    let cost: f64 = records
        .iter()
        .map(|r| r["cost_usd"].as_f64().unwrap())
        .sum();
    assert!((sum_samples(&samples, "sluice_cost_usd_total", &[]) - cost).abs() < 1e-9);
    let forwarded = records.iter().filter(|r| r["upstream"].is_string()).count();
    assert_eq!(
        sum_samples(&samples, "sluice_added_latency_seconds_count", &[]) as usize,
        forwarded
    );
    assert_eq!(
        sum_samples(
            &samples,
            "sluice_added_latency_seconds_bucket",
            &[("le", "+Inf")]
        ) as usize,
        forwarded
    );
    assert_eq!(sum_samples(&samples, "sluice_ledger_healthy", &[]), 1.0);
    assert!(samples
        .iter()
        .any(|s| s["name"] == "sluice_store_queue_depth" && s["labels"]["store"] == "recorder"));
}

/// An HTTPS gateway serving a test CA's certificate for `localhost`, with `config` (keys,
/// upstreams) and `tls_extra` lines in `[server.tls]`; its `https://` URL.
fn https_gateway(pki: &common::pki::Pki, tls_extra: &str, config: &str) -> (Gateway, String) {
    let cert = pki.server(&["localhost"], 90);
    let gw = gateway(
        "",
        &format!("{}{config}", common::pki::tls_config(&cert, tls_extra)),
    );
    let url = format!("https://localhost:{}", gw.tls_addr.unwrap().port());
    (gw, url)
}

fn governed_config(mock: &Proc) -> String {
    format!(
        "[[keys]]\nname = \"dev\"\nsha256 = \"{}\"\nteam = \"platform\"\n[[upstreams]]\nname = \"anthropic\"\nurl = \"{}\"\napi_key = \"sk-upstream-secret\"\n",
        sluice::config::keys::hash_hex(CLIENT_KEY),
        mock.url()
    )
}

/// Claude Code reaches sluice at `https://…` in all three formats, trusting the test CA through
/// `NODE_EXTRA_CA_CERTS`; every call is governed by the key and reaches the upstream.
fn check_claude_code_over_https(version: &str) {
    let pki = common::pki::Pki::new("claude-code");
    let mock = mock(&[]);
    let (gw, url) = https_gateway(&pki, "", &governed_config(&mock));
    let ca = pki.ca_file.to_str().unwrap().to_string();
    for mode in [Mode::FirstParty, Mode::Bedrock, Mode::Vertex] {
        let result = run_claude_code_at(version, mode, &url, &gw, &[("NODE_EXTRA_CA_CERTS", &ca)]);
        assert_eq!(result["is_error"], false, "{mode:?}: {result}");
        assert_eq!(result["result"], "hello", "{mode:?}");
    }
    let records = wait_for(Duration::from_secs(10), || {
        let r = gw.records();
        let formats: std::collections::HashSet<String> = r
            .iter()
            .filter(|r| r["operation"] == "messages" && r["status"] == 200)
            .map(|r| r["format"].as_str().unwrap_or_default().to_string())
            .collect();
        (formats.len() == 3).then_some(r)
    })
    .unwrap_or_else(|| panic!("three formats over HTTPS: {:?}", gw.records()));
    assert!(records
        .iter()
        .filter(|r| r["operation"] == "messages")
        .all(|r| r["identity"] == "key:dev"));
    assert_eq!(
        gw.stderr_text().matches("TLS handshake failed").count(),
        0,
        "{}",
        gw.stderr_text()
    );
    let upstream_saw = serde_json::to_string(&mock_requests(&mock)).unwrap();
    assert!(!upstream_saw.contains(CLIENT_KEY));
}

#[test]
fn claude_code_latest_over_https_in_every_format() {
    check_claude_code_over_https("2.1.330");
}

#[test]
fn claude_code_older_generation_over_https_in_every_format() {
    check_claude_code_over_https("2.1.197");
}

/// Claude Code presents a client certificate (`CLAUDE_CODE_CLIENT_CERT` / `_KEY`) that sluice
/// requires and maps to a user and team: in Vertex mode with Google auth skipped it sends no
/// credential at all, so the certificate is the identity.
#[test]
fn claude_code_with_a_client_certificate_as_its_identity() {
    let pki = common::pki::Pki::new("claude-code-mtls");
    let mock = mock(&[]);
    let tls_extra = format!(
        "client_auth = \"required\"\nclient_ca_file = \"{}\"\n[[server.tls.client_identities]]\nname = \"*@example.com\"\nteam = \"eng\"\n",
        pki.ca_file.display()
    );
    let (gw, url) = https_gateway(&pki, &tls_extra, &governed_config(&mock));
    let alice = pki.client("alice@example.com", "Alice");
    let (ca, cert, key) = (
        pki.ca_file.to_str().unwrap().to_string(),
        alice.cert.to_str().unwrap().to_string(),
        alice.key.to_str().unwrap().to_string(),
    );
    for version in ["2.1.330", "2.1.197"] {
        let result = run_claude_code_at(
            version,
            Mode::Vertex,
            &url,
            &gw,
            &[
                ("NODE_EXTRA_CA_CERTS", &ca),
                ("CLAUDE_CODE_CLIENT_CERT", &cert),
                ("CLAUDE_CODE_CLIENT_KEY", &key),
                ("ANTHROPIC_CUSTOM_HEADERS", ""),
            ],
        );
        assert_eq!(result["is_error"], false, "{version}: {result}");
        assert_eq!(result["result"], "hello");
    }
    let records = gw.wait_records(2);
    let turns: Vec<&Value> = records
        .iter()
        .filter(|r| r["operation"] == "messages")
        .collect();
    assert!(!turns.is_empty());
    for r in turns {
        assert_eq!(r["identity"], "cert:alice@example.com", "{r}");
        assert_eq!(r["user"], "alice@example.com");
        assert_eq!(r["team"], "eng");
        assert_eq!(r["status"], 200);
    }
}

/// The anthropic SDK's three clients over `https://`, trusting the test CA via `SSL_CERT_FILE`.
#[test]
fn python_sdk_clients_over_https() {
    let pki = common::pki::Pki::new("sdk");
    let mock = mock(&[]);
    let python = real_clients().join("venv/bin/python");
    let ca = pki.ca_file.to_str().unwrap().to_string();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // First party, with the virtual key.
    let (gw, url) = https_gateway(&pki, "", &governed_config(&mock));
    let out = Command::new(&python)
        .arg(root.join("tests/clients/sdk_first_party.py"))
        .arg(&url)
        .arg(CLIENT_KEY)
        .env("SSL_CERT_FILE", &ca)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "SDK over HTTPS: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["create"]["text"], "hello");
    assert_eq!(got["stream"]["text"], "hello");
    assert_eq!(got["bad_key"], "authentication_error");
    let records = gw.wait_records(7);
    assert!(records
        .iter()
        .filter(|r| r["status"] == 200)
        .all(|r| r["identity"] == "key:dev"));
    // Bedrock (SigV4 and bearer) and Vertex, open access with the upstream's key.
    let open = format!(
        "[[upstreams]]\nname = \"anthropic\"\nurl = \"{}\"\napi_key = \"sk-upstream-secret\"\n",
        mock.url()
    );
    let (cloud_gw, cloud_url) = https_gateway(&pki, "", &open);
    let out = Command::new(&python)
        .arg(root.join("tests/clients/sdk_cloud.py"))
        .arg(&cloud_url)
        .arg("sk-bearer")
        .env("SSL_CERT_FILE", &ca)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "SDK cloud clients over HTTPS: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    for call in ["bedrock_sigv4", "bedrock_stream", "vertex", "vertex_stream"] {
        assert_eq!(got[call]["text"], "hello", "{call}: {got}");
    }
    let records = cloud_gw.wait_records(6);
    assert!(records.iter().all(|r| r["status"] == 200), "{records:?}");
    // Without trusting the CA, the SDK refuses the certificate.
    let out = Command::new(&python)
        .arg(root.join("tests/clients/sdk_first_party.py"))
        .arg(&url)
        .arg(CLIENT_KEY)
        .env_remove("SSL_CERT_FILE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("CERTIFICATE_VERIFY_FAILED")
            || String::from_utf8_lossy(&out.stderr).contains("APIConnectionError"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The model catalog Claude Code 2.1.330 prices its own usage with (its `pricing_tiers` and each
/// model's tier and provider ids), read from the installed CLI once and evaluated by node into
/// JSON.
fn claude_code_catalog() -> &'static Value {
    static CATALOG: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    CATALOG.get_or_init(read_claude_code_catalog)
}

fn read_claude_code_catalog() -> Value {
    use std::io::{Read, Seek};
    let bin = real_clients()
        .join("claude-code-2.1.330/node_modules/@anthropic-ai/claude-code/bin/claude.exe");
    let marker = "{\"//\":\"Hand-maintained baked-in model catalog";
    // grep finds the catalog in the 380 MB binary far faster than a debug-built scan.
    let found = Command::new("grep")
        .args(["-m1", "-boaF", marker])
        .arg(&bin)
        .output()
        .expect("run grep");
    let text = String::from_utf8_lossy(&found.stdout);
    let offset: u64 = text
        .split(':')
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no model catalog in {}", bin.display()));
    let mut file = std::fs::File::open(&bin).unwrap();
    file.seek(std::io::SeekFrom::Start(offset)).unwrap();
    let mut rest = vec![0u8; 512 * 1024];
    let n = file.read(&mut rest).unwrap();
    let literal = balanced_object(&rest[..n]);
    let out = Command::new("node")
        .args(["-e", "process.stdout.write(JSON.stringify(eval('(' + require('fs').readFileSync(0, 'utf8') + ')')))"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(literal.as_bytes())?;
            child.wait_with_output()
        })
        .expect("node evaluates the catalog");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The object literal at the start of `bytes` (braces counted outside strings).
fn balanced_object(bytes: &[u8]) -> String {
    let (mut depth, mut quote, mut escaped) = (0usize, None::<u8>, false);
    for (i, &b) in bytes.iter().enumerate() {
        match (quote, b) {
            (Some(_), _) if escaped => escaped = false,
            (Some(_), b'\\') => escaped = true,
            (Some(q), _) if b == q => quote = None,
            (Some(_), _) => {}
            (None, b'"' | b'\'' | b'`') => quote = Some(b),
            (None, b'{') => depth += 1,
            (None, b'}') => {
                depth -= 1;
                if depth == 0 {
                    return String::from_utf8_lossy(&bytes[..=i]).into_owned();
                }
            }
            _ => {}
        }
    }
    panic!("the catalog literal does not end");
}

#[test]
fn sluice_prices_every_model_as_claude_codes_published_catalog() {
    let catalog = claude_code_catalog();
    let tiers = &catalog["pricing_tiers"];
    let table = sluice::usage::pricing::PriceTable::default();
    let pico = |usd: &Value| (usd.as_f64().unwrap() * 1e6).round() as u64;
    let mut checked = 0;
    for model in catalog["models"].as_array().unwrap() {
        let id = model["provider_ids"]["first_party"].as_str().unwrap();
        let tier = &tiers[model["pricing"].as_str().unwrap()];
        let entry = table
            .lookup(id)
            .unwrap_or_else(|| panic!("sluice has no price for {id}"));
        let ours = [
            ("input", entry.price.input),
            ("output", entry.price.output),
            ("cache_write_5m", entry.price.cache_write_5m),
            ("cache_write_1h", entry.price.cache_write_1h),
            ("cache_read", entry.price.cache_read),
        ];
        for (name, price) in ours {
            assert_eq!(price, pico(&tier[name]), "{id} {name}");
        }
        match (&tier["long_prompt"], entry.long_prompt) {
            (Value::Null, None) => {}
            (long, Some((threshold, price))) if !long.is_null() => {
                assert_eq!(
                    threshold,
                    long["above_prompt_tokens"].as_u64().unwrap(),
                    "{id}"
                );
                let ours = [
                    ("input", price.input),
                    ("output", price.output),
                    ("cache_write_5m", price.cache_write_5m),
                    ("cache_write_1h", price.cache_write_1h),
                    ("cache_read", price.cache_read),
                ];
                for (name, price) in ours {
                    assert_eq!(price, pico(&long[name]), "{id} long-prompt {name}");
                }
            }
            (long, ours) => panic!("{id}: catalog long_prompt {long}, sluice {ours:?}"),
        }
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} models in the catalog");
}

#[test]
fn sluice_derives_the_provider_ids_claude_codes_catalog_publishes() {
    use sluice::provider::model_ids::{provider_id, Cloud, Overrides};
    let catalog = claude_code_catalog();
    for model in catalog["models"].as_array().unwrap() {
        let ids = &model["provider_ids"];
        let first_party = ids["first_party"].as_str().unwrap();
        let clouds = [
            (Cloud::Bedrock, "bedrock"),
            (Cloud::Vertex, "vertex"),
            (Cloud::Foundry, "foundry"),
            (Cloud::Mantle, "mantle"),
            (Cloud::AnthropicAws, "anthropic_aws"),
            (Cloud::AnthropicGoogleCloud, "anthropic_google_cloud"),
        ];
        for name in [first_party, model["id"].as_str().unwrap()] {
            for (cloud, column) in clouds {
                let profile = (cloud == Cloud::Bedrock).then_some("us");
                let ours = provider_id(name, cloud, profile, &Overrides::new());
                assert_eq!(
                    ours.ok().as_deref(),
                    ids[column].as_str(),
                    "{name} on {column}"
                );
            }
        }
    }
}

/// The real CLI in each of the four newer modes (Foundry, Bedrock Mantle, Claude Platform on
/// AWS and on Google Cloud) through sluice to a first-party upstream that refuses cloud model ids
/// as the API does: each reaches `/v1/messages` with its mode's path prefix taken off, a first-
/// party model id, sluice's credential and no client workspace; Mantle's availability probe is
/// answered by sluice. (The build before sent Mantle's `anthropic.claude-opus-5-5` upstream,
/// which the API refuses, and did not know the prefixed paths.)
#[test]
fn claude_code_in_every_newer_mode_reaches_a_first_party_upstream() {
    let mock = mock(&["--strict", "--require-key", "sk-upstream-secret"]);
    let gw = governed_gateway(&mock);
    for mode in [
        Mode::Foundry,
        Mode::Mantle,
        Mode::AnthropicAws,
        Mode::AnthropicGoogleCloud,
    ] {
        let result = run_claude_code("2.1.330", mode, &gw, &[]);
        assert_eq!(result["is_error"], false, "{mode:?}: {result}");
        assert_eq!(result["result"], "hello", "{mode:?}");
        let seen = mock_requests(&mock);
        assert!(!seen.is_empty(), "{mode:?}");
        for r in &seen {
            assert!(
                r["target"].as_str().unwrap().starts_with("/v1/messages"),
                "{mode:?}: {}",
                r["target"]
            );
            let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
            let model = body["model"].as_str().unwrap();
            assert!(model.starts_with("claude-"), "{mode:?}: {model}");
            let headers = r["headers"].to_string().to_ascii_lowercase();
            assert!(
                !headers.contains("anthropic-workspace-id"),
                "{mode:?}: {headers}"
            );
        }
        reset_mock(&mock);
    }
    let records = gw.records();
    let probes: Vec<&Value> = records
        .iter()
        .filter(|r| r["upstream"].is_null() && r["status"] == 200 && r["operation"] == "messages")
        .collect();
    assert!(
        !probes.is_empty(),
        "Mantle's probe is answered by sluice: {records:?}"
    );
}

const AWS_KEY_ID: &str = "AKIDSLUICEUPSTREAM00";
const AWS_SECRET: &str = "sluice/upstream/secret";

/// One newer provider kind for the egress test: its mock's checks, the upstream's config, the
/// path the provider serves and the model id prefix it uses.
struct NewProvider {
    mock_args: Vec<String>,
    upstream: String,
    path: &'static str,
    model_prefix: &'static str,
}

fn new_providers(name: &str) -> NewProvider {
    let aws = |service: &str| {
        vec![
            "--aws-access-key".to_string(),
            AWS_KEY_ID.into(),
            "--aws-secret-key".into(),
            AWS_SECRET.into(),
            "--sigv4-service".into(),
            service.into(),
        ]
    };
    let aws_keys =
        format!("aws_access_key_id = \"{AWS_KEY_ID}\"\naws_secret_access_key = \"{AWS_SECRET}\"\n");
    match name {
        "foundry" => NewProvider {
            mock_args: vec!["--strict".into(), "--require-key".into(), "fk-upstream".into()],
            upstream: "provider = \"foundry\"\napi_key = \"fk-upstream\"\n".into(),
            path: "/anthropic/v1/messages",
            model_prefix: "claude-",
        },
        "mantle" => NewProvider {
            mock_args: aws("bedrock-mantle"),
            upstream: format!("provider = \"mantle\"\nregion = \"us-east-1\"\n{aws_keys}"),
            path: "/anthropic/v1/messages",
            model_prefix: "anthropic.claude-",
        },
        "anthropic_aws" => NewProvider {
            mock_args: [
                vec!["--strict".to_string()],
                aws("aws-external-anthropic"),
                vec!["--require-header".into(), "anthropic-workspace-id:wrkspc_up".into()],
            ]
            .concat(),
            upstream: format!("provider = \"anthropic_aws\"\nregion = \"us-east-1\"\nworkspace_id = \"wrkspc_up\"\n{aws_keys}"),
            path: "/v1/messages",
            model_prefix: "claude-",
        },
        _ => NewProvider {
            mock_args: vec!["--strict".into(), "--vertex-token".into(), "ya29.upstream".into()],
            upstream: "provider = \"anthropic_google_cloud\"\nproject = \"p\"\nregion = \"us-east5\"\nworkspace_id = \"ws1\"\napi_key = \"ya29.upstream\"\n".into(),
            path: "/v1/projects/p/locations/us-east5/workspaces/ws1/invoke/v1/messages",
            model_prefix: "claude-",
        },
    }
}

/// First-party Claude Code through sluice to each newer provider kind: Foundry (key), Bedrock
/// Mantle (SigV4 `bedrock-mantle`, `anthropic.` ids), Claude Platform on AWS (SigV4
/// `aws-external-anthropic` and its workspace) and on Google Cloud (a Google token, the
/// workspace path); the mock checks each credential and path as the provider does.
#[test]
fn claude_code_reaches_every_newer_provider_kind_through_sluice() {
    let hash = sluice::config::keys::hash_hex(CLIENT_KEY);
    for name in [
        "foundry",
        "mantle",
        "anthropic_aws",
        "anthropic_google_cloud",
    ] {
        let p = new_providers(name);
        let args: Vec<&str> = p.mock_args.iter().map(String::as_str).collect();
        let mock = mock(&args);
        let base = p.path.strip_suffix("/v1/messages").unwrap_or_default();
        let config = format!(
            "[[keys]]\nname = \"dev\"\nsha256 = \"{hash}\"\n[[upstreams]]\nname = \"{name}\"\nurl = \"{}{base}\"\n{}[[routes]]\nmodel = \"*\"\nupstream = \"{name}\"\n",
            mock.url(),
            p.upstream
        );
        let gw = gateway("", &config);
        let result = run_claude_code("2.1.330", Mode::FirstParty, &gw, &[]);
        assert_eq!(result["is_error"], false, "{name}: {result}");
        assert_eq!(result["result"], "hello", "{name}");
        let seen = mock_requests(&mock);
        assert!(!seen.is_empty(), "{name}");
        for r in &seen {
            let target = r["target"].as_str().unwrap();
            assert!(target.starts_with(p.path), "{name}: {target}");
            let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
            let model = body["model"].as_str().unwrap();
            assert!(model.starts_with(p.model_prefix), "{name}: {model}");
        }
    }
}

/// A route across providers: Foundry first, failing; the request falls back to Bedrock Mantle.
#[test]
fn a_route_falls_back_from_foundry_to_mantle() {
    let foundry = mock(&["--always-status", "503"]);
    let mantle = mock(&[
        "--bedrock-api-key",
        "bedrock-key-up",
        "--require-key",
        "bedrock-key-up",
    ]);
    let hash = sluice::config::keys::hash_hex(CLIENT_KEY);
    let config = format!(
        "[[keys]]\nname = \"dev\"\nsha256 = \"{hash}\"\n[[upstreams]]\nname = \"foundry\"\nprovider = \"foundry\"\nurl = \"{}/anthropic\"\napi_key = \"fk\"\n[[upstreams]]\nname = \"mantle\"\nprovider = \"mantle\"\nregion = \"us-east-1\"\nurl = \"{}/anthropic\"\napi_key = \"bedrock-key-up\"\n[[routes]]\nmodel = \"*\"\nbalance = \"ordered\"\naffinity = \"none\"\ndeployments = [{{ upstream = \"foundry\" }}, {{ upstream = \"mantle\" }}]\n",
        foundry.url(),
        mantle.url()
    );
    let gw = gateway("", &config);
    let result = run_claude_code("2.1.330", Mode::FirstParty, &gw, &[]);
    assert_eq!(result["is_error"], false, "{result}");
    let records = gw.records();
    let served = records
        .iter()
        .find(|r| r["operation"] == "messages" && r["status"] == 200)
        .unwrap_or_else(|| panic!("{records:?}"));
    assert_eq!(served["upstream"], "mantle");
    assert!(
        served["fallbacks"].to_string().contains("foundry"),
        "{served}"
    );
    assert!(served["upstream_model"]
        .as_str()
        .unwrap()
        .starts_with("anthropic.claude-"));
    let seen = mock_requests(&mantle);
    assert!(seen
        .iter()
        .all(|r| r["headers"].to_string().contains("Bearer bedrock-key-up")));
}

/// Claude Code in Mantle and in Claude Platform on AWS mode signing with a sluice-issued AWS key
/// pair (SigV4 as `bedrock-mantle` and `aws-external-anthropic`): sluice verifies the signature
/// and the key's identity is the caller.
#[test]
fn claude_code_in_mantle_and_aws_modes_signs_with_a_sluice_issued_aws_key() {
    let mock = mock(&[]);
    let gw = sigv4_gateway(&mock);
    let keys = [
        ("AWS_ACCESS_KEY_ID", "AKIDSLUICEISSUED0001"),
        ("AWS_SECRET_ACCESS_KEY", "sluice-issued/secret"),
    ];
    for mode in [Mode::Mantle, Mode::AnthropicAws] {
        let result = run_claude_code("2.1.330", mode, &gw, &keys);
        assert_eq!(result["is_error"], false, "{mode:?}: {result}");
    }
    let records = gw.records();
    let signed: Vec<&Value> = records
        .iter()
        .filter(|r| r["operation"] == "messages" && r["status"] == 200)
        .collect();
    assert!(signed.len() >= 2, "{records:?}");
    assert!(
        signed.iter().all(|r| r["identity"] == "key:aws-dev"),
        "{records:?}"
    );
}
