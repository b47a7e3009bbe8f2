//! Client credentials: virtual keys gate access, the upstream's credential replaces the
//! client's, pass-through mode forwards the client's own, and no key is ever logged.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "integration test: a failure is a failed test"
)]

mod common;

use common::*;

fn key_config(upstream_key: bool) -> String {
    let hash = sluice::config::keys::hash_hex("sk-virtual-alice");
    let mut c = format!("[[keys]]\nname = \"alice\"\nsha256 = \"{hash}\"\nuser = \"alice@corp\"\nteam = \"platform\"\n");
    c.push_str("[[upstreams]]\nname = \"up\"\nurl = \"http://127.0.0.1:9\"\n");
    if upstream_key {
        c.push_str("api_key = \"sk-upstream\"\nauth_header = \"authorization\"\n");
    }
    c
}

#[test]
fn virtual_keys_are_required_and_swapped_for_the_upstream_credential() {
    let mock = mock(&[]);
    let gw = gateway(&mock.url(), &key_config(true));
    for bad in [
        "",
        "x-api-key: sk-wrong\r\n",
        "Authorization: Bearer sk-wrong\r\n",
    ] {
        let resp = request(gw.addr, &messages_request(SMALL_BODY, bad));
        assert_eq!(resp.status, 401);
        assert_eq!(resp.json()["error"]["type"], "authentication_error");
    }
    assert!(
        mock_requests(&mock).is_empty(),
        "a refused request reached the upstream"
    );
    for good in [
        "x-api-key: sk-virtual-alice\r\n",
        "Authorization: Bearer sk-virtual-alice\r\n",
    ] {
        let resp = request(gw.addr, &messages_request(SMALL_BODY, good));
        assert_eq!(resp.status, 200);
    }
    let received = mock_requests(&mock);
    for r in &received {
        let headers = r["headers"].to_string();
        assert!(!headers.contains("sk-virtual-alice"));
        assert!(
            headers.contains("[\"authorization\",\"Bearer sk-upstream\"]"),
            "{headers}"
        );
    }
    let records = gw.wait_records(5);
    let ok: Vec<_> = records.iter().filter(|r| r["status"] == 200).collect();
    assert_eq!(ok.len(), 2);
    assert!(ok.iter().all(|r| r["identity"] == "key:alice"
        && r["user"] == "alice@corp"
        && r["team"] == "platform"));
    let log = std::fs::read_to_string(&gw.access_log).unwrap() + &gw.stderr_text();
    assert!(
        !log.contains("sk-virtual-alice")
            && !log.contains("sk-upstream")
            && !log.contains("sk-wrong")
    );
}

#[test]
fn keys_without_an_upstream_credential_still_never_reach_the_upstream() {
    let mock = mock(&[]);
    let gw = gateway(&mock.url(), &key_config(false));
    let resp = request(
        gw.addr,
        &messages_request(SMALL_BODY, "x-api-key: sk-virtual-alice\r\n"),
    );
    assert_eq!(resp.status, 200);
    assert!(!mock_requests(&mock)[0]["headers"]
        .to_string()
        .contains("sk-virtual-alice"));
}

#[test]
fn pass_through_mode_forwards_the_client_credential() {
    let mock = mock(&[]);
    let gw = gateway(&mock.url(), "");
    let resp = request(
        gw.addr,
        &messages_request(SMALL_BODY, "x-api-key: sk-client-own\r\n"),
    );
    assert_eq!(resp.status, 200);
    assert!(mock_requests(&mock)[0]["headers"]
        .to_string()
        .contains("[\"x-api-key\",\"sk-client-own\"]"));
    let r = &gw.wait_records(1)[0];
    assert!(r["identity"].as_str().unwrap().starts_with("passthrough:"));
    assert!(!std::fs::read_to_string(&gw.access_log)
        .unwrap()
        .contains("sk-client-own"));
}

#[test]
fn open_access_with_an_upstream_key_on_a_public_address_warns() {
    let gw = gateway_with(
        "http://127.0.0.1:9",
        "",
        &["--listen", "0.0.0.0:0", "--upstream-api-key", "sk-up"],
    );
    let warned = wait_for(std::time::Duration::from_secs(5), || {
        gw.stderr_text().contains("no virtual keys").then_some(())
    });
    assert!(warned.is_some(), "{}", gw.stderr_text());
    assert!(!gw.stderr_text().contains("sk-up"));
}
