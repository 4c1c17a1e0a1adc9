//! Text corpora in every format, strict and lossy, and tokenizer files.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pretext_data::text::{ReadOptions, TextFormat, TextTokenizer, split_documents};

fuzz_target!(|data: &[u8]| {
    for format in [
        TextFormat::Auto,
        TextFormat::Lines,
        TextFormat::Fortune,
        TextFormat::Paragraphs,
    ] {
        for lossy in [false, true] {
            let _ = split_documents(data, ReadOptions { format, lossy });
        }
    }
    let json = String::from_utf8_lossy(data);
    if let Ok(t) = TextTokenizer::from_json(&json, std::path::Path::new("fuzz.json")) {
        let _ = t.decode(&t.encode("the cat sat"));
    }
});
