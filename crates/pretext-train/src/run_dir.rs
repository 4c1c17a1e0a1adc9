//! A run directory: the resolved config, checkpoints, the metrics log and the exported encoder,
//! guarded by a lock file so two processes never write one run.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::checkpoint::CheckpointDir;
use crate::error::{Result, TrainError};
use crate::export::{DESCRIPTION, WEIGHTS};

const LOCK: &str = ".lock";
/// The resolved settings of the run.
pub const CONFIG: &str = "config.toml";
const METRICS: &str = "metrics.jsonl";
/// Jigsaw's permutation set, saved with the run.
pub const PERMUTATIONS: &str = "permutations.json";

/// How to treat a directory that already holds a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// Start a run; refuse a directory holding another one.
    New,
    /// Continue the run in the directory from its last checkpoint (or start it if it has none).
    Resume,
    /// Replace whatever run the directory holds.
    Force,
}

/// A finished (or interrupted) run resumed with more epochs than it had: the one change of
/// settings a resume accepts. The learning-rate and momentum schedules are re-planned over the
/// new total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extension {
    pub from_epochs: u64,
    pub to_epochs: u64,
}

/// An open, locked run directory.
#[derive(Debug)]
pub struct RunDir {
    root: PathBuf,
    lock: PathBuf,
    extension: Option<Extension>,
    /// The saved config as an earlier version wrote it, when resuming took it for the same
    /// settings: its checkpoints carry its digest.
    earlier: Option<String>,
}

/// How today's version reads a saved config: the same settings written out with every key it
/// knows (keys added since at their defaults), or `None` when it cannot read them.
pub type Resolve<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Identifies a run's settings in its checkpoints: every setting but `epochs`, which a resume
/// may raise.
pub fn settings_digest(config: &str) -> String {
    let normalised = match toml::from_str::<toml::Table>(config) {
        Ok(mut table) => {
            table.remove("epochs");
            toml::to_string(&table).unwrap_or_else(|_| config.to_string())
        }
        Err(_) => config.to_string(),
    };
    format!("{:08x}", crc32fast::hash(normalised.as_bytes()))
}

/// The digest checkpoints written before [`settings_digest`] carry: the whole config's.
pub fn legacy_digest(config: &str) -> String {
    format!("{:08x}", crc32fast::hash(config.as_bytes()))
}

/// The dotted names of the settings that differ between two TOML documents.
fn differing_keys(old: &str, new: &str) -> Vec<String> {
    fn walk(prefix: &str, a: Option<&toml::Value>, b: Option<&toml::Value>, out: &mut Vec<String>) {
        match (a, b) {
            (Some(toml::Value::Table(a)), Some(toml::Value::Table(b))) => {
                let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
                keys.sort();
                keys.dedup();
                for k in keys {
                    let name = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&name, a.get(k), b.get(k), out);
                }
            }
            (a, b) if a != b => out.push(prefix.to_string()),
            _ => {}
        }
    }
    let parse = |t: &str| {
        toml::from_str::<toml::Table>(t)
            .ok()
            .map(toml::Value::Table)
    };
    let mut out = Vec::new();
    match (parse(old), parse(new)) {
        (Some(a), Some(b)) => walk("", Some(&a), Some(&b), &mut out),
        _ => out.push("(the whole file)".into()),
    }
    out
}

impl RunDir {
    /// Opens `root` for a run whose resolved config is `config` (TOML): creates it, takes the
    /// lock, and checks what it holds against `mode`. Under [`RunMode::Force`] the previous run's
    /// checkpoints, metrics and exports are removed.
    pub fn open(root: &Path, config: &str, mode: RunMode) -> Result<Self> {
        Self::open_resolving(root, config, mode, &|_| None)
    }

    /// [`Self::open`], reading a saved config through `resolve` before comparing it on a
    /// resume: a run an earlier version left unfinished lacks the settings added since, and
    /// when those keys' defaults make it the same run, it resumes.
    pub fn open_resolving(
        root: &Path,
        config: &str,
        mode: RunMode,
        resolve: Resolve<'_>,
    ) -> Result<Self> {
        std::fs::create_dir_all(root).map_err(|e| TrainError::io(root, e))?;
        let lock = acquire_lock(root)?;
        let mut dir = Self {
            root: root.to_path_buf(),
            lock,
            extension: None,
            earlier: None,
        };
        let config_path = root.join(CONFIG);
        let existing = std::fs::read_to_string(&config_path).ok();
        let has_run = existing.is_some() || !dir.checkpoints(1).list()?.is_empty();
        match mode {
            RunMode::New if has_run => {
                return Err(TrainError::RunExists {
                    dir: root.to_path_buf(),
                });
            }
            RunMode::Resume if existing.as_deref().is_some_and(|e| e != config) => {
                let saved = existing.as_deref().unwrap_or_default();
                let current = resolve(saved).filter(|r| r != saved);
                if current.is_some() {
                    dir.earlier = Some(saved.to_string());
                }
                let old = current.as_deref().unwrap_or(saved);
                let keys = differing_keys(old, config);
                let epochs = |t: &str| {
                    toml::from_str::<toml::Table>(t)
                        .ok()
                        .and_then(|t| t.get("epochs").and_then(toml::Value::as_integer))
                };
                match (keys.as_slice(), epochs(old), epochs(config)) {
                    // The earlier version's way of writing the same settings.
                    ([], _, _) => {}
                    ([only], Some(from), Some(to)) if only == "epochs" && to > from => {
                        dir.extension = Some(Extension {
                            from_epochs: from as u64,
                            to_epochs: to as u64,
                        });
                    }
                    _ => {
                        return Err(TrainError::config(format!(
                            "{} holds a run with other settings ({} differ); resuming needs the \
                             same config, except a larger `epochs`, which continues the run \
                             (compare it with {})",
                            root.display(),
                            keys.join(", "),
                            config_path.display()
                        )));
                    }
                }
            }
            RunMode::Force if has_run => dir.clear()?,
            _ => {}
        }
        pretext_data::npy::write_atomic(&config_path, config.as_bytes())?;
        Ok(dir)
    }

    /// The digests besides [`settings_digest`]`(config)` that checkpoints of this run may
    /// carry: the whole config's (written before the digest left out `epochs`), and those of
    /// the earlier version's config when resuming took it for the same settings.
    pub fn accepted_digests(&self, config: &str) -> Vec<String> {
        let mut digests = vec![legacy_digest(config)];
        if let Some(earlier) = &self.earlier {
            digests.push(settings_digest(earlier));
            digests.push(legacy_digest(earlier));
        }
        digests
    }

    /// [`Self::ensure_space`] for `copies` files the size of a checkpoint of a model of `params`
    /// parameters: the weights and the optimizer's two moments per parameter, in f32.
    pub fn ensure_checkpoint_space(&self, params: usize, copies: usize) -> Result<()> {
        self.ensure_space(3 * 4 * params as u64 * copies as u64)
    }

    /// Fails with [`TrainError::NoSpace`] unless the file system holding the run has `needed`
    /// bytes free (checked before training, so a full disk is found before hours of work).
    pub fn ensure_space(&self, needed: u64) -> Result<()> {
        match free_bytes(&self.root) {
            Some(available) if available < needed => Err(TrainError::NoSpace {
                dir: self.root.clone(),
                needed,
                available,
            }),
            _ => Ok(()),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Set when a resume raised `epochs`.
    pub fn extension(&self) -> Option<Extension> {
        self.extension
    }

    pub fn checkpoints(&self, keep: usize) -> CheckpointDir {
        CheckpointDir::new(self.root.join("checkpoints"), keep)
    }

    pub fn metrics(&self) -> PathBuf {
        self.root.join(METRICS)
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn clear(&self) -> Result<()> {
        let checkpoints = self.root.join("checkpoints");
        if checkpoints.exists() {
            std::fs::remove_dir_all(&checkpoints).map_err(|e| TrainError::io(&checkpoints, e))?;
        }
        for name in [METRICS, WEIGHTS, DESCRIPTION, PERMUTATIONS] {
            let p = self.root.join(name);
            if p.exists() {
                std::fs::remove_file(&p).map_err(|e| TrainError::io(&p, e))?;
            }
        }
        Ok(())
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.lock);
    }
}

/// Bytes available to this user on the file system holding `dir`; `None` where unknown.
#[cfg(unix)]
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a valid C string and `stats` a properly sized out-parameter; the
    // structure is read only when the call succeeds.
    let stats = unsafe {
        if libc::statvfs(path.as_ptr(), stats.as_mut_ptr()) != 0 {
            return None;
        }
        stats.assume_init()
    };
    Some((stats.f_bavail as u64).saturating_mul(stats.f_frsize as u64))
}

#[cfg(not(unix))]
fn free_bytes(_dir: &Path) -> Option<u64> {
    None
}

/// Creates `root/.lock` holding this process's id. A lock left by a process that no longer runs
/// is taken over.
fn acquire_lock(root: &Path) -> Result<PathBuf> {
    let lock = root.join(LOCK);
    for _ in 0..2 {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&lock)
        {
            Ok(mut f) => {
                write!(f, "{}", std::process::id()).map_err(|e| TrainError::io(&lock, e))?;
                return Ok(lock);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let pid = std::fs::read_to_string(&lock)
                    .ok()
                    .and_then(|s| s.trim().parse::<u32>().ok());
                match pid {
                    Some(pid) if process_alive(pid) => {
                        return Err(TrainError::Locked {
                            dir: root.to_path_buf(),
                            lock,
                            pid,
                        });
                    }
                    // Stale (its process is gone) or unreadable: take it over.
                    _ => {
                        let _ = std::fs::remove_file(&lock);
                    }
                }
            }
            Err(e) => return Err(TrainError::io(&lock, e)),
        }
    }
    Err(TrainError::io(
        &lock,
        std::io::Error::other("the lock keeps being taken by another process"),
    ))
}

/// Whether a process with this id runs. On Linux, `/proc` tells; elsewhere a lock is presumed
/// held (the user is told which file to remove).
fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resuming_with_more_epochs_extends_and_other_changes_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("run");
        let config = |epochs: u64, lr: f64| format!("epochs = {epochs}\n[optimizer]\nlr = {lr}\n");
        drop(RunDir::open(&root, &config(5, 0.1), RunMode::New).unwrap());
        let err = RunDir::open(&root, &config(5, 0.2), RunMode::Resume).unwrap_err();
        assert!(err.to_string().contains("(optimizer.lr differ)"), "{err}");
        let err = RunDir::open(&root, &config(9, 0.2), RunMode::Resume).unwrap_err();
        assert!(
            err.to_string().contains("(epochs, optimizer.lr differ)"),
            "{err}"
        );
        let err = RunDir::open(&root, &config(3, 0.1), RunMode::Resume).unwrap_err();
        assert!(err.to_string().contains("a larger `epochs`"), "{err}");
        let run = RunDir::open(&root, &config(9, 0.1), RunMode::Resume).unwrap();
        assert_eq!(
            run.extension(),
            Some(Extension {
                from_epochs: 5,
                to_epochs: 9
            })
        );
        drop(run);
        // The config now says 9 epochs; resuming it again is an ordinary resume.
        let again = RunDir::open(&root, &config(9, 0.1), RunMode::Resume).unwrap();
        assert_eq!(again.extension(), None);
        // Checkpoints identify the settings without the epochs.
        assert_eq!(
            settings_digest(&config(5, 0.1)),
            settings_digest(&config(9, 0.1))
        );
        assert_ne!(
            settings_digest(&config(5, 0.1)),
            settings_digest(&config(5, 0.2))
        );
    }

    #[test]
    fn a_run_an_earlier_version_wrote_resumes_when_the_new_keys_keep_its_settings() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("run");
        // Written before `dropout` existed; today's default is 0.
        let earlier = "epochs = 5\n[encoder]\ndim = 64\n";
        let today = |epochs: u64, dropout: f64| {
            format!("epochs = {epochs}\n[encoder]\ndim = 64\ndropout = {dropout:?}\n")
        };
        let resolve = |saved: &str| -> Option<String> {
            let mut table: toml::Table = toml::from_str(saved).ok()?;
            let encoder = table.get_mut("encoder")?.as_table_mut()?;
            encoder.entry("dropout").or_insert(toml::Value::Float(0.0));
            Some(toml::to_string(&table).unwrap())
        };
        let reopen =
            |config: &str| RunDir::open_resolving(&root, config, RunMode::Resume, &resolve);
        drop(RunDir::open(&root, earlier, RunMode::New).unwrap());
        // Without reading it through today's defaults, the new key is a change.
        let err = RunDir::open(&root, &today(5, 0.0), RunMode::Resume).unwrap_err();
        assert!(
            err.to_string().contains("(encoder.dropout differ)"),
            "{err}"
        );
        // Another value of the new key is a change of settings.
        let err = reopen(&today(5, 0.1)).unwrap_err();
        assert!(
            err.to_string().contains("(encoder.dropout differ)"),
            "{err}"
        );
        // Its default is the same run: its checkpoints' digests are accepted.
        let run = reopen(&today(5, 0.0)).unwrap();
        assert_eq!(run.extension(), None);
        assert!(
            run.accepted_digests(&today(5, 0.0))
                .contains(&settings_digest(earlier))
        );
        drop(run);
        // And more epochs extend it, as for any run.
        std::fs::write(root.join(CONFIG), earlier).unwrap();
        let run = reopen(&today(8, 0.0)).unwrap();
        assert_eq!(
            run.extension(),
            Some(Extension {
                from_epochs: 5,
                to_epochs: 8
            })
        );
    }

    #[test]
    fn a_run_needing_more_space_than_is_free_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::open(dir.path(), "epochs = 1\n", RunMode::New).unwrap();
        run.ensure_space(1).unwrap();
        let err = run.ensure_space(u64::MAX).unwrap_err();
        assert!(matches!(err, TrainError::NoSpace { .. }), "{err}");
        let message = err.to_string();
        assert!(
            message.contains(&dir.path().display().to_string()) && message.contains("MB free"),
            "{message}"
        );
    }

    #[test]
    fn a_second_open_is_refused_and_a_stale_lock_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("run");
        let first = RunDir::open(&root, "a = 1\n", RunMode::New).unwrap();
        let err = RunDir::open(&root, "a = 1\n", RunMode::Resume).unwrap_err();
        assert!(matches!(err, TrainError::Locked { .. }), "{err}");
        drop(first);
        // The run exists now: a new run is refused, resuming with other settings too.
        let err = RunDir::open(&root, "a = 1\n", RunMode::New).unwrap_err();
        assert!(err.to_string().contains("--resume"), "{err}");
        let err = RunDir::open(&root, "a = 2\n", RunMode::Resume).unwrap_err();
        assert!(
            err.to_string().contains("other settings (a differ)"),
            "{err}"
        );
        RunDir::open(&root, "a = 2\n", RunMode::Force).unwrap();
        // A lock whose process is gone (pid beyond the kernel's maximum) is stale.
        std::fs::write(root.join(LOCK), "4194305").unwrap();
        RunDir::open(&root, "a = 2\n", RunMode::Resume).unwrap();
        assert!(!root.join(LOCK).exists());
    }
}
