//! The AWS event-stream binary framing (Bedrock `invoke-with-response-stream`): encoding frames
//! for Bedrock-format clients, and an incremental decoder (an explicit state machine, CRC-checked,
//! bounded) for Bedrock upstreams. Every message:
//! `[total_len u32][headers_len u32][CRC32 of those 8 bytes][headers][payload][CRC32 of all before]`,
//! headers as `[name_len u8][name][type u8 = 7 (string)][value_len u16][value]`.

use base64::Engine;

/// Largest frame accepted by the decoder.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;
const PRELUDE: usize = 12;
const HEADER_STRING: u8 = 7;

/// Why a frame was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventStreamError {
    #[error("event-stream prelude CRC mismatch")]
    PreludeCrc,
    #[error("event-stream message CRC mismatch")]
    MessageCrc,
    #[error("event-stream frame length {0} out of range")]
    Length(usize),
    #[error("malformed event-stream headers")]
    Headers,
}

/// Encodes one message with string headers.
pub fn encode(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut hdr = Vec::new();
    for (name, value) in headers {
        hdr.push(name.len() as u8);
        hdr.extend_from_slice(name.as_bytes());
        hdr.push(HEADER_STRING);
        hdr.extend_from_slice(&(value.len() as u16).to_be_bytes());
        hdr.extend_from_slice(value.as_bytes());
    }
    let total = PRELUDE + hdr.len() + payload.len() + 4;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(total as u32).to_be_bytes());
    out.extend_from_slice(&(hdr.len() as u32).to_be_bytes());
    let prelude_crc = crc32fast::hash(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&hdr);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// The Bedrock `chunk` event carrying one Anthropic streaming event (its JSON, base64'd).
pub fn chunk_frame(event_json: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(event_json.len() * 4 / 3 + 16);
    payload.extend_from_slice(b"{\"bytes\":\"");
    payload.extend_from_slice(
        base64::engine::general_purpose::STANDARD
            .encode(event_json)
            .as_bytes(),
    );
    payload.extend_from_slice(b"\"}");
    encode(
        &[
            (":event-type", "chunk"),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        &payload,
    )
}

/// A Bedrock `exception` frame (how a Bedrock stream fails after it started).
pub fn exception_frame(exception_type: &str, message: &str) -> Vec<u8> {
    let payload = serde_json::json!({ "message": message }).to_string();
    encode(
        &[
            (":exception-type", exception_type),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        payload.as_bytes(),
    )
}

/// One decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub headers: Vec<(String, String)>,
    pub payload: Vec<u8>,
}

impl Message {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// For a `chunk` event: the Anthropic event JSON inside (base64-decoded `bytes`).
    pub fn chunk_event(&self) -> Option<Vec<u8>> {
        #[derive(serde::Deserialize)]
        struct Chunk {
            bytes: String,
        }
        let chunk: Chunk = serde_json::from_slice(&self.payload).ok()?;
        base64::engine::general_purpose::STANDARD
            .decode(chunk.bytes)
            .ok()
    }
}

/// Incremental decoder: feed bytes split anywhere, take whole messages out. Consumed frames
/// advance a read offset (the buffer is compacted once most of it is consumed), so many frames
/// in one read cost linear time.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    start: usize,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn feed(&mut self, data: &[u8]) {
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next complete message, if one is buffered.
    pub fn next_message(&mut self) -> Result<Option<Message>, EventStreamError> {
        let buf = self.buf.get(self.start..).unwrap_or_default();
        let (Some(total), Some(headers_len), Some(prelude_crc)) =
            (be_u32(buf, 0), be_u32(buf, 4), be_u32(buf, 8))
        else {
            return Ok(None); // not a whole prelude yet
        };
        let (total, headers_len) = (total as usize, headers_len as usize);
        if crc32fast::hash(buf.get(..8).unwrap_or_default()) != prelude_crc {
            return Err(EventStreamError::PreludeCrc);
        }
        if !(PRELUDE + 4..=MAX_FRAME).contains(&total) || headers_len > total - PRELUDE - 4 {
            return Err(EventStreamError::Length(total));
        }
        let Some(frame) = buf.get(..total) else {
            return Ok(None);
        };
        let crc = be_u32(frame, total - 4).ok_or(EventStreamError::Length(total))?;
        let covered = frame.get(..total - 4).unwrap_or_default();
        if crc32fast::hash(covered) != crc {
            return Err(EventStreamError::MessageCrc);
        }
        let headers_end = PRELUDE + headers_len;
        let headers = parse_headers(covered.get(PRELUDE..headers_end).unwrap_or_default())?;
        let payload = covered.get(headers_end..).unwrap_or_default().to_vec();
        self.start += total;
        Ok(Some(Message { headers, payload }))
    }
}

/// The big-endian u32 at `at`, if the bytes are there.
fn be_u32(buf: &[u8], at: usize) -> Option<u32> {
    let bytes: [u8; 4] = buf.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

fn parse_headers(mut raw: &[u8]) -> Result<Vec<(String, String)>, EventStreamError> {
    let mut out = Vec::new();
    while !raw.is_empty() {
        let name_len = *raw.first().ok_or(EventStreamError::Headers)? as usize;
        let name = raw.get(1..1 + name_len).ok_or(EventStreamError::Headers)?;
        raw = advance(raw, 1 + name_len)?;
        let kind = *raw.first().ok_or(EventStreamError::Headers)?;
        let value: Vec<u8> = match kind {
            HEADER_STRING | 6 => {
                let len = u16::from_be_bytes([
                    *raw.get(1).ok_or(EventStreamError::Headers)?,
                    *raw.get(2).ok_or(EventStreamError::Headers)?,
                ]) as usize;
                let v = raw
                    .get(3..3 + len)
                    .ok_or(EventStreamError::Headers)?
                    .to_vec();
                raw = advance(raw, 3 + len)?;
                v
            }
            0 | 1 => {
                raw = advance(raw, 1)?;
                Vec::new()
            }
            2 => skip(&mut raw, 1)?,
            3 => skip(&mut raw, 2)?,
            4 => skip(&mut raw, 4)?,
            5 | 8 => skip(&mut raw, 8)?,
            9 => skip(&mut raw, 16)?,
            _ => return Err(EventStreamError::Headers),
        };
        out.push((
            String::from_utf8_lossy(name).into_owned(),
            String::from_utf8_lossy(&value).into_owned(),
        ));
    }
    Ok(out)
}

/// `raw` without its first `n` bytes.
fn advance(raw: &[u8], n: usize) -> Result<&[u8], EventStreamError> {
    raw.get(n..).ok_or(EventStreamError::Headers)
}

fn skip(raw: &mut &[u8], n: usize) -> Result<Vec<u8>, EventStreamError> {
    let v = raw.get(1..1 + n).ok_or(EventStreamError::Headers)?.to_vec();
    *raw = advance(raw, 1 + n)?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `shared/protocols.md` §7.1: the message_stop chunk, 135 bytes.
    const WORKED: [u8; 135] = [
        0x00, 0x00, 0x00, 0x87, 0x00, 0x00, 0x00, 0x4b, 0x87, 0xea, 0x2b, 0xf3, 0x0b, 0x3a, 0x65,
        0x76, 0x65, 0x6e, 0x74, 0x2d, 0x74, 0x79, 0x70, 0x65, 0x07, 0x00, 0x05, 0x63, 0x68, 0x75,
        0x6e, 0x6b, 0x0d, 0x3a, 0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74, 0x2d, 0x74, 0x79, 0x70,
        0x65, 0x07, 0x00, 0x10, 0x61, 0x70, 0x70, 0x6c, 0x69, 0x63, 0x61, 0x74, 0x69, 0x6f, 0x6e,
        0x2f, 0x6a, 0x73, 0x6f, 0x6e, 0x0d, 0x3a, 0x6d, 0x65, 0x73, 0x73, 0x61, 0x67, 0x65, 0x2d,
        0x74, 0x79, 0x70, 0x65, 0x07, 0x00, 0x05, 0x65, 0x76, 0x65, 0x6e, 0x74, 0x7b, 0x22, 0x62,
        0x79, 0x74, 0x65, 0x73, 0x22, 0x3a, 0x22, 0x65, 0x79, 0x4a, 0x30, 0x65, 0x58, 0x42, 0x6c,
        0x49, 0x6a, 0x6f, 0x69, 0x62, 0x57, 0x56, 0x7a, 0x63, 0x32, 0x46, 0x6e, 0x5a, 0x56, 0x39,
        0x7a, 0x64, 0x47, 0x39, 0x77, 0x49, 0x6e, 0x30, 0x3d, 0x22, 0x7d, 0xba, 0x48, 0xab, 0x22,
    ];

    #[test]
    fn encodes_the_worked_example_exactly() {
        assert_eq!(chunk_frame(br#"{"type":"message_stop"}"#), WORKED.to_vec());
    }

    #[test]
    fn exception_frame_matches_the_worked_example() {
        let f = exception_frame(
            "throttlingException",
            "Too many requests, please wait before trying again.",
        );
        assert_eq!(f.len(), 178);
        assert_eq!(&f[8..12], &0x3590d5d3u32.to_be_bytes());
        assert_eq!(&f[174..], &0xe8ffb26au32.to_be_bytes());
    }

    #[test]
    fn decodes_split_at_every_byte_boundary() {
        let mut stream = WORKED.to_vec();
        stream.extend_from_slice(&chunk_frame(br#"{"type":"ping"}"#));
        for split in 0..=stream.len() {
            let mut d = Decoder::new();
            d.feed(&stream[..split]);
            let mut got = Vec::new();
            while let Some(m) = d.next_message().unwrap() {
                got.push(m);
            }
            d.feed(&stream[split..]);
            while let Some(m) = d.next_message().unwrap() {
                got.push(m);
            }
            assert_eq!(got.len(), 2, "split {split}");
            assert_eq!(got[0].header(":event-type"), Some("chunk"));
            assert_eq!(got[0].chunk_event().unwrap(), br#"{"type":"message_stop"}"#);
            assert_eq!(got[1].chunk_event().unwrap(), br#"{"type":"ping"}"#);
        }
    }

    #[test]
    fn corrupt_frames_are_refused() {
        let mut bad = WORKED.to_vec();
        bad[100] ^= 1;
        let mut d = Decoder::new();
        d.feed(&bad);
        assert_eq!(d.next_message(), Err(EventStreamError::MessageCrc));
        let mut bad = WORKED.to_vec();
        bad[3] ^= 1;
        let mut d = Decoder::new();
        d.feed(&bad);
        assert_eq!(d.next_message(), Err(EventStreamError::PreludeCrc));
    }
}
