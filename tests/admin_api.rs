//! The admin API on its own listener: a wrong or missing admin key is refused; keys created over
//! it work on the gateway within a second and revoked ones stop; rotation returns a new key;
//! spend is queryable; every admin request is audited, without the keys.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "integration test: a failure is a failed test"
)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::Value;

const ADMIN_KEY: &str = "sk-admin-secret";

fn config(dir: &Path) -> String {
    format!(
        "[store]\npath = \"{}\"\ncommit_interval = \"20ms\"\n[audit]\npath = \"{}\"\n[admin]\nlisten = \"127.0.0.1:0\"\nkey_sha256 = \"{}\"\n",
        dir.join("sluice.db").display(),
        dir.join("audit.jsonl").display(),
        sluice::config::keys::hash_hex(ADMIN_KEY)
    )
}

fn admin(addr: SocketAddr, method: &str, path: &str, key: &str, body: &str) -> (u16, Value) {
    admin_call(addr, key, method, path, body)
}

fn status_with(gw: &Gateway, key: &str) -> u16 {
    request(
        gw.addr,
        &messages_request(SMALL_BODY, &format!("x-api-key: {key}\r\n")),
    )
    .status
}

#[test]
fn keys_and_spend_are_administered_over_the_admin_api() {
    let mock = mock(&["--no-request-log"]);
    let dir = tempfile::tempdir().unwrap();
    let mut gw = gateway(&mock.url(), &config(dir.path()));
    let api = gw.admin_addr.expect("the admin listener is announced");
    assert_ne!(api, gw.addr);

    let (status, body) = admin(api, "GET", "/admin/keys", "sk-wrong", "");
    assert_eq!(status, 401);
    assert_eq!(body["error"]["type"], "authentication_error");

    let (status, body) = admin(
        api,
        "POST",
        "/admin/keys",
        ADMIN_KEY,
        r#"{"name":"ops","team":"t7","models":["claude-haiku-*"]}"#,
    );
    assert_eq!(status, 201, "{body}");
    let key = body["key"].as_str().unwrap().to_string();
    // Open until the first key exists; then a key is required and this one works.
    let closed = wait_for(Duration::from_secs(1), || {
        (status_with(&gw, "sk-not-issued") == 401).then_some(())
    });
    assert!(
        closed.is_some(),
        "the new key reached the workers within a second"
    );
    assert_eq!(status_with(&gw, &key), 200);

    let (status, body) = admin(api, "POST", "/admin/keys", ADMIN_KEY, r#"{"team":"t7"}"#);
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().contains("name"));

    let (status, body) = admin(api, "GET", "/admin/keys", ADMIN_KEY, "");
    assert_eq!(status, 200);
    assert_eq!(body["data"][0]["name"], "ops");
    assert!(
        !body.to_string().contains(&key),
        "listing never shows a key"
    );

    let (status, body) = admin(
        api,
        "POST",
        "/admin/keys/ops/rotate",
        ADMIN_KEY,
        r#"{"grace":"0s"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let rotated = body["key"].as_str().unwrap().to_string();
    assert!(
        wait_for(Duration::from_secs(1), || (status_with(&gw, &key) == 401)
            .then_some(()))
        .is_some()
    );
    assert_eq!(status_with(&gw, &rotated), 200);

    let (status, body) = admin(api, "POST", "/admin/keys/ops/revoke", ADMIN_KEY, "");
    assert_eq!(status, 200, "{body}");
    assert!(
        wait_for(Duration::from_secs(1), || (status_with(&gw, &rotated)
            == 401)
            .then_some(()))
        .is_some(),
        "revoked within a second"
    );
    let (status, _) = admin(api, "POST", "/admin/keys/nobody/revoke", ADMIN_KEY, "");
    assert_eq!(status, 404);

    let spent = wait_for(Duration::from_secs(5), || {
        let (status, body) = admin(api, "GET", "/admin/spend?by=team", ADMIN_KEY, "");
        assert_eq!(status, 200);
        let row = body["data"]
            .as_array()?
            .iter()
            .find(|r| r["group"] == "t7")?
            .clone();
        (row["requests"].as_u64()? >= 2).then_some(row)
    });
    assert!(spent.unwrap()["cost_usd"].as_f64().unwrap() > 0.0);
    let (status, _) = admin(api, "GET", "/admin/spend?by=password", ADMIN_KEY, "");
    assert_eq!(status, 400);

    gw.terminate();
    assert_eq!(gw.wait_exit(Duration::from_secs(10)), Some(0));
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    let events: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let requests: Vec<&Value> = events
        .iter()
        .filter(|e| e["decision"] == "refused" && e["kind"] == "admin")
        .collect();
    assert!(
        requests.iter().any(|e| e["status"] == 401),
        "refused admin calls are audited"
    );
    assert!(events
        .iter()
        .any(|e| e["detail"] == "POST /admin/keys/ops/revoke"));
    assert!(events.iter().any(|e| e["decision"] == "key_revoked"));
    assert!(!audit.contains(&key) && !audit.contains(ADMIN_KEY));
}

/// Sends requests with `key` until one is refused with nothing in flight; returns the refusal.
fn spend_until_refused(gw: &Gateway, key: &str) -> Value {
    gw.spend_until_refused(|| {
        let resp = request(
            gw.addr,
            &messages_request(SMALL_BODY, &format!("x-api-key: {key}\r\n")),
        );
        (resp.status, resp)
    })
    .json()
}

#[test]
fn budgets_teams_and_users_are_administered_and_applied_at_once() {
    let mock = mock(&["--no-request-log"]);
    let dir = tempfile::tempdir().unwrap();
    let mut gw = gateway(&mock.url(), &config(dir.path()));
    let api = gw.admin_addr.unwrap();
    let (status, body) = admin(
        api,
        "POST",
        "/admin/keys",
        ADMIN_KEY,
        r#"{"name":"k9","team":"t9","user":"u9"}"#,
    );
    assert_eq!(status, 201, "{body}");
    let key = body["key"].as_str().unwrap().to_string();
    let closed = wait_for(Duration::from_secs(2), || {
        (status_with(&gw, "sk-not-issued") == 401).then_some(())
    });
    assert!(closed.is_some());

    // A scope or period that is not one of the choices is refused, naming the field.
    for (field, budget) in [
        ("scope", r#"{"scope":"org","name":"t9","limit_usd":1}"#),
        (
            "period",
            r#"{"scope":"team","name":"t9","period":"hourly","limit_usd":1}"#,
        ),
    ] {
        let (status, body) = admin(api, "PUT", "/admin/budgets", ADMIN_KEY, budget);
        assert_eq!(status, 400, "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(&format!("{field}: ")), "{message}");
    }

    // A budget set over the API applies to the next request.
    let (status, body) = admin(
        api,
        "PUT",
        "/admin/budgets",
        ADMIN_KEY,
        r#"{"scope":"team","name":"t9","period":"daily","limit_usd":-3}"#,
    );
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("limit_usd: "),
        "{body}"
    );
    let (status, body) = admin(
        api,
        "PUT",
        "/admin/budgets",
        ADMIN_KEY,
        r#"{"scope":"team","name":"t9","period":"daily","limit_usd":0.0002}"#,
    );
    assert_eq!(status, 200, "{body}");
    let refusal = spend_until_refused(&gw, &key);
    assert!(refusal["error"]["message"]
        .as_str()
        .unwrap()
        .contains("daily budget of $0.0002 for team t9"));
    let (status, body) = admin(api, "GET", "/admin/budgets", ADMIN_KEY, "");
    assert_eq!(status, 200);
    let listed = &body["data"][0];
    assert_eq!(
        (listed["name"].as_str(), listed["source"].as_str()),
        (Some("t9"), Some("admin"))
    );
    assert!(listed["used_usd"].as_f64().unwrap() > 0.0, "{body}");

    // Raised: served again, from the spend so far. Deleted: gone; a second delete is a 404.
    let (status, _) = admin(
        api,
        "PUT",
        "/admin/budgets",
        ADMIN_KEY,
        r#"{"scope":"team","name":"t9","period":"daily","limit_usd":5}"#,
    );
    assert_eq!(status, 200);
    assert_eq!(status_with(&gw, &key), 200);
    let (status, body) = admin(api, "GET", "/admin/teams", ADMIN_KEY, "");
    assert_eq!(status, 200);
    assert_eq!(body["data"][0]["budgets"][0]["limit_usd"], 5.0, "{body}");
    let (status, _) = admin(api, "DELETE", "/admin/budgets/team/t9/daily", ADMIN_KEY, "");
    assert_eq!(status, 200);
    let (status, _) = admin(api, "DELETE", "/admin/budgets/team/t9/daily", ADMIN_KEY, "");
    assert_eq!(status, 404);

    // Team limits: two requests a minute, then 429; deleting them lifts it.
    let (status, body) = admin(api, "PUT", "/admin/teams/t9", ADMIN_KEY, r#"{"rpm":2}"#);
    assert_eq!(status, 200, "{body}");
    let statuses: Vec<u16> = (0..3).map(|_| status_with(&gw, &key)).collect();
    assert_eq!(statuses, [200, 200, 429]);
    let (_, body) = admin(api, "GET", "/admin/teams", ADMIN_KEY, "");
    assert_eq!(body["data"][0]["rpm"], 2, "{body}");
    assert_eq!(body["data"][0]["limits_source"], "admin");
    let (status, _) = admin(api, "DELETE", "/admin/teams/t9", ADMIN_KEY, "");
    assert_eq!(status, 200);
    assert_eq!(status_with(&gw, &key), 200);
    let (status, _) = admin(
        api,
        "PUT",
        "/admin/users/u9",
        ADMIN_KEY,
        r#"{"rpm":"lots"}"#,
    );
    assert_eq!(status, 400);

    // What the API stored survives a restart.
    let (status, _) = admin(api, "PUT", "/admin/users/u9", ADMIN_KEY, r#"{"rpm":1}"#);
    assert_eq!(status, 200);
    gw.terminate();
    assert_eq!(gw.wait_exit(Duration::from_secs(10)), Some(0));
    let again = gateway(&mock.url(), &config(dir.path()));
    assert_eq!(status_with(&again, &key), 200);
    assert_eq!(status_with(&again, &key), 429);
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    for action in [
        "budget_changed",
        "budget_deleted",
        "limits_changed",
        "limits_deleted",
    ] {
        assert!(audit.contains(action), "{action} not audited");
    }
}

#[test]
fn a_key_created_over_the_api_carries_its_limits_and_budget() {
    let mock = mock(&["--no-request-log"]);
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&mock.url(), &config(dir.path()));
    let api = gw.admin_addr.unwrap();
    // A bad budget creates nothing.
    let (status, body) = admin(
        api,
        "POST",
        "/admin/keys",
        ADMIN_KEY,
        r#"{"name":"lim","budget":{"limit_usd":-1}}"#,
    );
    assert_eq!(status, 400, "{body}");
    let (_, listed) = admin(api, "GET", "/admin/keys", ADMIN_KEY, "");
    assert_eq!(listed["data"].as_array().unwrap().len(), 0);
    let (status, body) = admin(
        api,
        "POST",
        "/admin/keys",
        ADMIN_KEY,
        r#"{"name":"lim","team":"t1","rpm":2,"budget":{"limit_usd":5,"period":"daily"}}"#,
    );
    assert_eq!(status, 201, "{body}");
    let key = body["key"].as_str().unwrap().to_string();
    // Open until the first key reaches the workers; then keys are required.
    let ready = wait_for(Duration::from_secs(2), || {
        (status_with(&gw, "sk-not-issued") == 401).then_some(())
    });
    assert!(ready.is_some());
    let statuses: Vec<u16> = (0..3).map(|_| status_with(&gw, &key)).collect();
    assert_eq!(statuses, [200, 200, 429], "rpm = 2 applies to the new key");
    let (_, budgets) = admin(api, "GET", "/admin/budgets", ADMIN_KEY, "");
    let b = &budgets["data"][0];
    assert_eq!(
        (b["scope"].as_str(), b["name"].as_str()),
        (Some("key"), Some("lim"))
    );
    // Lifting the key's limits over the API serves it again.
    let (status, _) = admin(api, "DELETE", "/admin/keys/lim/limits", ADMIN_KEY, "");
    assert_eq!(status, 200);
    assert_eq!(status_with(&gw, &key), 200);

    // Spend per Claude Code session, with its agents.
    for agent in [
        "",
        "x-claude-code-agent-id: sub-1\r\n",
        "x-claude-code-agent-id: sub-1\r\n",
    ] {
        let extra = format!("x-api-key: {key}\r\nx-claude-code-session-id: sess-42\r\n{agent}");
        assert_eq!(
            request(gw.addr, &messages_request(SMALL_BODY, &extra)).status,
            200
        );
    }
    let session = wait_for(Duration::from_secs(5), || {
        let (_, body) = admin(api, "GET", "/admin/spend?by=session_id", ADMIN_KEY, "");
        body["data"]
            .as_array()?
            .iter()
            .find(|r| r["group"] == "sess-42" && r["requests"] == 3)
            .cloned()
    })
    .expect("the session's spend");
    let agents = session["agents"].as_array().unwrap();
    let sub = agents.iter().find(|a| a["group"] == "sub-1").unwrap();
    assert_eq!(sub["requests"], 2);
    let main = agents.iter().find(|a| a["group"].is_null()).unwrap();
    assert_eq!(main["requests"], 1);
}
