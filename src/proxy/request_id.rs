//! Request ids, unique across workers and restarts: `req_`, then the worker's start time
//! (microseconds since the epoch), its number and a sequence, each fixed-width in base 32
//! (RFC 4648's "extended hex" alphabet, lower case, so ids sort as they were issued). That is
//! 24 bytes until a worker's 34 billionth request: a [`CompactString`] keeps it inline, so an
//! id costs no allocation however many records, log lines and headers copy it.

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

use compact_str::CompactString;

const DIGITS: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";
/// Base-32 digits of the start time: 55 bits of microseconds, past the year 3000.
const START_DIGITS: u32 = 11;
/// Base-32 digits of the worker's number (up to 1,024 workers).
const WORKER_DIGITS: u32 = 2;
/// Base-32 digits the sequence is padded to; a longer one just takes more.
const SEQUENCE_DIGITS: u32 = 7;

/// One worker's request ids.
pub struct RequestIds {
    prefix: CompactString,
    next: Cell<u64>,
}

impl RequestIds {
    pub fn new(worker: usize) -> Self {
        let start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        Self::starting(start, worker as u64)
    }

    fn starting(start_micros: u64, worker: u64) -> Self {
        let mut prefix = CompactString::const_new("req_");
        push_base32(&mut prefix, start_micros, START_DIGITS);
        push_base32(&mut prefix, worker, WORKER_DIGITS);
        Self {
            prefix,
            next: Cell::new(0),
        }
    }

    /// The next id.
    pub fn next(&self) -> CompactString {
        let n = self.next.get();
        self.next.set(n.wrapping_add(1));
        let mut id = self.prefix.clone();
        push_base32(&mut id, n, SEQUENCE_DIGITS);
        id
    }
}

/// Writes `value` in base 32, at least `width` digits (zero-padded), most significant first.
fn push_base32(out: &mut CompactString, value: u64, width: u32) {
    let needed = (u64::BITS - value.leading_zeros()).div_ceil(5).max(width);
    for digit in (0..needed).rev() {
        let index = (value.checked_shr(digit * 5).unwrap_or(0) & 31) as usize;
        // Five bits index 32 digits: always found.
        out.push(DIGITS.get(index).map_or('0', |&d| char::from(d)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_inline_distinct_and_sorted_as_issued() {
        let ids = RequestIds::starting(1_796_000_000_000_000, 3);
        let issued: Vec<CompactString> = (0..1000).map(|_| ids.next()).collect();
        assert!(issued
            .iter()
            .all(|id| id.len() == 24 && !id.is_heap_allocated()));
        assert!(issued.iter().all(|id| id.starts_with("req_")));
        assert!(issued.windows(2).all(|w| w[0] < w[1]), "{issued:?}");
    }

    #[test]
    fn workers_and_restarts_differ() {
        let a = RequestIds::starting(1_796_000_000_000_000, 0).next();
        let b = RequestIds::starting(1_796_000_000_000_000, 1).next();
        let c = RequestIds::starting(1_796_000_000_000_001, 0).next();
        assert!(a != b && a != c && b != c);
    }

    #[test]
    fn base32_is_positional_and_grows_past_its_width() {
        let mut s = CompactString::default();
        push_base32(&mut s, 0, 3);
        push_base32(&mut s, 31, 1);
        push_base32(&mut s, 32, 1);
        push_base32(&mut s, u64::MAX, 0);
        assert_eq!(s, "000v10fvvvvvvvvvvvv");
    }

    #[test]
    fn a_sequence_past_its_width_still_gives_distinct_ids() {
        let ids = RequestIds::starting(5, 1);
        ids.next.set(u64::from(u32::MAX) * 16);
        let (a, b) = (ids.next(), ids.next());
        assert!(a.len() > 24 && a != b && a < b);
    }
}
