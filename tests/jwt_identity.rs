//! JWT identity: HS256, RS256 and ES256 tokens verified locally (exp, nbf, iss, aud); an expired,
//! misaddressed or forged token is a 401; claims name the user and team. With a real Claude Code
//! whose `apiKeyHelper` prints the token (sent as both `x-api-key` and `Authorization`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "integration test: a failure is a failed test"
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(exp_in: i64, aud: &str) -> serde_json::Value {
    json!({"sub": "u-123", "email": "dev@corp.example", "team": "platform", "iss": "https://idp.corp", "aud": aud,
           "iat": now(), "exp": (now() as i64 + exp_in)})
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A private key (PKCS#8 PEM) and its public key (SPKI PEM).
fn keypair(dir: &Path, name: &str, genpkey: &[&str]) -> (PathBuf, PathBuf) {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    let mut args = vec!["genpkey"];
    args.extend_from_slice(genpkey);
    args.extend_from_slice(&["-out", private.to_str().unwrap()]);
    openssl(&args);
    openssl(&[
        "pkey",
        "-in",
        private.to_str().unwrap(),
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]);
    (private, public)
}

struct Setup {
    mock: Proc,
    gw: Gateway,
    rsa: PathBuf,
    ec: PathBuf,
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (rsa, rsa_pub) = keypair(
        dir.path(),
        "rsa",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    );
    let (ec, ec_pub) = keypair(
        dir.path(),
        "ec",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let mock = mock(&[]);
    let config = format!(
        r#"
[[upstreams]]
name = "anthropic"
url = "{}"
api_key = "sk-upstream-secret"
[jwt]
issuer = "https://idp.corp"
audience = "sluice"
user_claim = "email"
team_claim = "team"
[[jwt.keys]]
algorithm = "HS256"
secret = "hs-shared-secret"
[[jwt.keys]]
algorithm = "RS256"
public_key_file = "{}"
[[jwt.keys]]
algorithm = "ES256"
public_key_file = "{}"
"#,
        mock.url(),
        rsa_pub.display(),
        ec_pub.display()
    );
    let gw = gateway("", &config);
    Setup {
        mock,
        gw,
        rsa,
        ec,
        _dir: dir,
    }
}

fn token(alg: Algorithm, key: &EncodingKey, claims: &serde_json::Value) -> String {
    encode(&Header::new(alg), claims, key).unwrap()
}

#[test]
fn valid_tokens_of_each_algorithm_are_accepted_and_name_the_user() {
    let s = setup();
    let hs = EncodingKey::from_secret(b"hs-shared-secret");
    let rs = EncodingKey::from_rsa_pem(&std::fs::read(&s.rsa).unwrap()).unwrap();
    let es = EncodingKey::from_ec_pem(&std::fs::read(&s.ec).unwrap()).unwrap();
    for (alg, key) in [
        (Algorithm::HS256, &hs),
        (Algorithm::RS256, &rs),
        (Algorithm::ES256, &es),
    ] {
        let t = token(alg, key, &claims(300, "sluice"));
        let resp = request(
            s.gw.addr,
            &messages_request(SMALL_BODY, &format!("Authorization: Bearer {t}\r\n")),
        );
        assert_eq!(
            resp.status,
            200,
            "{alg:?}: {}",
            String::from_utf8_lossy(&resp.body)
        );
    }
    let records = s.gw.wait_records(3);
    assert!(records.iter().all(|r| r["identity"] == "jwt:u-123"
        && r["user"] == "dev@corp.example"
        && r["team"] == "platform"));
    assert!(
        !serde_json::to_string(&mock_requests(&s.mock))
            .unwrap()
            .contains("eyJ"),
        "the token never reaches the upstream"
    );
}

#[test]
fn expired_misaddressed_and_forged_tokens_get_401() {
    let s = setup();
    let hs = EncodingKey::from_secret(b"hs-shared-secret");
    let forged = EncodingKey::from_secret(b"not-the-secret");
    let mut not_yet = claims(600, "sluice");
    not_yet["nbf"] = json!(now() + 300);
    let mut wrong_iss = claims(300, "sluice");
    wrong_iss["iss"] = json!("https://evil.example");
    let mut no_exp = claims(300, "sluice");
    no_exp.as_object_mut().unwrap().remove("exp");
    // With an issuer and an audience configured, leaving them out is no way around them.
    let mut no_iss = claims(300, "sluice");
    no_iss.as_object_mut().unwrap().remove("iss");
    let mut no_aud = claims(300, "sluice");
    no_aud.as_object_mut().unwrap().remove("aud");
    for (why, t) in [
        ("no issuer", token(Algorithm::HS256, &hs, &no_iss)),
        ("no audience", token(Algorithm::HS256, &hs, &no_aud)),
        (
            "expired",
            token(Algorithm::HS256, &hs, &claims(-120, "sluice")),
        ),
        (
            "wrong audience",
            token(Algorithm::HS256, &hs, &claims(300, "other")),
        ),
        ("wrong issuer", token(Algorithm::HS256, &hs, &wrong_iss)),
        ("not yet valid", token(Algorithm::HS256, &hs, &not_yet)),
        ("no exp", token(Algorithm::HS256, &hs, &no_exp)),
        (
            "forged",
            token(Algorithm::HS256, &forged, &claims(300, "sluice")),
        ),
    ] {
        let resp = request(
            s.gw.addr,
            &messages_request(SMALL_BODY, &format!("x-api-key: {t}\r\n")),
        );
        assert_eq!(resp.status, 401, "{why}");
        assert_eq!(resp.json()["error"]["type"], "authentication_error");
    }
    assert!(mock_requests(&s.mock).is_empty());
}

#[test]
fn a_token_used_again_after_it_expires_gets_401() {
    // Workers remember verified tokens; the time claims must still be checked on every use.
    let s = setup();
    let hs = EncodingKey::from_secret(b"hs-shared-secret");
    // Valid for two more seconds under the default 30 s leeway.
    let t = token(Algorithm::HS256, &hs, &claims(-28, "sluice"));
    let send = || {
        let mut client = Client::connect(s.gw.addr);
        client.send(messages_request(SMALL_BODY, &format!("x-api-key: {t}\r\n")).as_bytes());
        client.read_response().unwrap().status
    };
    assert_eq!(send(), 200);
    assert_eq!(send(), 200);
    // Refused once it expires (a poll with a deadline, not a guess at the clock).
    let refused = wait_for(Duration::from_secs(10), || (send() == 401).then_some(()));
    assert!(refused.is_some(), "the expired token was still accepted");
    assert_eq!(send(), 401);
}

#[test]
fn claude_code_with_an_api_key_helper_is_identified_by_its_jwt() {
    let s = setup();
    let hs = EncodingKey::from_secret(b"hs-shared-secret");
    let t = token(Algorithm::HS256, &hs, &claims(300, "sluice"));
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".claude")).unwrap();
    let settings = json!({ "apiKeyHelper": format!("echo {t}") });
    std::fs::write(
        home.path().join(".claude/settings.json"),
        settings.to_string(),
    )
    .unwrap();
    let install = Command::new("bash")
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/install-real-clients"))
        .status()
        .unwrap();
    assert!(
        install.success(),
        "REAL CLIENTS UNAVAILABLE: scripts/install-real-clients failed"
    );
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(".real-clients/claude-code-2.1.330/node_modules/.bin/claude");
    let out = Command::new(bin)
        .args(["-p", "echo hello", "--output-format", "json"])
        .current_dir(home.path())
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", home.path())
        .env("ANTHROPIC_BASE_URL", s.gw.url())
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "claude: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(result["is_error"], false);
    let streamed =
        s.gw.records()
            .into_iter()
            .find(|r| r["stream"] == true)
            .expect("a streamed turn");
    assert_eq!(streamed["identity"], "jwt:u-123");
    assert_eq!(streamed["team"], "platform");
}
