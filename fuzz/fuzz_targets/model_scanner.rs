//! The model-field scanner and the member reader that walks from the end, over arbitrary
//! (partial) JSON bodies.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sluice::proxy::model_field::scan_model(data);
    let _ = sluice::proxy::model_field::top_level_members(data);
    let _ = sluice::format::json_tail::last_member(data, b"max_tokens");
    let _ = sluice::format::json_edit::field(data, "max_tokens");
});
