//! Usage and cost. A meter watches the response payload as the relay forwards it (never
//! holding a byte back): [`sse::SseMeter`] for streams, [`json::JsonMeter`] for JSON bodies.
//! [`pricing`] turns the final [`Usage`] into a cost.
// Input is parsed here: byte offsets into it must never panic (use `get`, or validate first).
#![cfg_attr(not(test), deny(clippy::indexing_slicing, clippy::string_slice))]

pub mod json;
pub mod pricing;
pub mod read;
pub mod sse;

use serde::{Deserialize, Serialize};

/// Token counts of one request, as the provider reported them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub cache_creation_input_tokens: u64,
    /// `usage.cache_creation.ephemeral_5m_input_tokens`, when the breakdown was given.
    pub cache_5m: Option<u64>,
    /// `usage.cache_creation.ephemeral_1h_input_tokens`, when the breakdown was given.
    pub cache_1h: Option<u64>,
    pub cache_read_input_tokens: u64,
    pub output_tokens: u64,
    pub web_search_requests: u64,
}

impl Usage {
    /// The prompt's length in tokens: uncached input plus cache writes plus cache reads.
    pub fn prompt_tokens(&self) -> u64 {
        self.input_tokens
            .saturating_add(self.cache_creation_input_tokens)
            .saturating_add(self.cache_read_input_tokens)
    }

    /// Cache writes split by TTL; without a breakdown every write counts as 5-minute.
    pub fn cache_writes(&self) -> (u64, u64) {
        match (self.cache_5m, self.cache_1h) {
            (None, None) => (self.cache_creation_input_tokens, 0),
            (w5, w1) => (w5.unwrap_or(0), w1.unwrap_or(0)),
        }
    }

    /// Overlays the fields `fields` carries. Provider usage is cumulative: a later report
    /// replaces a field, it never adds to it.
    pub fn apply(&mut self, fields: &UsageFields) {
        let set = |slot: &mut u64, v: Option<u64>| {
            if let Some(v) = v {
                *slot = v;
            }
        };
        set(&mut self.input_tokens, fields.input_tokens);
        set(
            &mut self.cache_creation_input_tokens,
            fields.cache_creation_input_tokens,
        );
        set(
            &mut self.cache_read_input_tokens,
            fields.cache_read_input_tokens,
        );
        set(&mut self.output_tokens, fields.output_tokens);
        if let Some(cc) = &fields.cache_creation {
            if cc.ephemeral_5m_input_tokens.is_some() {
                self.cache_5m = cc.ephemeral_5m_input_tokens;
            }
            if cc.ephemeral_1h_input_tokens.is_some() {
                self.cache_1h = cc.ephemeral_1h_input_tokens;
            }
        }
        if let Some(stu) = &fields.server_tool_use {
            set(&mut self.web_search_requests, stu.web_search_requests);
        }
    }
}

/// A `usage` object as it appears on the wire; absent or null fields stay `None`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct UsageFields {
    pub input_tokens: Option<u64>,
    pub cache_creation_input_tokens: Option<u64>,
    pub cache_read_input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cache_creation: Option<CacheCreation>,
    pub server_tool_use: Option<ServerToolUse>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct CacheCreation {
    pub ephemeral_5m_input_tokens: Option<u64>,
    pub ephemeral_1h_input_tokens: Option<u64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ServerToolUse {
    pub web_search_requests: Option<u64>,
}

/// What a meter learned from one response.
#[derive(Clone, Debug, Default)]
pub struct Metered {
    pub usage: Option<Usage>,
    /// The model the provider says answered.
    pub model: Option<String>,
    /// A stream ended with `message_stop` (or a JSON message was complete).
    pub complete: bool,
    /// The `error.type` of an error body or SSE `error` event.
    pub error_type: Option<String>,
}
