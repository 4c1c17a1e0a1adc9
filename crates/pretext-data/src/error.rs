//! The error type of every loader and split in this crate.

use std::path::PathBuf;

/// What went wrong while reading or preparing data. Each variant names the file (or the data set)
/// and the problem, so a user can fix the input without reading a backtrace.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{}: {reason}", path.display())]
    Malformed { path: PathBuf, reason: String },

    #[error(
        "{} holds {n_images} images but {} holds {n_labels} labels",
        images.display(),
        labels.display()
    )]
    CountMismatch {
        images: PathBuf,
        n_images: usize,
        labels: PathBuf,
        n_labels: usize,
    },

    #[error("{}: the data set is empty", path.display())]
    Empty { path: PathBuf },

    #[error("{}: no {wanted} found (looked for {patterns})", dir.display())]
    Missing {
        dir: PathBuf,
        wanted: &'static str,
        patterns: String,
    },

    #[error("{}: several files match {wanted}: {found}; keep one per directory", dir.display())]
    Ambiguous {
        dir: PathBuf,
        wanted: &'static str,
        found: String,
    },

    #[error("'{spec}' is neither an embedded data set ({known}) nor an existing path")]
    UnknownSource { spec: String, known: String },

    #[error("{0}")]
    InvalidConfig(String),
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn malformed(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        DataError::Malformed {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;
