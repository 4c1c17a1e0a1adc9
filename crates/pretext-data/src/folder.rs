//! Image folders: one sub-folder per class of PNG or JPEG files of any size (`DIR/<class>/…`),
//! or `DIR/train/<class>/…` with an optional `DIR/test/<class>/…`. Each image is cropped to its
//! centred square and resized to `size` x `size`; the set is grayscale when every image is, RGB
//! otherwise.

use std::path::{Path, PathBuf};

use image::imageops::FilterType;

use crate::dataset::{ImageDataset, ImageSet, ImageShape};
use crate::error::{DataError, Result};

/// The side images are resized to unless a user asks for another.
pub const DEFAULT_SIZE: usize = 32;

const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let path = entry.map_err(|e| DataError::io(dir, e))?.path();
        // Hidden files (.DS_Store, editor backups) are never data.
        if !path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Class folders of `dir`: sub-folders holding at least one image file.
fn class_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut classes = Vec::new();
    for path in sorted_entries(dir)? {
        if path.is_dir() && sorted_entries(&path)?.iter().any(|p| is_image(p)) {
            classes.push(path);
        }
    }
    Ok(classes)
}

/// Whether `dir` looks like an image folder (class sub-folders, or a `train` folder of them).
pub fn is_image_folder(dir: &Path) -> bool {
    let root = if dir.join("train").is_dir() {
        dir.join("train")
    } else {
        dir.to_path_buf()
    };
    class_dirs(&root).is_ok_and(|c| !c.is_empty())
}

/// One image, decoded (format from its content), cropped and resized: `(rgb pixels HWC,
/// whether it had colour)`.
fn load_image(path: &Path, size: u32) -> Result<(Vec<u8>, bool)> {
    let image = image::ImageReader::open(path)
        .map_err(|e| DataError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?
        .decode()
        .map_err(|e| DataError::malformed(path, format!("not a readable image: {e}")))?;
    let colour = image.color().has_color();
    let (w, h) = (image.width(), image.height());
    let side = w.min(h);
    let square = image.crop_imm((w - side) / 2, (h - side) / 2, side, side);
    let resized = square.resize_exact(size, size, FilterType::Triangle);
    Ok((resized.to_rgb8().into_raw(), colour))
}

/// Every image under the class folders of `root`, labelled by class position in `classes`.
fn load_split(root: &Path, classes: &[String], size: usize) -> Result<Vec<(Vec<u8>, bool, u32)>> {
    let mut files = Vec::new();
    for (label, name) in classes.iter().enumerate() {
        let dir = root.join(name);
        if !dir.is_dir() {
            continue;
        }
        let images: Vec<PathBuf> = sorted_entries(&dir)?
            .into_iter()
            .filter(|p| is_image(p))
            .collect();
        files.extend(images.into_iter().map(|p| (p, label as u32)));
    }
    // Decoding dominates; spread it over the cores, keeping the order.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = files.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|(p, l)| load_image(p, size as u32).map(|(px, c)| (px, c, *l)))
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(files.len());
        for h in handles {
            out.extend(
                h.join()
                    .map_err(|_| DataError::malformed(root, "an image decoder panicked"))??,
            );
        }
        Ok(out)
    })
}

/// Images as an [`ImageSet`] of `channels` (1: the first of the identical RGB channels).
fn image_set(images: Vec<(Vec<u8>, bool, u32)>, size: usize, channels: usize) -> Result<ImageSet> {
    let plane = size * size;
    let mut pixels = Vec::with_capacity(images.len() * channels * plane);
    let mut labels = Vec::with_capacity(images.len());
    for (rgb, _, label) in images {
        for c in 0..channels {
            pixels.extend(rgb.iter().skip(c).step_by(3));
        }
        labels.push(label);
    }
    ImageSet::new(ImageShape::new(channels, size, size), pixels, Some(labels))
}

/// Loads an image folder at `size` x `size` pixels.
pub fn load_image_folder(dir: &Path, size: usize) -> Result<ImageDataset> {
    if size == 0 || size > 1024 {
        return Err(DataError::InvalidConfig(format!(
            "image size {size} must be between 1 and 1024 pixels"
        )));
    }
    let split = dir.join("train").is_dir();
    let train_root = if split {
        dir.join("train")
    } else {
        dir.to_path_buf()
    };
    let classes: Vec<String> = class_dirs(&train_root)?
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    if classes.is_empty() {
        return Err(DataError::Missing {
            dir: train_root,
            wanted: "class folders of images",
            patterns: "<class>/*.png, <class>/*.jpg".into(),
        });
    }
    let train = load_split(&train_root, &classes, size)?;
    let test_root = dir.join("test");
    let test = if split && test_root.is_dir() {
        for extra in class_dirs(&test_root)? {
            let name = extra.file_name().map(|n| n.to_string_lossy().into_owned());
            if !name.as_ref().is_some_and(|n| classes.contains(n)) {
                return Err(DataError::malformed(
                    extra,
                    "a test class with no training folder of the same name",
                ));
            }
        }
        Some(load_split(&test_root, &classes, size)?)
    } else {
        None
    };
    let colour = train.iter().chain(test.iter().flatten()).any(|i| i.1);
    let channels = if colour { 3 } else { 1 };
    Ok(ImageDataset {
        name: dir.display().to_string(),
        train: image_set(train, size, channels)?,
        test: test.map(|t| image_set(t, size, channels)).transpose()?,
        classes,
        carved_test: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn save(path: &Path, image: image::DynamicImage) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image.save(path).unwrap();
    }

    #[test]
    fn grayscale_folders_crop_and_resize_by_class() {
        let dir = tempfile::tempdir().unwrap();
        // A 40x20 image: the centred 20x20 square is white, the rest black.
        let wide = image::GrayImage::from_fn(40, 20, |x, _| {
            image::Luma([if (10..30).contains(&x) { 255 } else { 0 }])
        });
        save(
            &dir.path().join("b_dark/x.png"),
            image::GrayImage::new(8, 8).into(),
        );
        save(&dir.path().join("a_light/y.png"), wide.into());
        std::fs::write(dir.path().join("a_light/notes.txt"), "not an image").unwrap();
        std::fs::write(dir.path().join(".DS_Store"), "").unwrap();
        assert!(is_image_folder(dir.path()));
        let ds = load_image_folder(dir.path(), 4).unwrap();
        assert_eq!(ds.classes, ["a_light", "b_dark"]);
        assert_eq!(ds.train.shape, ImageShape::new(1, 4, 4));
        assert_eq!(ds.train.labels.as_deref(), Some(&[0, 1][..]));
        assert!(ds.train.pixels[..16].iter().all(|&p| p == 255));
        assert!(ds.train.pixels[16..].iter().all(|&p| p == 0));
        assert!(ds.test.is_none());
    }

    #[test]
    fn colour_and_train_test_folders_give_rgb_splits() {
        let dir = tempfile::tempdir().unwrap();
        let red = image::RgbImage::from_pixel(6, 6, image::Rgb([255, 0, 0]));
        save(&dir.path().join("train/cat/1.png"), red.clone().into());
        save(
            &dir.path().join("train/dog/2.jpg"),
            image::DynamicImage::from(red.clone()).grayscale(),
        );
        save(&dir.path().join("test/dog/3.png"), red.into());
        let ds = load_image_folder(dir.path(), 3).unwrap();
        assert_eq!(ds.train.shape, ImageShape::new(3, 3, 3));
        let first = &ds.train.pixels[..27];
        assert!(first[..9].iter().all(|&p| p == 255) && first[9..].iter().all(|&p| p == 0));
        let test = ds.test.unwrap();
        assert_eq!(test.labels.as_deref(), Some(&[1][..]));
    }

    #[test]
    fn bad_folders_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_image_folder(dir.path(), 32).unwrap_err().to_string();
        assert!(err.contains("class folders"), "{err}");
        std::fs::create_dir_all(dir.path().join("cat")).unwrap();
        std::fs::write(dir.path().join("cat/broken.png"), b"\x89PNG not really").unwrap();
        let err = load_image_folder(dir.path(), 32).unwrap_err().to_string();
        assert!(
            err.contains("broken.png") && err.contains("not a readable image"),
            "{err}"
        );
        assert!(load_image_folder(dir.path(), 0).is_err());
        std::fs::remove_file(dir.path().join("cat/broken.png")).unwrap();
        save(
            &dir.path().join("train/cat/a.png"),
            image::GrayImage::new(2, 2).into(),
        );
        save(
            &dir.path().join("test/cow/b.png"),
            image::GrayImage::new(2, 2).into(),
        );
        let err = load_image_folder(dir.path(), 2).unwrap_err().to_string();
        assert!(
            err.contains("cow") && err.contains("no training folder"),
            "{err}"
        );
    }
}
