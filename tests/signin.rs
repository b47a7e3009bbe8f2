//! Sign-in at the company's identity provider, end to end through the built binary: a real
//! OpenID Connect provider (oidc-provider from npm), a real browser (headless Chromium through
//! chromedriver) on sluice's verification page, the OAuth device flow run exactly as Claude
//! Code runs it, and the issued token used by the real Claude Code CLI in gateway mode.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "integration test: a failure is a failed test"
)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::browser::{Browser, IdentityProvider};
use common::pki::Pki;
use common::*;
use serde_json::{json, Value};

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
const ADMIN_KEY: &str = "admin-secret-signin";

/// sluice over HTTPS with sign-in at `idp`, and its base URL.
struct SignedGateway {
    gw: Gateway,
    base: String,
    pki: Pki,
}

impl SignedGateway {
    fn start(idp: &mut IdentityProvider, mock: &Proc, extra: &str) -> SignedGateway {
        let pki = Pki::new("signin");
        let cert = pki.server(&["localhost"], 90);
        let config = format!(
            "{}[[upstreams]]\nname = \"anthropic\"\nurl = \"{}\"\napi_key = \"sk-upstream-secret\"\n\
             [signin]\nissuer = \"{}\"\nclient_id = \"sluice\"\nclient_secret = \"sluice-secret\"\n\
             scopes = [\"openid\", \"email\", \"groups\", \"offline_access\"]\n\
             allowed_email_domains = [\"example.com\"]\npoll_interval = \"1s\"\n{extra}\n\
             [[signin.teams]]\ngroup = \"eng-platform\"\nteam = \"platform\"\n\
             [admin]\nlisten = \"127.0.0.1:0\"\nkey_sha256 = \"{}\"\n",
            common::pki::tls_config(&cert, ""),
            mock.url(),
            idp.issuer,
            sluice::config::keys::hash_hex(ADMIN_KEY)
        );
        let gw = gateway("", &config);
        let base = format!("https://localhost:{}", gw.tls_addr.unwrap().port());
        idp.register(&format!("{base}/oauth/callback"));
        SignedGateway { gw, base, pki }
    }

    /// One request over HTTPS.
    fn https(&self, raw: &str) -> Response {
        let config = self
            .pki
            .client_config(&[&rustls::version::TLS13, &rustls::version::TLS12], None);
        let mut client =
            Client::connect_tls(self.gw.tls_addr.unwrap(), config, "localhost").unwrap();
        client.send(raw.as_bytes());
        client.read_response().expect("an answer")
    }

    fn host(&self) -> String {
        self.base.trim_start_matches("https://").to_string()
    }

    fn post_form(&self, path: &str, form: &str) -> (u16, Value) {
        let resp = self.https(&format!(
            "POST {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n\r\n{form}",
            self.host(),
            form.len()
        ));
        (
            resp.status,
            serde_json::from_slice(&resp.body).unwrap_or(Value::Null),
        )
    }

    fn messages_with(&self, token: &str) -> Response {
        let request = messages_request(SMALL_BODY, &format!("authorization: Bearer {token}\r\n"));
        self.https(&request.replacen("Host: gw", &format!("Host: {}", self.host()), 1))
    }
}

/// Approves `user_code` in the browser as `login` at the provider; returns the final page.
fn approve_in_browser(browser: &Browser, verification_uri_complete: &str, login: &str) -> String {
    sign_in_at_provider(browser, verification_uri_complete, login);
    browser.find("#done");
    browser.source()
}

/// Takes the browser through the code page and the provider's login and consent.
fn sign_in_at_provider(browser: &Browser, verification_uri_complete: &str, login: &str) {
    browser.open(verification_uri_complete);
    // The code is filled in from the link but not submitted by itself.
    let typed = browser.value_of("#user_code");
    assert!(!typed.is_empty(), "the code was not pre-filled");
    browser.click("#continue");
    // oidc-provider's login and consent pages.
    browser.type_into("input[name=login]", login);
    browser.type_into("input[name=password]", "any");
    browser.click("button[type=submit]");
    // The consent page is told apart by its hidden `prompt` field: clicking "the" submit button
    // right away could hit the login page's again while it is still being replaced.
    browser.click("input[name=prompt][value=consent] ~ button[type=submit]");
}

/// Records `usd` of spend today for `user` in the gateway's ledger (as earlier requests would
/// have).
fn spent_already(gw: &SignedGateway, user: &str, usd: f64) {
    let conn = rusqlite::Connection::open(gw.gw.dir().join("sluice.db")).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let day = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    conn.execute(
        "INSERT INTO totals VALUES ('user', ?1, ?2, 1, ?3, 0, 0)",
        rusqlite::params![user, &day[..10], (usd * 1e12) as i64],
    )
    .unwrap();
}

/// The claims of a JWT, read without verifying it (as Claude Code reads them).
fn token_claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Polls the token endpoint as Claude Code does, at the interval it is given, until the sign-in
/// ends one way or the other.
fn poll_for_tokens(gw: &SignedGateway, device_code: &str, mut interval: u64) -> (u16, Value) {
    let form = format!("grant_type={DEVICE_GRANT}&device_code={device_code}");
    let answer = wait_for(Duration::from_secs(60), || {
        std::thread::sleep(Duration::from_secs(interval));
        let (status, body) = gw.post_form("/oauth/token", &form);
        match body["error"].as_str() {
            Some("authorization_pending") => None,
            Some("slow_down") => {
                interval += 5;
                None
            }
            _ => Some((status, body)),
        }
    });
    answer.expect("the sign-in ended")
}

fn start_device_flow(gw: &SignedGateway) -> Value {
    let (status, metadata) = gw.https_json("/.well-known/oauth-authorization-server");
    assert_eq!(status, 200);
    assert_eq!(
        metadata["device_authorization_endpoint"],
        format!("{}/oauth/device_authorization", gw.base)
    );
    assert_eq!(
        metadata["token_endpoint"],
        format!("{}/oauth/token", gw.base)
    );
    let (status, device) = gw.post_form("/oauth/device_authorization", "surface=claude_code");
    assert_eq!(status, 200, "{device}");
    device
}

impl SignedGateway {
    /// The first `/v1/messages` record in the access log (waiting for it).
    fn first_messages_record(&self) -> Value {
        wait_for(Duration::from_secs(10), || {
            self.gw
                .records()
                .into_iter()
                .find(|r| r["operation"] == "messages")
        })
        .expect("a messages record")
    }

    /// The first sign-in audit event with `decision` about `identity`, waiting for it.
    fn signin_audit(&self, decision: &str, identity: &str) -> Value {
        let path = self.gw.dir().join("audit.jsonl");
        wait_for(Duration::from_secs(10), || {
            std::fs::read_to_string(&path)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|e| {
                    e["kind"] == "signin" && e["decision"] == decision && e["identity"] == identity
                })
        })
        .unwrap_or_else(|| panic!("no `{decision}` sign-in event for {identity}"))
    }

    fn https_json(&self, path: &str) -> (u16, Value) {
        let resp = self.https(&format!(
            "GET {path} HTTP/1.1\r\nhost: {}\r\n\r\n",
            self.host()
        ));
        (
            resp.status,
            serde_json::from_slice(&resp.body).unwrap_or(Value::Null),
        )
    }
}

#[test]
fn a_developer_signs_in_by_device_flow_and_the_token_is_governed_refreshed_and_revoked() {
    let clients = real_clients();
    let mut idp = IdentityProvider::start(
        &clients.join("oidc-provider/node_modules/oidc-provider"),
        &json!({"alice": ["eng-platform"]}),
    );
    let mock = mock(&[]);
    let gw = SignedGateway::start(&mut idp, &mock, "billing_group_tag = \"billing_group\"\n");
    let device = start_device_flow(&gw);
    let user_code = device["user_code"].as_str().unwrap();
    assert_eq!(user_code.len(), 9);
    assert!(
        device["device_code"].as_str().unwrap().len() >= 43,
        "256 bits"
    );
    assert_eq!(device["verification_uri"], format!("{}/device", gw.base));
    let device_code = device["device_code"].as_str().unwrap();

    // Before the browser: pending, and polling again at once is slowed down.
    let form = format!("grant_type={DEVICE_GRANT}&device_code={device_code}");
    let (status, pending) = gw.post_form("/oauth/token", &form);
    assert_eq!(
        (status, pending["error"].as_str()),
        (400, Some("authorization_pending"))
    );
    let (_, early) = gw.post_form("/oauth/token", &form);
    assert_eq!(early["error"], "slow_down");

    let browser = Browser::start();
    let page = approve_in_browser(
        &browser,
        device["verification_uri_complete"].as_str().unwrap(),
        "alice",
    );
    assert!(page.contains("alice@example.com"), "{page}");
    browser.screenshot(&gw.gw.dir().join("signed-in.png"));

    let (status, tokens) = poll_for_tokens(&gw, device_code, 6);
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["email"], "alice@example.com");
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    // The device code was single use.
    let (_, again) = gw.post_form("/oauth/token", &form);
    assert_eq!(again["error"], "expired_token");

    // The token is an identity like a key's: user, team, the access log and the ledger.
    assert_eq!(gw.messages_with(&access).status, 200);
    let record = gw.first_messages_record();
    assert_eq!(record["identity"], "user:alice@example.com", "{record}");
    let signed_in = gw.signin_audit("signed_in", "user:alice@example.com");
    assert_eq!(signed_in["detail"], "team platform");
    assert_eq!(record["user"], "alice@example.com");
    assert_eq!(record["team"], "platform");
    let upstream_saw = serde_json::to_string(&mock_requests(&mock)).unwrap();
    assert!(
        !upstream_saw.contains(&access),
        "the token reached the upstream"
    );

    // Billing groups: the token names the tag; a request naming one of alice's groups is
    // recorded under it, one naming another group is not; `tags` and its beta never go upstream.
    assert_eq!(token_claims(&access)["billing_group_tag"], "billing_group");
    for (group, recorded) in [
        ("eng-platform", json!("eng-platform")),
        ("finance", Value::Null),
    ] {
        let body = format!(
            r#"{{"model":"claude-haiku-4-5","max_tokens":16,"tags":{{"billing_group":"{group}"}},"messages":[{{"role":"user","content":"hi"}}]}}"#
        );
        let headers = format!(
            "authorization: Bearer {access}\r\nanthropic-beta: fine-grained-tool-streaming-2025-05-14, request-tags-2026-08-21\r\n"
        );
        let raw = messages_request(&body, &headers).replacen(
            "Host: gw",
            &format!("Host: {}", gw.host()),
            1,
        );
        assert_eq!(gw.https(&raw).status, 200);
        let received = mock_requests(&mock).pop().unwrap();
        let sent_body = received["body"].as_str().unwrap();
        assert!(!sent_body.contains("tags"), "{sent_body}");
        assert_eq!(
            serde_json::from_str::<Value>(sent_body).unwrap()["max_tokens"],
            16
        );
        let beta = received["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| {
                h[0].as_str()
                    .unwrap()
                    .eq_ignore_ascii_case("anthropic-beta")
            })
            .map(|h| h[1].clone());
        assert_eq!(beta, Some(json!("fine-grained-tool-streaming-2025-05-14")));
        let record = wait_for(Duration::from_secs(10), || {
            let records = gw.gw.records();
            let messages: Vec<&Value> = records
                .iter()
                .filter(|r| r["operation"] == "messages")
                .collect();
            let latest = messages.last().copied()?;
            (latest["request_bytes"] == body.len()).then(|| latest.clone())
        })
        .expect("the record");
        assert_eq!(record["billing_group"], recorded, "{record}");
    }

    // Refresh: a new pair; the used refresh token cannot be used again.
    let (status, renewed) = gw.post_form(
        "/oauth/token",
        &format!("grant_type=refresh_token&refresh_token={refresh}"),
    );
    assert_eq!(status, 200, "{renewed}");
    let access2 = renewed["access_token"].as_str().unwrap().to_string();
    let refresh2 = renewed["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(refresh2, refresh);
    assert_eq!(gw.messages_with(&access2).status, 200);

    // Revocation: the session ends; its access tokens are refused with x-should-retry: false.
    let (status, _) = gw.post_form(
        "/oauth/revoke",
        &format!("token={refresh2}&token_type_hint=refresh_token"),
    );
    assert_eq!(status, 200);
    let refused = gw.messages_with(&access2);
    assert_eq!(refused.status, 401);
    assert_eq!(refused.header("x-should-retry"), Some("false"));
    assert_eq!(gw.messages_with(&access).status, 401);
    let (status, ended) = gw.post_form(
        "/oauth/token",
        &format!("grant_type=refresh_token&refresh_token={refresh2}"),
    );
    assert_eq!(
        (status, ended["error"].as_str()),
        (401, Some("invalid_grant"))
    );
}

#[test]
fn a_user_removed_at_the_provider_cannot_refresh_and_a_foreign_domain_cannot_sign_in() {
    let clients = real_clients();
    let mut idp = IdentityProvider::start(
        &clients.join("oidc-provider/node_modules/oidc-provider"),
        &json!({"bob": ["contractors"]}),
    );
    let mock = mock(&[]);
    let contractors = "[[signin.teams]]\ngroup = \"contractors\"\nteam = \"contractors\"\nmodels = [\"claude-haiku-*\"]\n";
    let gw = SignedGateway::start(&mut idp, &mock, contractors);
    let browser = Browser::start();
    let device = start_device_flow(&gw);
    approve_in_browser(
        &browser,
        device["verification_uri_complete"].as_str().unwrap(),
        "bob",
    );
    let (status, tokens) = poll_for_tokens(&gw, device["device_code"].as_str().unwrap(), 1);
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap();

    // Bob's team may use Haiku only: another model is the contract's 400, and the model list
    // shows what he may use.
    assert_eq!(gw.messages_with(access).status, 200);
    let opus = SMALL_BODY.replace("claude-haiku-4-5", "claude-opus-4-8");
    let raw = messages_request(&opus, &format!("authorization: Bearer {access}\r\n")).replacen(
        "Host: gw",
        &format!("Host: {}", gw.host()),
        1,
    );
    let denied = gw.https(&raw);
    assert_eq!(denied.status, 400);
    assert_eq!(denied.json()["error"]["type"], "invalid_request_error");
    let models = gw.https(&format!(
        "GET /v1/models HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {access}\r\n\r\n",
        gw.host()
    ));
    let listed = models.json();
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(
        !ids.is_empty() && ids.iter().all(|id| id.starts_with("claude-haiku-")),
        "{ids:?}"
    );

    let refresh = tokens["refresh_token"].as_str().unwrap();
    idp.remove("bob");
    let (status, refused) = gw.post_form(
        "/oauth/token",
        &format!("grant_type=refresh_token&refresh_token={refresh}"),
    );
    assert_eq!(
        (status, refused["error"].as_str()),
        (401, Some("invalid_grant"))
    );
    assert_eq!(
        gw.messages_with(access).status,
        401,
        "the session ended with the refusal"
    );
    let ended = gw.signin_audit("signed_out", "user:bob@example.com");
    assert_eq!(ended["reason"], "provider_refused_refresh");

    // An address outside allowed_email_domains is refused in the browser and at the poll (a
    // fresh browser: the provider remembers bob in the first).
    drop(browser);
    let browser = Browser::start();
    let device = start_device_flow(&gw);
    sign_in_at_provider(
        &browser,
        device["verification_uri_complete"].as_str().unwrap(),
        "eve@elsewhere.test",
    );
    browser.find("#failed");
    assert!(browser.source().contains("not in a domain allowed"));
    let (status, denied) = poll_for_tokens(&gw, device["device_code"].as_str().unwrap(), 1);
    assert_eq!(
        (status, denied["error"].as_str()),
        (400, Some("access_denied"))
    );
    let refused = gw.signin_audit("refused", "user:eve@elsewhere.test");
    assert_eq!(refused["reason"], "domain_not_allowed");

    // A code someone else started is refused on the page: its terminal stops waiting.
    let device = start_device_flow(&gw);
    browser.open(device["verification_uri_complete"].as_str().unwrap());
    browser.click("#deny");
    browser.find("#denied");
    let (status, denied) = poll_for_tokens(&gw, device["device_code"].as_str().unwrap(), 1);
    assert_eq!(
        (status, denied["error"].as_str()),
        (400, Some("access_denied"))
    );
    let refused = gw.signin_audit("refused", "anonymous");
    assert_eq!(refused["reason"], "denied_by_user");
}

/// The real Claude Code CLI in gateway mode, with a token from a sign-in, over HTTPS.
#[test]
fn claude_code_in_gateway_mode_uses_a_signed_in_token() {
    let clients = real_clients();
    let mut idp = IdentityProvider::start(
        &clients.join("oidc-provider/node_modules/oidc-provider"),
        &json!({"carol": ["eng-platform"]}),
    );
    let mock = mock(&[]);
    // A policy for carol's group: served to her token (the CLI in env-token mode does not poll
    // it; it does after an interactive /login, which stores the gateway credentials).
    let policy = "[[managed_settings]]\ngroup = \"eng-platform\"\n[managed_settings.settings.env]\nANTHROPIC_CUSTOM_HEADERS = \"x-policy-pushed: yes\"\n";
    // Telemetry goes to a collector (the mock records what it receives).
    let telemetry = format!("[[telemetry.forward_to]]\nurl = \"{}\"\n", mock.url());
    let gw = SignedGateway::start(&mut idp, &mock, &format!("{policy}{telemetry}"));
    let browser = Browser::start();
    let device = start_device_flow(&gw);
    approve_in_browser(
        &browser,
        device["verification_uri_complete"].as_str().unwrap(),
        "carol",
    );
    let (_, tokens) = poll_for_tokens(&gw, device["device_code"].as_str().unwrap(), 1);
    let access = tokens["access_token"].as_str().unwrap();
    let admin = |method: &str, path: &str, body: &str| {
        let resp = request(
            gw.gw.admin_addr.unwrap(),
            &format!("{method} {path} HTTP/1.1\r\nhost: admin\r\nauthorization: Bearer {ADMIN_KEY}\r\ncontent-length: {}\r\n\r\n{body}", body.len()),
        );
        (
            resp.status,
            serde_json::from_slice::<Value>(&resp.body).unwrap(),
        )
    };
    // Carol is under a budget of her own: every answer carries where it stands.
    let budget = |limit: &str| {
        let body = format!(
            r#"{{"scope":"user","name":"carol@example.com","period":"monthly","limit_usd":{limit}}}"#
        );
        let (status, answer) = admin("PUT", "/admin/budgets", &body);
        assert_eq!(status, 200, "{answer}");
    };
    // She has spent $80 of a $100 monthly budget (the ledger says so; a budget starts from it).
    spent_already(&gw, "carol@example.com", 80.0);
    budget("100");
    let home = tempfile::tempdir().unwrap();
    let claude = || {
        Command::new(clients.join("claude-code-2.1.330/node_modules/.bin/claude"))
            .args([
                "-p",
                "echo hello",
                "--output-format",
                "stream-json",
                "--verbose",
            ])
            .current_dir(home.path())
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", home.path())
            .env("CLAUDE_CODE_USE_GATEWAY", "1")
            .env("ANTHROPIC_BASE_URL", &gw.base)
            .env("ANTHROPIC_AUTH_TOKEN", access)
            .env("NODE_EXTRA_CA_CERTS", &gw.pki.ca_file)
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("DISABLE_AUTOUPDATER", "1")
            .env("CLAUDE_CODE_ENABLE_TELEMETRY", "1")
            .env("OTEL_METRICS_EXPORTER", "otlp")
            .env("OTEL_LOGS_EXPORTER", "otlp")
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &gw.base)
            .env(
                "OTEL_EXPORTER_OTLP_HEADERS",
                format!("Authorization=Bearer {access}"),
            )
            .env("OTEL_METRIC_EXPORT_INTERVAL", "500")
            .env("OTEL_LOGS_EXPORT_INTERVAL", "500")
            .output()
            .expect("run claude")
    };
    let out = claude();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "claude exited {:?}\nstdout: {stdout}\nstderr: {}\nsluice: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr),
        gw.gw.stderr_text()
    );
    let events: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let result = events
        .iter()
        .find(|e| e["type"] == "result")
        .expect("a result");
    assert_eq!(result["is_error"], false, "{result}");
    // The CLI read the usage notice: 80 % used, past the 75 % threshold ("You've used 80% …").
    let notice = events
        .iter()
        .find(|e| e["type"] == "rate_limit_event")
        .unwrap_or_else(|| panic!("no rate_limit_event in {stdout}"));
    assert_eq!(
        notice["rate_limit_info"]["status"], "allowed_warning",
        "{notice}"
    );
    assert_eq!(notice["rate_limit_info"]["utilization"], 0.8, "{notice}");
    assert_eq!(
        notice["rate_limit_info"]["surpassedThreshold"], 0.75,
        "{notice}"
    );
    assert_eq!(
        notice["rate_limit_info"]["rateLimitType"], "overage",
        "{notice}"
    );
    // Its OpenTelemetry exports reached sluice under carol's token and went on to the
    // collector, without the token.
    let relayed = wait_for(Duration::from_secs(10), || {
        let seen: Vec<Value> = mock_requests(&mock)
            .into_iter()
            .filter(|r| r["target"] == "/v1/logs" || r["target"] == "/v1/metrics")
            .collect();
        (!seen.is_empty()).then_some(seen)
    })
    .expect("the collector received Claude Code's telemetry");
    assert!(!serde_json::to_string(&relayed).unwrap().contains(access));
    let exports: Vec<Value> = gw
        .gw
        .records()
        .into_iter()
        .filter(|r| r["operation"] == "telemetry")
        .collect();
    assert!(!exports.is_empty());
    for r in &exports {
        assert_eq!(
            (r["status"].as_u64(), r["identity"].as_str()),
            (Some(200), Some("user:carol@example.com")),
            "{r}"
        );
    }
    gw.first_messages_record();
    let turns: Vec<Value> = gw
        .gw
        .records()
        .into_iter()
        .filter(|r| r["operation"] == "messages")
        .collect();
    for r in &turns {
        assert_eq!(r["identity"], "user:carol@example.com", "{r}");
        assert_eq!(r["team"], "platform");
        assert_eq!(r["status"], 200);
    }
    let policy = gw.https(&format!(
        "GET /managed/settings HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {access}\r\n\r\n",
        gw.host()
    ));
    assert_eq!(policy.status, 200);
    let policy: Value = serde_json::from_slice(&policy.body).unwrap();
    assert_eq!(
        policy["settings"]["env"]["ANTHROPIC_CUSTOM_HEADERS"],
        "x-policy-pushed: yes"
    );

    // At the cap the CLI gets the billing error and says so, without retrying.
    budget("0.000001");
    let out = claude();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let result = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["type"] == "result")
        .unwrap_or_else(|| panic!("no result in {stdout}"));
    assert_eq!(result["is_error"], true, "{result}");
    assert_eq!(result["api_error_status"], 429, "{result}");
    assert_eq!(result["api_error_type"], "billing_error", "{result}");
    let said = result["result"].as_str().unwrap_or_default();
    assert!(
        said.starts_with("spend limit reached: the monthly budget"),
        "{said}"
    );

    // The operator sees the session and ends it: the CLI's token is refused at once.
    let (status, sessions) = admin("GET", "/admin/signin/sessions", "");
    assert_eq!(status, 200);
    assert_eq!(
        sessions["data"][0]["email"], "carol@example.com",
        "{sessions}"
    );
    assert_eq!(sessions["data"][0]["team"], "platform");
    let (status, ended) = admin("DELETE", "/admin/signin/users/carol@example.com", "");
    assert_eq!((status, ended["sessions_ended"].as_u64()), (200, Some(1)));
    let audited = gw.signin_audit("signed_out", "user:carol@example.com");
    assert_eq!(audited["reason"], "admin");
    let refused = gw.messages_with(access);
    assert_eq!(refused.status, 401);
    assert_eq!(refused.header("x-should-retry"), Some("false"));
}

/// Starting sign-ins and trying codes are limited per client address: 25 of each in a row
/// (at most 10 per minute are allowed, so at most 20 across a minute boundary) meet refusals.
#[test]
fn sign_ins_started_and_codes_tried_are_limited_per_address() {
    let clients = real_clients();
    let mut idp = IdentityProvider::start(
        &clients.join("oidc-provider/node_modules/oidc-provider"),
        &json!({}),
    );
    let mock = mock(&["--no-request-log"]);
    // With customer-routed inference on, discovery says so.
    let cri = "[cri]\njwks_url = \"http://127.0.0.1:9/jwks.json\"\naudience = [\"https://gw.test\"]\norg_allowlist = [\"org-1\"]\n";
    let gw = SignedGateway::start(&mut idp, &mock, cri);
    let (_, discovery) = gw.https_json("/.well-known/oauth-authorization-server");
    assert_eq!(discovery["cri_enabled"], true, "{discovery}");
    let started: Vec<(u16, Value)> = (0..25)
        .map(|_| gw.post_form("/oauth/device_authorization", "surface=claude_code"))
        .collect();
    let refused: Vec<&(u16, Value)> = started.iter().filter(|(s, _)| *s != 200).collect();
    assert!(refused.len() >= 5, "{started:?}");
    assert!(refused
        .iter()
        .all(|(s, body)| *s == 429 && body["error"] == "slow_down"));
    let tried: Vec<u16> = (0..25)
        .map(|n| {
            let form = format!("user_code=BCDF-{:04}", n);
            gw.https(&format!(
                "POST /device HTTP/1.1\r\nhost: {}\r\nsec-fetch-site: same-origin\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n\r\n{form}",
                gw.host(),
                form.len()
            ))
            .status
        })
        .collect();
    assert!(
        tried.iter().filter(|s| **s == 429).count() >= 5,
        "{tried:?}"
    );
    assert!(tried.iter().all(|s| *s == 400 || *s == 429), "{tried:?}");
}

/// Claude Code's own sign-in (`claude auth login --gateway-json`: the `/login` dialog's
/// questions as JSON lines) against sluice, a real browser approving the code; then the CLI
/// runs on the stored sign-in, takes its managed settings from sluice and applies the `env`
/// they push (a header every model request then carries).
#[test]
fn claude_codes_own_login_signs_in_and_applies_the_pushed_settings() {
    use std::io::{BufRead, BufReader, Write};
    let clients = real_clients();
    let mut idp = IdentityProvider::start(
        &clients.join("oidc-provider/node_modules/oidc-provider"),
        &json!({"dana": ["eng-platform"]}),
    );
    let mock = mock(&[]);
    let policy = "[[managed_settings]]\ngroup = \"eng-platform\"\n[managed_settings.settings.env]\nANTHROPIC_CUSTOM_HEADERS = \"x-policy-pushed: yes\"\n";
    let gw = SignedGateway::start(&mut idp, &mock, policy);
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".claude")).unwrap();
    std::fs::write(
        home.path().join(".claude/settings.json"),
        json!({"forceLoginMethod": "gateway", "forceLoginGatewayUrl": gw.base}).to_string(),
    )
    .unwrap();
    let claude = |args: &[&str]| {
        let mut command =
            Command::new(clients.join("claude-code-2.1.330/node_modules/.bin/claude"));
        command
            .args(args)
            .current_dir(home.path())
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", home.path())
            .env("NODE_EXTRA_CA_CERTS", &gw.pki.ca_file)
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("DISABLE_AUTOUPDATER", "1");
        command
    };
    let mut login = claude(&["auth", "login", "--gateway-json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run claude auth login");
    let mut answers = login.stdin.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = login.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let browser = Browser::start();
    let mut seen = Vec::new();
    let done = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the sign-in stalled after {seen:?}"));
        let question: Value = serde_json::from_str(&line).unwrap();
        let state = question["state"].as_str().unwrap_or_default().to_string();
        seen.push(state.clone());
        match state.as_str() {
            // The URL, trusting the gateway's certificate, the account: accepted as a person would.
            "url_input" | "trust_prompt" | "confirm_account" => {
                let answer = json!({"state": state, "shown": question["shown"], "accept": true});
                writeln!(answers, "{answer}").unwrap();
            }
            "polling" => {
                let link = question["browserUrl"].as_str().unwrap();
                approve_in_browser(&browser, link, "dana");
            }
            "done" => break question,
            "error" => panic!("the sign-in failed: {question}"),
            _ => {}
        }
    };
    assert!(seen.contains(&"polling".to_string()), "{seen:?}");
    drop(answers);
    let _ = login.wait();
    assert_eq!(done["state"], "done");

    // The stored sign-in: the CLI's requests are dana's, and the settings sluice pushes apply.
    let out = claude(&["-p", "echo hello", "--output-format", "json"])
        .output()
        .expect("run claude -p");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "claude exited {:?}\nstdout: {stdout}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let polled = gw
        .gw
        .records()
        .into_iter()
        .find(|r| r["operation"] == "managed_settings" && r["status"] == 200);
    assert!(polled.is_some(), "the CLI read its managed settings");
    let record = gw.first_messages_record();
    assert_eq!(record["identity"], "user:dana@example.com", "{record}");
    let pushed = mock_requests(&mock).into_iter().any(|r| {
        r["headers"].as_array().unwrap().iter().any(|h| {
            h[0].as_str()
                .unwrap()
                .eq_ignore_ascii_case("x-policy-pushed")
                && h[1] == "yes"
        })
    });
    assert!(
        pushed,
        "the env pushed by the managed settings reached the model requests"
    );
}
