//! Rate limits per key, user and team: requests and tokens per minute and concurrent streams,
//! exact across worker threads, answered 429 with a whole-seconds `retry-after`, and the quota in
//! `anthropic-ratelimit-*` headers.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "integration test: a failure is a failed test"
)]

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::*;

fn minute() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 60
}

/// Rate limits count per calendar minute, so a test that must see one window waits, if needed,
/// until at least 20 s of the current minute remain (at most 20 s), and returns the minute.
fn minute_with_room() -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let left = 60 - now.as_secs() % 60;
    if left < 20 {
        std::thread::sleep(
            std::time::Duration::from_secs(left) + std::time::Duration::from_millis(50),
        );
    }
    minute()
}

/// Fails (never passes silently) if the minute turned during the test after all.
fn assert_same_minute(start: u64) {
    assert_eq!(
        minute(),
        start,
        "the minute turned during the test despite 20 s of room: the machine is too slow for it"
    );
}

fn config(mock: &Proc, key_limits: &str, extra: &str) -> String {
    let h = |k: &str| sluice::config::keys::hash_hex(k);
    format!(
        "[[upstreams]]\nname = \"a\"\nurl = \"{}\"\n[[keys]]\nname = \"k1\"\nsha256 = \"{}\"\nteam = \"t1\"\n{key_limits}\n[[keys]]\nname = \"k2\"\nsha256 = \"{}\"\nteam = \"t1\"\n{extra}",
        mock.url(),
        h("sk-1"),
        h("sk-2")
    )
}

#[test]
fn requests_per_minute_count_down_then_429_with_retry_after() {
    let mock = mock(&["--no-request-log"]);
    let gw = gateway("", &config(&mock, "rpm = 3", ""));
    let start = minute_with_room();
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let resp = request(
            gw.addr,
            &messages_request(SMALL_BODY, "x-api-key: sk-1\r\n"),
        );
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("anthropic-ratelimit-requests-limit"), Some("3"));
        assert!(resp.header("anthropic-ratelimit-requests-reset").is_some());
        remaining.push(
            resp.header("anthropic-ratelimit-requests-remaining")
                .unwrap()
                .to_string(),
        );
    }
    let refused = request(
        gw.addr,
        &messages_request(SMALL_BODY, "x-api-key: sk-1\r\n"),
    );
    assert_same_minute(start);
    assert_eq!(remaining, ["2", "1", "0"]);
    assert_eq!(refused.status, 429);
    assert_eq!(refused.json()["error"]["type"], "rate_limit_error");
    assert!(refused.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("requests per minute for key k1"));
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    // The other key of the team has no key limit.
    assert_eq!(
        request(
            gw.addr,
            &messages_request(SMALL_BODY, "x-api-key: sk-2\r\n")
        )
        .status,
        200
    );
}

#[test]
fn a_team_limit_is_exact_across_workers() {
    let mock = mock(&["--no-request-log"]);
    let gw = gateway(
        "",
        &config(&mock, "", "[[teams]]\nname = \"t1\"\nrpm = 20\n"),
    );
    let start = minute_with_room();
    let addr = gw.addr;
    let threads: Vec<_> = (0..4)
        .map(|i| {
            std::thread::spawn(move || {
                let key = if i % 2 == 0 { "sk-1" } else { "sk-2" };
                (0..10)
                    .filter(|_| {
                        request(
                            addr,
                            &messages_request(SMALL_BODY, &format!("x-api-key: {key}\r\n")),
                        )
                        .status
                            == 200
                    })
                    .count()
            })
        })
        .collect();
    let admitted: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_same_minute(start);
    assert_eq!(
        admitted, 20,
        "40 requests from two keys of one team, over connections on both workers"
    );
}

#[test]
fn concurrent_streams_are_limited() {
    let mock = mock(&[]);
    let gw = gateway("", &config(&mock, "max_streams = 1", ""));
    let mut slow = Client::connect(gw.addr);
    slow.send(
        messages_request(
            STREAM_BODY,
            "x-api-key: sk-1\r\nx-mock-event-delay-ms: 200\r\n",
        )
        .as_bytes(),
    );
    assert_eq!(slow.read_head().status, 200);
    let second = request(
        gw.addr,
        &messages_request(STREAM_BODY, "x-api-key: sk-1\r\n"),
    );
    assert_eq!(second.status, 429);
    assert!(second.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("concurrent streams"));
    assert_eq!(
        request(
            gw.addr,
            &messages_request(SMALL_BODY, "x-api-key: sk-1\r\n")
        )
        .status,
        200,
        "not a stream"
    );
    assert!(slow.read_chunks(|_, _| {}));
    // The slot is free again once the stream ended.
    let again = wait_for(std::time::Duration::from_secs(5), || {
        (request(
            gw.addr,
            &messages_request(STREAM_BODY, "x-api-key: sk-1\r\n"),
        )
        .status
            == 200)
            .then_some(())
    });
    assert!(again.is_some());
}

#[test]
fn tokens_per_minute_refuse_once_spent() {
    let mock = mock(&["--no-request-log"]);
    // Each small request uses about 23 tokens (mock: body length / 4, plus 1 output token).
    let gw = gateway("", &config(&mock, "tpm = 30", ""));
    let start = minute_with_room();
    // Tokens are counted when the response has gone out, so a request sent right after may still
    // be admitted: the refusal comes on the third or, at the latest, the fourth request.
    let mut admitted = 0;
    let mut refusal = None;
    for _ in 0..5 {
        let resp = request(
            gw.addr,
            &messages_request(SMALL_BODY, "x-api-key: sk-1\r\n"),
        );
        if resp.status == 200 {
            admitted += 1;
        } else {
            refusal = Some(resp);
            break;
        }
    }
    assert_same_minute(start);
    assert!((2..=3).contains(&admitted), "{admitted} admitted");
    let refusal = refusal.expect("a 429 once the minute's tokens were spent");
    assert_eq!(refusal.status, 429);
    assert!(refusal.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("tokens per minute"));
}
