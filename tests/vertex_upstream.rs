//! A Vertex upstream: sluice gets OAuth2 tokens from a service-account key (an RS256 JWT that
//! the mock's token endpoint verifies with the public key) or a token command, and sends Messages
//! and Bedrock requests in rawPredict's shape; Bedrock clients get their event-stream back.

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

use common::*;

struct Keys {
    dir: tempfile::TempDir,
    public_der: PathBuf,
}

/// An RSA key pair (openssl): the private key as PKCS#8 PEM, the public key as PKCS#1 DER.
fn rsa_keys() -> Keys {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    let public_der = dir.path().join("pub.der");
    let ok = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&key)
        .output()
        .unwrap()
        .status
        .success();
    assert!(ok, "openssl genpkey failed");
    let ok = Command::new("openssl")
        .args(["rsa", "-RSAPublicKey_out", "-outform", "DER", "-in"])
        .arg(&key)
        .arg("-out")
        .arg(&public_der)
        .output()
        .unwrap()
        .status
        .success();
    assert!(ok, "openssl rsa failed");
    Keys { dir, public_der }
}

fn service_account(keys: &Keys, token_uri: &str) -> PathBuf {
    let pem = std::fs::read_to_string(keys.dir.path().join("key.pem")).unwrap();
    let sa = serde_json::json!({
        "type": "service_account", "project_id": "p", "private_key_id": "kid1", "private_key": pem,
        "client_email": "sluice@p.iam.gserviceaccount.com", "token_uri": token_uri,
    });
    let path = keys.dir.path().join("sa.json");
    std::fs::write(&path, sa.to_string()).unwrap();
    path
}

fn vertex_config(mock: &Proc, auth: &str) -> String {
    format!(
        "[[upstreams]]\nname = \"vertex\"\nprovider = \"vertex\"\nproject = \"proj-1\"\nregion = \"global\"\nurl = \"{}\"\n{auth}\n[[routes]]\nmodel = \"*\"\ndeployments = [{{ upstream = \"vertex\", upstream_model = \"claude-sonnet-4-5@20250929\" }}]\n",
        mock.url()
    )
}

fn sa_setup() -> (Keys, Proc, Gateway) {
    let keys = rsa_keys();
    let mock = mock(&["--gcp-public-key", keys.public_der.to_str().unwrap()]);
    let sa = service_account(&keys, &format!("{}/token", mock.url()));
    let gw = gateway(
        "",
        &vertex_config(
            &mock,
            &format!("gcp_service_account_file = \"{}\"", sa.display()),
        ),
    );
    (keys, mock, gw)
}

const BASE: &str = "/v1/projects/proj-1/locations/global/publishers/anthropic/models";

#[test]
fn messages_requests_reach_vertex_with_a_service_account_token() {
    let (_keys, mock, gw) = sa_setup();
    let resp = request(
        gw.addr,
        &messages_request(
            STREAM_BODY,
            "anthropic-beta: interleaved-thinking-2025-05-14\r\nx-mock-reply: a b\r\n",
        ),
    );
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert!(String::from_utf8(resp.body)
        .unwrap()
        .contains("event: message_stop"));
    let resp = request(gw.addr, &messages_request(SMALL_BODY, ""));
    assert_eq!(resp.json()["content"][0]["text"], "hello");
    let body = r#"{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}]}"#;
    let raw = format!(
        "POST /v1/messages/count_tokens HTTP/1.1\r\nHost: gw\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    assert!(
        request(gw.addr, &raw).json()["input_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
    let seen = mock_requests(&mock);
    let calls: Vec<&serde_json::Value> = seen.iter().filter(|r| r["target"] != "/token").collect();
    assert_eq!(
        calls[0]["target"],
        format!("{BASE}/claude-sonnet-4-5@20250929:streamRawPredict")
    );
    assert_eq!(
        calls[0]["body"],
        r#"{"anthropic_version":"vertex-2023-10-16","max_tokens":16,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#
    );
    assert!(
        calls[0]["headers"]
            .to_string()
            .contains("[\"anthropic-beta\",\"interleaved-thinking-2025-05-14\"]"),
        "betas stay a header on Vertex"
    );
    assert!(calls[0]["headers"]
        .to_string()
        .contains("Bearer ya29.mock-"));
    assert_eq!(
        calls[1]["target"],
        format!("{BASE}/claude-sonnet-4-5@20250929:rawPredict")
    );
    assert_eq!(
        calls[2]["target"],
        format!("{BASE}/count-tokens:rawPredict")
    );
    let records = gw.wait_records(3);
    assert!(records
        .iter()
        .all(|r| r["status"] == 200 && r["upstream"] == "vertex"));
    let stream = records.iter().find(|r| r["stream"] == true).unwrap();
    assert_eq!(stream["output_tokens"], 2);
}

#[test]
fn a_bedrock_client_gets_its_event_stream_from_vertex() {
    let (_keys, mock, gw) = sa_setup();
    let body = r#"{"anthropic_version":"bedrock-2023-05-31","anthropic_beta":["context-1m-2025-08-07"],"max_tokens":9,"messages":[{"role":"user","content":"hi"}]}"#;
    let raw = format!(
        "POST /model/us.anthropic.claude-sonnet-4-5-20250929-v1:0/invoke-with-response-stream HTTP/1.1\r\nHost: gw\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let resp = request(gw.addr, &raw);
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("content-type"),
        Some("application/vnd.amazon.eventstream")
    );
    let mut d = sluice::format::eventstream::Decoder::new();
    d.feed(&resp.body);
    let mut frames = 0;
    while d.next_message().unwrap().is_some() {
        frames += 1;
    }
    assert_eq!(frames, 7);
    let call = mock_requests(&mock)
        .into_iter()
        .find(|r| r["target"] != "/token")
        .unwrap();
    assert_eq!(
        call["body"],
        r#"{"anthropic_version":"vertex-2023-10-16","stream":true,"max_tokens":9,"messages":[{"role":"user","content":"hi"}]}"#
    );
    assert!(call["headers"]
        .to_string()
        .contains("[\"anthropic-beta\",\"context-1m-2025-08-07\"]"));
}

#[test]
fn a_token_command_supplies_the_token() {
    let mock = mock(&["--vertex-token", "ya29.from-command"]);
    let gw = gateway(
        "",
        &vertex_config(&mock, "gcp_token_command = \"echo ya29.from-command\""),
    );
    let resp = request(gw.addr, &messages_request(SMALL_BODY, ""));
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
}

#[test]
fn a_rejected_service_account_gives_a_clear_502() {
    let keys = rsa_keys();
    let other = rsa_keys();
    // The mock knows another key: every assertion is refused, no token is ever issued.
    let mock = mock(&["--gcp-public-key", other.public_der.to_str().unwrap()]);
    let sa = service_account(&keys, &format!("{}/token", mock.url()));
    let gw = gateway(
        "",
        &vertex_config(
            &mock,
            &format!("gcp_service_account_file = \"{}\"", sa.display()),
        ),
    );
    let resp = request(gw.addr, &messages_request(SMALL_BODY, ""));
    assert_eq!(resp.status, 502);
    assert!(resp.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no Google access token for vertex"));
    assert!(gw
        .stderr_text()
        .contains("cannot get a Google access token"));
}

#[test]
fn a_broken_service_account_file_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let sa = dir.path().join("sa.json");
    std::fs::write(&sa, r#"{"client_email":"x","private_key":"not a key"}"#).unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, format!("[[upstreams]]\nname = \"v\"\nprovider = \"vertex\"\nproject = \"p\"\nregion = \"us-east5\"\ngcp_service_account_file = \"{}\"\n", sa.display())).unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("upstreams[0].gcp_service_account_file"));
}

#[test]
fn a_vertex_client_reaches_vertex_with_its_body_untouched() {
    let (_keys, mock, gw) = sa_setup();
    let body = r#"{"anthropic_version":"vertex-2023-10-16","messages":[{"role":"user","content":"hi"}],"max_tokens":9,"stream":true}"#;
    let raw = format!(
        "POST /v1/projects/client-proj/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929:streamRawPredict HTTP/1.1\r\nHost: gw\r\nanthropic-beta: b3\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let resp = request(gw.addr, &raw);
    assert_eq!(resp.status, 200);
    assert!(String::from_utf8(resp.body)
        .unwrap()
        .contains("event: message_stop"));
    let call = mock_requests(&mock)
        .into_iter()
        .find(|r| r["target"] != "/token")
        .unwrap();
    // The upstream's own project and location; the body exactly as the client sent it.
    assert_eq!(
        call["target"],
        format!("{BASE}/claude-sonnet-4-5@20250929:streamRawPredict")
    );
    assert_eq!(call["body"], body);
    assert!(call["headers"]
        .to_string()
        .contains("[\"anthropic-beta\",\"b3\"]"));
    let r = &gw.wait_records(1)[0];
    assert_eq!(
        (r["format"].as_str(), r["metered"].as_bool()),
        (Some("vertex"), Some(true))
    );
}

/// Claude Platform on Google Cloud takes the same Google tokens (a service account here) on
/// the Messages API under its workspace path.
#[test]
fn claude_platform_on_google_cloud_gets_service_account_tokens() {
    let keys = rsa_keys();
    let mock = mock(&["--gcp-public-key", keys.public_der.to_str().unwrap()]);
    let sa = service_account(&keys, &format!("{}/token", mock.url()));
    let config = format!(
        "[[upstreams]]\nname = \"gcp\"\nprovider = \"anthropic_google_cloud\"\nproject = \"proj-1\"\nregion = \"us-east5\"\nworkspace_id = \"ws-1\"\nurl = \"{}/v1/projects/proj-1/locations/us-east5/workspaces/ws-1/invoke\"\ngcp_service_account_file = \"{}\"\n[[routes]]\nmodel = \"*\"\nupstream = \"gcp\"\n",
        mock.url(),
        sa.display()
    );
    let gw = gateway("", &config);
    let resp = request(gw.addr, &messages_request(STREAM_BODY, ""));
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let seen = mock_requests(&mock);
    let call = seen.iter().find(|r| r["target"] != "/token").unwrap();
    assert_eq!(
        call["target"],
        "/v1/projects/proj-1/locations/us-east5/workspaces/ws-1/invoke/v1/messages?beta=true"
    );
    assert!(call["headers"].to_string().contains("Bearer ya29.mock-"));
}
