use std::process::ExitCode;

fn main() -> ExitCode {
    pretext_cli::main_with_args(std::env::args_os())
}
