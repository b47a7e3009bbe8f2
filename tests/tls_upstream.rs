//! An https upstream: the certificate is verified (against the webpki roots plus a configured
//! `ca_file`) for the host name sent as SNI; a certificate that does not verify is refused.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "integration test: a failure is a failed test"
)]

mod common;

use common::*;

struct TlsMock {
    proc: Proc,
    ca: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn tls_mock() -> TlsMock {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let proc = mock(&[
        "--tls-cert",
        cert_path.to_str().unwrap(),
        "--tls-key",
        key_path.to_str().unwrap(),
    ]);
    TlsMock {
        proc,
        ca: cert_path,
        _dir: dir,
    }
}

fn upstream_config(url: &str, ca: Option<&std::path::Path>) -> String {
    let mut c =
        format!("[[upstreams]]\nname = \"secure\"\nurl = \"{url}\"\napi_key = \"sk-upstream\"\n");
    if let Some(ca) = ca {
        c.push_str(&format!("ca_file = \"{}\"\n", ca.display()));
    }
    c
}

#[test]
fn a_verified_https_upstream_carries_requests_and_streams() {
    let m = tls_mock();
    let url = format!("https://localhost:{}", m.proc.addr.port());
    let gw = gateway_with("", &upstream_config(&url, Some(&m.ca)), &["--workers", "1"]);
    let resp = request(gw.addr, &messages_request(SMALL_BODY, ""));
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.json()["content"][0]["text"], "hello");
    let resp = request(
        gw.addr,
        &messages_request(STREAM_BODY, "x-mock-reply: a b\r\n"),
    );
    assert_eq!(resp.status, 200);
    assert!(String::from_utf8(resp.body)
        .unwrap()
        .ends_with("data: {\"type\":\"message_stop\"}\n\n"));
    let records = gw.wait_records(2);
    assert_eq!(records[1]["stream_complete"], true);
    assert_eq!(
        records[1]["pooled_connection"], true,
        "the TLS connection was pooled and reused"
    );
}

#[test]
fn an_unverifiable_certificate_is_refused() {
    let m = tls_mock();
    // Not trusted: no ca_file, and the mock's certificate is self-signed.
    let gw = gateway(
        "",
        &upstream_config(&format!("https://localhost:{}", m.proc.addr.port()), None),
    );
    let resp = request(gw.addr, &messages_request(SMALL_BODY, ""));
    assert_eq!(resp.status, 502);
    assert!(
        resp.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("TLS"),
        "{:?}",
        resp.json()
    );
    // Trusted, but for another name than the one dialled (SNI / name check).
    let gw = gateway(
        "",
        &upstream_config(
            &format!("https://127.0.0.1:{}", m.proc.addr.port()),
            Some(&m.ca),
        ),
    );
    let resp = request(gw.addr, &messages_request(SMALL_BODY, ""));
    assert_eq!(resp.status, 502);
}

#[test]
fn a_ca_file_on_a_plain_upstream_or_a_missing_file_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        upstream_config(
            "https://localhost:1",
            Some(std::path::Path::new("/nonexistent.pem")),
        ),
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("upstreams[0].ca_file"));
}
