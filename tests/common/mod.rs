//! Helpers shared by the end-to-end tests.
#![allow(dead_code)] // each test binary uses its own subset

use assert_cmd::Command;

/// The `pretext` binary under test.
pub fn pretext() -> Command {
    Command::cargo_bin("pretext").unwrap()
}

/// An uncompressed IDX file of unsigned bytes with the given dimensions.
pub fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

/// `pretext pretrain` as a child process (for killing or watching it) on the IDX data and
/// `config.toml` in `dir`, into `out`; stdout discarded, stderr captured.
pub fn pretrain_process(
    dir: &std::path::Path,
    out: &std::path::Path,
    resume: bool,
) -> std::process::Command {
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("pretext"));
    cmd.args(["pretrain", "--quiet", "--config"])
        .arg(dir.join("config.toml"))
        .arg("--data")
        .arg(dir)
        .arg("--out")
        .arg(out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    if resume {
        cmd.arg("--resume");
    }
    cmd
}
