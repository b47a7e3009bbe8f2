//! Splits an SSE byte stream (split anywhere) into whole events and hands out each event's
//! `data` (multi-line data joined with `\n`, as the SSE spec says). Used to turn an Anthropic SSE
//! stream into Bedrock event-stream frames, one frame per event. Bounded: an event larger than
//! [`MAX_EVENT`] is an error.

/// Largest single event accepted.
pub const MAX_EVENT: usize = 16 * 1024 * 1024;

/// Incremental SSE event splitter.
#[derive(Debug, Default)]
pub struct SseSplitter {
    line: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
}

/// An event larger than [`MAX_EVENT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("SSE event larger than {MAX_EVENT} bytes")]
pub struct EventTooLarge;

impl SseSplitter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes; `on_event` gets the data of each event completed by them.
    pub fn feed(
        &mut self,
        mut input: &[u8],
        mut on_event: impl FnMut(&[u8]),
    ) -> Result<(), EventTooLarge> {
        while !input.is_empty() {
            match memchr::memchr(b'\n', input) {
                Some(i) => {
                    self.push(input.get(..i).unwrap_or_default())?;
                    self.end_line(&mut on_event);
                    input = input.get(i + 1..).unwrap_or_default();
                }
                None => {
                    self.push(input)?;
                    break;
                }
            }
        }
        Ok(())
    }

    fn push(&mut self, bytes: &[u8]) -> Result<(), EventTooLarge> {
        if self.line.len() + self.data.len() + bytes.len() > MAX_EVENT {
            return Err(EventTooLarge);
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn end_line(&mut self, on_event: &mut impl FnMut(&[u8])) {
        if self.line.last() == Some(&b'\r') {
            self.line.pop();
        }
        if self.line.is_empty() {
            if self.has_data {
                on_event(&self.data);
            }
            self.data.clear();
            self.has_data = false;
        } else if let Some(value) = self.line.strip_prefix(b"data:") {
            let value = value.strip_prefix(b" ").unwrap_or(value);
            if self.has_data {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(value);
            self.has_data = true;
        }
        self.line.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_at_every_split() {
        let stream = b"event: message_start\ndata: {\"a\":1}\n\nevent: ping\r\ndata: {\"type\":\"ping\"}\r\n\r\n: comment\n\ndata: x\ndata: y\n\n";
        for split in 0..=stream.len() {
            let mut s = SseSplitter::new();
            let mut got: Vec<Vec<u8>> = Vec::new();
            s.feed(&stream[..split], |d| got.push(d.to_vec())).unwrap();
            s.feed(&stream[split..], |d| got.push(d.to_vec())).unwrap();
            assert_eq!(
                got,
                vec![
                    b"{\"a\":1}".to_vec(),
                    b"{\"type\":\"ping\"}".to_vec(),
                    b"x\ny".to_vec()
                ],
                "split {split}"
            );
        }
    }
}
