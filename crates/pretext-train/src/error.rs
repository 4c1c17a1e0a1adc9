//! The error type of training, checkpoints and runs.

use std::path::PathBuf;

use pretext_data::DataError;
use pretext_models::ModelError;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{0}")]
    Config(String),

    #[error(transparent)]
    Data(#[from] DataError),

    #[error(transparent)]
    Model(#[from] ModelError),

    #[error(transparent)]
    Baseline(#[from] pretext_baselines::BaselineError),

    // The cause is part of the message rather than a `source`, so a report of the error chain
    // does not print it twice.
    #[error("{}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },

    #[error("{}: not a usable checkpoint: {reason}", path.display())]
    Checkpoint { path: PathBuf, reason: String },

    #[error(
        "the loss became {loss} at epoch {epoch}, step {step}; training stopped (lower the \
         learning rate or enable gradient clipping); the last good checkpoint is kept in {}",
        dir.display()
    )]
    Diverged {
        loss: f64,
        epoch: u64,
        step: u64,
        dir: PathBuf,
    },

    #[error(
        "a device failed at epoch {epoch}, step {step} ({reason}); training stopped; the last \
         good checkpoint is kept in {} (resume with --resume, on other devices if need be)",
        dir.display()
    )]
    DeviceFailed {
        reason: String,
        epoch: u64,
        step: u64,
        dir: PathBuf,
    },

    #[error(
        "{} already holds a different run; pass --resume to continue it or --force to replace it",
        dir.display()
    )]
    RunExists { dir: PathBuf },

    #[error("{}: no checkpoint to resume from", dir.display())]
    NothingToResume { dir: PathBuf },

    #[error(
        "{} is in use by another run (process {pid}); wait for it to finish or remove {} if it is gone",
        dir.display(),
        lock.display()
    )]
    Locked {
        dir: PathBuf,
        lock: PathBuf,
        pid: u32,
    },

    #[error(
        "{}: {} MB free, but the run needs about {} MB for its checkpoints; free some space or \
         choose another --out",
        dir.display(),
        available / 1_000_000,
        needed.div_ceil(1_000_000)
    )]
    NoSpace {
        dir: PathBuf,
        needed: u64,
        available: u64,
    },
}

impl TrainError {
    pub(crate) fn config(reason: impl Into<String>) -> Self {
        TrainError::Config(reason.into())
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.into(),
            cause: source,
        }
    }

    pub(crate) fn checkpoint(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        TrainError::Checkpoint {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

pub type Result<T, E = TrainError> = std::result::Result<T, E>;
