//! Editing top-level fields of a JSON body without re-serialising it: every member sluice keeps
//! is copied byte for byte (re-serialising would reorder keys and re-escape strings, and the
//! provider's prompt cache keys on the exact bytes). Only whole members are dropped or added.

use super::tail::{last_member, Tail};
use crate::json::members::{first_member, top_level_members, Member};

/// The raw value of top-level field `key`, if present: the first member when it has that name
/// (the SDKs send `max_tokens` first), else the last member of that name, read from the end of
/// the body (Claude Code sends it after `messages`, `system` and `tools`; see
/// [`super::tail`]). Either way only the members between that end and the field are read.
pub fn field<'a>(body: &'a [u8], key: &str) -> Option<&'a [u8]> {
    if let Some(first) =
        first_member(body).filter(|m| body.get(m.key.clone()) == Some(key.as_bytes()))
    {
        return body.get(first.value);
    }
    match last_member(body, key.as_bytes()) {
        Tail::Found(value) => return body.get(value),
        Tail::Absent => return None,
        Tail::Unreadable => {}
    }
    let members = top_level_members(body)?;
    members
        .iter()
        .find(|m| body.get(m.key.clone()) == Some(key.as_bytes()))
        .and_then(|m| body.get(m.value.clone()))
}

/// `body` with the members named in `remove` dropped and `prepend` (key, raw JSON value)
/// members put first. `None` if `body` is not a JSON object.
pub fn edit(body: &[u8], prepend: &[(&str, &[u8])], remove: &[&str]) -> Option<Vec<u8>> {
    let members = top_level_members(body)?;
    let kept: Vec<&Member> = members
        .iter()
        .filter(|m| {
            !remove
                .iter()
                .any(|k| body.get(m.key.clone()) == Some(k.as_bytes()))
        })
        .collect();
    let mut out = Vec::with_capacity(body.len() + 64);
    out.push(b'{');
    let mut first = true;
    for (key, value) in prepend {
        if !first {
            out.push(b',');
        }
        first = false;
        out.push(b'"');
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        out.extend_from_slice(value);
    }
    for m in kept {
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(body.get(m.span.clone())?);
    }
    out.push(b'}');
    Some(out)
}

/// A JSON string literal for `s`.
pub fn json_string(s: &str) -> Vec<u8> {
    serde_json::to_vec(s).unwrap_or_else(|_| b"\"\"".to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_and_prepends_without_touching_the_rest() {
        let body = br#"{"messages":[{"role":"user","content":"caf\u00e9 \"x\""}],"anthropic_version":"bedrock-2023-05-31","anthropic_beta":["a","b"],"max_tokens":5}"#;
        let out = edit(
            body,
            &[("model", br#""claude-sonnet-4-5""#), ("stream", b"true")],
            &["anthropic_version", "anthropic_beta"],
        )
        .unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"model":"claude-sonnet-4-5","stream":true,"messages":[{"role":"user","content":"caf\u00e9 \"x\""}],"max_tokens":5}"#
        );
        assert_eq!(field(body, "anthropic_beta"), Some(&br#"["a","b"]"#[..]));
        assert_eq!(field(body, "nope"), None);
        assert_eq!(edit(b"{}", &[("a", b"1")], &[]).unwrap(), br#"{"a":1}"#);
        assert_eq!(edit(br#"{"a":1}"#, &[], &["a"]).unwrap(), b"{}");
    }
}
