//! One module per subcommand.

pub mod baseline;
pub mod compare;
pub mod compare_text;
pub mod data;
pub mod devices;
pub mod embed;
pub mod features;
pub mod pretrain;
pub mod probe;
