//! The SSE usage meter, fed in two pieces.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sluice::usage::sse::SseMeter;

fuzz_target!(|data: &[u8]| {
    let at = data.len() / 2;
    let mut meter = SseMeter::new();
    meter.feed(&data[..at]);
    meter.feed(&data[at..]);
    let _ = meter.finish();
});
