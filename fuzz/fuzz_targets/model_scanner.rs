//! The model-field scanner over arbitrary (partial) JSON bodies.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sluice::proxy::model_field::scan_model(data);
    let _ = sluice::proxy::model_field::top_level_members(data);
});
