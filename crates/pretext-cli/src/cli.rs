//! The command-line surface (clap derive). Subcommands live in `commands/`, one module each.

use clap::{Args, Parser, Subcommand};

use crate::device::DeviceSpec;

#[derive(Debug, Parser)]
#[command(
    name = "pretext",
    version,
    about = "Self-supervised pretext tasks against unsupervised baselines, when labels are scarce",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the compiled-in backends and the devices this machine offers; with --device, check
    /// that the device runs a kernel.
    Devices(DeviceArgs),
    /// Inspect data sets.
    #[command(subcommand)]
    Data(DataCommand),
}

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Print counts, image shape, classes with per-class counts and pixel statistics.
    Info(DataInfoArgs),
}

/// Where the data comes from; shared by every command that reads data.
#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// An embedded data set (`fashion-mnist`, compiled in) or a directory of IDX files
    /// (`train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`, optional `t10k-…`).
    #[arg(long, default_value = "fashion-mnist")]
    pub data: String,
}

/// The compute device; shared by every command that computes.
#[derive(Debug, Clone, Args)]
pub struct DeviceArgs {
    /// Backend and device: flex, ndarray, wgpu[:N|:cpu|:integrated:N], vulkan[…], metal,
    /// webgpu, cuda[:N]. Defaults to the first compiled-in CPU backend.
    #[arg(long)]
    pub device: Option<DeviceSpec>,
}

#[derive(Debug, Args)]
pub struct DataInfoArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Print the summary as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}
