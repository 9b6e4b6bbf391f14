//! Inference and conversion of arbitrary bytes named `fuzz.ndjson` (declared ndjson; the content
//! still has the last word), checked by `weir_fuzz::convert_bytes`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    weir_fuzz::convert_bytes(data, "fuzz.ndjson", Some(weir_events::Format::Ndjson));
});
