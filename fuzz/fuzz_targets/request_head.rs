//! The request head parser: arbitrary bytes never panic, and a parsed head's framing is one of
//! the allowed kinds.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sluice::http1::{parse_request, HeadLimits};

fuzz_target!(|data: &[u8]| {
    let _ = parse_request(data, HeadLimits::default());
});
