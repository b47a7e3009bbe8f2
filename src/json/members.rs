//! Finds the top-level `"model"` of a JSON request body without parsing or copying it. Claude
//! Code sends `model` first in a ~77 KB body, so the scan usually stops within a few bytes; the
//! Python SDK puts it after `messages`, so the scan must skip whole values, including strings that
//! themselves contain `"model"`. Strings are skipped with `memchr`, which is where the bytes are.

use std::borrow::Cow;

/// What the scan found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelScan<'a> {
    /// The top-level `model` string, unescaped: borrowed from the body unless it holds an
    /// escape.
    Found(Cow<'a, str>),
    /// A complete object without a top-level `model` string.
    Absent,
    /// The bytes end before the answer is known.
    Incomplete,
    /// Not a JSON object.
    Invalid,
}

/// Scans `body` for its top-level `model` field.
pub fn scan_model(body: &[u8]) -> ModelScan<'_> {
    match scan(body) {
        Ok(found) => found,
        Err(Stop::Incomplete) => ModelScan::Incomplete,
        Err(Stop::Invalid) => ModelScan::Invalid,
    }
}

/// The top-level members whose values sluice governs: the model it routes and checks against
/// the key's allow-list, the `max_tokens` it reserves budget for, the `stream` flag the stream
/// limit counts.
pub const GOVERNED: [&str; 3] = ["model", "max_tokens", "stream"];

/// Why a body's governed members cannot be read one way only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyProblem {
    /// The member appears more than once (parsers differ on which one counts).
    Duplicate(&'static str),
    /// The member's name is written with escapes (`"mod\u0065l"`).
    Escaped(&'static str),
    /// The body is not a complete JSON object.
    NotAnObject,
}

/// Checks that every [`GOVERNED`] member appears at most once at the top level of `body`, its
/// name spelled plainly: then every reader (sluice's, the upstream's, first-wins or last-wins)
/// sees the same model, `max_tokens` and `stream`. One pass over the top-level members.
pub fn check_governed(body: &[u8]) -> Result<(), BodyProblem> {
    let mut seen = [false; GOVERNED.len()];
    let mut problem = None;
    let complete = visit_members(body, |m| {
        if problem.is_none() {
            problem = check_member(body, m, &mut seen).err();
        }
    });
    if !complete {
        return Err(BodyProblem::NotAnObject);
    }
    problem.map_or(Ok(()), Err)
}

/// One member against [`GOVERNED`]: spelled plainly, not seen before.
fn check_member(
    body: &[u8],
    m: &Member,
    seen: &mut [bool; GOVERNED.len()],
) -> Result<(), BodyProblem> {
    let key = body.get(m.key.clone()).ok_or(BodyProblem::NotAnObject)?;
    let (name, escaped) = if memchr::memchr(b'\\', key).is_some() {
        let quoted = body
            .get(m.key.start - 1..m.key.end + 1)
            .ok_or(BodyProblem::NotAnObject)?;
        let decoded: String =
            serde_json::from_slice(quoted).map_err(|_| BodyProblem::NotAnObject)?;
        (GOVERNED.iter().position(|g| *g == decoded), true)
    } else {
        (GOVERNED.iter().position(|g| g.as_bytes() == key), false)
    };
    let Some(i) = name else { return Ok(()) };
    let member = GOVERNED.get(i).copied().unwrap_or("model");
    if escaped {
        return Err(BodyProblem::Escaped(member));
    }
    if let Some(flag) = seen.get_mut(i) {
        if *flag {
            return Err(BodyProblem::Duplicate(member));
        }
        *flag = true;
    }
    Ok(())
}

/// One top-level member of a JSON object: its key (without quotes) and the raw bytes from the
/// key's opening quote to the end of its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub key: std::ops::Range<usize>,
    pub span: std::ops::Range<usize>,
    pub value: std::ops::Range<usize>,
}

/// The top-level members of a complete JSON object, in order; `None` if `body` is not one.
pub fn top_level_members(body: &[u8]) -> Option<Vec<Member>> {
    let mut out = Vec::new();
    visit_members(body, |member| out.push(member.clone())).then_some(out)
}

/// Shows `visit` each top-level member of a JSON object, in order; false if `body` is not a
/// complete object (the members before the fault have been shown).
pub fn visit_members(body: &[u8], visit: impl FnMut(&Member)) -> bool {
    members(body, visit).is_ok()
}

/// The first top-level member of a JSON object (reading no further than its value), if the
/// object has one.
pub fn first_member(body: &[u8]) -> Option<Member> {
    match object_start(body).ok()? {
        Some(pos) => member_at(body, pos).ok(),
        None => None,
    }
}

/// The position of the first member's key, or `None` for `{}`.
fn object_start(body: &[u8]) -> Step<Option<usize>> {
    let pos = skip_ws(body, 0)?;
    if at(body, pos)? != b'{' {
        return Err(Stop::Invalid);
    }
    let pos = skip_ws(body, pos + 1)?;
    Ok((at(body, pos)? != b'}').then_some(pos))
}

/// The member whose key starts at `pos`.
fn member_at(body: &[u8], start: usize) -> Step<Member> {
    if at(body, start)? != b'"' {
        return Err(Stop::Invalid);
    }
    let key_end = string_end(body, start)?;
    let pos = skip_ws(body, key_end + 1)?;
    if at(body, pos)? != b':' {
        return Err(Stop::Invalid);
    }
    let value_start = skip_ws(body, pos + 1)?;
    let value_end = skip_value(body, value_start)?;
    Ok(Member {
        key: start + 1..key_end,
        span: start..value_end,
        value: value_start..value_end,
    })
}

fn members(body: &[u8], mut visit: impl FnMut(&Member)) -> Step<()> {
    let Some(mut pos) = object_start(body)? else {
        return Ok(());
    };
    loop {
        let member = member_at(body, pos)?;
        pos = skip_ws(body, member.value.end)?;
        visit(&member);
        match at(body, pos)? {
            b',' => pos = skip_ws(body, pos + 1)?,
            b'}' => return Ok(()),
            _ => return Err(Stop::Invalid),
        }
    }
}

enum Stop {
    Incomplete,
    Invalid,
}

type Step<T> = Result<T, Stop>;

fn scan(body: &[u8]) -> Step<ModelScan<'_>> {
    let mut pos = skip_ws(body, 0)?;
    if at(body, pos)? != b'{' {
        return Err(Stop::Invalid);
    }
    pos += 1;
    loop {
        pos = skip_ws(body, pos)?;
        match at(body, pos)? {
            b'}' => return Ok(ModelScan::Absent),
            b'"' => {}
            _ => return Err(Stop::Invalid),
        }
        let key_end = string_end(body, pos)?;
        let key = bytes(body, pos + 1..key_end)?;
        pos = skip_ws(body, key_end + 1)?;
        if at(body, pos)? != b':' {
            return Err(Stop::Invalid);
        }
        pos = skip_ws(body, pos + 1)?;
        if key == b"model" {
            if at(body, pos)? != b'"' {
                return Ok(ModelScan::Absent);
            }
            let end = string_end(body, pos)?;
            return Ok(ModelScan::Found(unescape(bytes(body, pos..end + 1)?)?));
        }
        pos = skip_value(body, pos)?;
        pos = skip_ws(body, pos)?;
        match at(body, pos)? {
            b',' => pos += 1,
            b'}' => return Ok(ModelScan::Absent),
            _ => return Err(Stop::Invalid),
        }
    }
}

/// The byte at `pos`; past the end the body is incomplete.
fn at(body: &[u8], pos: usize) -> Step<u8> {
    body.get(pos).copied().ok_or(Stop::Incomplete)
}

/// The bytes in `range`; outside the body it is incomplete.
fn bytes(body: &[u8], range: std::ops::Range<usize>) -> Step<&[u8]> {
    body.get(range).ok_or(Stop::Incomplete)
}

fn skip_ws(body: &[u8], mut pos: usize) -> Step<usize> {
    while let Some(b) = body.get(pos) {
        if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            return Ok(pos);
        }
        pos += 1;
    }
    Err(Stop::Incomplete)
}

/// Position of the closing quote of the string opening at `start`.
fn string_end(body: &[u8], start: usize) -> Step<usize> {
    let mut pos = start + 1;
    loop {
        let rest = body.get(pos..).ok_or(Stop::Incomplete)?;
        let i = memchr::memchr2(b'"', b'\\', rest).ok_or(Stop::Incomplete)?;
        if rest.get(i) == Some(&b'"') {
            return Ok(pos + i);
        }
        pos += i + 2;
    }
}

/// Position just past the value starting at `pos`.
fn skip_value(body: &[u8], pos: usize) -> Step<usize> {
    match at(body, pos)? {
        b'"' => Ok(string_end(body, pos)? + 1),
        b'{' | b'[' => skip_nested(body, pos),
        _ => {
            let mut p = pos;
            while let Some(b) = body.get(p) {
                if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                    return if p == pos { Err(Stop::Invalid) } else { Ok(p) };
                }
                p += 1;
            }
            Err(Stop::Incomplete)
        }
    }
}

/// Position just past the array or object opening at `start`.
///
/// Only brackets of the value's own kind are counted (in valid JSON the other kind nests
/// within them), and a bracket is inside a string exactly when an odd number of unescaped
/// quotes lie between the value's start and it. So instead of visiting every string, the scan
/// visits only the value's own brackets (`memchr2_iter`) and counts the quotes between two of
/// them (`memchr` counting, which is several times faster than finding each quote), less the
/// escaped ones (a quote after an odd run of backslashes, found through the rare `\"`).
/// Invalid JSON may be misread; the upstream refuses it whole, so nothing misread is executed.
fn skip_nested(body: &[u8], start: usize) -> Step<usize> {
    let (open, close) = match body.get(start) {
        Some(b'{') => (b'{', b'}'),
        Some(b'[') => (b'[', b']'),
        _ => return Err(Stop::Invalid),
    };
    let rest = body.get(start..).ok_or(Stop::Incomplete)?;
    let mut depth = 0usize;
    let mut quotes = 0usize;
    let mut counted_to = start;
    for i in memchr::memchr2_iter(open, close, rest) {
        let at = start + i;
        quotes += unescaped_quotes(body, counted_to, at);
        counted_to = at;
        if quotes % 2 == 1 {
            continue; // inside a string
        }
        if body.get(at) == Some(&open) {
            depth += 1;
        } else {
            depth = depth.checked_sub(1).ok_or(Stop::Invalid)?;
            if depth == 0 {
                return Ok(at + 1);
            }
        }
    }
    Err(Stop::Incomplete)
}

/// The quotes in `body[from..to]` that are not escaped.
fn unescaped_quotes(body: &[u8], from: usize, to: usize) -> usize {
    static ESCAPED_QUOTE: std::sync::OnceLock<memchr::memmem::Finder<'static>> =
        std::sync::OnceLock::new();
    let segment = body.get(from..to).unwrap_or_default();
    let all = memchr::memchr_iter(b'"', segment).count();
    if memchr::memchr(b'\\', segment).is_none() {
        return all;
    }
    let finder = ESCAPED_QUOTE.get_or_init(|| memchr::memmem::Finder::new(b"\\\""));
    let escaped = finder
        .find_iter(segment)
        .filter(|i| escaped(body, from + i + 1))
        .count();
    all.saturating_sub(escaped)
}

/// Whether the quote at `pos` is escaped: preceded by an odd run of backslashes (the run may
/// begin before the segment being counted).
fn escaped(body: &[u8], pos: usize) -> bool {
    let before = body.get(..pos).unwrap_or_default();
    before.iter().rev().take_while(|b| **b == b'\\').count() % 2 == 1
}

fn unescape(quoted: &[u8]) -> Step<Cow<'_, str>> {
    if memchr::memchr(b'\\', quoted).is_none() {
        let inner = quoted
            .get(1..quoted.len().saturating_sub(1))
            .ok_or(Stop::Invalid)?;
        return std::str::from_utf8(inner)
            .map(Cow::Borrowed)
            .map_err(|_| Stop::Invalid);
    }
    serde_json::from_slice::<String>(quoted)
        .map(Cow::Owned)
        .map_err(|_| Stop::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(s: &str) -> ModelScan<'_> {
        ModelScan::Found(Cow::Borrowed(s))
    }

    #[test]
    fn members_keep_their_raw_bytes() {
        let body = br#"{ "model" : "m", "messages":[{"a":"}"}],"n":1 }"#;
        let m = top_level_members(body).unwrap();
        let keys: Vec<&[u8]> = m.iter().map(|m| &body[m.key.clone()]).collect();
        assert_eq!(keys, [&b"model"[..], b"messages", b"n"]);
        assert_eq!(&body[m[1].span.clone()], br#""messages":[{"a":"}"}]"#);
        assert_eq!(&body[m[2].value.clone()], b"1");
        assert!(top_level_members(b"{}").unwrap().is_empty());
        assert!(top_level_members(br#"{"a":1"#).is_none());
    }

    #[test]
    fn governed_members_are_read_one_way_only() {
        assert_eq!(
            check_governed(br#"{"model":"a","max_tokens":5,"stream":true,"messages":[{"model":"x","model":"y"}]}"#),
            Ok(())
        );
        assert_eq!(
            check_governed(br#"{"model":"a","messages":[],"model":"b"}"#),
            Err(BodyProblem::Duplicate("model"))
        );
        assert_eq!(
            check_governed(br#"{"max_tokens":1,"max_tokens":99999}"#),
            Err(BodyProblem::Duplicate("max_tokens"))
        );
        assert_eq!(
            check_governed(br#"{"stream":false,"x":{"]":"["},"stream":true}"#),
            Err(BodyProblem::Duplicate("stream"))
        );
        assert_eq!(
            check_governed(br#"{"model":"a","mod\u0065l":"b"}"#),
            Err(BodyProblem::Escaped("model"))
        );
        assert_eq!(
            check_governed(br#"{"\u006dax_tokens":1}"#),
            Err(BodyProblem::Escaped("max_tokens"))
        );
        assert_eq!(check_governed(br#"{"a\"b":1,"model":"m"}"#), Ok(()));
        assert_eq!(
            check_governed(br#"{"model":"a""#),
            Err(BodyProblem::NotAnObject)
        );
        assert_eq!(check_governed(b"[]"), Err(BodyProblem::NotAnObject));
    }

    #[test]
    fn model_first_or_last() {
        assert_eq!(
            scan_model(br#"{"model":"claude-opus-4-8","messages":[]}"#),
            found("claude-opus-4-8")
        );
        assert_eq!(
            scan_model(br#"{"max_tokens":64,"messages":[{"role":"user","content":"say \"model\": \"x\" {"}],"model":"claude-sonnet-4-5","system":"t"}"#),
            found("claude-sonnet-4-5")
        );
    }

    #[test]
    fn nested_model_does_not_count() {
        assert_eq!(
            scan_model(
                br#"{"metadata":{"model":"decoy"},"messages":[{"model":"no"}],"x":[1,true,null]}"#
            ),
            ModelScan::Absent
        );
        assert_eq!(
            scan_model(br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":1}"#),
            ModelScan::Absent
        );
    }

    #[test]
    fn escapes_whitespace_and_truncation() {
        assert_eq!(
            scan_model(b" {\n \"model\" : \"a\\u0062c\" }"),
            found("abc")
        );
        assert_eq!(
            scan_model(br#"{"messages":[{"content":"abc"#),
            ModelScan::Incomplete
        );
        assert_eq!(scan_model(br#"{"mod"#), ModelScan::Incomplete);
        assert_eq!(scan_model(b""), ModelScan::Incomplete);
        assert_eq!(scan_model(b"[1]"), ModelScan::Invalid);
        assert_eq!(scan_model(br#"{"a" 1}"#), ModelScan::Invalid);
        assert_eq!(scan_model(br#"{"model":5}"#), ModelScan::Absent);
    }
}
