//! Routing over deployments: fallback on connect failure, timeout, 429/5xx/529 before the first
//! response byte (never after), weighted balancing, least in flight, passive ejection,
//! `retry-after`, and every decision in the access record.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "integration test: a failure is a failed test"
)]

mod common;

use common::*;

fn served(mock: &Proc) -> u64 {
    let resp = request(
        mock.addr,
        "GET /__mock/requests HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n",
    );
    resp.json()["served"].as_u64().unwrap()
}

/// Two deployments `a` and `b` for every model, tried in the given balance.
fn two(a: &str, b: &str, balance: &str, extra: &str) -> String {
    format!(
        r#"
[[upstreams]]
name = "a"
url = "{a}"
[[upstreams]]
name = "b"
url = "{b}"
[[routes]]
model = "*"
balance = "{balance}"
deployments = [{{ upstream = "a", weight = 3 }}, {{ upstream = "b", weight = 1 }}]
{extra}
"#
    )
}

fn one_worker(config: &str) -> Gateway {
    gateway_with("", config, &["--workers", "1"])
}

#[test]
fn a_refused_connection_falls_back_to_the_next_deployment() {
    let b = mock(&[]);
    let gw = one_worker(&two("http://127.0.0.1:9", &b.url(), "ordered", ""));
    let resp = request(gw.addr, &messages_request(SMALL_BODY, ""));
    assert_eq!(resp.status, 200);
    let r = &gw.wait_records(1)[0];
    assert_eq!(r["upstream"], "b");
    assert_eq!(r["attempts"], 2);
    assert_eq!(r["fallbacks"][0], "a: upstream_connect");
}

#[test]
fn overloaded_and_slow_deployments_fall_back_unseen_by_the_client() {
    for (flags, config_extra, reason) in [
        (vec!["--always-status", "529"], "", "a: status 529"),
        (vec!["--always-status", "503"], "", "a: status 503"),
        (vec!["--always-status", "429"], "", "a: status 429"),
        (
            vec!["--delay-ms", "5000"],
            "[timeouts]\nupstream_first_byte = \"300ms\"\n",
            "a: upstream_timeout",
        ),
    ] {
        let a = mock(&flags);
        let b = mock(&[]);
        let gw = one_worker(&two(&a.url(), &b.url(), "ordered", config_extra));
        let resp = request(gw.addr, &messages_request(STREAM_BODY, ""));
        assert_eq!(resp.status, 200, "{flags:?}");
        assert!(String::from_utf8(resp.body)
            .unwrap()
            .ends_with("data: {\"type\":\"message_stop\"}\n\n"));
        let r = &gw.wait_records(1)[0];
        assert_eq!(r["upstream"], "b", "{flags:?}");
        assert_eq!(r["fallbacks"][0], reason);
        assert_eq!((served(&a), served(&b)), (1, 1));
    }
}

#[test]
fn nothing_is_retried_once_bytes_reached_the_client() {
    let a = mock(&["--always-fail", "truncate-after:3"]);
    let b = mock(&[]);
    let gw = one_worker(&two(&a.url(), &b.url(), "ordered", ""));
    let resp = request(gw.addr, &messages_request(STREAM_BODY, ""));
    assert_eq!(resp.status, 200);
    assert!(String::from_utf8(resp.body)
        .unwrap()
        .contains("event: error"));
    assert_eq!(
        served(&b),
        0,
        "the second deployment must not be tried after bytes were sent"
    );
    assert_eq!(gw.wait_records(1)[0]["attempts"], 1);
}

#[test]
fn when_every_deployment_fails_the_last_answer_reaches_the_client() {
    let a = mock(&["--always-status", "529"]);
    let b = mock(&["--always-status", "529", "--retry-after", "7"]);
    let gw = one_worker(&two(&a.url(), &b.url(), "ordered", ""));
    let resp = request(gw.addr, &messages_request(SMALL_BODY, ""));
    assert_eq!(resp.status, 529);
    assert_eq!(resp.json()["error"]["type"], "overloaded_error");
    assert_eq!(
        resp.header("retry-after"),
        Some("7"),
        "the upstream's retry-after is passed on"
    );
    let r = &gw.wait_records(1)[0];
    assert_eq!(r["attempts"], 2);
    assert_eq!(r["upstream"], "b");
}

#[test]
fn weights_share_the_load() {
    let a = mock(&["--no-request-log"]);
    let b = mock(&["--no-request-log"]);
    let gw = one_worker(&two(&a.url(), &b.url(), "weighted", ""));
    let mut client = Client::connect(gw.addr);
    for _ in 0..400 {
        client.send(messages_request(SMALL_BODY, "").as_bytes());
        assert_eq!(client.read_response().unwrap().status, 200);
    }
    let (sa, sb) = (served(&a), served(&b));
    assert_eq!(sa + sb, 400);
    assert!((240..=360).contains(&sa), "weights 3:1 gave {sa}:{sb}");
}

#[test]
fn a_failing_deployment_is_ejected_then_skipped() {
    let a = mock(&["--always-status", "500"]);
    let b = mock(&[]);
    let gw = one_worker(&two(
        &a.url(),
        &b.url(),
        "ordered",
        "[routing]\neject_after_failures = 2\neject_base = \"60s\"\n",
    ));
    let mut client = Client::connect(gw.addr);
    for _ in 0..6 {
        client.send(messages_request(SMALL_BODY, "").as_bytes());
        assert_eq!(client.read_response().unwrap().status, 200);
    }
    assert_eq!(served(&a), 2, "ejected after two failures");
    let records = gw.wait_records(6);
    let attempts: Vec<u64> = records
        .iter()
        .map(|r| r["attempts"].as_u64().unwrap())
        .collect();
    assert_eq!(attempts, [2, 2, 1, 1, 1, 1]);
}

#[test]
fn retry_after_keeps_a_deployment_cool() {
    let a = mock(&["--always-status", "429", "--retry-after", "30"]);
    let b = mock(&[]);
    let gw = one_worker(&two(&a.url(), &b.url(), "ordered", ""));
    let mut client = Client::connect(gw.addr);
    for _ in 0..3 {
        client.send(messages_request(SMALL_BODY, "").as_bytes());
        assert_eq!(client.read_response().unwrap().status, 200);
    }
    assert_eq!(served(&a), 1, "after its retry-after, a is left alone");
}

#[test]
fn least_in_flight_sends_the_next_request_elsewhere() {
    let a = mock(&[]);
    let b = mock(&[]);
    let gw = one_worker(&two(&a.url(), &b.url(), "least_in_flight", ""));
    let addr = gw.addr;
    let slow = std::thread::spawn(move || {
        request(
            addr,
            &messages_request(SMALL_BODY, "x-mock-delay-ms: 1500\r\n"),
        )
    });
    // Wait until the slow request is in flight at its deployment.
    wait_for(std::time::Duration::from_secs(5), || {
        (served(&a) + served(&b) == 1).then_some(())
    })
    .unwrap();
    let fast = request(gw.addr, &messages_request(SMALL_BODY, ""));
    assert_eq!(fast.status, 200);
    assert_eq!(slow.join().unwrap().status, 200);
    assert_eq!((served(&a), served(&b)), (1, 1), "each deployment took one");
}

#[test]
fn route_config_errors_name_their_path() {
    let dir = tempfile::tempdir().unwrap();
    for (text, path) in [
        ("[[upstreams]]\nname = \"a\"\nurl = \"http://x\"\n[[routes]]\nmodel = \"*\"\ndeployments = [{ upstream = \"nope\" }]\n", "routes[0].deployments[0].upstream"),
        ("[[upstreams]]\nname = \"a\"\nurl = \"http://x\"\n[[routes]]\nmodel = \"*\"\nupstream = \"a\"\nbalance = \"random\"\n", "routes[0].balance"),
        ("[[upstreams]]\nname = \"a\"\nurl = \"http://x\"\n[[routes]]\nmodel = \"*\"\n", "routes[0]"),
        ("[[upstreams]]\nname = \"a\"\nurl = \"http://x\"\n[[routes]]\nmodel = \"*\"\ndeployments = [{ upstream = \"a\", weight = 0 }]\n", "routes[0].deployments[0].weight"),
    ] {
        let file = dir.path().join("r.toml");
        std::fs::write(&file, text).unwrap();
        let out = std::process::Command::new(BIN).arg("check-config").arg(&file).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!(": {path}")), "expected {path} in {err}");
    }
}

#[test]
fn an_active_health_check_takes_a_failing_deployment_out_of_rotation() {
    let a = mock(&["--always-status", "503"]);
    let b = mock(&[]);
    let config = format!(
        r#"
[[upstreams]]
name = "a"
url = "{}"
health_check_path = "/healthz"
health_check_interval = "200ms"
[[upstreams]]
name = "b"
url = "{}"
[[routes]]
model = "*"
balance = "ordered"
deployments = [{{ upstream = "a" }}, {{ upstream = "b" }}]
"#,
        a.url(),
        b.url()
    );
    let gw = one_worker(&config);
    // Wait until a probe reached `a` (and found it failing), and then one more, so the result is published.
    wait_for(std::time::Duration::from_secs(10), || {
        let probes = mock_requests(&a)
            .iter()
            .filter(|r| r["target"] == "/healthz")
            .count();
        (probes >= 2).then_some(())
    })
    .expect("the health checker probes a");
    let before = mock_requests(&a)
        .iter()
        .filter(|r| r["target"] != "/healthz")
        .count();
    let mut client = Client::connect(gw.addr);
    for _ in 0..3 {
        client.send(messages_request(SMALL_BODY, "").as_bytes());
        assert_eq!(client.read_response().unwrap().status, 200);
    }
    let after = mock_requests(&a)
        .iter()
        .filter(|r| r["target"] != "/healthz")
        .count();
    assert_eq!(
        before, after,
        "no request was sent to the deployment the health check found down"
    );
    let records = gw.wait_records(3);
    assert!(
        records
            .iter()
            .all(|r| r["upstream"] == "b" && r["attempts"] == 1),
        "{records:?}"
    );
}
