//! The AWS event-stream decoder, fed in two pieces, draining every message.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sluice::format::eventstream::Decoder;

fuzz_target!(|data: &[u8]| {
    let at = data.len() / 2;
    let mut decoder = Decoder::new();
    for part in [&data[..at], &data[at..]] {
        decoder.feed(part);
        while let Ok(Some(message)) = decoder.next_message() {
            let _ = message.chunk_event();
        }
    }
});
