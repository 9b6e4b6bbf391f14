//! Inference and conversion of arbitrary bytes named `fuzz.parquet` (declared parquet; the content
//! still has the last word), checked by `weir_fuzz::convert_bytes`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    weir_fuzz::convert_bytes(data, "fuzz.parquet", Some(weir_events::Format::Parquet));
});
