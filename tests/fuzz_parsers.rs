//! Hostile bytes for every parser: IDX (raw and gzip), CIFAR batches, images of image folders
//! (PNG, JPEG), CSV tables, text corpora and tokenizer files, TOML configs (pretraining,
//! comparison, text), checkpoints (with their model records) and exported encoders (description
//! and safetensors). Each target mutates valid seed inputs (the seed corpus is built here from
//! real encodings and `configs/`) by flipping bytes, truncating, inserting, and setting 32-bit
//! fields to extreme values; no input may panic, and none may make a parser allocate what a
//! header merely claims.
//!
//! 256 cases per target by default; a longer, bounded run:
//! `PROPTEST_CASES=20000 cargo test --release --test fuzz_parsers`.

use std::path::Path;

use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device};
use proptest::prelude::*;

use pretext_data::ImageShape;
use pretext_data::idx::{encode_idx, parse_idx};
use pretext_data::table::parse_csv;
use pretext_models::encoders::{EncoderConfig, EncoderKind};
use pretext_train::PretrainConfig;
use pretext_train::checkpoint::{Checkpoint, TrainState};
use pretext_train::compare::CompareConfig;
use pretext_train::export::{EncoderDescription, export_encoder, load_encoder};

#[derive(Debug, Clone)]
enum Op {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    /// A big-endian and little-endian 32-bit field at a position: header sizes and lengths.
    Extreme(usize, u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Op::Flip(p, b)),
        any::<usize>().prop_map(Op::Truncate),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(p, b)| Op::Insert(p, b)),
        (
            any::<usize>(),
            prop_oneof![
                Just(0u32),
                Just(1),
                Just(u32::MAX),
                Just(1 << 31),
                Just(65_536),
                any::<u32>()
            ]
        )
            .prop_map(|(p, v)| Op::Extreme(p, v)),
    ]
}

fn mutate(seed: &[u8], ops: &[Op]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for op in ops {
        let len = b.len().max(1);
        match op {
            Op::Flip(p, v) if !b.is_empty() => b[p % len] ^= v | 1,
            Op::Truncate(p) => b.truncate(p % len),
            Op::Insert(p, bytes) => {
                let at = p % (b.len() + 1);
                b.splice(at..at, bytes.iter().copied());
            }
            Op::Extreme(p, v) if b.len() >= 4 => {
                let at = p % (b.len() - 3);
                let bytes = if p % 2 == 0 {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                };
                b[at..at + 4].copy_from_slice(&bytes);
            }
            _ => {}
        }
    }
    b
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op(), 1..6)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn idx_seeds() -> Vec<Vec<u8>> {
    let images = encode_idx(&[3, 4, 5], &(0..60).collect::<Vec<u8>>());
    let labels = encode_idx(&[3], &[0, 1, 2]);
    vec![gzip(&images), images, labels]
}

/// Two CIFAR-10 records.
fn cifar_seed() -> Vec<u8> {
    (0..2u8)
        .flat_map(|i| std::iter::once(i).chain((0..3072).map(move |p| (p % 251) as u8 ^ i)))
        .collect()
}

/// A small image in each format an image folder accepts.
fn image_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let image = image::RgbImage::from_fn(5, 3, |x, y| image::Rgb([x as u8 * 40, y as u8 * 80, 7]));
    let mut seeds = Vec::new();
    for (ext, format) in [
        ("png", image::ImageFormat::Png),
        ("jpg", image::ImageFormat::Jpeg),
    ] {
        let mut bytes = std::io::Cursor::new(Vec::new());
        image.write_to(&mut bytes, format).unwrap();
        seeds.push((ext, bytes.into_inner()));
    }
    seeds
}

const CSV_SEEDS: [&str; 4] = [
    "a,b,label\n1,2,0\n3,4,1\n",
    "1.5,2,3\n4,5e-3,6\n",
    "\"x\",\"y\"\n\"1\",\"2\"\n",
    "a;b\n1;2\n",
];

fn config_seeds() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut seeds: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    seeds.sort();
    seeds
}

/// A real checkpoint of a small encoder, its model section in Burn's format.
fn checkpoint_seed() -> (Vec<u8>, pretext_models::Encoder) {
    let device = Device::flex();
    let encoder = EncoderConfig::for_images(EncoderKind::Mlp, 1, 4, 4)
        .init(&device)
        .unwrap();
    let model = encoder.clone().into_record().into_bytes().unwrap().to_vec();
    let checkpoint = Checkpoint {
        state: TrainState {
            epoch: 1,
            batch: 2,
            step: 3,
            config_digest: "abc".into(),
        },
        model,
        optimizer: vec![1, 2, 3],
    };
    (checkpoint.encode(), encoder)
}

/// Recomputes the trailing CRC, so mutations reach the parser behind the checksum.
fn fix_crc(mut bytes: Vec<u8>) -> Vec<u8> {
    if bytes.len() >= 4 {
        let n = bytes.len() - 4;
        let crc = crc32fast::hash(&bytes[..n]);
        bytes[n..].copy_from_slice(&crc.to_le_bytes());
    }
    bytes
}

/// An exported encoder's two files.
fn export_seed() -> (Vec<u8>, Vec<u8>) {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let config = EncoderConfig::for_images(EncoderKind::Cnn, 1, 8, 8);
    let encoder = config.init(&device).unwrap();
    let description = EncoderDescription {
        representation: config.representation(),
        encoder: config,
        input: ImageShape::new(1, 8, 8),
        normalization: pretext_data::Normalization {
            mean: vec![0.5],
            std: vec![0.25],
        },
        task: pretext_data::TaskKind::Rotation,
        epochs: 1,
        data: "seed".into(),
    };
    export_encoder(&encoder, &description, dir.path()).unwrap();
    (
        std::fs::read(dir.path().join(pretext_train::export::DESCRIPTION)).unwrap(),
        std::fs::read(dir.path().join(pretext_train::export::WEIGHTS)).unwrap(),
    )
}

/// Text in every format the corpus reader knows, with CRLF, overstrikes and a `%` inside a line.
const TEXT_SEEDS: [&str; 4] = [
    "%\nA fortune\non two lines.\n%\nAnother, 50% longer.\n%\n",
    "one document per line\r\nand another\r\n\r\n",
    "a paragraph\nof text\n\n\nthe next one\n",
    "b\u{8}bold _\u{8}underline\n%\n\u{7}bell\n",
];

proptest! {
    #[test]
    fn idx(seed in 0..3usize, ops in ops()) {
        let bytes = mutate(&idx_seeds()[seed], &ops);
        let _ = parse_idx(&bytes, Path::new("fuzz.idx"));
    }

    #[test]
    fn cifar(ops in ops()) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("data_batch_1.bin"), mutate(&cifar_seed(), &ops)).unwrap();
        let _ = pretext_data::cifar::load_cifar_dir(dir.path());
    }

    #[test]
    fn image_folders(seed in 0..2usize, ops in ops()) {
        let dir = tempfile::tempdir().unwrap();
        let (ext, bytes) = &image_seeds()[seed];
        std::fs::create_dir_all(dir.path().join("class")).unwrap();
        std::fs::write(dir.path().join(format!("class/x.{ext}")), mutate(bytes, &ops)).unwrap();
        let _ = pretext_data::folder::load_image_folder(dir.path(), 8);
    }

    #[test]
    fn csv(seed in 0..CSV_SEEDS.len(), ops in ops(), label in proptest::option::of("[a-z0-9]{1,3}")) {
        let bytes = mutate(CSV_SEEDS[seed].as_bytes(), &ops);
        let _ = parse_csv(&bytes, Path::new("fuzz.csv"), label.as_deref());
    }

    #[test]
    fn configs(seed in 0..16usize, ops in ops()) {
        let seeds = config_seeds();
        let bytes = mutate(seeds[seed % seeds.len()].as_bytes(), &ops);
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(c) = PretrainConfig::from_toml(&text) {
            let _ = c.validate();
        }
        if let Ok(c) = CompareConfig::from_toml(&text) {
            let _ = c.study.validate();
        }
        if let Ok(c) = pretext_train::text::TextPretrainConfig::from_toml(&text) {
            let _ = c.validate();
        }
        if let Ok(c) = pretext_train::text::TextCompareConfig::from_toml(&text) {
            let _ = c.validate();
        }
    }

    #[test]
    fn text_corpora(seed in 0..TEXT_SEEDS.len(), ops in ops(), format in 0..4usize, lossy in any::<bool>()) {
        // Documents are non-empty, trimmed, free of carriage returns and made of the input.
        use pretext_data::text::{ReadOptions, TextFormat, split_documents};
        let bytes = mutate(TEXT_SEEDS[seed].as_bytes(), &ops);
        let format = [TextFormat::Auto, TextFormat::Lines, TextFormat::Fortune, TextFormat::Paragraphs][format];
        if let Ok(docs) = split_documents(&bytes, ReadOptions { format, lossy }) {
            let total: usize = docs.documents.iter().map(String::len).sum();
            prop_assert!(total <= bytes.len());
            for d in &docs.documents {
                prop_assert!(!d.is_empty() && d.trim() == d && !d.contains('\r'));
            }
        }
    }

    #[test]
    fn tokenizer_files(seed in 0..2usize, ops in ops()) {
        use pretext_data::text::{TextTokenizer, TokenizerConfig, TokenizerKind};
        let docs: Vec<String> = TEXT_SEEDS.iter().map(|s| s.to_string()).collect();
        let config = TokenizerConfig {
            kind: [TokenizerKind::Wordpiece, TokenizerKind::Chars][seed],
            vocab_size: 60,
            min_frequency: 1,
            ..TokenizerConfig::default()
        };
        let json = TextTokenizer::train(&config, &docs).unwrap().to_json();
        let bytes = mutate(json.as_bytes(), &ops);
        if let Ok(t) = TextTokenizer::from_json(&String::from_utf8_lossy(&bytes), Path::new("fuzz.json")) {
            let ids = t.encode("the cat sat");
            let _ = t.decode(&ids);
        }
    }

    #[test]
    fn checkpoints(ops in ops(), crc in any::<bool>()) {
        let (seed, encoder) = checkpoint_seed();
        let mut bytes = mutate(&seed, &ops);
        if crc {
            bytes = fix_crc(bytes);
        }
        if let Ok(c) = Checkpoint::decode(Path::new("fuzz.bin"), &bytes)
            && let Ok(record) = ModuleRecord::from_bytes(Bytes::from_bytes_vec(c.model))
        {
            let _ = encoder.try_load_record(record);
        }
    }

    #[test]
    fn model_records(ops in ops()) {
        let (seed, encoder) = checkpoint_seed();
        let model = Checkpoint::decode(Path::new("seed"), &seed).unwrap().model;
        let bytes = mutate(&model, &ops);
        if let Ok(record) = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes)) {
            let _ = encoder.try_load_record(record);
        }
    }

    #[test]
    fn exported_encoders(json_ops in ops(), weight_ops in ops(), which in 0..3u8) {
        let (json, weights) = export_seed();
        let dir = tempfile::tempdir().unwrap();
        let json = if which != 1 { mutate(&json, &json_ops) } else { json };
        let weights = if which != 0 { mutate(&weights, &weight_ops) } else { weights };
        std::fs::write(dir.path().join(pretext_train::export::DESCRIPTION), json).unwrap();
        std::fs::write(dir.path().join(pretext_train::export::WEIGHTS), weights).unwrap();
        let _ = load_encoder(dir.path(), &Device::flex());
    }
}
