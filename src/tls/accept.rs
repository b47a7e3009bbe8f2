//! Accepting an HTTPS connection: the whole handshake runs under `handshake_timeout` (a client
//! that trickles its ClientHello, or sends nothing, is dropped when it ends), at most
//! `max_handshakes_per_worker` run at once on a worker (a connection beyond that is closed at
//! once), and the first bytes decide what the client speaks: a TLS record goes to rustls,
//! plain HTTP gets a 400 that says to use `https://`, anything else is closed.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use super::stream::{HandshakeError, TlsStream};
use super::EdgeTls;

/// The first byte of a TLS handshake record.
const HANDSHAKE_RECORD: u8 = 0x16;

/// How a handshake ended (`sluice_tls_handshakes_total{outcome}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeOutcome {
    Established,
    /// Refused by rustls (no common version or cipher, a bad or missing client certificate,
    /// an unknown ALPN protocol) or garbage instead of a ClientHello.
    Failed,
    TimedOut,
    /// Plain HTTP sent to the HTTPS port (answered with a 400).
    PlainHttp,
    /// More handshakes in progress on the worker than allowed.
    OverLimit,
    /// The client left before finishing.
    Abandoned,
}

impl HandshakeOutcome {
    pub const ALL: [HandshakeOutcome; 6] = [
        HandshakeOutcome::Established,
        HandshakeOutcome::Failed,
        HandshakeOutcome::TimedOut,
        HandshakeOutcome::PlainHttp,
        HandshakeOutcome::OverLimit,
        HandshakeOutcome::Abandoned,
    ];

    pub fn label(self) -> &'static str {
        match self {
            HandshakeOutcome::Established => "established",
            HandshakeOutcome::Failed => "failed",
            HandshakeOutcome::TimedOut => "timed_out",
            HandshakeOutcome::PlainHttp => "plain_http",
            HandshakeOutcome::OverLimit => "over_limit",
            HandshakeOutcome::Abandoned => "abandoned",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// A worker's count of handshakes in progress.
#[derive(Debug, Default)]
pub struct HandshakeSlots {
    in_progress: Cell<usize>,
}

/// A handshake's place among those in progress; freed when dropped.
struct Slot(Rc<HandshakeSlots>);

impl Drop for Slot {
    fn drop(&mut self) {
        let n = self.0.in_progress.get();
        self.0.in_progress.set(n.saturating_sub(1));
    }
}

impl HandshakeSlots {
    fn take(self: &Rc<Self>, limit: usize) -> Option<Slot> {
        let n = self.in_progress.get();
        if n >= limit {
            return None;
        }
        self.in_progress.set(n + 1);
        Some(Slot(Rc::clone(self)))
    }
}

/// Runs the handshake of `tcp` under `tls`; `None` when it did not complete (the connection is
/// then closed). `outcome` is told how it ended.
pub async fn accept(
    tcp: TcpStream,
    tls: &EdgeTls,
    slots: &Rc<HandshakeSlots>,
    outcome: impl Fn(HandshakeOutcome),
) -> Option<TlsStream> {
    let Some(_slot) = slots.take(tls.max_handshakes_per_worker) else {
        outcome(HandshakeOutcome::OverLimit);
        return None;
    };
    let config = Arc::clone(&tls.server_config);
    let ended = monoio::time::timeout(tls.handshake_timeout, handshake(tcp, config)).await;
    let (result, label) = match ended {
        Err(_) => (None, HandshakeOutcome::TimedOut),
        Ok(Ok(stream)) => (Some(stream), HandshakeOutcome::Established),
        Ok(Err(refusal)) => {
            tracing::debug!(reason = %refusal, "TLS handshake failed");
            (None, refusal.outcome())
        }
    };
    outcome(label);
    result
}

/// Why a connection on the HTTPS port got no TLS session.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("plain HTTP on the HTTPS port")]
    PlainHttp,
    #[error("not a TLS handshake")]
    NotTls,
    #[error("{0}")]
    Handshake(#[from] HandshakeError),
}

impl Refusal {
    fn outcome(&self) -> HandshakeOutcome {
        match self {
            Refusal::PlainHttp => HandshakeOutcome::PlainHttp,
            Refusal::NotTls | Refusal::Handshake(HandshakeError::Tls(_)) => {
                HandshakeOutcome::Failed
            }
            Refusal::Handshake(HandshakeError::Io(e))
                if e.kind() == std::io::ErrorKind::InvalidData =>
            {
                HandshakeOutcome::Failed
            }
            Refusal::Handshake(_) => HandshakeOutcome::Abandoned,
        }
    }
}

async fn handshake(
    mut tcp: TcpStream,
    config: Arc<rustls::ServerConfig>,
) -> Result<TlsStream, Refusal> {
    let (read, first) = tcp.read(Vec::with_capacity(4096)).await;
    if read.map_err(HandshakeError::Io)? == 0 {
        return Err(HandshakeError::Closed.into());
    }
    match first.first() {
        Some(&HANDSHAKE_RECORD) => Ok(TlsStream::accept(tcp, config, first).await?),
        _ if looks_like_http(&first) => {
            let _ = tcp.write_all(PLAIN_HTTP_ANSWER).await;
            Err(Refusal::PlainHttp)
        }
        _ => Err(Refusal::NotTls),
    }
}

/// An HTTP/1 request line starts with an upper-case method and a space.
fn looks_like_http(first: &[u8]) -> bool {
    let method_len = first.iter().take_while(|b| b.is_ascii_uppercase()).count();
    (1..=16).contains(&method_len) && first.get(method_len) == Some(&b' ')
}

const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 130\r\nconnection: close\r\n\r\n{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":\"this port speaks HTTPS: send the request to https:// instead\"}}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_answer_is_well_framed() {
        let text = std::str::from_utf8(PLAIN_HTTP_ANSWER).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["type"], "invalid_request_error");
    }

    #[test]
    fn http_is_told_from_tls_and_garbage() {
        assert!(looks_like_http(b"GET / HTTP/1.1\r\n"));
        assert!(looks_like_http(b"POST /v1/messages HTTP/1.1"));
        assert!(!looks_like_http(b"\x16\x03\x01\x02\x00"));
        assert!(!looks_like_http(b" GET"));
        assert!(!looks_like_http(b"get / HTTP/1.1"));
        assert!(!looks_like_http(b"\x00\x00\x00"));
    }
}
