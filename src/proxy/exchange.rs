//! One request's bookkeeping as it travels the phases: the access record being filled in, and
//! the instants that give total time, time to first byte and sluice's own added time.

use std::time::{Duration, Instant, SystemTime};

use super::authenticate::Identity;
use super::classify::Operation;
use crate::http1::RequestHead;
use crate::record::AccessRecord;
use crate::usage::Metered;

/// The request in flight.
pub struct Exchange {
    pub record: AccessRecord,
    pub started: Instant,
    /// The held part of the request body was in memory.
    pub body_ready: Option<Instant>,
    /// The upstream request (held part) was written.
    pub upstream_sent: Option<Instant>,
    /// Time spent forwarding a streamed body remainder (the client's upload pace, not sluice's).
    pub upload_time: Duration,
    pub upstream_head: Option<Instant>,
    pub client_head_sent: Option<Instant>,
    pub metered: Metered,
    /// The request body was read completely (the connection can carry another request).
    pub body_consumed: bool,
    /// Fields sluice adds to the response head (rate-limit quota).
    pub response_headers: Vec<(&'static str, String)>,
    /// Usage, cost and outcome are filled into the record (see [`super::finish::complete`]).
    pub completed: bool,
    /// The ledger already has this record (committed before the last byte).
    pub ledger_synced: bool,
    /// Budget held for this request until it is settled (before the last byte, or at the end).
    pub reservation: Option<crate::limits::budget::Reservation>,
}

impl Exchange {
    pub fn new(head: &RequestHead, request_id: String) -> Self {
        let mut ex = Self::with_record(AccessRecord {
            time: SystemTime::now(),
            request_id,
            method: head.method.as_str(),
            path: String::from_utf8_lossy(head.path()).into_owned(),
            session_id: header(head, "x-claude-code-session-id"),
            agent_id: header(head, "x-claude-code-agent-id"),
            parent_agent_id: header(head, "x-claude-code-parent-agent-id"),
            identity: "anonymous".into(),
            ..AccessRecord::default()
        });
        ex.body_consumed = matches!(head.framing, crate::http1::BodyFraming::Empty);
        ex
    }

    /// For a request whose head could not be parsed.
    pub fn unparsed(request_id: String) -> Self {
        Self::with_record(AccessRecord {
            time: SystemTime::now(),
            request_id,
            method: "-",
            operation: "malformed",
            identity: "anonymous".into(),
            ..AccessRecord::default()
        })
    }

    fn with_record(record: AccessRecord) -> Self {
        Self {
            record,
            started: Instant::now(),
            body_ready: None,
            upstream_sent: None,
            upload_time: Duration::ZERO,
            upstream_head: None,
            client_head_sent: None,
            metered: Metered::default(),
            completed: false,
            ledger_synced: false,
            reservation: None,
            body_consumed: false,
            response_headers: Vec::new(),
        }
    }

    pub fn set_operation(&mut self, op: &Operation) {
        self.record.operation = op.label();
        self.record.format = op.format();
    }

    pub fn set_identity(&mut self, identity: &Identity) {
        self.record.identity = identity.label();
        self.record.user = identity.user();
        self.record.team = identity.team();
    }
}

fn header(head: &RequestHead, name: &str) -> Option<String> {
    head.header_str(name).map(|v| v.chars().take(128).collect())
}
