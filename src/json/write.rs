//! JSON written by hand where serde_json's generality costs: an object whose keys are this
//! program's literals (written as they are, never escaped) and whose string values are copied
//! straight unless they hold a byte JSON escapes — control characters, `"` and `\\` — in which
//! case serde_json escapes them, so every byte matches what serde_json would write. Used for
//! the lines written for every request (the access log, the audit log).

/// A JSON object being written: members separated by commas.
pub struct Object<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Object<'a> {
    pub fn open(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, first: true }
    }

    /// Members to add to an object whose `{` and first members `out` already holds.
    pub fn continuing(out: &'a mut Vec<u8>) -> Self {
        Self { out, first: false }
    }

    pub fn close(self) {
        self.out.push(b'}');
    }

    /// `"key":` — `key` is a literal of the caller's, plain ASCII, written as it is.
    fn key(&mut self, key: &'static str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    pub fn str(&mut self, key: &'static str, value: &str) {
        self.key(key);
        string(self.out, value);
    }

    pub fn opt_str(&mut self, key: &'static str, value: Option<&str>) {
        self.key(key);
        match value {
            Some(value) => string(self.out, value),
            None => self.out.extend_from_slice(b"null"),
        }
    }

    pub fn strs(&mut self, key: &'static str, values: &[String]) {
        self.key(key);
        self.out.push(b'[');
        for (i, value) in values.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            string(self.out, value);
        }
        self.out.push(b']');
    }

    pub fn u64(&mut self, key: &'static str, value: u64) {
        self.key(key);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    pub fn opt_u64(&mut self, key: &'static str, value: Option<u64>) {
        match value {
            Some(value) => self.u64(key, value),
            None => {
                self.key(key);
                self.out.extend_from_slice(b"null");
            }
        }
    }

    pub fn bool(&mut self, key: &'static str, value: bool) {
        self.key(key);
        let text: &[u8] = if value { b"true" } else { b"false" };
        self.out.extend_from_slice(text);
    }

    /// RFC 3339 with microseconds, as a string.
    pub fn time(&mut self, key: &'static str, time: std::time::SystemTime) {
        self.key(key);
        self.out.push(b'"');
        self.out
            .extend_from_slice(crate::timestamp::Rfc3339Micros::new(time).as_bytes());
        self.out.push(b'"');
    }

    /// A value serde_json writes (floats, the trace context: rare or not worth their own code).
    pub fn serialized(&mut self, key: &'static str, value: &impl serde::Serialize) {
        self.key(key);
        if serde_json::to_writer(&mut *self.out, value).is_err() {
            self.out.extend_from_slice(b"null");
        }
    }
}

/// A JSON string: copied between quotes when no byte needs escaping, else escaped by
/// serde_json.
pub fn string(out: &mut Vec<u8>, value: &str) {
    // Every byte is looked at (no early exit), which lets the compiler check 16 or 32 at a time.
    let plain = !value.bytes().fold(false, |escape, b| {
        escape | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if plain {
        out.push(b'"');
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
    } else if serde_json::to_writer(&mut *out, value).is_err() {
        out.extend_from_slice(b"null");
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        /// Any string comes out as serde_json writes it: plain ones copied, the rest escaped.
        #[test]
        fn a_string_is_written_as_serde_json_writes_it(value in any::<String>()) {
            let mut out = Vec::new();
            super::string(&mut out, &value);
            prop_assert_eq!(out, serde_json::to_vec(&value).unwrap_or_default());
        }

        /// The same for strings mostly of the bytes that need escaping.
        #[test]
        fn escapes_anywhere_in_a_string_are_written_as_serde_json_writes_them(
            value in "[a-z\"\\\\\u{0}-\u{1f}\u{7f}é]{0,80}",
        ) {
            let mut out = Vec::new();
            super::string(&mut out, &value);
            prop_assert_eq!(out, serde_json::to_vec(&value).unwrap_or_default());
        }
    }
}
