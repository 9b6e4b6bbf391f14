//! Inference and conversion of arbitrary bytes named `fuzz.csv` (declared csv; the content
//! still has the last word), checked by `weir_fuzz::convert_bytes`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    weir_fuzz::convert_bytes(data, "fuzz.csv", Some(weir_events::Format::Csv));
});
