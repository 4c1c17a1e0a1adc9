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
