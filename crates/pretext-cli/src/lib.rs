//! The `pretext` command line: argument parsing, wiring and reporting over the library crates.
//!
//! Every failure reaches [`main_with_args`], which prints one message with its context and exits
//! with status 1; the library crates below never print.

pub mod allocator;
pub mod cli;
pub mod commands;
pub mod device;
pub mod progress;
pub mod report;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

/// Parses `args`, runs the command and turns any error into a message on stderr and exit
/// status 1 (usage errors included, so scripts see one failure code).
pub fn main_with_args(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() { 1 } else { 0 };
            // Printing help or an error can only fail on a closed stream; nothing to add then.
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}

/// Runs one parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Devices(args) => commands::devices::run(args),
        Command::Data(cmd) => commands::data::run(cmd),
        Command::Baseline(cmd) => commands::baseline::run(cmd),
        Command::Pretrain(args) => commands::pretrain::run(args),
        Command::Compare(args) => commands::compare::run(args),
        Command::Embed(args) => commands::embed::run(args),
        Command::Probe(args) => commands::probe::run(args),
        Command::Serve(args) => commands::serve::run(args),
    }
}
