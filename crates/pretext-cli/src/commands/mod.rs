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
pub mod serve;

/// The config in `path` read by `parse` (which may also validate it), or the defaults without
/// one; errors name the file and say it is not a valid `what`.
pub fn read_config<T: Default>(
    path: Option<&std::path::Path>,
    what: &str,
    parse: impl FnOnce(&str) -> pretext_train::Result<T>,
) -> anyhow::Result<T> {
    use anyhow::Context;
    let Some(path) = path else {
        return Ok(T::default());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse(&text).with_context(|| format!("{}: not a valid {what}", path.display()))
}
