//! Request paths that two servers could read differently are refused before anything routes on
//! them. Upstreams and the frameworks in front of them decode percent-escapes, merge slashes,
//! resolve dot segments and strip `;params`; if sluice matched the raw bytes while the upstream
//! matched the normalized form, `/v1/m%65ssages` would be an ungoverned Messages call. So a path
//! is accepted only in the one form that needs no normalization:
//!
//! - bytes: unreserved, sub-delims other than `;`, `:`, `@`, `/`, and `%` escapes;
//! - an escape is `%` and two hex digits, and never encodes an unreserved character (that has
//!   a plain spelling) — `%3A` in a Bedrock model id is fine, `%65` is not;
//! - no empty segment (`//`), no `.` or `..` segment, no `;` (path parameters), no `\`.
//!
//! [`check`] says which rule a path breaks; callers answer 400.

/// Why a path was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathProblem {
    NotAbsolute,
    ForbiddenByte,
    BadEscape,
    EscapedUnreserved,
    EmptySegment,
    DotSegment,
}

impl PathProblem {
    /// The reason, for the error message.
    pub fn reason(&self) -> &'static str {
        match self {
            PathProblem::NotAbsolute => "the path does not start with '/'",
            PathProblem::ForbiddenByte => {
                "the path contains a character that needs normalizing (';', '\\', a space or a control byte)"
            }
            PathProblem::BadEscape => "the path contains a malformed percent-escape",
            PathProblem::EscapedUnreserved => {
                "the path percent-encodes a character that has a plain spelling"
            }
            PathProblem::EmptySegment => "the path contains an empty segment ('//')",
            PathProblem::DotSegment => "the path contains a '.' or '..' segment",
        }
    }
}

/// Checks that `path` (without its query) is in canonical form.
pub fn check(path: &[u8]) -> Result<(), PathProblem> {
    let Some(rest) = path.strip_prefix(b"/") else {
        return Err(PathProblem::NotAbsolute);
    };
    check_bytes(path)?;
    if rest.is_empty() {
        return Ok(()); // `/`
    }
    for segment in rest.split(|b| *b == b'/') {
        match segment {
            b"" => return Err(PathProblem::EmptySegment),
            b"." | b".." => return Err(PathProblem::DotSegment),
            _ => {}
        }
    }
    Ok(())
}

/// Whether the path holds any percent-escape.
pub fn has_escapes(path: &[u8]) -> bool {
    memchr::memchr(b'%', path).is_some()
}

fn check_bytes(path: &[u8]) -> Result<(), PathProblem> {
    let mut bytes = path.iter();
    while let Some(&b) = bytes.next() {
        if b == b'%' {
            let hi = bytes.next().and_then(|h| hex_value(*h));
            let lo = bytes.next().and_then(|l| hex_value(*l));
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(PathProblem::BadEscape);
            };
            if is_unreserved(hi << 4 | lo) {
                return Err(PathProblem::EscapedUnreserved);
            }
        } else if !is_path_byte(b) {
            return Err(PathProblem::ForbiddenByte);
        }
    }
    Ok(())
}

/// RFC 3986 unreserved: `ALPHA DIGIT - . _ ~`.
pub(crate) fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 sub-delims: `! $ & ' ( ) * + , ; =`.
pub(crate) fn is_sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

/// A byte a canonical path may hold outside an escape (`;` excluded: path parameters).
fn is_path_byte(b: u8) -> bool {
    is_unreserved(b) || (is_sub_delim(b) && b != b';') || matches!(b, b':' | b'@' | b'/')
}

/// `s` with its `%XX` escapes decoded — the one percent-decoder (paths, model ids in paths,
/// SigV4's canonical query); `None` for a malformed escape or a result that is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        if byte == b'%' {
            let high = hex_value(*bytes.get(i + 1)?)?;
            let low = hex_value(*bytes.get(i + 2)?)?;
            out.push(high << 4 | low);
            i += 3;
        } else {
            out.push(byte);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn percent_decoding_is_strict() {
        use super::percent_decode;
        assert_eq!(percent_decode("a%3Ab%2fc").as_deref(), Some("a:b/c"));
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        for bad in ["%", "%4", "%zz", "a%+1", "%ff"] {
            assert_eq!(percent_decode(bad), None, "{bad}");
        }
    }

    use super::*;

    #[test]
    fn canonical_paths_pass() {
        for ok in [
            &b"/"[..],
            b"/v1/messages",
            b"/v1/messages/count_tokens",
            b"/model/us.anthropic.claude-sonnet-4-5-20250929-v1:0/invoke",
            b"/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke",
            b"/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Aapplication-inference-profile%2Fab/invoke",
            b"/v1/projects/p/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929:streamRawPredict",
        ] {
            assert_eq!(check(ok), Ok(()), "{}", String::from_utf8_lossy(ok));
        }
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        for (bad, why) in [
            (&b"/v1/m%65ssages"[..], PathProblem::EscapedUnreserved),
            (b"/v1/messages%2", PathProblem::BadEscape),
            (b"/v1/messages%zz", PathProblem::BadEscape),
            (b"/v1/messages;x=1", PathProblem::ForbiddenByte),
            (b"/v1\\messages", PathProblem::ForbiddenByte),
            (b"//v1/messages", PathProblem::EmptySegment),
            (b"/v1//messages", PathProblem::EmptySegment),
            (b"/v1/messages/", PathProblem::EmptySegment),
            (b"/v1/./messages", PathProblem::DotSegment),
            (b"/v1/x/../messages", PathProblem::DotSegment),
            (b"/v1/%2e%2e/messages", PathProblem::EscapedUnreserved),
            (b"v1/messages", PathProblem::NotAbsolute),
        ] {
            assert_eq!(check(bad), Err(why), "{}", String::from_utf8_lossy(bad));
        }
    }
}
