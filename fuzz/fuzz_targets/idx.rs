//! IDX bytes, raw or gzip: any input is parsed or refused, never a panic or a claimed-size
//! allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pretext_data::idx::parse_idx(data, std::path::Path::new("fuzz.idx"));
});
