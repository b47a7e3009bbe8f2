//! HTTPS at the edge, over real sockets against the built binary: requests and streams over
//! TLS 1.3 and 1.2, SNI with several certificates, session resumption, client certificates as
//! identities, certificate checks in `check-config`, and hostile TLS clients (garbage, plain
//! HTTP, slow handshakes, too many handshakes) — each hostile case counted at the mock, which
//! must see nothing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "integration test: a failure is a failed test"
)]

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::pki::{tls_config, Pki};
use common::*;
use rustls::version::{TLS12, TLS13};

const KEY: &str = "sk-edge-key";

fn keyed(extra_server_tls: &str, more: &str, pki: &Pki, names: &[&str]) -> (Gateway, Proc) {
    let mock = mock(&[]);
    let cert = pki.server(names, 90);
    let config = format!(
        "{}{more}\n[[keys]]\nname = \"dev\"\nsha256 = \"{}\"\n",
        tls_config(&cert, extra_server_tls),
        sluice::config::keys::hash_hex(KEY)
    );
    (gateway(&mock.url(), &config), mock)
}

fn tls_request(client: &mut Client, raw: &str) -> Response {
    client.send(raw.as_bytes());
    client.read_whole_response().expect("a response over TLS")
}

#[test]
fn requests_and_streams_over_tls13_and_tls12_with_resumption() {
    let pki = Pki::new("edge");
    let (gw, _mock) = keyed("", "", &pki, &["localhost"]);
    let tls_addr = gw.tls_addr.expect("an HTTPS listener");
    for versions in [&[&TLS13][..], &[&TLS12][..]] {
        let config = pki.client_config(versions, None);
        let mut client = Client::connect_tls(tls_addr, config.clone(), "localhost").unwrap();
        let conn = client.tls.as_ref().unwrap();
        assert_eq!(conn.alpn_protocol(), Some(&b"http/1.1"[..]));
        assert_eq!(conn.protocol_version(), Some(versions[0].version));
        let resp = tls_request(
            &mut client,
            &messages_request(SMALL_BODY, &format!("x-api-key: {KEY}\r\n")),
        );
        assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
        assert_eq!(resp.json()["content"][0]["text"], "hello");
        // Keep-alive: a stream on the same connection.
        let resp = tls_request(
            &mut client,
            &messages_request(STREAM_BODY, &format!("x-api-key: {KEY}\r\n")),
        );
        assert_eq!(resp.status, 200);
        assert!(String::from_utf8(resp.body)
            .unwrap()
            .ends_with("data: {\"type\":\"message_stop\"}\n\n"));
        drop(client);
        // A new connection resumes the session (tickets; ids for TLS 1.2).
        let resumed = Client::connect_tls(tls_addr, config, "localhost").unwrap();
        // TLS 1.3 tickets arrive after the handshake: read them by making one request first.
        let mut resumed = resumed;
        let resp = tls_request(&mut resumed, "GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n");
        assert_eq!(resp.status, 200);
        let kind = resumed.tls.as_ref().unwrap().handshake_kind();
        assert_eq!(
            kind,
            Some(rustls::HandshakeKind::Resumed),
            "{versions:?}: the second connection resumed"
        );
    }
    // Without a key, the TLS connection is still governed.
    let mut client =
        Client::connect_tls(tls_addr, pki.client_config(&[&TLS13], None), "localhost").unwrap();
    let resp = tls_request(&mut client, &messages_request(SMALL_BODY, ""));
    assert_error(&resp, 401, "authentication_error");
    let records = gw.wait_records(7);
    assert!(records
        .iter()
        .filter(|r| r["operation"] == "messages" && r["status"] == 200)
        .all(|r| r["identity"] == "key:dev"));
}

#[test]
fn sni_picks_the_certificate_for_the_name() {
    let pki = Pki::new("sni");
    let other = pki.server(&["api.example.test", "*.apps.example.test"], 90);
    let extra = format!(
        "[[server.tls.certificates]]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        other.cert.display(),
        other.key.display()
    );
    let (gw, _mock) = keyed(&extra, "", &pki, &["localhost"]);
    let tls_addr = gw.tls_addr.unwrap();
    let config = pki.client_config(&[&TLS13], None);
    let leaf_of = |name: &str| {
        let c = Client::connect_tls(tls_addr, config.clone(), name).unwrap();
        c.tls.unwrap().peer_certificates().unwrap()[0].clone()
    };
    let default_leaf = leaf_of("localhost");
    let other_leaf = leaf_of("api.example.test");
    assert_ne!(default_leaf, other_leaf);
    assert_eq!(leaf_of("build.apps.example.test"), other_leaf);
    // An unknown name gets the default certificate, which the client refuses for that name.
    assert!(Client::connect_tls(tls_addr, config, "unknown.example.test").is_err());
}

#[test]
fn a_plain_listener_and_an_https_listener_run_side_by_side() {
    let pki = Pki::new("both");
    let (gw, mock) = keyed("", "", &pki, &["localhost"]);
    let plain = request(
        gw.addr,
        &messages_request(SMALL_BODY, &format!("x-api-key: {KEY}\r\n")),
    );
    assert_eq!(plain.status, 200);
    let mut client = Client::connect_tls(
        gw.tls_addr.unwrap(),
        pki.client_config(&[&TLS13], None),
        "localhost",
    )
    .unwrap();
    let resp = tls_request(
        &mut client,
        &messages_request(SMALL_BODY, &format!("x-api-key: {KEY}\r\n")),
    );
    assert_eq!(resp.status, 200);
    assert_eq!(mock_requests(&mock).len(), 2);
}

/// The client-certificate setup: `client_auth`, the CA, and a rule mapping `*@example.com`.
fn mtls_gateway(pki: &Pki, client_auth: &str, with_key: bool) -> (Gateway, Proc) {
    let mock = mock(&[]);
    let cert = pki.server(&["localhost"], 90);
    let extra = format!(
        "client_auth = \"{client_auth}\"\nclient_ca_file = \"{}\"\n[[server.tls.client_identities]]\nname = \"*@example.com\"\nteam = \"eng\"\n",
        pki.ca_file.display()
    );
    let mut config = tls_config(&cert, &extra);
    if with_key {
        config.push_str(&format!(
            "[[keys]]\nname = \"dev\"\nsha256 = \"{}\"\n",
            sluice::config::keys::hash_hex(KEY)
        ));
    }
    (gateway(&mock.url(), &config), mock)
}

#[test]
fn a_client_certificate_is_an_identity_with_or_without_a_key() {
    let pki = Pki::new("mtls");
    let (gw, mock) = mtls_gateway(&pki, "optional", true);
    let tls_addr = gw.tls_addr.unwrap();
    let alice = pki.client("alice@example.com", "Alice");
    let bob = pki.client("bob@other.org", "Bob");
    let send = |cert: Option<&common::pki::Issued>, headers: &str| {
        let config = pki.client_config(&[&TLS13], cert);
        let mut client = Client::connect_tls(tls_addr, config, "localhost").unwrap();
        tls_request(&mut client, &messages_request(SMALL_BODY, headers))
    };
    // The certificate alone.
    assert_eq!(send(Some(&alice), "").status, 200);
    // A key alone (optional client auth).
    assert_eq!(send(None, &format!("x-api-key: {KEY}\r\n")).status, 200);
    // Both: the key names the caller.
    assert_eq!(
        send(Some(&alice), &format!("x-api-key: {KEY}\r\n")).status,
        200
    );
    // A certificate no rule maps, and nothing at all: refused.
    assert_error(&send(Some(&bob), ""), 401, "authentication_error");
    assert_error(&send(None, ""), 401, "authentication_error");
    let records = gw.wait_records(5);
    let identities: Vec<&str> = records
        .iter()
        .map(|r| r["identity"].as_str().unwrap())
        .collect();
    assert_eq!(
        identities,
        [
            "cert:alice@example.com",
            "key:dev",
            "key:dev",
            "anonymous",
            "anonymous"
        ]
    );
    assert_eq!(records[0]["user"], "alice@example.com");
    assert_eq!(records[0]["team"], "eng");
    assert_eq!(mock_requests(&mock).len(), 3);
    // A certificate from another CA is refused in the handshake.
    let stranger_pki = Pki::new("stranger");
    let stranger = stranger_pki.client("alice@example.com", "Alice");
    // Trusting the gateway, presenting the stranger's certificate.
    let foreign = pki.client_config(&[&TLS13], Some(&stranger));
    let refused = Client::connect_tls(tls_addr, foreign, "localhost").and_then(|mut c| {
        // TLS 1.3: the client learns of the refusal on its first read.
        c.send(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n");
        match c.read_whole_response() {
            Some(_) => Ok(()),
            None => Err(std::io::Error::other("refused")),
        }
    });
    assert!(
        refused.is_err(),
        "a certificate from an unknown CA was accepted"
    );
    assert_eq!(mock_requests(&mock).len(), 3);
}

#[test]
fn required_client_certificates_refuse_a_client_without_one() {
    let pki = Pki::new("required");
    let (gw, mock) = mtls_gateway(&pki, "required", true);
    let tls_addr = gw.tls_addr.unwrap();
    let without = Client::connect_tls(tls_addr, pki.client_config(&[&TLS13], None), "localhost")
        .and_then(|mut c| {
            c.send(&messages_request(SMALL_BODY, &format!("x-api-key: {KEY}\r\n")).into_bytes());
            c.read_whole_response()
                .map(|_| ())
                .ok_or_else(|| std::io::Error::other("refused"))
        });
    assert!(
        without.is_err(),
        "a client without a certificate was served"
    );
    let alice = pki.client("alice@example.com", "Alice");
    let mut with = Client::connect_tls(
        tls_addr,
        pki.client_config(&[&TLS12], Some(&alice)),
        "localhost",
    )
    .unwrap();
    let resp = tls_request(&mut with, &messages_request(SMALL_BODY, ""));
    assert_eq!(resp.status, 200);
    assert_eq!(mock_requests(&mock).len(), 1);
}

/// Reads until the server closes or `within` passes; returns what arrived and whether it closed.
fn read_until_closed(stream: &mut std::net::TcpStream, within: Duration) -> (Vec<u8>, bool) {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (got, true),
            Err(_) => return (got, false),
        }
    }
}

fn metric(gw: &Gateway, name_and_labels: &str) -> u64 {
    let resp = request(gw.addr, "GET /metrics HTTP/1.1\r\nHost: gw\r\n\r\n");
    let text = String::from_utf8(resp.body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name_and_labels} not in {text}"))
}

#[test]
fn hostile_tls_clients_are_answered_or_dropped_never_served() {
    let pki = Pki::new("hostile");
    let (gw, mock) = keyed(
        "handshake_timeout = \"1s\"\nmax_handshakes_per_worker = 2\n",
        "",
        &pki,
        &["localhost"],
    );
    let tls_addr = gw.tls_addr.unwrap();
    // Plain HTTP to the HTTPS port: a clear 400, then close.
    let mut plain = std::net::TcpStream::connect(tls_addr).unwrap();
    plain
        .write_all(messages_request(SMALL_BODY, &format!("x-api-key: {KEY}\r\n")).as_bytes())
        .unwrap();
    let (answer, closed) = read_until_closed(&mut plain, Duration::from_secs(5));
    let answer = String::from_utf8_lossy(&answer);
    assert!(closed);
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(answer.contains("https://"), "{answer}");
    // Garbage instead of a ClientHello: closed, nothing sent back.
    let mut garbage = std::net::TcpStream::connect(tls_addr).unwrap();
    garbage.write_all(&[0xde; 300]).unwrap();
    let (got, closed) = read_until_closed(&mut garbage, Duration::from_secs(5));
    assert!(closed && got.is_empty(), "{got:?}");
    // A TLS record header that announces a ClientHello and never delivers it.
    let mut corrupt = std::net::TcpStream::connect(tls_addr).unwrap();
    corrupt
        .write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0xff, 0xff, 0xff, 0xff])
        .unwrap();
    let (_, closed) = read_until_closed(&mut corrupt, Duration::from_secs(5));
    assert!(closed, "a malformed ClientHello was not refused");
    // Slowloris: two connections trickle a ClientHello; they fill the worker's two handshake
    // slots (one worker here? two workers: fill both), and are dropped at the timeout.
    let started = Instant::now();
    let mut slow: Vec<_> = (0..8)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(tls_addr).unwrap();
            s.write_all(&[0x16, 0x03, 0x01]).unwrap();
            s
        })
        .collect();
    // Each worker has two slots: of eight, at most four wait; the rest were closed at once.
    let mut closed_at_once = 0;
    for s in &mut slow {
        let (_, closed) = read_until_closed(s, Duration::from_millis(300));
        closed_at_once += usize::from(closed);
    }
    assert!(closed_at_once >= 4, "{closed_at_once} closed at once");
    for s in &mut slow {
        let (_, closed) = read_until_closed(s, Duration::from_secs(5));
        assert!(closed, "a slow handshake outlived the handshake timeout");
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    // The slots are free again: a real client gets through.
    let mut client =
        Client::connect_tls(tls_addr, pki.client_config(&[&TLS13], None), "localhost").unwrap();
    let resp = tls_request(
        &mut client,
        &messages_request(SMALL_BODY, &format!("x-api-key: {KEY}\r\n")),
    );
    assert_eq!(resp.status, 200);
    assert_eq!(
        mock_requests(&mock).len(),
        1,
        "only the real client reached the upstream"
    );
    let outcome = |o: &str| {
        metric(
            &gw,
            &format!("sluice_tls_handshakes_total{{outcome=\"{o}\"}}"),
        )
    };
    assert_eq!(outcome("plain_http"), 1);
    assert!(outcome("failed") >= 1);
    assert!(outcome("over_limit") >= 4);
    assert!(outcome("timed_out") >= 1);
    assert_eq!(outcome("established"), 1);
}

#[test]
fn check_config_checks_certificates() {
    let pki = Pki::new("check");
    let run = |config: &str| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.toml");
        std::fs::write(&path, config).unwrap();
        let out = std::process::Command::new(BIN)
            .args(["check-config", path.to_str().unwrap()])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let good = pki.server(&["gw.example.test"], 90);
    let (code, text) = run(&tls_config(&good, ""));
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("names gw.example.test, expires in 8"),
        "{text}"
    );
    assert!(!text.contains("warning"), "{text}");
    let soon = pki.server(&["gw.example.test"], 5);
    let (code, text) = run(&tls_config(&soon, ""));
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("warning: certificate") && text.contains("less than 14 days"),
        "{text}"
    );
    let expired = pki.server(&["gw.example.test"], -1);
    let (code, text) = run(&tls_config(&expired, ""));
    assert_eq!(code, Some(2));
    assert!(
        text.contains("server.tls.cert_file") && text.contains("expired"),
        "{text}"
    );
    let mut mismatched = good.clone();
    mismatched.key = soon.key.clone();
    let (code, text) = run(&tls_config(&mismatched, ""));
    assert_eq!(code, Some(2));
    assert!(text.contains("is not the key of"), "{text}");
    let reversed = pki.server_chain_reversed(&["gw.example.test"]);
    let (code, text) = run(&tls_config(&reversed, ""));
    assert_eq!(code, Some(2));
    assert!(text.contains("is not signed by certificate 2"), "{text}");
    let (code, text) = run("[server]\nlisten_tls = \"127.0.0.1:0\"\n");
    assert_eq!(code, Some(2));
    assert!(text.contains("server.listen_tls"), "{text}");
    let (code, text) = run(&tls_config(&good, "client_auth = \"required\"\n"));
    assert_eq!(code, Some(2));
    assert!(text.contains("server.tls.client_ca_file"), "{text}");
}

const ADMIN_KEY: &str = "admin-secret-rotation";

/// The leaf certificate a new connection is served (a full handshake: a resumed session
/// reports the certificate of the session it resumes).
fn served_leaf(
    addr: std::net::SocketAddr,
    config: &std::sync::Arc<rustls::ClientConfig>,
) -> rustls::pki_types::CertificateDer<'static> {
    let mut fresh = (**config).clone();
    fresh.resumption = rustls::client::Resumption::disabled();
    let c = Client::connect_tls(addr, std::sync::Arc::new(fresh), "localhost").unwrap();
    c.tls.unwrap().peer_certificates().unwrap()[0].clone()
}

fn leaf_of(issued: &common::pki::Issued) -> rustls::pki_types::CertificateDer<'static> {
    common::pki::load(issued).0.remove(0)
}

#[test]
fn renewed_certificates_are_served_after_a_reload_with_no_failed_request() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let pki = Pki::new("rotate");
    let mock = mock(&[]);
    let live = pki.server(&["localhost"], 30);
    let config = format!(
        "{}[[keys]]\nname = \"dev\"\nsha256 = \"{}\"\n[admin]\nlisten = \"127.0.0.1:0\"\nkey_sha256 = \"{}\"\n",
        tls_config(&live, ""),
        sluice::config::keys::hash_hex(KEY),
        sluice::config::keys::hash_hex(ADMIN_KEY)
    );
    let gw = gateway(&mock.url(), &config);
    let tls_addr = gw.tls_addr.unwrap();
    let client_config = pki.client_config(&[&TLS13, &TLS12], None);
    let expiry = || {
        metric(
            &gw,
            "sluice_tls_certificate_expiry_timestamp_seconds{certificate=\"localhost\"}",
        )
    };
    assert_eq!(expiry() as i64, live.not_after);
    // Load: new connections (each a handshake) with two requests each, until told to stop.
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let (served, failed) = (
        std::sync::Arc::new(AtomicUsize::new(0)),
        std::sync::Arc::new(AtomicUsize::new(0)),
    );
    let load: Vec<_> = (0..3)
        .map(|_| {
            let (stop, served, failed) = (stop.clone(), served.clone(), failed.clone());
            let config = client_config.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut client) = Client::connect_tls(tls_addr, config.clone(), "localhost")
                    else {
                        failed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    for body in [SMALL_BODY, STREAM_BODY] {
                        client.send(
                            messages_request(body, &format!("x-api-key: {KEY}\r\n")).as_bytes(),
                        );
                        match client.read_whole_response() {
                            Some(r) if r.status == 200 => served.fetch_add(1, Ordering::Relaxed),
                            _ => failed.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                }
            })
        })
        .collect();
    // A handshake in progress when the files change: its ClientHello is sent before the reload.
    let mut pending = std::net::TcpStream::connect(tls_addr).unwrap();
    let mut pending_conn = rustls::ClientConnection::new(
        client_config.clone(),
        rustls::pki_types::ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    pending_conn.write_tls(&mut pending).unwrap();
    // Readiness: sluice has answered the ClientHello (its ServerHello is readable), so the
    // handshake is under way on the certificate loaded now.
    pending
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert!(
        pending.peek(&mut [0u8; 1]).unwrap() > 0,
        "no ServerHello for the pending handshake"
    );
    // Renewal 1 (as certbot leaves it: same paths, new files), picked up by SIGHUP.
    let renewed = pki.server(&["localhost"], 60);
    common::pki::renew_in_place(&renewed, &live);
    gw.hangup();
    let switched = wait_for(Duration::from_secs(10), || {
        (served_leaf(tls_addr, &client_config) == leaf_of(&renewed)).then_some(())
    });
    assert!(
        switched.is_some(),
        "SIGHUP did not pick up the renewed certificate: {}",
        gw.stderr_text()
    );
    while pending_conn.is_handshaking() {
        pending_conn.complete_io(&mut pending).unwrap();
    }
    assert_ne!(
        pending_conn.peer_certificates().unwrap()[0],
        leaf_of(&renewed),
        "the handshake in progress finished on the certificate it started with"
    );
    assert_eq!(expiry() as i64, renewed.not_after);
    // Renewal 2, picked up by POST /admin/reload.
    let again = pki.server(&["localhost"], 90);
    common::pki::renew_in_place(&again, &live);
    let reload = request(
        gw.admin_addr.unwrap(),
        &format!("POST /admin/reload HTTP/1.1\r\nhost: admin\r\nauthorization: Bearer {ADMIN_KEY}\r\ncontent-length: 0\r\n\r\n"),
    );
    assert_eq!(
        reload.status,
        200,
        "{}",
        String::from_utf8_lossy(&reload.body)
    );
    assert_eq!(served_leaf(tls_addr, &client_config), leaf_of(&again));
    assert_eq!(expiry() as i64, again.not_after);
    // A broken renewal (key of another certificate) is refused; the running one stays.
    let other = pki.server(&["localhost"], 90);
    std::fs::copy(&other.key, &live.key).unwrap();
    let reload = request(
        gw.admin_addr.unwrap(),
        &format!("POST /admin/reload HTTP/1.1\r\nhost: admin\r\nauthorization: Bearer {ADMIN_KEY}\r\ncontent-length: 0\r\n\r\n"),
    );
    assert_ne!(reload.status, 200);
    assert!(String::from_utf8_lossy(&reload.body).contains("is not the key of"));
    // The load goes on after the refused renewal: a few more handshakes and requests each.
    let before = served.load(Ordering::Relaxed);
    let went_on = wait_for(Duration::from_secs(10), || {
        (served.load(Ordering::Relaxed) >= before + 12).then_some(())
    });
    assert!(
        went_on.is_some(),
        "the load stopped after the refused renewal"
    );
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    assert_eq!(served_leaf(tls_addr, &client_config), leaf_of(&again));
    let (served, failed) = (
        served.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    assert_eq!(
        failed, 0,
        "{failed} requests failed during rotation ({served} served)"
    );
    assert!(served > 20, "the load ran ({served} requests)");
}

/// `sluice bench --tls` runs end to end (a smoke run with tiny counts: figures are not judged
/// here, only that each was measured over real HTTPS connections).
#[test]
fn the_bench_has_a_tls_mode() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("tls.json");
    let out = std::process::Command::new(BIN)
        .args([
            "bench",
            "--tls",
            "--requests",
            "40",
            "--throughput-requests",
            "400",
            "--concurrency",
            "4",
            "--json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let sluice = &report["sluice"];
    for figure in ["throughput_rps", "handshakes_per_second"] {
        assert!(sluice[figure].as_f64().unwrap() > 0.0, "{report}");
    }
    assert!(sluice["latency_us"]["p50"].as_f64().unwrap() > 0.0);
}
