//! CIFAR-10 and CIFAR-100 in their binary distributions (`cifar-10-batches-bin`,
//! `cifar-100-binary`): fixed-size records of label byte(s) then 3,072 pixel bytes, each 32x32
//! image stored channel by channel (red, green, blue), which is already the CHW layout of
//! [`ImageSet`].

use std::path::{Path, PathBuf};

use crate::dataset::{ImageDataset, ImageSet, ImageShape};
use crate::error::{DataError, Result};
use crate::source::read_names;

const PIXELS: usize = 3 * 32 * 32;

/// Which of the two distributions a directory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// One label byte per record; `data_batch_{1..5}.bin`, `test_batch.bin`,
    /// `batches.meta.txt`.
    Cifar10,
    /// A coarse and a fine label byte per record (the fine one, of 100 classes, is used);
    /// `train.bin`, `test.bin`, `fine_label_names.txt`.
    Cifar100,
}

impl Variant {
    fn label_bytes(self) -> usize {
        match self {
            Variant::Cifar10 => 1,
            Variant::Cifar100 => 2,
        }
    }

    fn classes(self) -> usize {
        match self {
            Variant::Cifar10 => 10,
            Variant::Cifar100 => 100,
        }
    }
}

fn training_files(dir: &Path) -> Option<(Variant, Vec<PathBuf>)> {
    let batches: Vec<PathBuf> = (1..=5)
        .map(|i| dir.join(format!("data_batch_{i}.bin")))
        .filter(|p| p.is_file())
        .collect();
    if !batches.is_empty() {
        return Some((Variant::Cifar10, batches));
    }
    let train = dir.join("train.bin");
    train.is_file().then(|| (Variant::Cifar100, vec![train]))
}

/// Whether `dir` holds CIFAR binary batches.
pub fn is_cifar_dir(dir: &Path) -> bool {
    training_files(dir).is_some()
}

/// Parses the records of one batch file's bytes (`path` names it in errors).
fn parse_records(
    bytes: &[u8],
    path: &Path,
    variant: Variant,
    pixels: &mut Vec<u8>,
    labels: &mut Vec<u32>,
) -> Result<()> {
    let record = variant.label_bytes() + PIXELS;
    if bytes.is_empty() || !bytes.len().is_multiple_of(record) {
        return Err(DataError::malformed(
            path,
            format!(
                "{} bytes is not a whole number of {record}-byte CIFAR records",
                bytes.len()
            ),
        ));
    }
    for (i, r) in bytes.chunks_exact(record).enumerate() {
        let label = r[variant.label_bytes() - 1] as usize;
        if label >= variant.classes() {
            return Err(DataError::malformed(
                path,
                format!(
                    "record {i}: label {label} is outside the {} classes",
                    variant.classes()
                ),
            ));
        }
        labels.push(label as u32);
        pixels.extend_from_slice(&r[variant.label_bytes()..]);
    }
    Ok(())
}

fn read_split(files: &[PathBuf], variant: Variant) -> Result<ImageSet> {
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for path in files {
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        parse_records(&bytes, path, variant, &mut pixels, &mut labels)?;
    }
    ImageSet::new(ImageShape::new(3, 32, 32), pixels, Some(labels))
}

/// Class names from the distribution's names file, else the label numbers.
fn class_names(dir: &Path, variant: Variant) -> Result<Vec<String>> {
    let file = dir.join(match variant {
        Variant::Cifar10 => "batches.meta.txt",
        Variant::Cifar100 => "fine_label_names.txt",
    });
    if !file.is_file() {
        return Ok((0..variant.classes()).map(|c| c.to_string()).collect());
    }
    let names = read_names(&file)?;
    if names.len() != variant.classes() {
        return Err(DataError::malformed(
            &file,
            format!(
                "names {} classes; the data has {}",
                names.len(),
                variant.classes()
            ),
        ));
    }
    Ok(names)
}

/// Loads a CIFAR-10 or CIFAR-100 binary directory: every training batch, and the test batch
/// when present.
pub fn load_cifar_dir(dir: &Path) -> Result<ImageDataset> {
    let Some((variant, train_files)) = training_files(dir) else {
        return Err(DataError::Missing {
            dir: dir.to_path_buf(),
            wanted: "CIFAR training batches",
            patterns: "data_batch_1.bin … data_batch_5.bin (CIFAR-10), train.bin (CIFAR-100)"
                .into(),
        });
    };
    let train = read_split(&train_files, variant)?;
    let test_file = dir.join(match variant {
        Variant::Cifar10 => "test_batch.bin",
        Variant::Cifar100 => "test.bin",
    });
    let test = test_file
        .is_file()
        .then(|| read_split(&[test_file], variant))
        .transpose()?;
    Ok(ImageDataset {
        name: dir.display().to_string(),
        train,
        test,
        classes: class_names(dir, variant)?,
        carved_test: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` CIFAR-10 records whose labels cycle and whose red plane holds the record number.
    fn records(n: usize, label_bytes: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..n {
            out.extend(std::iter::repeat_n((i % 10) as u8, label_bytes));
            out.extend(std::iter::repeat_n(i as u8, 1024));
            out.extend(std::iter::repeat_n(100, 1024));
            out.extend(std::iter::repeat_n(200, 1024));
        }
        out
    }

    #[test]
    fn reads_cifar10_batches_in_order_with_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("data_batch_1.bin"), records(3, 1)).unwrap();
        std::fs::write(dir.path().join("data_batch_2.bin"), records(2, 1)).unwrap();
        std::fs::write(dir.path().join("test_batch.bin"), records(4, 1)).unwrap();
        let names = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n";
        std::fs::write(dir.path().join("batches.meta.txt"), names).unwrap();
        assert!(is_cifar_dir(dir.path()));
        let ds = load_cifar_dir(dir.path()).unwrap();
        assert_eq!(ds.train.len(), 5);
        assert_eq!(ds.train.shape, ImageShape::new(3, 32, 32));
        assert_eq!(ds.train.labels.as_deref(), Some(&[0, 1, 2, 0, 1][..]));
        // The fourth image (first of batch 2): red plane 0, then green 100, blue 200.
        let image = &ds.train.pixels[3 * PIXELS..4 * PIXELS];
        assert_eq!((image[0], image[1024], image[2048]), (0, 100, 200));
        assert_eq!(ds.test.as_ref().unwrap().len(), 4);
        assert_eq!(ds.classes[9], "truck");
    }

    #[test]
    fn reads_cifar100_fine_labels() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = records(2, 2);
        bytes[1] = 77; // the first record's fine label
        std::fs::write(dir.path().join("train.bin"), bytes).unwrap();
        let ds = load_cifar_dir(dir.path()).unwrap();
        assert_eq!(ds.train.labels.as_deref(), Some(&[77, 1][..]));
        assert_eq!(ds.classes.len(), 100);
        assert!(ds.test.is_none());
    }

    #[test]
    fn bad_batches_name_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data_batch_1.bin");
        let mut bytes = records(2, 1);
        bytes.pop();
        std::fs::write(&path, &bytes).unwrap();
        let err = load_cifar_dir(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("data_batch_1.bin") && err.contains("3073"),
            "{err}"
        );

        let mut bytes = records(2, 1);
        bytes[3073] = 12;
        std::fs::write(&path, &bytes).unwrap();
        let err = load_cifar_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("record 1: label 12"), "{err}");

        std::fs::write(&path, records(1, 1)).unwrap();
        std::fs::write(dir.path().join("batches.meta.txt"), "cat\ndog\n").unwrap();
        let err = load_cifar_dir(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("batches.meta.txt") && err.contains("names 2"),
            "{err}"
        );
    }
}
