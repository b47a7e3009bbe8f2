//! The model-field scanner and the member reader that walks from the end, over arbitrary
//! (partial) JSON bodies.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sluice::json::members::scan_model(data);
    let _ = sluice::json::members::top_level_members(data);
    let _ = sluice::json::tail::last_member(data, b"max_tokens");
    let _ = sluice::json::edit::field(data, "max_tokens");
});
