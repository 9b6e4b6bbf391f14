//! Format sniffing on arbitrary heads, with each declared format and a file name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_events::Format;

fuzz_target!(|data: &[u8]| {
    for declared in [
        None,
        Some(Format::Csv),
        Some(Format::Ndjson),
        Some(Format::Parquet),
    ] {
        let _ = weir_schemas::sniff(data, "fuzz.bin", declared, None);
    }
    let _ = weir_schemas::sniff(data, "fuzz.csv.gz", None, Some("application/json"));
});
