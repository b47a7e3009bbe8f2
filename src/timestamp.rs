//! A record's time as text: RFC 3339 with microseconds (`2026-12-03T09:50:12.123456Z`),
//! exactly as `humantime::format_rfc3339_micros` writes it. The writer threads put one in every
//! line and row (access log, audit log, ledger), three per request; requests that finish in the
//! same second share the first 20 bytes, so each thread keeps the last second it formatted and
//! writes only the fraction for the next time in it. humantime formats each new second.

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

/// The text's length: `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub const LEN: usize = 27;

/// Bytes up to and including the `.` before the fraction.
const SECOND_PREFIX: usize = 20;

/// `time` in RFC 3339 with microseconds.
#[derive(Clone, Copy)]
pub struct Rfc3339Micros([u8; LEN]);

impl Rfc3339Micros {
    pub fn new(time: SystemTime) -> Self {
        let since_epoch = time.duration_since(UNIX_EPOCH).ok();
        let second = since_epoch.map(|d| d.as_secs());
        let mut text = match LAST_SECOND.get() {
            Some((cached, prefix)) if Some(cached) == second => {
                let mut text = [0u8; LEN];
                text[..SECOND_PREFIX].copy_from_slice(&prefix);
                text
            }
            _ => return Self::formatted(time, second),
        };
        let micros = since_epoch.map_or(0, |d| d.subsec_micros());
        write_fraction(&mut text, micros);
        Self(text)
    }

    /// A second not seen last: formatted whole by humantime, and its prefix kept.
    fn formatted(time: SystemTime, second: Option<u64>) -> Self {
        use std::io::Write;
        let mut text = [0u8; LEN];
        let written = write!(&mut text[..], "{}", humantime::format_rfc3339_micros(time));
        if let (Ok(()), Some(second)) = (written, second) {
            let mut prefix = [0u8; SECOND_PREFIX];
            prefix.copy_from_slice(&text[..SECOND_PREFIX]);
            LAST_SECOND.set(Some((second, prefix)));
        }
        Self(text)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// `YYYY-MM-DD`.
    pub fn day(&self) -> &str {
        self.as_str().get(..10).unwrap_or_default()
    }
}

thread_local! {
    /// The last second this thread formatted, and its text up to the fraction.
    static LAST_SECOND: Cell<Option<(u64, [u8; SECOND_PREFIX])>> = const { Cell::new(None) };
}

/// Writes `micros` (below 1,000,000) as six digits and the closing `Z`.
fn write_fraction(text: &mut [u8; LEN], micros: u32) {
    let mut rest = micros;
    for digit in text[SECOND_PREFIX..LEN - 1].iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    text[LEN - 1] = b'Z';
}

#[cfg(test)]
mod tests {
    use super::Rfc3339Micros;
    use proptest::prelude::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn humantime(time: std::time::SystemTime) -> String {
        humantime::format_rfc3339_micros(time).to_string()
    }

    proptest! {
        /// Any time up to the year 9999, and times within the same second after it (written from
        /// the kept prefix), come out as humantime writes them.
        #[test]
        fn times_are_written_as_humantime_writes_them(
            seconds in 0u64..253_402_300_800,
            nanos in proptest::collection::vec(0u32..1_000_000_000, 1..6),
        ) {
            for nano in nanos {
                let time = UNIX_EPOCH + Duration::new(seconds, nano);
                let text = Rfc3339Micros::new(time);
                prop_assert_eq!(text.as_str(), humantime(time));
                prop_assert_eq!(text.day(), &humantime(time)[..10]);
            }
        }
    }

    #[test]
    fn a_new_second_replaces_the_kept_one() {
        let first = UNIX_EPOCH + Duration::new(1_764_755_412, 999_999_000);
        let next = UNIX_EPOCH + Duration::new(1_764_755_413, 1_000);
        let earlier = UNIX_EPOCH + Duration::new(1_764_755_412, 5_000);
        for time in [first, next, next, earlier, first] {
            assert_eq!(Rfc3339Micros::new(time).as_str(), humantime(time));
        }
    }
}
