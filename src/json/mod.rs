//! JSON request bodies read and edited as bytes, never parsed into a tree or re-serialised: the
//! governed members (`model`, `max_tokens`, `stream`) are found without copying the body, and
//! fields are edited by moving whole members, so the rest reaches the upstream byte for byte
//! (the provider's prompt cache keys on the exact bytes). Used by routing and governance
//! (`proxy/`) and by the format translations (`format/`) alike.
//!
//! - [`members`]: the top-level members from the front; the `model` scanner; the governed
//!   members check (a governed member written twice or with escapes is refused).
//! - [`tail`]: a top-level member found by walking back from the closing brace.
//! - [`edit`]: read one field, add and drop whole members.
//! - [`write`]: objects with literal keys written without serde (the per-request log lines).
// Input is parsed here: byte offsets into it must never panic (use `get`, or validate first).
#![cfg_attr(not(test), deny(clippy::indexing_slicing, clippy::string_slice))]

pub mod edit;
pub mod members;
pub mod tail;
pub mod write;
