//! Body framing. [`ChunkedDecoder`] is an explicit state machine over arbitrary splits of the
//! input: it reports where each piece of payload lies and where the body ends, so the relay can
//! forward the raw chunked bytes untouched (byte for byte, no re-framing delay) while the usage
//! meter sees only payload. [`BodyCursor`] wraps the three framings behind one interface.

use std::ops::Range;

use super::{BodyFraming, Http1Error};

/// Longest chunk-size line (size, extensions) accepted.
const MAX_CHUNK_LINE: usize = 4096;
/// Largest trailer section accepted.
const MAX_TRAILERS: usize = 16 * 1024;

/// Where the decoder is inside a chunked body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkState {
    /// Reading hex digits of a chunk size (`digits` so far).
    Size { value: u64, digits: u8 },
    /// After the size, white space (RFC 9112's BWS), which must lead to `;ext`.
    SizeBws { value: u64, seen: usize },
    /// After the size: skipping `;ext` up to CR (`seen` bytes of line so far).
    Extension { value: u64, seen: usize },
    /// Expecting the LF that ends the size line.
    SizeLf { value: u64 },
    /// Inside chunk data.
    Data { remaining: u64 },
    /// Expecting the CR after chunk data.
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// At the start of a trailer line (or the final blank line).
    TrailerStart,
    /// Inside a trailer field line.
    TrailerLine,
    /// Expecting LF after a CR inside the trailer section; `blank` if the line was empty.
    TrailerLf { blank: bool },
    /// The body is complete.
    Done,
}

/// Incremental `Transfer-Encoding: chunked` decoder.
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    state: ChunkState,
    trailer_bytes: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        Self {
            state: ChunkState::Size {
                value: 0,
                digits: 0,
            },
            trailer_bytes: 0,
        }
    }

    /// True once the final chunk and trailer section have been read.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// True between chunks: a new chunk may be written to the same stream here.
    pub fn at_chunk_boundary(&self) -> bool {
        self.state
            == ChunkState::Size {
                value: 0,
                digits: 0,
            }
    }

    /// Decodes from `input`, calling `on_data` with each payload range (relative to `input`).
    /// Returns how many bytes of `input` belong to this body: all of it, or less when the body
    /// ended inside `input` (what follows is the next message).
    pub fn decode(
        &mut self,
        input: &[u8],
        mut on_data: impl FnMut(Range<usize>),
    ) -> Result<usize, Http1Error> {
        let mut pos = 0;
        while pos < input.len() && self.state != ChunkState::Done {
            if let ChunkState::Data { remaining } = self.state {
                let take = remaining.min((input.len() - pos) as u64) as usize;
                on_data(pos..pos + take);
                pos += take;
                let left = remaining - take as u64;
                self.state = if left == 0 {
                    ChunkState::DataCr
                } else {
                    ChunkState::Data { remaining: left }
                };
                continue;
            }
            let Some(&byte) = input.get(pos) else { break };
            pos += 1;
            self.state = self.step(byte)?;
        }
        Ok(pos)
    }

    fn step(&mut self, byte: u8) -> Result<ChunkState, Http1Error> {
        match self.state {
            ChunkState::Size { value, digits } => size_digit(value, digits, byte),
            ChunkState::SizeBws { value, seen } => size_bws(value, seen, byte),
            ChunkState::Extension { value, seen } => extension(value, seen, byte),
            ChunkState::SizeLf { value } => size_lf(value, byte),
            ChunkState::DataCr => expect(byte, b'\r', ChunkState::DataLf),
            ChunkState::DataLf => expect(byte, b'\n', Self::boundary()),
            ChunkState::TrailerStart | ChunkState::TrailerLine => self.trailer_byte(byte),
            ChunkState::TrailerLf { blank } => {
                let next = if blank {
                    ChunkState::Done
                } else {
                    ChunkState::TrailerStart
                };
                expect(byte, b'\n', next)
            }
            ChunkState::Data { .. } | ChunkState::Done => Ok(self.state),
        }
    }

    fn boundary() -> ChunkState {
        ChunkState::Size {
            value: 0,
            digits: 0,
        }
    }

    fn trailer_byte(&mut self, byte: u8) -> Result<ChunkState, Http1Error> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > MAX_TRAILERS {
            return Err(Http1Error::BadChunk("trailer section too large"));
        }
        let at_start = self.state == ChunkState::TrailerStart;
        match byte {
            b'\r' => Ok(ChunkState::TrailerLf { blank: at_start }),
            b'\n' => Err(Http1Error::BadChunk("bare LF in trailer")),
            0 => Err(Http1Error::BadChunk("NUL in trailer")),
            _ => Ok(ChunkState::TrailerLine),
        }
    }
}

fn expect(byte: u8, want: u8, next: ChunkState) -> Result<ChunkState, Http1Error> {
    if byte == want {
        Ok(next)
    } else {
        Err(Http1Error::BadChunk("missing CRLF"))
    }
}

fn size_digit(value: u64, digits: u8, byte: u8) -> Result<ChunkState, Http1Error> {
    let digit = match byte {
        b'0'..=b'9' => byte - b'0',
        b'a'..=b'f' => byte - b'a' + 10,
        b'A'..=b'F' => byte - b'A' + 10,
        _ if digits == 0 => return Err(Http1Error::BadChunk("chunk size expected")),
        b';' => {
            return Ok(ChunkState::Extension {
                value,
                seen: usize::from(digits),
            })
        }
        b'\r' => return Ok(ChunkState::SizeLf { value }),
        b' ' | b'\t' => {
            return Ok(ChunkState::SizeBws {
                value,
                seen: usize::from(digits) + 1,
            })
        }
        _ => return Err(Http1Error::BadChunk("invalid chunk size")),
    };
    if digits >= 16 {
        return Err(Http1Error::BadChunk("chunk size overflows"));
    }
    Ok(ChunkState::Size {
        value: (value << 4) | u64::from(digit),
        digits: digits + 1,
    })
}

fn extension(value: u64, seen: usize, byte: u8) -> Result<ChunkState, Http1Error> {
    match byte {
        b'\r' => Ok(ChunkState::SizeLf { value }),
        b'\n' => Err(Http1Error::BadChunk("bare LF in chunk extension")),
        0..=8 | 10..=31 | 127 => Err(Http1Error::BadChunk("control byte in chunk extension")),
        _ if seen + 1 > MAX_CHUNK_LINE => Err(Http1Error::BadChunk("chunk extension too long")),
        _ => Ok(ChunkState::Extension {
            value,
            seen: seen + 1,
        }),
    }
}

/// White space after a chunk size is allowed only before an extension (`5 ;name`).
fn size_bws(value: u64, seen: usize, byte: u8) -> Result<ChunkState, Http1Error> {
    match byte {
        _ if seen + 1 > MAX_CHUNK_LINE => Err(Http1Error::BadChunk("chunk size line too long")),
        b' ' | b'\t' => Ok(ChunkState::SizeBws {
            value,
            seen: seen + 1,
        }),
        b';' => Ok(ChunkState::Extension {
            value,
            seen: seen + 1,
        }),
        _ => Err(Http1Error::BadChunk("invalid chunk size")),
    }
}

fn size_lf(value: u64, byte: u8) -> Result<ChunkState, Http1Error> {
    if byte != b'\n' {
        return Err(Http1Error::BadChunk("missing LF after chunk size"));
    }
    Ok(if value == 0 {
        ChunkState::TrailerStart
    } else {
        ChunkState::Data { remaining: value }
    })
}

/// Tracks one message body of any framing as its bytes go by.
#[derive(Clone, Debug)]
pub enum BodyCursor {
    /// Nothing (left) to read.
    Done,
    /// This many bytes still to come.
    Length { remaining: u64 },
    /// A chunked body in progress.
    Chunked(ChunkedDecoder),
    /// Everything until the peer closes.
    UntilClose,
}

impl BodyCursor {
    pub fn new(framing: BodyFraming) -> Self {
        match framing {
            BodyFraming::Empty | BodyFraming::Length(0) => BodyCursor::Done,
            BodyFraming::Length(n) => BodyCursor::Length { remaining: n },
            BodyFraming::Chunked => BodyCursor::Chunked(ChunkedDecoder::new()),
            BodyFraming::UntilClose => BodyCursor::UntilClose,
        }
    }

    /// True when the body has been read completely.
    pub fn is_done(&self) -> bool {
        match self {
            BodyCursor::Done => true,
            BodyCursor::Chunked(d) => d.is_done(),
            BodyCursor::Length { .. } | BodyCursor::UntilClose => false,
        }
    }

    /// Consumes the part of `input` that belongs to the body; returns its length. Payload ranges
    /// (for a meter, or for de-chunking) go to `on_data`.
    pub fn advance(
        &mut self,
        input: &[u8],
        mut on_data: impl FnMut(Range<usize>),
    ) -> Result<usize, Http1Error> {
        match self {
            BodyCursor::Done => Ok(0),
            BodyCursor::Length { remaining } => {
                let take = (*remaining).min(input.len() as u64) as usize;
                on_data(0..take);
                *remaining -= take as u64;
                if *remaining == 0 {
                    *self = BodyCursor::Done;
                }
                Ok(take)
            }
            BodyCursor::Chunked(decoder) => decoder.decode(input, on_data),
            BodyCursor::UntilClose => {
                on_data(0..input.len());
                Ok(input.len())
            }
        }
    }

    /// What the end of the peer's stream means for this body.
    pub fn on_eof(&mut self) -> Result<(), Http1Error> {
        match self {
            BodyCursor::UntilClose => {
                *self = BodyCursor::Done;
                Ok(())
            }
            _ if self.is_done() => Ok(()),
            _ => Err(Http1Error::UnexpectedEof),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Result<(Vec<u8>, usize, bool), Http1Error> {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let used = d.decode(input, |r| out.extend_from_slice(&input[r]))?;
        Ok((out, used, d.is_done()))
    }

    #[test]
    fn decodes_chunks_extensions_and_trailers() {
        let body = b"5;name=x\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let (out, used, done) = decode_all(body).unwrap();
        assert_eq!(out, b"hello world");
        assert!(done);
        assert_eq!(&body[used..], b"NEXT");
    }

    #[test]
    fn every_split_point_gives_the_same_payload() {
        let body = b"3\r\nabc\r\nA\r\n0123456789\r\n0\r\n\r\n";
        for split in 0..=body.len() {
            let mut d = ChunkedDecoder::new();
            let mut out = Vec::new();
            let (a, b) = body.split_at(split);
            let n = d.decode(a, |r| out.extend_from_slice(&a[r])).unwrap();
            assert_eq!(n, a.len());
            let m = d.decode(b, |r| out.extend_from_slice(&b[r])).unwrap();
            assert_eq!(m, b.len());
            assert!(d.is_done());
            assert_eq!(out, b"abc0123456789");
        }
    }

    #[test]
    fn hostile_chunks_are_refused() {
        for bad in [
            &b"x\r\n"[..],
            b"-1\r\n",
            b"fffffffffffffffff\r\n",
            b"3\nabc\r\n",
            b"3\r\nabcX\r\n",
            b"0\r\nX: 1\n\r\n",
            b" 3\r\nabc\r\n",
        ] {
            assert!(decode_all(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn length_cursor_stops_at_its_end() {
        let mut c = BodyCursor::new(BodyFraming::Length(3));
        assert_eq!(c.advance(b"abcdef", |_| {}).unwrap(), 3);
        assert!(c.is_done());
        assert!(BodyCursor::new(BodyFraming::Length(3)).on_eof().is_err());
    }
}
