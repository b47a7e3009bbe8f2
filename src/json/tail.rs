//! Finds a top-level member of a JSON object by walking it from its closing brace.
//!
//! Claude Code puts `max_tokens` after `messages`, `system` and `tools`, tens of kilobytes into
//! the body, so finding it from the front — for every budget reservation — walks the whole body,
//! the largest part of governance's cost per request. From the back it is a few members away. JSON reads backwards as well as forwards: a string
//! runs between the nearest unescaped quotes (a quote is escaped when an odd number of
//! backslashes precede it, and no unescaped quote can occur inside a string), and brackets nest
//! the same way in either direction.
//!
//! The walk checks the top-level structure it crosses; a body it cannot read from the back (a
//! held prefix of a larger body, or not an object) is [`Tail::Unreadable`] and the caller reads
//! it from the front instead.

use std::ops::Range;

/// What the walk from the end found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tail {
    /// The value of the last top-level member with the key (raw JSON bytes).
    Found(Range<usize>),
    /// A whole object without that key.
    Absent,
    /// Not readable from the back: not a complete object.
    Unreadable,
}

/// The last top-level member named `key` (compared as raw, unescaped-in-place bytes).
pub fn last_member(body: &[u8], key: &[u8]) -> Tail {
    walk(body, key).unwrap_or(Tail::Unreadable)
}

fn walk(body: &[u8], key: &[u8]) -> Option<Tail> {
    let end = back_ws(body, body.len());
    let mut pos = end.checked_sub(1)?; // the closing brace
    if *body.get(pos)? != b'}' {
        return None;
    }
    let first = body.iter().position(|b| !is_ws(*b))?;
    if back_ws(body, pos) == first + 1 && body.get(first) == Some(&b'{') {
        return Some(Tail::Absent); // `{}`
    }
    loop {
        let value_end = back_ws(body, pos);
        let value_start = value_start(body, value_end)?;
        let colon = back_ws(body, value_start).checked_sub(1)?;
        if *body.get(colon)? != b':' {
            return None;
        }
        let key_close = back_ws(body, colon).checked_sub(1)?;
        if *body.get(key_close)? != b'"' || is_escaped(body, key_close) {
            return None;
        }
        let key_open = string_start(body, key_close)?;
        if body.get(key_open + 1..key_close)? == key {
            return Some(Tail::Found(value_start..value_end));
        }
        let before = back_ws(body, key_open).checked_sub(1)?;
        match *body.get(before)? {
            b',' => pos = before,
            b'{' if before == first => return Some(Tail::Absent),
            _ => return None,
        }
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// The position just past the last non-whitespace byte before `end`.
fn back_ws(body: &[u8], mut end: usize) -> usize {
    while end > 0 && body.get(end - 1).is_some_and(|b| is_ws(*b)) {
        end -= 1;
    }
    end
}

/// Whether the byte at `pos` is preceded by an odd number of backslashes.
fn is_escaped(body: &[u8], pos: usize) -> bool {
    let run = body
        .get(..pos)
        .unwrap_or_default()
        .iter()
        .rev()
        .take_while(|&&b| b == b'\\')
        .count();
    run % 2 == 1
}

/// The opening quote of the string whose closing quote is at `close`.
fn string_start(body: &[u8], close: usize) -> Option<usize> {
    let mut end = close;
    loop {
        let quote = memchr::memrchr(b'"', body.get(..end)?)?;
        if !is_escaped(body, quote) {
            return Some(quote);
        }
        end = quote;
    }
}

/// Where the value that ends just before `end` starts.
fn value_start(body: &[u8], end: usize) -> Option<usize> {
    let last = end.checked_sub(1)?;
    match *body.get(last)? {
        b'"' if !is_escaped(body, last) => string_start(body, last),
        b'}' | b']' => nested_start(body, last),
        _ => {
            let start = body
                .get(..end)?
                .iter()
                .rposition(|&b| is_ws(b) || matches!(b, b',' | b':' | b'[' | b'{'))
                .map_or(0, |p| p + 1);
            let scalar = body.get(start..end)?;
            let valid = !scalar.is_empty()
                && scalar
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b'.'));
            valid.then_some(start)
        }
    }
}

/// The opening bracket matching the closing one at `close`.
fn nested_start(body: &[u8], close: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut pos = close + 1;
    while pos > 0 {
        pos -= 1;
        match *body.get(pos)? {
            b'"' => pos = string_start(body, pos)?,
            b'}' | b']' => depth += 1,
            b'{' | b'[' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(pos);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found<'a>(body: &'a str, key: &str) -> Option<&'a str> {
        match last_member(body.as_bytes(), key.as_bytes()) {
            Tail::Found(r) => Some(&body[r]),
            _ => None,
        }
    }

    #[test]
    fn finds_members_at_the_end_whatever_comes_before() {
        let body = r#"{"model":"m","messages":[{"role":"user","content":"say \"max_tokens\": 1 }]"}],"max_tokens": 64000 ,"stream":true}"#;
        assert_eq!(found(body, "max_tokens"), Some("64000"));
        assert_eq!(found(body, "stream"), Some("true"));
        assert_eq!(found(body, "model"), Some(r#""m""#));
        assert_eq!(
            found(body, "messages"),
            Some(r#"[{"role":"user","content":"say \"max_tokens\": 1 }]"}]"#)
        );
    }

    #[test]
    fn a_key_inside_a_nested_value_or_a_string_is_not_a_member() {
        let body = r#"{"tools":[{"max_tokens":5}],"s":"\"max_tokens\":7","n":1}"#;
        assert_eq!(last_member(body.as_bytes(), b"max_tokens"), Tail::Absent);
    }

    #[test]
    fn backslashes_before_a_quote_decide_whether_it_ends_a_string() {
        let body = r#"{"a":"x\\","max_tokens":3,"b":"y\\\"z\\\\"}"#;
        assert_eq!(found(body, "max_tokens"), Some("3"));
        assert_eq!(found(body, "a"), Some(r#""x\\""#));
    }

    #[test]
    fn the_last_of_duplicate_members_wins() {
        assert_eq!(found(r#"{"k":1,"k":2}"#, "k"), Some("2"));
    }

    #[test]
    fn empty_objects_and_whitespace() {
        assert_eq!(last_member(b" { } ", b"k"), Tail::Absent);
        assert_eq!(
            found(" {\n \"k\" :\t[ 1 , 2 ] \n}\n", "k"),
            Some("[ 1 , 2 ]")
        );
    }

    #[test]
    fn what_cannot_be_read_from_the_back_says_so() {
        for body in [
            &b"{\"model\":\"m\",\"messages\":[1,"[..], // a held prefix
            b"[1,2]",
            b"",
            b"}",
            b"{\"a\" 1}",
            b"{\"a\":1 \"b\":2}",
            b"x{\"a\":1}",
            b"{\"a\":}",
            b"{\"a\":1]}",
        ] {
            assert_eq!(
                last_member(body, b"absent"),
                Tail::Unreadable,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
