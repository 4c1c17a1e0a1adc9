//! A disk that fills up mid-training: the run stops with a clear error, its last good checkpoint
//! intact, and resumes once there is space again. A run that cannot fit is refused before it
//! starts. The disk is a small tmpfs, which needs root and a machine that lets root mount (the
//! CI machine does); elsewhere the tests say so and pass without running.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{idx_split, pretrain_process};

/// A mounted tmpfs, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, bytes: u64) -> Option<Self> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}")])
            .arg("tmpfs")
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A small tmpfs under `dir`, or `None` (with the reason printed) where none can be mounted.
fn small_disk(dir: &Path, bytes: u64) -> Option<Tmpfs> {
    if !is_root() {
        println!("skipped: mounting a small tmpfs needs root");
        return None;
    }
    let disk = Tmpfs::mount(&dir.join("disk"), bytes);
    if disk.is_none() {
        println!("skipped: this machine does not let root mount a tmpfs");
    }
    disk
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    })
}

fn data_dir(dir: &Path) {
    idx_split(dir, "train", 40, 16, 16, 2);
    std::fs::write(
        dir.join("config.toml"),
        "epochs = 40\n[task]\nkind = \"rotation\"\n[encoder]\nkind = \"cnn\"\nchannels = [8, 16]\n\
         embedding_dim = 32\n[loader]\nbatch_size = 8\n[checkpoint]\nevery_steps = 2\nkeep = 2\n\
         [knn]\nenabled = false\n",
    )
    .unwrap();
}

fn checkpoints(run: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(run.join("checkpoints"))
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "bin"))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

#[test]
fn a_full_disk_stops_training_cleanly_and_the_run_resumes() {
    let dir = tempfile::tempdir().unwrap();
    data_dir(dir.path());
    let Some(disk) = small_disk(dir.path(), 8 << 20) else {
        return;
    };
    let run = disk.0.join("run");
    let mut child = pretrain_process(dir.path(), &run, false).spawn().unwrap();
    let started = Instant::now();
    while checkpoints(&run).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no checkpoint"
        );
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Fill the disk.
    let filler = disk.0.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 << 10];
        while f.write_all(&block).is_ok() {}
        let _ = f.flush();
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("No space left") && stderr.contains(&run.display().to_string()),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let kept = checkpoints(&run);
    assert!(!kept.is_empty(), "the last good checkpoint is gone");

    // Space again: the run resumes from its last good checkpoint and finishes.
    std::fs::remove_file(&filler).unwrap();
    let out = pretrain_process(dir.path(), &run, true).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(run.join("encoder.safetensors").exists());
}

#[test]
fn a_run_that_cannot_fit_is_refused_before_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    data_dir(dir.path());
    let Some(disk) = small_disk(dir.path(), 64 << 10) else {
        return;
    };
    let run = disk.0.join("run");
    let out = pretrain_process(dir.path(), &run, false).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("MB free") && stderr.contains("--out"),
        "{stderr}"
    );
    assert!(checkpoints(&run).is_empty());
}
