//! SSE responses are relayed chunk by chunk as the upstream sends them: never batched, never
//! held back by Nagle's algorithm, pings included; a stream the upstream breaks ends with an SSE
//! `error` event and its partial usage is recorded.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "integration test: a failure is a failed test"
)]

mod common;

use std::time::{Duration, Instant};

use common::*;

fn stream_events(gw: &Gateway, extra_headers: &str) -> (Instant, Vec<(Instant, String)>, bool) {
    let mut client = Client::connect(gw.addr);
    let sent = Instant::now();
    client.send(messages_request(STREAM_BODY, extra_headers).as_bytes());
    let head = client.read_head();
    assert_eq!(head.status, 200);
    assert!(head
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    let mut chunks = Vec::new();
    let complete = client
        .read_chunks(|at, data| chunks.push((at, String::from_utf8_lossy(data).into_owned())));
    (sent, chunks, complete)
}

#[test]
fn events_arrive_one_by_one_as_sent() {
    let mock = mock(&[]);
    let gw = gateway(&mock.url(), "");
    let delay = 150u64;
    let (_, chunks, complete) = stream_events(
        &gw,
        &format!("x-mock-event-delay-ms: {delay}\r\nx-mock-reply: one two three\r\n"),
    );
    assert!(complete);
    // message_start, content_block_start, ping, 3 deltas, content_block_stop, message_delta, message_stop
    assert_eq!(chunks.len(), 9, "one chunk per event: {chunks:?}");
    assert!(chunks
        .iter()
        .all(|(_, c)| c.starts_with("event: ") && c.ends_with("\n\n")));
    assert!(
        chunks.iter().any(|(_, c)| c.starts_with("event: ping")),
        "ping forwarded"
    );
    // The upstream spaced events `delay` apart; batching would make them arrive together.
    let first = chunks.first().unwrap().0;
    let last = chunks.last().unwrap().0;
    let spread = last - first;
    assert!(
        spread >= Duration::from_millis(delay * 8 * 8 / 10),
        "events were batched: spread {spread:?}"
    );
    let gaps: Vec<Duration> = chunks.windows(2).map(|w| w[1].0 - w[0].0).collect();
    let spaced = gaps
        .iter()
        .filter(|g| **g >= Duration::from_millis(delay / 2))
        .count();
    assert!(spaced >= 7, "gaps between events: {gaps:?}");
}

/// Nagle's algorithm plus a client's delayed ACK holds a small write that follows the response
/// head by ~40 ms (the 40.8 ms added to the first streamed token measured on other Rust
/// gateways). The mock sends the head, then the first event 3 ms later: through sluice the first
/// event must arrive in a few milliseconds, not forty. (Checked: with TCP_NODELAY off this test
/// fails, with a median of ~42 ms.)
#[test]
fn the_first_event_is_not_held_back_by_nagle() {
    let mock = mock(&[]);
    let gw = gateway(&mock.url(), "");
    let mut client = Client::connect(gw.addr);
    let mut first_event = Vec::new();
    for _ in 0..12 {
        let sent = Instant::now();
        client.send(
            messages_request(
                STREAM_BODY,
                "x-mock-event-delay-ms: 3\r\nx-mock-reply: a b c\r\n",
            )
            .as_bytes(),
        );
        assert_eq!(client.read_head().status, 200);
        let mut first = None;
        assert!(client.read_chunks(|at, _| {
            first.get_or_insert(at - sent);
        }));
        first_event.push(first.unwrap());
    }
    first_event.sort();
    let median = first_event[first_event.len() / 2];
    assert!(
        median < Duration::from_millis(25),
        "median time to first event {median:?}: Nagle/delayed-ACK stall"
    );
}

#[test]
fn an_upstream_that_dies_mid_stream_gives_an_sse_error_event() {
    let mock = mock(&[]);
    let gw = gateway(&mock.url(), "");
    let (_, chunks, complete) = stream_events(&gw, "x-mock-fail: truncate-after:4\r\n");
    assert!(
        complete,
        "the stream is ended cleanly after the error event"
    );
    let text: String = chunks.iter().map(|(_, c)| c.as_str()).collect();
    assert!(text.starts_with("event: message_start"));
    assert!(
        text.contains("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\""),
        "{text}"
    );
    assert!(!text.contains("message_stop"));
    let records = gw.wait_records(1);
    let r = &records[0];
    assert_eq!(r["error"], "upstream_truncated");
    assert_eq!(r["stream_complete"], false);
    assert!(
        r["input_tokens"].as_u64().unwrap() > 0,
        "partial usage recorded: {r}"
    );
    assert!(r["cost_usd"].as_f64().unwrap() > 0.0);
}

#[test]
fn a_slow_reader_applies_backpressure_without_losing_bytes() {
    let mock = mock(&[]);
    let gw = gateway(&mock.url(), "");
    let reply: Vec<String> = (0..5_000).map(|i| format!("w{i}")).collect();
    let mut client = Client::connect(gw.addr);
    client.send(
        messages_request(
            STREAM_BODY,
            &format!("x-mock-reply: {}\r\n", reply.join(" ")),
        )
        .as_bytes(),
    );
    // Do not read for a while: the kernel buffers fill and sluice must wait, not buffer all.
    std::thread::sleep(Duration::from_millis(300));
    let head = client.read_head();
    assert_eq!(head.status, 200);
    let mut text = String::new();
    assert!(client.read_chunks(|_, d| text.push_str(&String::from_utf8_lossy(d))));
    assert_eq!(text.matches("content_block_delta").count(), 2 * 5_000);
    assert!(text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
}
