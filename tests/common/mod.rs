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

/// Writes one split (`train` or `t10k`) of an IDX data set into `dir`: `n` `h`x`w` images of
/// `classes` classes (cycling), each class its own bright shape (top half, left half, stripes)
/// over a little noise, so models have something to learn.
pub fn idx_split(dir: &std::path::Path, split: &str, n: u32, h: u32, w: u32, classes: u32) {
    std::fs::create_dir_all(dir).unwrap();
    let mut pixels = Vec::with_capacity((n * h * w) as usize);
    for i in 0..n {
        let class = i % classes;
        for y in 0..h {
            for x in 0..w {
                let on = match class % 3 {
                    0 => y < h / 2,
                    1 => x < w / 2,
                    _ => (x + y) % 4 < 2,
                };
                let noise = ((i * 7 + y * 13 + x * 31) % 40) as u8;
                pixels.push(if on { 200 + noise } else { noise });
            }
        }
    }
    let labels: Vec<u8> = (0..n).map(|i| (i % classes) as u8).collect();
    std::fs::write(
        dir.join(format!("{split}-images-idx3-ubyte")),
        idx(&[n, h, w], &pixels),
    )
    .unwrap();
    std::fs::write(
        dir.join(format!("{split}-labels-idx1-ubyte")),
        idx(&[n], &labels),
    )
    .unwrap();
}

/// The training split's embeddings by the encoder exported into `run` (written beside it by
/// `pretext embed` on flex), as float32 values.
pub fn train_embeddings(data: &std::path::Path, run: &std::path::Path) -> Vec<f32> {
    let path = run.with_extension("npy");
    pretext()
        .args(["embed", "--split", "train", "--device", "flex", "--data"])
        .arg(data)
        .arg("--checkpoint")
        .arg(run)
        .arg("--out")
        .arg(&path)
        .assert()
        .success();
    let bytes = std::fs::read(&path).unwrap();
    // A version-1 .npy file: magic, version, header length, header, then the values.
    let header = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    bytes[10 + header..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// The largest absolute difference between two lists of the same length.
pub fn largest_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}
