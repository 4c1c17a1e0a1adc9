//! The Python side of the side-by-side benchmarks: one virtual environment under
//! `target/bench-venv`, created with `python3 -m venv` and filled with pip on first use.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The environment's interpreter once `imports` import, installing `packages` if they do not;
/// `Err` says why there is none (the benchmark then prints pretext's figures alone).
pub fn peer_python(imports: &str, packages: &[&str]) -> Result<PathBuf, String> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .map_err(|e| format!("python3 is not available ({e})"))?;
        if !ok.success() {
            return Err("python3 -m venv failed".into());
        }
    }
    let imported = |python: &Path| {
        Command::new(python)
            .args(["-c", &format!("import {imports}")])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !imported(&python) {
        println!(
            "installing {} into {} with pip",
            packages.join(", "),
            venv.display()
        );
        let ok = Command::new(&python)
            .args(["-m", "pip", "install", "-q"])
            .args(packages)
            .status()
            .map_err(|e| e.to_string())?;
        if !ok.success() || !imported(&python) {
            return Err(format!("pip could not install {}", packages.join(", ")));
        }
    }
    Ok(python)
}
