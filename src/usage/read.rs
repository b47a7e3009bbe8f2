//! Reads a `usage` object from its raw JSON bytes without serde: its members are found with
//! the request scanner ([`crate::json::members`]) and each count is read as digits. On a
//! ~200-byte usage object this is a fraction of a derived deserializer's fixed cost, and every
//! non-streaming response is metered through it.
//!
//! It accepts what serde accepts for [`UsageFields`] — each count a JSON unsigned integer that
//! fits in 64 bits, or `null`, or absent; unknown members skipped — with one difference: a
//! member named twice counts once, the last time (as the clients' JSON parsers read it),
//! where the derived deserializer refused the whole object. Anything else (a negative or
//! fractional count, a string, a truncated object) is `None`, and the response goes unmetered
//! as it did.

use std::borrow::Cow;

use super::{CacheCreation, ServerToolUse, UsageFields};
use crate::json::members::{visit_members, Member};

/// The usage object in `raw`: `Some(None)` for `null`, `None` if it is not a valid one.
pub fn usage_fields(raw: &[u8]) -> Option<Option<UsageFields>> {
    object(raw, |fields: &mut UsageFields, key, value| {
        match key {
            b"input_tokens" => fields.input_tokens = count(value)?,
            b"cache_creation_input_tokens" => fields.cache_creation_input_tokens = count(value)?,
            b"cache_read_input_tokens" => fields.cache_read_input_tokens = count(value)?,
            b"output_tokens" => fields.output_tokens = count(value)?,
            b"cache_creation" => fields.cache_creation = cache_creation(value)?,
            b"server_tool_use" => fields.server_tool_use = server_tool_use(value)?,
            _ => {}
        }
        Some(())
    })
}

fn cache_creation(raw: &[u8]) -> Option<Option<CacheCreation>> {
    object(raw, |cc: &mut CacheCreation, key, value| {
        match key {
            b"ephemeral_5m_input_tokens" => cc.ephemeral_5m_input_tokens = count(value)?,
            b"ephemeral_1h_input_tokens" => cc.ephemeral_1h_input_tokens = count(value)?,
            _ => {}
        }
        Some(())
    })
}

fn server_tool_use(raw: &[u8]) -> Option<Option<ServerToolUse>> {
    object(raw, |stu: &mut ServerToolUse, key, value| {
        if key == b"web_search_requests" {
            stu.web_search_requests = count(value)?;
        }
        Some(())
    })
}

/// The object in `raw` as a `T`, each `(key, raw value)` set by `member`: `Some(None)` for
/// `null`, `None` if `raw` is not a complete object or `member` refused a value.
fn object<T: Default>(
    raw: &[u8],
    mut member: impl FnMut(&mut T, &[u8], &[u8]) -> Option<()>,
) -> Option<Option<T>> {
    if raw == b"null" {
        return Some(None);
    }
    let mut value = T::default();
    let mut refused = false;
    let complete = visit_members(raw, |m| {
        if !refused {
            refused = key(raw, m)
                .zip(raw.get(m.value.clone()))
                .and_then(|(key, v)| member(&mut value, &key, v))
                .is_none();
        }
    });
    (complete && !refused).then_some(Some(value))
}

/// A member's key as bytes, unescaped only when it holds an escape (keys are short: a plain
/// loop, not `memchr`'s set-up).
pub fn key<'a>(body: &'a [u8], member: &Member) -> Option<Cow<'a, [u8]>> {
    let raw = body.get(member.key.clone())?;
    if !raw.contains(&b'\\') {
        return Some(Cow::Borrowed(raw));
    }
    let quoted = body.get(member.key.start.checked_sub(1)?..member.key.end + 1)?;
    serde_json::from_slice::<String>(quoted)
        .ok()
        .map(|k| Cow::Owned(k.into_bytes()))
}

/// A token count: `Some(None)` for `null`, `Some(Some(n))` for a JSON unsigned integer (no
/// sign, no leading zero, no fraction or exponent) that fits in 64 bits, else `None`.
fn count(raw: &[u8]) -> Option<Option<u64>> {
    if raw == b"null" {
        return Some(None);
    }
    let plain = match raw {
        [b'0'] => true,
        [b'1'..=b'9', rest @ ..] => rest.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    if !plain {
        return None;
    }
    raw.iter()
        .try_fold(0u64, |n, d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
        .map(Some)
}

#[cfg(test)]
mod tests;
