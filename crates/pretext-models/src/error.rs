//! The error type of model configurations.

/// A model configuration that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("invalid {model} configuration: {reason}")]
    InvalidConfig { model: &'static str, reason: String },
}

impl ModelError {
    pub(crate) fn invalid(model: &'static str, reason: impl Into<String>) -> Self {
        ModelError::InvalidConfig {
            model,
            reason: reason.into(),
        }
    }
}
