//! Customer-routed inference through the built binary: Anthropic-style ES256 tokens
//! (`typ: cri+jwt`) from a local issuer are verified offline against its key set — audience,
//! organization, scope, time and signature — callers reach only the Messages API, never carry
//! their token upstream, never see the upstream's identity fields or error words (a capability
//! refusal is named by class), and without a key set CRI callers get 503 (fail closed).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "integration test: a failure is a failed test"
)]

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use common::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

const AUDIENCE: &str = "https://gw.test";
const ORG: &str = "org-allowed";

/// A signing key of the test issuer.
struct IssuerKey {
    kid: String,
    pkcs8: Vec<u8>,
    jwk: Value,
}

impl IssuerKey {
    fn new(kid: &str) -> IssuerKey {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let point = pair.public_key().as_ref();
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
            "x": b64(&point[1..33]), "y": b64(&point[33..65]),
        });
        IssuerKey {
            kid: kid.into(),
            pkcs8: pkcs8.as_ref().to_vec(),
            jwk,
        }
    }

    fn token(&self, issuer: &str, claims: Value, typ: &str) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some(typ.into());
        header.kid = Some(self.kid.clone());
        let mut all = json!({
            "iss": issuer, "aud": AUDIENCE, "sub": "user-7", "org": ORG, "scope": "inference",
            "iat": now(), "exp": now() + 300,
        });
        for (k, v) in claims.as_object().unwrap() {
            all[k] = v.clone();
        }
        encode(&header, &all, &EncodingKey::from_ec_der(&self.pkcs8)).unwrap()
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The issuer's key set, served on a loopback port (500 when `down`).
struct KeySetServer {
    url: String,
}

impl KeySetServer {
    fn start(keys: &[&IssuerKey], down: bool) -> KeySetServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let jwks = Arc::new(Mutex::new((
            json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() }),
            down,
        )));
        let shared = jwks;
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let (body, down) = {
                    let g = shared.lock().unwrap();
                    (g.0.to_string(), g.1)
                };
                let status = if down {
                    "500 Internal Server Error"
                } else {
                    "200 OK"
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncache-control: public, max-age=300\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        KeySetServer { url }
    }
}

fn config(keys: &KeySetServer) -> String {
    format!(
        "[cri]\nissuer = \"{0}/cri\"\njwks_url = \"{0}/jwks.json\"\naudience = [\"{AUDIENCE}\"]\norg_allowlist = [\"ORG-ALLOWED\"]\n",
        keys.url
    )
}

fn messages_with(gw: &Gateway, token: &str, body: &str, extra: &str) -> Response {
    request(
        gw.addr,
        &messages_request(body, &format!("authorization: Bearer {token}\r\n{extra}")),
    )
}

#[test]
fn customer_routed_tokens_are_verified_offline_and_their_answers_kept_clean() {
    let key = IssuerKey::new("k1");
    let keys = KeySetServer::start(&[&key], false);
    let issuer = format!("{}/cri", keys.url);
    let mock = mock(&[]);
    let gw = gateway(&mock.url(), &config(&keys));
    let good = key.token(&issuer, json!({}), "cri+jwt");
    let served = wait_for(Duration::from_secs(10), || {
        let resp = messages_with(&gw, &good, SMALL_BODY, "");
        (resp.status == 200).then_some(resp)
    })
    .expect("a valid CRI token is admitted once the key set is fetched");
    // The upstream's identity and quota fields stay behind; the token never goes upstream.
    assert_eq!(served.header("request-id"), None);
    assert_eq!(served.header("anthropic-ratelimit-requests-limit"), None);
    let streamed = messages_with(&gw, &good, STREAM_BODY, "");
    assert_eq!(streamed.status, 200);
    assert_eq!(streamed.header("anthropic-organization-id"), None);
    assert!(!serde_json::to_string(&mock_requests(&mock))
        .unwrap()
        .contains(&good));
    let record = wait_for(Duration::from_secs(5), || {
        gw.records().into_iter().find(|r| r["status"] == 200)
    })
    .expect("the served request's record");
    assert_eq!(record["identity"], "cri:org-allowed");
    assert_eq!(record["user"], "user-7");

    // Every check the contract lists.
    let other = IssuerKey::new("k1");
    let refused = [
        (
            "another audience",
            key.token(&issuer, json!({"aud": "https://other.test"}), "cri+jwt"),
        ),
        (
            "another organization",
            key.token(&issuer, json!({"org": "org-else"}), "cri+jwt"),
        ),
        (
            "another scope",
            key.token(&issuer, json!({"scope": "admin"}), "cri+jwt"),
        ),
        (
            "another issuer",
            key.token("https://evil.test/cri", json!({}), "cri+jwt"),
        ),
        (
            "expired",
            key.token(&issuer, json!({"exp": now() - 120}), "cri+jwt"),
        ),
        (
            "not yet valid",
            key.token(&issuer, json!({"nbf": now() + 600}), "cri+jwt"),
        ),
        ("another type", key.token(&issuer, json!({}), "JWT")),
        ("another key", other.token(&issuer, json!({}), "cri+jwt")),
    ];
    for (why, token) in &refused {
        let resp = messages_with(&gw, token, SMALL_BODY, "");
        assert_eq!(
            resp.status,
            401,
            "{why}: {}",
            String::from_utf8_lossy(&resp.body)
        );
    }

    // Only the Messages API.
    let models = request(
        gw.addr,
        &format!("GET /v1/models HTTP/1.1\r\nHost: gw\r\nauthorization: Bearer {good}\r\n\r\n"),
    );
    assert_eq!(models.status, 403);

    // Upstream refusals: named by class when the caller can change it, generic otherwise.
    let too_long = r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}"#;
    let resp = messages_with(
        &gw,
        &good,
        SMALL_BODY,
        &format!("x-mock-status: 400\r\nx-mock-error-body: {too_long}\r\n"),
    );
    assert_eq!(resp.status, 400);
    assert_eq!(
        resp.json()["error"]["message"],
        "capability_rejected: prompt_too_long"
    );
    let leaky = r#"{"type":"error","error":{"type":"permission_error","message":"org 4411 workspace wrk_9 may not use this model"}}"#;
    let resp = messages_with(
        &gw,
        &good,
        SMALL_BODY,
        &format!("x-mock-status: 403\r\nx-mock-error-body: {leaky}\r\n"),
    );
    assert_eq!(resp.status, 403);
    assert_eq!(resp.json()["error"]["type"], "permission_error");
    assert!(!String::from_utf8_lossy(&resp.body).contains("4411"));
    assert!(
        !resp
            .header("request-id")
            .unwrap_or_default()
            .starts_with("req_mock"),
        "sluice's own request id only"
    );
}

#[test]
fn without_a_key_set_customer_routed_callers_get_503_and_others_go_on() {
    let key = IssuerKey::new("k1");
    let keys = KeySetServer::start(&[&key], true);
    let issuer = format!("{}/cri", keys.url);
    let mock = mock(&["--no-request-log"]);
    let dev_key = sluice::config::keys::hash_hex("sk-dev");
    let gw = gateway(
        &mock.url(),
        &format!(
            "{}[[keys]]\nname = \"dev\"\nsha256 = \"{dev_key}\"\n",
            config(&keys)
        ),
    );
    let token = key.token(&issuer, json!({}), "cri+jwt");
    let resp = messages_with(&gw, &token, SMALL_BODY, "");
    assert_eq!(resp.status, 503, "{}", String::from_utf8_lossy(&resp.body));
    assert!(resp.header("retry-after").is_some());
    let other = request(
        gw.addr,
        &messages_request(SMALL_BODY, "x-api-key: sk-dev\r\n"),
    );
    assert_eq!(other.status, 200, "a key's caller is not affected");
}
