//! `GET /managed/settings`: the caller's policy document with the contract's checksum (keys
//! sorted at every level, no whitespace — checked against Python's `json.dumps(sort_keys=True)`),
//! the checksum as `ETag`, 304 on a match or a `*` probe, 404 when no document applies; and the
//! client's checksum hint recorded in the access log.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "integration test: a failure is a failed test"
)]

mod common;

use common::*;
use serde_json::Value;

const PLATFORM_KEY: &str = "sk-platform";
const LONER_KEY: &str = "sk-loner";

fn get(gw: &Gateway, key: &str, extra: &str) -> Response {
    request(
        gw.addr,
        &format!("GET /managed/settings HTTP/1.1\r\nhost: gw\r\nx-api-key: {key}\r\n{extra}\r\n"),
    )
}

#[test]
fn the_policy_document_its_checksum_etag_304_and_404() {
    let mock = mock(&["--no-request-log"]);
    let config = format!(
        "[[keys]]\nname = \"p\"\nsha256 = \"{}\"\nteam = \"platform\"\n[[keys]]\nname = \"l\"\nsha256 = \"{}\"\n\
         [[managed_settings]]\nteam = \"platform\"\n[managed_settings.settings]\nzeta = \"last\"\n\
         permissions = {{ deny = [\"Bash(rm:*)\"], allow = [\"Read\"] }}\n\
         env = {{ ZED = \"1\", ALPHA = \"é\" }}\n",
        sluice::config::keys::hash_hex(PLATFORM_KEY),
        sluice::config::keys::hash_hex(LONER_KEY),
    );
    let gw = gateway(&mock.url(), &config);
    let resp = get(&gw, PLATFORM_KEY, "");
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let doc: Value = serde_json::from_slice(&resp.body).unwrap();
    let checksum = doc["checksum"].as_str().unwrap().to_string();
    assert_eq!(
        resp.header("etag"),
        Some(format!("\"{checksum}\"").as_str())
    );
    assert_eq!(doc["settings"]["env"]["ALPHA"], "é");

    // The checksum as an independent implementation computes it.
    let python = real_clients().join("venv/bin/python");
    let out = std::process::Command::new(python)
        .args([
            "-c",
            "import json,hashlib,sys; s=json.loads(sys.argv[1]); \
             print('sha256:'+hashlib.sha256(json.dumps(s,sort_keys=True,separators=(',',':'),ensure_ascii=False).encode()).hexdigest())",
            &doc["settings"].to_string(),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), checksum);

    let same = get(
        &gw,
        PLATFORM_KEY,
        &format!("if-none-match: \"{checksum}\"\r\n"),
    );
    assert_eq!((same.status, same.body.len()), (304, 0));
    let probe = get(&gw, PLATFORM_KEY, "if-none-match: *\r\n");
    assert_eq!(probe.status, 304);
    let stale = get(&gw, PLATFORM_KEY, "if-none-match: \"sha256:00\"\r\n");
    assert_eq!(stale.status, 200);
    assert_eq!(get(&gw, LONER_KEY, "").status, 404);
    assert_eq!(get(&gw, "sk-nobody", "").status, 401);

    // The client's hint (when the settings ask for it) is recorded with its requests.
    let hinted = request(
        gw.addr,
        &messages_request(
            SMALL_BODY,
            &format!("x-api-key: {PLATFORM_KEY}\r\nx-claude-code-managed-settings-checksum: sha256:old\r\n"),
        ),
    );
    assert_eq!(hinted.status, 200);
    let record = wait_for(std::time::Duration::from_secs(5), || {
        gw.records()
            .into_iter()
            .find(|r| r["operation"] == "messages")
    })
    .unwrap();
    assert_eq!(record["managed_settings_checksum"], "sha256:old");
}

/// The admin API sets a team's document (JSON, as Claude Code's managed-settings.json), which is
/// served at once with the contract's checksum, kept across a reload and a restart, listed with
/// its source, and removed again; a document that names a group and a team is refused.
#[test]
fn documents_set_over_the_admin_api_are_served_kept_and_removed() {
    let mock = mock(&["--no-request-log"]);
    let dir = tempfile::tempdir().unwrap();
    let admin_key = "admin-managed";
    let config = format!(
        "[[keys]]\nname = \"p\"\nsha256 = \"{}\"\nteam = \"platform\"\n\
         [store]\npath = \"{}\"\n[admin]\nlisten = \"127.0.0.1:0\"\nkey_sha256 = \"{}\"\n",
        sluice::config::keys::hash_hex(PLATFORM_KEY),
        dir.path().join("sluice.db").display(),
        sluice::config::keys::hash_hex(admin_key),
    );
    let gw = gateway(&mock.url(), &config);
    let admin = |gw: &Gateway, method: &str, path: &str, body: &str| {
        let resp = request(
            gw.admin_addr.unwrap(),
            &format!(
                "{method} {path} HTTP/1.1\r\nhost: admin\r\nauthorization: Bearer {admin_key}\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            ),
        );
        (
            resp.status,
            serde_json::from_slice::<Value>(&resp.body).unwrap_or(Value::Null),
        )
    };
    assert_eq!(get(&gw, PLATFORM_KEY, "").status, 404);
    let document = r#"{"team":"platform","settings":{"zeta":null,"env":{"ZED":"1","CLAUDE_CODE_GATEWAY_HINT_HEADERS":"1"},"permissions":{"deny":["Bash(rm:*)"]}}}"#;
    let (status, answer) = admin(&gw, "PUT", "/admin/managed-settings", document);
    assert_eq!(status, 200, "{answer}");
    let served = get(&gw, PLATFORM_KEY, "");
    assert_eq!(served.status, 200);
    let doc: Value = serde_json::from_slice(&served.body).unwrap();
    let canonical = r#"{"env":{"CLAUDE_CODE_GATEWAY_HINT_HEADERS":"1","ZED":"1"},"permissions":{"deny":["Bash(rm:*)"]},"zeta":null}"#;
    assert_eq!(
        doc["checksum"],
        format!(
            "sha256:{}",
            sluice::digest::sha256_hex(canonical.as_bytes())
        )
    );
    assert_eq!(doc["settings"]["zeta"], Value::Null);
    // Machines on a stale policy: the checksum each caller's requests last reported.
    let reported = |checksum: &str| {
        let hint = format!(
            "x-claude-code-managed-settings-checksum: {checksum}\r\nx-api-key: {PLATFORM_KEY}\r\n"
        );
        assert_eq!(
            request(gw.addr, &messages_request(SMALL_BODY, &hint)).status,
            200
        );
        wait_for(std::time::Duration::from_secs(5), || {
            let (_, clients) = admin(&gw, "GET", "/admin/managed-settings/clients", "");
            (clients["data"][0]["checksum"] == checksum).then_some(clients)
        })
        .expect("the reported checksum is listed")
    };
    let stale = reported("sha256:0000");
    assert_eq!(stale["data"][0]["identity"], "key:p");
    assert_eq!(stale["data"][0]["current"], false);
    std::thread::sleep(std::time::Duration::from_millis(5));
    let current = reported(doc["checksum"].as_str().unwrap());
    assert_eq!(current["data"][0]["current"], true, "{current}");

    let (_, listed) = admin(&gw, "GET", "/admin/managed-settings", "");
    assert_eq!(listed["data"][0]["team"], "platform");
    assert_eq!(listed["data"][0]["source"], "admin");
    assert_eq!(listed["data"][0]["checksum"], doc["checksum"]);

    let (status, refused) = admin(
        &gw,
        "PUT",
        "/admin/managed-settings",
        r#"{"team":"a","group":"b","settings":{}}"#,
    );
    assert_eq!(status, 400, "{refused}");

    // Kept across a reload and a restart (the store holds it).
    let (status, _) = admin(&gw, "POST", "/admin/reload", "");
    assert_eq!(status, 200);
    assert_eq!(get(&gw, PLATFORM_KEY, "").status, 200);
    drop(gw);
    let gw = gateway(&mock.url(), &config);
    assert_eq!(get(&gw, PLATFORM_KEY, "").body, served.body);

    let (status, _) = admin(&gw, "DELETE", "/admin/managed-settings/team/platform", "");
    assert_eq!(status, 200);
    assert_eq!(get(&gw, PLATFORM_KEY, "").status, 404);
    let (status, _) = admin(&gw, "DELETE", "/admin/managed-settings/team/platform", "");
    assert_eq!(status, 404);
}
