//! The whole study end to end: runs the `pretext` binary's `compare --quick` (and with
//! `-- --default`, the default study too) on the embedded data, and prints each run's wall time
//! and peak memory beside the targets (2 and 10 minutes).
//!
//! Run: `cargo bench --bench study` (add `-- --default` for the 3-seed default study, about
//! 5 minutes on 2 cores).

use std::process::Command;
use std::time::{Duration, Instant};

/// Peak resident memory of the finished child processes so far, in MiB, where the platform
/// reports it.
#[cfg(unix)]
fn children_peak_mib() -> Option<f64> {
    // SAFETY: `getrusage` fills the zeroed struct it is given and reads nothing else.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) != 0 {
            return None;
        }
        usage
    };
    // Linux reports kibibytes, macOS bytes.
    let unit = if cfg!(target_os = "macos") {
        1.0
    } else {
        1024.0
    };
    Some(usage.ru_maxrss as f64 * unit / (1024.0 * 1024.0))
}

#[cfg(not(unix))]
fn children_peak_mib() -> Option<f64> {
    None
}

fn run(name: &str, args: &[&str], target: Duration) {
    let out = tempfile::tempdir().expect("a temporary directory");
    let start = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_pretext"))
        .args(args)
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("the pretext binary runs");
    let wall = start.elapsed();
    assert!(
        output.status.success(),
        "`pretext {}` failed: {}\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    // The largest of the runs so far: the quick study runs first, so a later figure is the
    // default study's own unless the quick one used more.
    let peak = children_peak_mib().map_or("not reported here".into(), |m| format!("{m:.0} MiB"));
    println!(
        "{name:<34} {:>4} min {:>4.1} s   target {:>3.0} min   {}   peak memory {peak}",
        wall.as_secs() / 60,
        wall.as_secs_f64() % 60.0,
        target.as_secs_f64() / 60.0,
        if wall <= target { "met" } else { "over" },
    );
}

fn main() {
    let default = std::env::args().any(|a| a == "--default");
    run(
        "pretext compare --quick",
        &["compare", "--quick"],
        Duration::from_secs(120),
    );
    if default {
        run(
            "pretext compare (defaults)",
            &["compare"],
            Duration::from_secs(600),
        );
    }
}
