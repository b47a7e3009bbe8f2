//! The access record: what one request was — who, which model and upstream, tokens, cost,
//! timings, outcome. `proxy::finish` writes one per request; the access log, the ledger and the
//! metrics collector each read it. Its own module so none of those depends on another for it.

use std::sync::Arc;
use std::time::SystemTime;

use serde::ser::SerializeMap;
use serde::Serialize;

/// One request, as the access log records it.
#[derive(Clone, Debug, Serialize)]
pub struct AccessRecord {
    /// When the request head was complete (written as RFC 3339, by the writer thread).
    #[serde(serialize_with = "rfc3339")]
    pub time: SystemTime,
    /// Inline (see [`crate::proxy::request_id`]).
    pub request_id: compact_str::CompactString,
    pub upstream_request_id: Option<UpstreamRequestId>,
    pub method: &'static str,
    /// Inline up to 24 bytes (Claude Code's `/v1/messages?beta=true`): no allocation.
    pub path: compact_str::CompactString,
    /// What the request was (messages, count_tokens, models, health, passthrough, …).
    pub operation: &'static str,
    /// Who made the request: written as `identity` (`key:<name>`, `jwt:<sub>`,
    /// `passthrough:<hash prefix>`, `anonymous`, …), `user` and `team`.
    #[serde(flatten)]
    pub caller: Caller,
    pub session_id: Option<Arc<str>>,
    /// The client's `user-agent` (its first 128 characters).
    pub user_agent: Option<Arc<str>>,
    pub agent_id: Option<Arc<str>>,
    pub parent_agent_id: Option<Arc<str>>,
    /// The managed-settings checksum the client says it runs (Claude Code's hint header, when
    /// the settings ask for it): finds machines on a stale policy. Operator-only, like the log.
    pub managed_settings_checksum: Option<Arc<str>>,
    /// The billing group a signed-in caller named for the request (one of their groups).
    pub billing_group: Option<String>,
    /// The client's API format (`anthropic`, `bedrock` or `vertex` in the log).
    pub format: crate::format::ClientFormat,
    /// The model as the client named it.
    pub model: Option<Arc<str>>,
    /// The model id sent upstream, when different.
    pub upstream_model: Option<Arc<str>>,
    pub upstream: Option<Arc<str>>,
    /// The upstream's provider as the GenAI conventions name it (`anthropic`, `aws.bedrock`…).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<&'static str>,
    /// The request's place in a trace (only when span export is configured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<crate::telemetry::trace_context::TraceContext>,
    pub stream: bool,
    pub status: u16,
    /// sluice's own error label, when sluice answered with an error.
    pub error: Option<&'static str>,
    /// The error was a governance refusal ([`crate::proxy::error::Fault::Policy`]).
    #[serde(skip)]
    pub rejected: bool,
    /// `error.type` from an upstream error body or SSE error event.
    pub upstream_error: Option<String>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_creation_5m_input_tokens: u64,
    pub cache_creation_1h_input_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub web_search_requests: u64,
    pub cost_usd: f64,
    /// The same cost in picodollars, exact (the ledger adds these up).
    #[serde(skip)]
    pub cost_pico: u64,
    /// What the prompt cache saved against the same tokens billed as plain input (negative
    /// when the writes cost more than the reads saved).
    pub cache_savings_usd: f64,
    #[serde(skip)]
    pub cache_savings_pico: i64,
    /// The response's usage was seen and priced.
    pub metered: bool,
    pub stream_complete: bool,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub total_us: u64,
    pub ttfb_us: Option<u64>,
    /// Time sluice itself spent: before the upstream request was on the wire (excluding the
    /// client's own body upload) plus from the upstream's first byte to the client's.
    pub added_us: u64,
    pub upstream_connect_us: Option<u64>,
    pub pooled_connection: bool,
    /// Upstream attempts made (fallbacks and stale-connection retries included).
    pub attempts: u32,
    /// Each attempt that failed over to the next deployment: `upstream: reason`.
    pub fallbacks: Vec<String>,
    /// What the upstream's field policy took out of the request: `field:<name>`,
    /// `beta:<name>` ([`crate::format::field_policy`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dropped: Vec<String>,
}

fn rfc3339<S: serde::Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_micros(*time))
}

impl Default for AccessRecord {
    fn default() -> Self {
        Self {
            time: SystemTime::UNIX_EPOCH,
            request_id: compact_str::CompactString::default(),
            upstream_request_id: None,
            method: "-",
            path: compact_str::CompactString::default(),
            operation: "unknown",
            caller: Caller::Anonymous,
            session_id: None,
            user_agent: None,
            agent_id: None,
            parent_agent_id: None,
            managed_settings_checksum: None,
            billing_group: None,
            format: crate::format::ClientFormat::Anthropic,
            model: None,
            upstream_model: None,
            upstream: None,
            provider: None,
            trace: None,
            stream: false,
            status: 0,
            error: None,
            rejected: false,
            upstream_error: None,
            input_tokens: 0,
            output_tokens: 0,
            cache_creation_input_tokens: 0,
            cache_creation_5m_input_tokens: 0,
            cache_creation_1h_input_tokens: 0,
            cache_read_input_tokens: 0,
            web_search_requests: 0,
            cost_usd: 0.0,
            cost_pico: 0,
            cache_savings_usd: 0.0,
            cache_savings_pico: 0,
            metered: false,
            stream_complete: false,
            request_bytes: 0,
            response_bytes: 0,
            total_us: 0,
            ttfb_us: None,
            added_us: 0,
            upstream_connect_us: None,
            pooled_connection: false,
            attempts: 0,
            fallbacks: Vec::new(),
            dropped: Vec::new(),
        }
    }
}

/// The upstream's id for a request (its `request-id` field), held inline up to 40 bytes —
/// Anthropic's `req_…` ids are 28 — so a record's copy of it allocates nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpstreamRequestId(smallvec::SmallVec<[u8; 40]>);

impl UpstreamRequestId {
    pub fn new(id: &str) -> Self {
        Self(smallvec::SmallVec::from_slice(id.as_bytes()))
    }
}

impl std::ops::Deref for UpstreamRequestId {
    type Target = str;

    fn deref(&self) -> &str {
        // Always text: built from a `&str`.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl Serialize for UpstreamRequestId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self)
    }
}

/// Who a request's record names. A key's names are the key table's own and a remembered JWT's
/// the token memory's, shared: a request takes a reference to them instead of copies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Caller {
    /// No identity (open access without a credential, or not identified yet).
    #[default]
    Anonymous,
    /// A virtual key, an issued key, an AWS key pair or a verified JWT.
    Known(Arc<CallerNames>),
    /// Any other kind of caller, its label built for the request.
    Other {
        label: String,
        user: Option<String>,
        team: Option<String>,
    },
}

impl Caller {
    /// The identity label: `key:<name>`, `jwt:<sub>`, …, or `anonymous`.
    pub fn label(&self) -> &str {
        match self {
            Caller::Anonymous => "anonymous",
            Caller::Known(names) => names.label(),
            Caller::Other { label, .. } => label,
        }
    }

    pub fn user(&self) -> Option<&str> {
        match self {
            Caller::Anonymous => None,
            Caller::Known(names) => names.user.as_deref(),
            Caller::Other { user, .. } => user.as_deref(),
        }
    }

    pub fn team(&self) -> Option<&str> {
        match self {
            Caller::Anonymous => None,
            Caller::Known(names) => names.team.as_deref(),
            Caller::Other { team, .. } => team.as_deref(),
        }
    }

    /// A caller known only by its label (no user, no team).
    pub fn labelled(label: impl Into<String>) -> Self {
        Caller::Other {
            label: label.into(),
            user: None,
            team: None,
        }
    }
}

/// As the three fields the access log has always had: `identity`, `user`, `team`.
impl Serialize for Caller {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(3))?;
        map.serialize_entry("identity", self.label())?;
        map.serialize_entry("user", &self.user())?;
        map.serialize_entry("team", &self.team())?;
        map.end()
    }
}

/// A caller's names as records write them (its name, user and team, and the identity label
/// `<kind>:<name>`), built once where the caller is known — with a key, or when a JWT first
/// verifies — and shared by every request it makes.
#[derive(Debug, PartialEq, Eq)]
pub struct CallerNames {
    pub name: String,
    pub user: Option<String>,
    pub team: Option<String>,
    label: String,
}

impl CallerNames {
    /// `kind` is the label's prefix: `key`, `jwt`.
    pub fn new(kind: &str, name: String, user: Option<String>, team: Option<String>) -> Arc<Self> {
        let label = format!("{kind}:{name}");
        Arc::new(Self {
            name,
            user,
            team,
            label,
        })
    }

    /// `<kind>:<name>`, as records write the identity.
    pub fn label(&self) -> &str {
        &self.label
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test set-up")]

    use super::*;

    #[test]
    fn an_upstream_request_id_is_held_inline_up_to_40_bytes_and_whole_beyond() {
        let anthropic = UpstreamRequestId::new("req_011CV3xRBb8Qm2pY7Lz9KfWt");
        assert_eq!(&*anthropic, "req_011CV3xRBb8Qm2pY7Lz9KfWt");
        assert!(!anthropic.0.spilled());
        assert_eq!(
            serde_json::to_string(&anthropic).unwrap(),
            "\"req_011CV3xRBb8Qm2pY7Lz9KfWt\""
        );
        let long = "r".repeat(100);
        assert_eq!(&*UpstreamRequestId::new(&long), long);
    }
}
