//! The error type of the baselines.

/// Why a baseline cannot be fitted or applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BaselineError {
    #[error("invalid parameter: {0}")]
    InvalidParam(String),
    #[error("the input has no rows")]
    EmptyInput,
    #[error("the input holds a non-finite value ({value}) at row {row}, column {column}")]
    NonFinite {
        row: usize,
        column: usize,
        value: f32,
    },
    #[error("shape mismatch: {0}")]
    ShapeMismatch(String),
    #[error("linear algebra failed: {0}")]
    Numerical(String),
}

pub type Result<T, E = BaselineError> = std::result::Result<T, E>;
