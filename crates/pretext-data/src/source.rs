//! Where a data set comes from (`--data`): an embedded name, a directory of IDX files, CIFAR
//! binary batches, or an image folder.

use std::path::{Path, PathBuf};

use crate::cifar::{is_cifar_dir, load_cifar_dir};
use crate::dataset::{ImageDataset, ImageSet, ImageShape};
use crate::embedded::{EMBEDDED_NAMES, FASHION_MNIST_CLASSES, FASHION_MNIST_SUBSET};
use crate::error::{DataError, Result};
use crate::folder::{DEFAULT_SIZE, is_image_folder, load_image_folder};
use crate::idx::{IdxArray, parse_idx, read_idx};

/// A data set a user named on the command line or in a config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSource {
    /// The Fashion-MNIST subset compiled into the binary.
    EmbeddedFashionMnist,
    /// A directory of IDX files (`train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`,
    /// optionally `t10k-…` for the test split).
    IdxDir(PathBuf),
    /// CIFAR-10 (`data_batch_*.bin`, `test_batch.bin`) or CIFAR-100 (`train.bin`, `test.bin`)
    /// binary batches.
    Cifar(PathBuf),
    /// One sub-folder per class of PNG/JPEG images (or `train/` and `test/` of them), each
    /// cropped to its centred square and resized to `size` x `size`.
    ImageFolder { dir: PathBuf, size: usize },
}

impl DataSource {
    /// Resolves a `--data` argument: an embedded name wins, then an existing directory.
    pub fn parse(spec: &str) -> Result<Self> {
        if spec == "fashion-mnist" {
            return Ok(DataSource::EmbeddedFashionMnist);
        }
        let path = PathBuf::from(spec);
        if path.is_dir() {
            // IDX files first: a data directory may also hold runs, reports and their PNGs.
            if find_part(&path, TRAIN_IMAGES, "training images")?.is_some() {
                return Ok(DataSource::IdxDir(path));
            }
            if is_cifar_dir(&path) {
                return Ok(DataSource::Cifar(path));
            }
            if is_image_folder(&path) {
                return Ok(DataSource::ImageFolder {
                    dir: path,
                    size: DEFAULT_SIZE,
                });
            }
            return Ok(DataSource::IdxDir(path));
        }
        if path.exists() {
            return Err(DataError::malformed(
                path,
                "expected a directory (IDX files, CIFAR batches or class folders of images), \
                 found a file",
            ));
        }
        Err(DataError::UnknownSource {
            spec: spec.to_string(),
            known: EMBEDDED_NAMES.join(", "),
        })
    }

    /// The same source with image folders resized to `size` x `size` (others keep their size).
    pub fn with_image_size(self, size: usize) -> Self {
        match self {
            DataSource::ImageFolder { dir, .. } => DataSource::ImageFolder { dir, size },
            other => other,
        }
    }

    /// Reads the whole data set into memory.
    pub fn load(&self) -> Result<ImageDataset> {
        match self {
            DataSource::EmbeddedFashionMnist => {
                let e = &FASHION_MNIST_SUBSET;
                let origin = Path::new("<embedded fashion-mnist>");
                let train = image_set(
                    parse_idx(e.train_images, &origin.join("train-images"))?,
                    Some(parse_idx(e.train_labels, &origin.join("train-labels"))?),
                    &origin.join("train-images"),
                    &origin.join("train-labels"),
                )?;
                let test = image_set(
                    parse_idx(e.test_images, &origin.join("t10k-images"))?,
                    Some(parse_idx(e.test_labels, &origin.join("t10k-labels"))?),
                    &origin.join("t10k-images"),
                    &origin.join("t10k-labels"),
                )?;
                Ok(ImageDataset {
                    name: "fashion-mnist (embedded subset)".into(),
                    train,
                    test: Some(test),
                    classes: FASHION_MNIST_CLASSES
                        .iter()
                        .map(|s| s.to_string())
                        .collect(),
                    carved_test: None,
                })
            }
            DataSource::IdxDir(dir) => load_idx_dir(dir),
            DataSource::Cifar(dir) => load_cifar_dir(dir),
            DataSource::ImageFolder { dir, size } => load_image_folder(dir, *size),
        }
    }
}

/// File-name endings of each part, in the spellings the MNIST family uses (EMNIST prefixes its
/// names, e.g. `emnist-digits-train-images-idx3-ubyte`).
const TRAIN_IMAGES: &[&str] = &["train-images-idx3-ubyte", "train-images.idx3-ubyte"];
const TRAIN_LABELS: &[&str] = &["train-labels-idx1-ubyte", "train-labels.idx1-ubyte"];
const TEST_IMAGES: &[&str] = &[
    "t10k-images-idx3-ubyte",
    "t10k-images.idx3-ubyte",
    "test-images-idx3-ubyte",
];
const TEST_LABELS: &[&str] = &[
    "t10k-labels-idx1-ubyte",
    "t10k-labels.idx1-ubyte",
    "test-labels-idx1-ubyte",
];

fn find_part(dir: &Path, endings: &[&str], wanted: &'static str) -> Result<Option<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let stem = name.strip_suffix(".gz").unwrap_or(&name);
        if endings.iter().any(|e| stem.ends_with(e)) {
            found.push(entry.path());
        }
    }
    found.sort();
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => Err(DataError::Ambiguous {
            dir: dir.to_path_buf(),
            wanted,
            found: found
                .iter()
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

fn patterns(endings: &[&str]) -> String {
    endings
        .iter()
        .map(|e| format!("*{e}[.gz]"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn load_idx_dir(dir: &Path) -> Result<ImageDataset> {
    let train_images =
        find_part(dir, TRAIN_IMAGES, "training images")?.ok_or_else(|| DataError::Missing {
            dir: dir.to_path_buf(),
            wanted: "training images",
            patterns: patterns(TRAIN_IMAGES),
        })?;
    let train = load_pair(
        &train_images,
        find_part(dir, TRAIN_LABELS, "training labels")?,
    )?;
    let test = match find_part(dir, TEST_IMAGES, "test images")? {
        Some(images) => Some(load_pair(
            &images,
            find_part(dir, TEST_LABELS, "test labels")?,
        )?),
        None => None,
    };
    if let Some(test) = &test
        && test.shape != train.shape
    {
        return Err(DataError::malformed(
            dir,
            format!(
                "test images are {} but training images are {}",
                test.shape, train.shape
            ),
        ));
    }
    let num_classes = [Some(&train), test.as_ref()]
        .into_iter()
        .flatten()
        .filter_map(|s| s.labels.as_ref())
        .flat_map(|l| l.iter().copied())
        .max()
        .map_or(0, |m| m as usize + 1);
    let classes = class_names(dir, num_classes)?;
    Ok(ImageDataset {
        name: dir.display().to_string(),
        train,
        test,
        classes,
        carved_test: None,
    })
}

fn load_pair(images: &Path, labels: Option<PathBuf>) -> Result<ImageSet> {
    let image_arr = read_idx(images)?;
    match labels {
        Some(labels) => {
            let label_arr = read_idx(&labels)?;
            image_set(image_arr, Some(label_arr), images, &labels)
        }
        None => image_set(image_arr, None, images, images),
    }
}

/// Checks an IDX image array (and its labels) and turns them into an [`ImageSet`].
fn image_set(
    images: IdxArray,
    labels: Option<IdxArray>,
    images_path: &Path,
    labels_path: &Path,
) -> Result<ImageSet> {
    let (n, shape) = match images.dims[..] {
        [n, h, w] => (n, ImageShape::new(1, h, w)),
        // Colour IDX files are rare; when present they are stored channels-last.
        [n, h, w, c @ (1 | 3)] => (n, ImageShape::new(c, h, w)),
        _ => {
            return Err(DataError::malformed(
                images_path,
                format!(
                    "expected images of dimensions [count, height, width], found {:?}",
                    images.dims
                ),
            ));
        }
    };
    if n == 0 {
        return Err(DataError::Empty {
            path: images_path.to_path_buf(),
        });
    }
    if shape.is_empty() {
        return Err(DataError::malformed(
            images_path,
            format!("images of size {shape} have no pixels"),
        ));
    }
    let pixels = if shape.channels > 1 {
        hwc_to_chw(&images.data, shape)
    } else {
        images.data
    };
    let labels = match labels {
        None => None,
        Some(arr) => {
            if arr.dims.len() != 1 {
                return Err(DataError::malformed(
                    labels_path,
                    format!(
                        "expected labels of dimensions [count], found {:?}",
                        arr.dims
                    ),
                ));
            }
            if arr.dims[0] != n {
                return Err(DataError::CountMismatch {
                    images: images_path.to_path_buf(),
                    n_images: n,
                    labels: labels_path.to_path_buf(),
                    n_labels: arr.dims[0],
                });
            }
            Some(arr.data.into_iter().map(u32::from).collect())
        }
    };
    ImageSet::new(shape, pixels, labels)
        .map_err(|e| DataError::malformed(images_path, e.to_string()))
}

fn hwc_to_chw(data: &[u8], shape: ImageShape) -> Vec<u8> {
    let (c, plane) = (shape.channels, shape.height * shape.width);
    let mut out = vec![0; data.len()];
    for (img_in, img_out) in data
        .chunks_exact(shape.len())
        .zip(out.chunks_exact_mut(shape.len()))
    {
        for p in 0..plane {
            for ch in 0..c {
                img_out[ch * plane + p] = img_in[p * c + ch];
            }
        }
    }
    out
}

/// The non-empty lines of a class-names file, trimmed.
pub(crate) fn read_names(file: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(file).map_err(|e| DataError::io(file, e))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

/// Class names from `classes.txt` beside the data (one per line), Fashion-MNIST's names for a
/// directory called so, else the label numbers.
fn class_names(dir: &Path, num_classes: usize) -> Result<Vec<String>> {
    let file = dir.join("classes.txt");
    if file.is_file() {
        let names = read_names(&file)?;
        if names.len() < num_classes {
            return Err(DataError::malformed(
                &file,
                format!(
                    "names {} classes but the labels use {num_classes}",
                    names.len()
                ),
            ));
        }
        return Ok(names);
    }
    let dir_name = dir
        .canonicalize()
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().to_lowercase()))
        .unwrap_or_default();
    if dir_name.contains("fashion") && num_classes == FASHION_MNIST_CLASSES.len() {
        return Ok(FASHION_MNIST_CLASSES
            .iter()
            .map(|s| s.to_string())
            .collect());
    }
    Ok((0..num_classes).map(|c| c.to_string()).collect())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::{Compression, write::GzEncoder};

    use super::*;
    use crate::idx::encode_idx;

    fn write(dir: &Path, name: &str, bytes: &[u8]) {
        std::fs::write(dir.join(name), bytes).unwrap();
    }

    fn write_gz(dir: &Path, name: &str, bytes: &[u8]) {
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(bytes).unwrap();
        write(dir, name, &enc.finish().unwrap());
    }

    /// A valid 6-image, 3-class, 4x5 data set with a 3-image test split.
    fn valid_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let pixels: Vec<u8> = (0..6 * 20).map(|i| i as u8).collect();
        write(
            dir.path(),
            "train-images-idx3-ubyte",
            &encode_idx(&[6, 4, 5], &pixels),
        );
        write_gz(
            dir.path(),
            "train-labels-idx1-ubyte.gz",
            &encode_idx(&[6], &[0, 1, 2, 0, 1, 2]),
        );
        write_gz(
            dir.path(),
            "t10k-images-idx3-ubyte.gz",
            &encode_idx(&[3, 4, 5], &pixels[..60]),
        );
        write(
            dir.path(),
            "t10k-labels-idx1-ubyte",
            &encode_idx(&[3], &[2, 1, 0]),
        );
        dir
    }

    #[test]
    fn embedded_subset_loads_with_the_promised_counts() {
        let ds = DataSource::parse("fashion-mnist").unwrap().load().unwrap();
        assert_eq!(ds.train.len(), 10_000);
        assert_eq!(ds.test.as_ref().unwrap().len(), 2_000);
        assert_eq!(ds.train.shape, ImageShape::new(1, 28, 28));
        assert_eq!(ds.train.class_counts(10), vec![1000; 10]);
        assert_eq!(ds.test.as_ref().unwrap().class_counts(10), vec![200; 10]);
        assert_eq!(ds.classes[9], "Ankle boot");
    }

    #[test]
    fn idx_dir_loads_any_image_size_raw_or_gzip() {
        let dir = valid_dir();
        let ds = DataSource::parse(dir.path().to_str().unwrap())
            .unwrap()
            .load()
            .unwrap();
        assert_eq!(ds.train.shape, ImageShape::new(1, 4, 5));
        assert_eq!(ds.train.len(), 6);
        assert_eq!(
            ds.test.as_ref().unwrap().labels.as_deref(),
            Some(&[2, 1, 0][..])
        );
        assert_eq!(ds.classes, vec!["0", "1", "2"]);
    }

    #[test]
    fn labels_are_optional() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "train-images-idx3-ubyte",
            &encode_idx(&[2, 2, 2], &[0; 8]),
        );
        let ds = DataSource::IdxDir(dir.path().into()).load().unwrap();
        assert!(ds.train.labels.is_none());
        assert!(ds.test.is_none());
        assert_eq!(ds.num_classes(), 0);
    }

    #[test]
    fn class_names_come_from_classes_txt() {
        let dir = valid_dir();
        write(dir.path(), "classes.txt", b"cat\ndog\nbird\n");
        let ds = DataSource::IdxDir(dir.path().into()).load().unwrap();
        assert_eq!(ds.classes, vec!["cat", "dog", "bird"]);
    }

    #[test]
    fn count_mismatch_names_both_files() {
        let dir = valid_dir();
        write(
            dir.path(),
            "t10k-labels-idx1-ubyte",
            &encode_idx(&[2], &[0, 1]),
        );
        let err = DataSource::IdxDir(dir.path().into()).load().unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("3 images") && msg.contains("2 labels"),
            "{msg}"
        );
        assert!(
            msg.contains("t10k-images-idx3-ubyte.gz") && msg.contains("t10k-labels"),
            "{msg}"
        );
    }

    #[test]
    fn empty_set_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "train-images-idx3-ubyte",
            &encode_idx(&[0, 28, 28], &[]),
        );
        let err = DataSource::IdxDir(dir.path().into()).load().unwrap_err();
        assert!(matches!(err, DataError::Empty { .. }), "{err}");
        assert!(err.to_string().contains("train-images-idx3-ubyte"));
    }

    #[test]
    fn missing_training_images_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = DataSource::IdxDir(dir.path().into()).load().unwrap_err();
        assert!(
            err.to_string().contains("no training images found"),
            "{err}"
        );
    }

    #[test]
    fn wrong_dimensions_are_an_error() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "train-images-idx3-ubyte",
            &encode_idx(&[4], &[0; 4]),
        );
        let err = DataSource::IdxDir(dir.path().into()).load().unwrap_err();
        assert!(err.to_string().contains("[count, height, width]"), "{err}");
    }

    #[test]
    fn ambiguous_files_are_an_error() {
        let dir = valid_dir();
        write(
            dir.path(),
            "emnist-train-images-idx3-ubyte",
            &encode_idx(&[1, 1, 1], &[0]),
        );
        let err = DataSource::IdxDir(dir.path().into()).load().unwrap_err();
        assert!(err.to_string().contains("several files"), "{err}");
    }

    #[test]
    fn unknown_source_lists_the_embedded_names() {
        let err = DataSource::parse("/no/such/dir").unwrap_err();
        assert!(err.to_string().contains("fashion-mnist"), "{err}");
    }

    #[test]
    fn colour_idx_is_converted_to_channels_first() {
        let shape = ImageShape::new(3, 1, 2);
        // One 1x2 RGB image stored HWC: pixel0=(1,2,3), pixel1=(4,5,6).
        assert_eq!(
            hwc_to_chw(&[1, 2, 3, 4, 5, 6], shape),
            vec![1, 4, 2, 5, 3, 6]
        );
    }
}
