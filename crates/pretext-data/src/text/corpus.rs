//! Text corpora from plain files: documents one per line, separated by lines holding only `%`
//! (the fortune format) or by blank lines; a directory with one file or sub-directory per class
//! gives labels.
//!
//! Files are split into documents as bytes (every separator is ASCII), then each document is
//! checked as UTF-8, so an error can name the byte offset of the bad sequence in its file, and
//! `lossy` reading can skip exactly the documents that hold one.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};

/// How a file separates its documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TextFormat {
    /// Fortune format when a line holds only `%`, else paragraphs when there is a blank line,
    /// else one document per line.
    #[default]
    Auto,
    /// One document per non-empty line.
    Lines,
    /// Documents separated by lines holding only `%` (Debian's `fortunes`).
    Fortune,
    /// Documents separated by one or more blank lines.
    Paragraphs,
}

impl std::str::FromStr for TextFormat {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "auto" => TextFormat::Auto,
            "lines" => TextFormat::Lines,
            "fortune" => TextFormat::Fortune,
            "paragraphs" => TextFormat::Paragraphs,
            _ => {
                return Err(DataError::InvalidConfig(format!(
                    "unknown text format '{s}'; expected auto, lines, fortune or paragraphs"
                )));
            }
        })
    }
}

/// How to read text files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadOptions {
    pub format: TextFormat,
    /// Skip (and count) documents that are not valid UTF-8 instead of failing.
    pub lossy: bool,
}

/// The documents of one file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Documents {
    pub documents: Vec<String>,
    /// Documents skipped for invalid UTF-8 (`lossy` reading only).
    pub skipped: usize,
}

/// Reads the documents of the file at `path`.
pub fn read_documents(path: &Path, options: ReadOptions) -> Result<Documents> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    split_documents(&bytes, options).map_err(|reason| DataError::malformed(path, reason))
}

/// Splits a file's bytes into documents, each with surrounding whitespace trimmed, empty ones
/// dropped, CRLF read as LF and terminal overstrikes (`x\bx`) removed. The error is the reason
/// (for [`DataError::Malformed`]).
pub fn split_documents(
    bytes: &[u8],
    options: ReadOptions,
) -> std::result::Result<Documents, String> {
    let lines = lines_of(bytes);
    let format = match options.format {
        TextFormat::Auto => detect(bytes, &lines),
        f => f,
    };
    // Each document as the byte range of its lines.
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let mut open: Option<(usize, usize)> = None;
    for &(start, end) in &lines {
        let line = trim_cr(&bytes[start..end]);
        let separator = match format {
            TextFormat::Fortune => line == b"%",
            TextFormat::Paragraphs => line.iter().all(u8::is_ascii_whitespace),
            _ => true,
        };
        if format == TextFormat::Lines {
            spans.push((start, end));
            continue;
        }
        if separator {
            spans.extend(open.take());
        } else {
            open = Some(match open {
                Some((s, _)) => (s, end),
                None => (start, end),
            });
        }
    }
    spans.extend(open.take());

    let mut out = Documents::default();
    for (start, end) in spans {
        let raw = &bytes[start..end];
        match std::str::from_utf8(raw) {
            Ok(text) => {
                let text = clean(text);
                if !text.is_empty() {
                    out.documents.push(text);
                }
            }
            Err(_) if options.lossy => out.skipped += 1,
            Err(e) => {
                return Err(format!(
                    "invalid UTF-8 at byte offset {} (read with --lossy to skip such documents)",
                    start + e.valid_up_to()
                ));
            }
        }
    }
    Ok(out)
}

/// The byte range of every line, without its `\n`.
fn lines_of(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut lines = Vec::new();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' {
            lines.push((start, i));
            start = i + 1;
        }
    }
    if start < bytes.len() {
        lines.push((start, bytes.len()));
    }
    lines
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn detect(bytes: &[u8], lines: &[(usize, usize)]) -> TextFormat {
    let line = |&(s, e): &(usize, usize)| trim_cr(&bytes[s..e]);
    if lines.iter().any(|l| line(l) == b"%") {
        TextFormat::Fortune
    } else if lines
        .iter()
        .any(|l| line(l).iter().all(u8::is_ascii_whitespace))
    {
        TextFormat::Paragraphs
    } else {
        TextFormat::Lines
    }
}

/// Drops carriage returns, overstruck characters (`c\b`) and other control characters but
/// newlines and tabs, then trims.
fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\u{8}' => {
                out.pop();
            }
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.trim().to_string()
}

/// Documents with optional class labels.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TextSet {
    pub documents: Vec<String>,
    pub labels: Option<Vec<u32>>,
}

impl TextSet {
    pub fn len(&self) -> usize {
        self.documents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.documents.is_empty()
    }

    /// The documents at `indices`.
    pub fn subset(&self, indices: &[usize]) -> TextSet {
        TextSet {
            documents: indices.iter().map(|&i| self.documents[i].clone()).collect(),
            labels: self
                .labels
                .as_ref()
                .map(|l| indices.iter().map(|&i| l[i]).collect()),
        }
    }
}

/// A labelled corpus read from a directory: one class per file or sub-directory.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LabelledCorpus {
    /// Every labelled document, labels indexing `classes`.
    pub set: TextSet,
    pub classes: Vec<String>,
    /// Documents of the files or sub-directories that are not classes (unlabelled text for
    /// pretraining).
    pub unlabelled: Vec<String>,
    /// Documents skipped for invalid UTF-8.
    pub skipped: usize,
}

/// Whether a directory entry holds text: hidden files, fortune's `.dat` indices and its `.u8`
/// links are not documents.
fn is_text_entry(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    !(name.starts_with('.') || name.ends_with(".dat") || name.ends_with(".u8"))
}

/// The text entries of `dir`, sorted by name.
fn entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| DataError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_text_entry(p))
        .collect();
    paths.sort();
    Ok(paths)
}

/// Every document under `path`: a file, or every text file below a directory.
pub fn read_tree(path: &Path, options: ReadOptions) -> Result<Documents> {
    if path.is_dir() {
        let mut all = Documents::default();
        for entry in entries(path)? {
            let d = read_tree(&entry, options)?;
            all.documents.extend(d.documents);
            all.skipped += d.skipped;
        }
        Ok(all)
    } else {
        read_documents(path, options)
    }
}

/// Reads a directory with one file or sub-directory per class. With `classes`, those entries
/// are the classes (in that order; each must exist) and the other entries are read as unlabelled
/// text; without, every entry is a class, in name order.
pub fn read_labelled_dir(
    dir: &Path,
    classes: Option<&[String]>,
    options: ReadOptions,
) -> Result<LabelledCorpus> {
    if !dir.is_dir() {
        return Err(DataError::malformed(
            dir,
            "not a directory; a labelled text corpus is a directory with one file or \
             sub-directory per class",
        ));
    }
    let all = entries(dir)?;
    let name_of = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let chosen: Vec<String> = match classes {
        Some(c) => {
            for class in c {
                if !all.iter().any(|p| &name_of(p) == class) {
                    return Err(DataError::Missing {
                        dir: dir.to_path_buf(),
                        wanted: "class",
                        patterns: class.clone(),
                    });
                }
            }
            c.to_vec()
        }
        None => all.iter().map(|p| name_of(p)).collect(),
    };
    if chosen.len() < 2 {
        return Err(DataError::malformed(
            dir,
            format!(
                "{} class(es) found; a labelled corpus needs at least two files or \
                 sub-directories",
                chosen.len()
            ),
        ));
    }
    let mut corpus = LabelledCorpus {
        classes: chosen.clone(),
        ..LabelledCorpus::default()
    };
    let mut labels = Vec::new();
    for path in &all {
        let docs = read_tree(path, options)?;
        corpus.skipped += docs.skipped;
        match chosen.iter().position(|c| *c == name_of(path)) {
            Some(label) => {
                if docs.documents.is_empty() {
                    return Err(DataError::Empty { path: path.clone() });
                }
                labels.extend(std::iter::repeat_n(label as u32, docs.documents.len()));
                corpus.set.documents.extend(docs.documents);
            }
            None => corpus.unlabelled.extend(docs.documents),
        }
    }
    corpus.set.labels = Some(labels);
    Ok(corpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(text: &str, format: TextFormat) -> Vec<String> {
        split_documents(
            text.as_bytes(),
            ReadOptions {
                format,
                lossy: false,
            },
        )
        .unwrap()
        .documents
    }

    #[test]
    fn fortune_format_edge_cases() {
        // Empty entries, a trailing %, CRLF line ends and a leading separator.
        let text = "%\r\nfirst line\r\nsecond line\r\n%\r\n%\r\n  \r\n%\r\nlast\r\n%\r\n";
        assert_eq!(
            docs(text, TextFormat::Auto),
            vec!["first line\nsecond line", "last"]
        );
        // No trailing separator; a % inside a line is text.
        assert_eq!(
            docs("a 50% cut\n%\nb", TextFormat::Fortune),
            vec!["a 50% cut", "b"]
        );
        // A line of "% " is not a separator in fortune files either.
        assert_eq!(
            docs("a\n%\nb\n% \nc", TextFormat::Fortune),
            vec!["a", "b\n% \nc"]
        );
        assert!(docs("%\n%\n", TextFormat::Fortune).is_empty());
        assert!(docs("", TextFormat::Auto).is_empty());
    }

    #[test]
    fn lines_paragraphs_and_detection() {
        assert_eq!(docs("a\n\nb\nc\n", TextFormat::Lines), vec!["a", "b", "c"]);
        assert_eq!(docs("a\nb\n\n\n c \n", TextFormat::Auto), vec!["a\nb", "c"]);
        assert_eq!(docs("one\ntwo", TextFormat::Auto), vec!["one", "two"]);
    }

    #[test]
    fn overstrikes_and_control_characters_are_removed() {
        assert_eq!(
            docs("_\u{8}b_\u{8}o_\u{8}l_\u{8}d text\u{7}", TextFormat::Lines),
            vec!["bold text"]
        );
    }

    #[test]
    fn invalid_utf8_names_the_offset_or_is_skipped_when_lossy() {
        let bytes = b"good\n%\nbad \xff here\n%\nfine\n";
        let strict = split_documents(bytes, ReadOptions::default()).unwrap_err();
        assert!(strict.contains("byte offset 11"), "{strict}");
        let lossy = split_documents(
            bytes,
            ReadOptions {
                lossy: true,
                ..ReadOptions::default()
            },
        )
        .unwrap();
        assert_eq!(lossy.documents, vec!["good", "fine"]);
        assert_eq!(lossy.skipped, 1);
    }

    #[test]
    fn a_class_directory_gives_labels_and_names_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cats"), "meow\n%\npurr\n%\n").unwrap();
        std::fs::create_dir(dir.path().join("dogs")).unwrap();
        std::fs::write(dir.path().join("dogs/a.txt"), "woof\n").unwrap();
        std::fs::write(dir.path().join("dogs/b.txt"), "bark\n").unwrap();
        std::fs::write(dir.path().join("cats.dat"), [0u8, 1, 2, 255]).unwrap();
        std::fs::write(dir.path().join("misc"), "other\n%\ntext\n").unwrap();

        let all = read_labelled_dir(dir.path(), None, ReadOptions::default()).unwrap();
        assert_eq!(all.classes, vec!["cats", "dogs", "misc"]);
        assert_eq!(all.set.labels, Some(vec![0, 0, 1, 1, 2, 2]));

        let two = ["dogs".to_string(), "cats".to_string()];
        let some = read_labelled_dir(dir.path(), Some(&two), ReadOptions::default()).unwrap();
        assert_eq!(some.set.documents, vec!["meow", "purr", "woof", "bark"]);
        assert_eq!(some.set.labels, Some(vec![1, 1, 0, 0]));
        assert_eq!(some.unlabelled, vec!["other", "text"]);

        let missing = ["birds".to_string(), "cats".to_string()];
        let err = read_labelled_dir(dir.path(), Some(&missing), ReadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("birds"), "{err}");

        std::fs::write(dir.path().join("dogs/c.txt"), b"ok\n\xc3\x28\n").unwrap();
        let err = read_labelled_dir(dir.path(), None, ReadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("c.txt") && err.contains("byte offset 3"),
            "{err}"
        );
    }
}
