//! CSV tables, with and without a label column.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("fuzz.csv");
    let _ = pretext_data::table::parse_csv(data, path, None);
    let _ = pretext_data::table::parse_csv(data, path, Some("1"));
});
