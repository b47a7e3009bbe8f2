//! One request's trail: what its head said, what each phase decided — set by
//! [`super::handle_request`] from the values the phases return, never by the phases
//! themselves — and the instants that give total time, time to first byte and sluice's own
//! added time. [`super::finish`] is the one place that turns a trail into an access record.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use compact_str::CompactString;

use super::authenticate::Identity;
use super::classify::Operation;
use super::forward::AttemptLog;
use super::recent_values::RecentValues;
use crate::format::ClientFormat;
use crate::http1::RequestHead;
use crate::record::Caller;
use crate::usage::pricing::PriceTable;
use crate::usage::Metered;

/// The request in flight.
#[derive(Clone)]
pub struct Exchange {
    pub request: RequestFacts,
    pub started: Instant,
    /// What the request is (`messages`, `count_tokens`, `models`, …) and its client format.
    pub operation: &'static str,
    pub format: ClientFormat,
    /// Who it counts for (anonymous until verified).
    pub identity: Caller,
    /// The model as the client named it.
    pub model: Option<Arc<str>>,
    /// The billing group the request named (see [`super::billing_group`]).
    pub billing_group: Option<String>,
    pub request_bytes: u64,
    /// The held part of the request body was in memory.
    pub body_ready: Option<Instant>,
    /// Fields sluice adds to the response head (rate-limit quota, usage notice, budget
    /// warnings).
    pub response_headers: AddedFields,
    /// The forward phase's attempts upstream.
    pub attempts: AttemptLog,
    /// What the client was answered.
    pub response: Response,
    /// The ledger already has this request's record (committed before the last byte).
    pub ledger_synced: bool,
}

/// Response fields sluice adds, inline up to twelve: a rate limit's three and a usage notice's
/// (at most nine) need no allocation; budget warnings beyond them spill to the heap.
pub type AddedFields = smallvec::SmallVec<[(&'static str, CompactString); 12]>;

/// What the request head says about the request, taken when it arrived.
#[derive(Clone)]
pub struct RequestFacts {
    /// When the head was complete.
    pub time: SystemTime,
    pub id: CompactString,
    pub method: &'static str,
    /// Inline up to 24 bytes: the usual paths need no allocation.
    pub path: CompactString,
    /// These, as the head sent them (their first 128 characters), shared by every request
    /// that sent the same (see [`super::recent_values`]).
    pub session_id: Option<Arc<str>>,
    pub user_agent: Option<Arc<str>>,
    pub agent_id: Option<Arc<str>>,
    pub parent_agent_id: Option<Arc<str>>,
    pub managed_settings_checksum: Option<Arc<str>>,
    /// Where the request sits in a trace (only when spans are exported).
    pub trace: Option<crate::telemetry::trace_context::TraceContext>,
}

/// The answer the client got: from sluice (a local answer or a refusal) or relayed from the
/// upstream.
#[derive(Clone, Default)]
pub struct Response {
    pub status: u16,
    /// Body bytes written to the client.
    pub bytes: u64,
    /// sluice's own error label (a refusal, or how a relayed response ended early).
    pub error: Option<&'static str>,
    /// The error was a governance refusal ([`super::error::Fault::Policy`]).
    pub rejected: bool,
    pub stream: bool,
    pub upstream_request_id: Option<crate::record::UpstreamRequestId>,
    /// The usage the relay metered in the response.
    pub metered: Metered,
    /// When the upstream's response head arrived.
    pub upstream_head: Option<Instant>,
    /// When the response head reached the client.
    pub client_head_sent: Option<Instant>,
    /// When the last byte of the answer was written to the client.
    pub done: Option<Instant>,
}

impl Exchange {
    pub fn new(head: &RequestHead, request_id: CompactString, recent: &RecentValues) -> Self {
        let header = |name| header(head, name).map(|value| recent.share(value));
        Self::with_request(RequestFacts {
            time: crate::runtime::poll_clock::wall_now_fresh(),
            id: request_id,
            method: head.method.as_str(),
            path: CompactString::from_utf8_lossy(head.path()),
            session_id: header("x-claude-code-session-id"),
            user_agent: header("user-agent"),
            agent_id: header("x-claude-code-agent-id"),
            parent_agent_id: header("x-claude-code-parent-agent-id"),
            managed_settings_checksum: header("x-claude-code-managed-settings-checksum"),
            trace: None,
        })
    }

    /// For a request whose head could not be parsed.
    pub fn unparsed(request_id: CompactString) -> Self {
        let mut ex = Self::with_request(RequestFacts {
            time: crate::runtime::poll_clock::wall_now_fresh(),
            id: request_id,
            method: "-",
            path: CompactString::default(),
            session_id: None,
            user_agent: None,
            agent_id: None,
            parent_agent_id: None,
            managed_settings_checksum: None,
            trace: None,
        });
        ex.operation = "malformed";
        ex
    }

    fn with_request(request: RequestFacts) -> Self {
        Self {
            request,
            started: crate::runtime::poll_clock::now_fresh(),
            operation: "unknown",
            format: ClientFormat::Anthropic,
            identity: Caller::Anonymous,
            model: None,
            billing_group: None,
            request_bytes: 0,
            body_ready: None,
            response_headers: AddedFields::new(),
            attempts: AttemptLog::default(),
            response: Response::default(),
            ledger_synced: false,
        }
    }

    pub fn set_operation(&mut self, op: &Operation) {
        self.operation = op.label();
        self.format = op.format();
    }

    pub fn set_identity(&mut self, identity: &Identity) {
        self.identity = identity.caller();
    }

    /// The model id the upstream was sent: the deployment's (an alias's target, a provider
    /// id), else the model the client named.
    pub fn served_model(&self) -> Option<&str> {
        self.attempts
            .upstream_model
            .as_deref()
            .or(self.model.as_deref())
    }

    /// What the prompt cache saved on the metered usage, at the served model's price.
    pub fn metered_cache_savings_pico(&self, pricing: &PriceTable) -> Option<i64> {
        let metered = &self.response.metered;
        let model = self.served_model().or(metered.model.as_deref())?;
        pricing.cache_savings_pico(model, metered.usage.as_ref()?)
    }

    /// What the metered usage cost, at the served model's price (or the model the response
    /// names, when dearer); `None` without usage or a price.
    pub fn metered_cost_pico(&self, pricing: &PriceTable) -> Option<u64> {
        let metered = &self.response.metered;
        pricing.served_cost_pico(
            self.served_model(),
            metered.model.as_deref(),
            metered.usage.as_ref()?,
        )
    }
}

/// The field's first 128 characters.
fn header<'h>(head: &'h RequestHead, name: &str) -> Option<&'h str> {
    head.header_str(name).map(|v| {
        let end = v.char_indices().nth(128).map_or(v.len(), |(i, _)| i);
        v.get(..end).unwrap_or(v)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test set-up")]

    use super::*;
    use crate::http1::{parse_request, HeadLimits};

    #[test]
    fn a_field_is_kept_to_its_first_128_characters() {
        let long = "é".repeat(200);
        let raw = format!("GET / HTTP/1.1\r\nHost: h\r\nuser-agent: {long}\r\nx-short: ab\r\n\r\n");
        let limits = HeadLimits {
            max_head_bytes: 4096,
            max_headers: 8,
        };
        let (head, _) = parse_request(raw.as_bytes(), limits).unwrap().unwrap();
        assert_eq!(header(&head, "user-agent").unwrap(), "é".repeat(128));
        assert_eq!(header(&head, "x-short").unwrap(), "ab");
        assert_eq!(header(&head, "x-absent"), None);
    }
}
