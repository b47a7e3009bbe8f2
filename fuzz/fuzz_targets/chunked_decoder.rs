//! The chunked body decoder, fed in two pieces split where the input's first byte says.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sluice::http1::body::BodyCursor;
use sluice::http1::BodyFraming;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let at = usize::from(split).min(rest.len());
    let mut cursor = BodyCursor::new(BodyFraming::Chunked);
    if let Ok(used) = cursor.advance(&rest[..at], |_| {}) {
        let _ = cursor.advance(&rest[used..], |_| {});
    }
});
