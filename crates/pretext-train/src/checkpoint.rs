//! Checkpoints: everything needed to continue a run exactly, in one checksummed file written
//! atomically.
//!
//! Layout: the 8-byte magic `PTXCKPT1`, then three length-prefixed (u64 little-endian) sections
//! (the JSON [`TrainState`], the model record, the optimizer record, both in Burn's burnpack
//! format), then the CRC-32 of everything before it. Randomness needs no saved generator state:
//! every random choice derives from the run's seed and the position (epoch, image index), which
//! the state holds.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

const MAGIC: &[u8; 8] = b"PTXCKPT1";
const PREFIX: &str = "ckpt-";
const SUFFIX: &str = ".bin";

/// Where a run stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainState {
    /// The epoch to continue in (0-based) and its first batch not yet trained on.
    pub epoch: u64,
    pub batch: usize,
    /// Optimizer steps taken.
    pub step: u64,
    /// Digest of the resolved config: a checkpoint is only resumed under the same settings.
    pub config_digest: String,
}

/// One checkpoint's content.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub state: TrainState,
    pub model: Vec<u8>,
    pub optimizer: Vec<u8>,
}

impl Checkpoint {
    pub fn encode(&self) -> Vec<u8> {
        // A struct of plain fields always serialises.
        let state = serde_json::to_vec(&self.state).unwrap_or_default();
        let mut out =
            Vec::with_capacity(8 + 24 + state.len() + self.model.len() + self.optimizer.len() + 4);
        out.extend_from_slice(MAGIC);
        for section in [&state[..], &self.model, &self.optimizer] {
            out.extend_from_slice(&(section.len() as u64).to_le_bytes());
            out.extend_from_slice(section);
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses and verifies `bytes` (read from `path`, named in errors).
    pub fn decode(path: &Path, bytes: &[u8]) -> Result<Self> {
        let bad = |reason: String| TrainError::checkpoint(path, reason);
        if bytes.len() < MAGIC.len() + 4 || &bytes[..MAGIC.len()] != MAGIC {
            return Err(bad("not a pretext checkpoint (wrong magic bytes)".into()));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        if crc32fast::hash(body) != stored {
            return Err(bad(
                "checksum mismatch (the file is truncated or corrupted)".into(),
            ));
        }
        let mut rest = &body[MAGIC.len()..];
        let mut sections = Vec::with_capacity(3);
        for name in ["state", "model", "optimizer"] {
            if rest.len() < 8 {
                return Err(bad(format!("the {name} section is missing")));
            }
            let (len, tail) = rest.split_at(8);
            let len = u64::from_le_bytes(len.try_into().unwrap_or([0; 8]));
            if len > tail.len() as u64 {
                return Err(bad(format!("the {name} section runs past the end")));
            }
            let (section, tail) = tail.split_at(len as usize);
            sections.push(section);
            rest = tail;
        }
        if !rest.is_empty() {
            return Err(bad(format!(
                "{} unexpected bytes after the sections",
                rest.len()
            )));
        }
        let state = serde_json::from_slice(sections[0])
            .map_err(|e| bad(format!("unreadable state: {e}")))?;
        Ok(Self {
            state,
            model: sections[1].to_vec(),
            optimizer: sections[2].to_vec(),
        })
    }

    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
        Self::decode(path, &bytes)
    }
}

/// The checkpoints of one run: `dir/ckpt-<step>.bin`, newest kept.
#[derive(Debug, Clone)]
pub struct CheckpointDir {
    dir: PathBuf,
    keep: usize,
}

/// The newest readable checkpoint and the newer ones that could not be used.
#[derive(Debug)]
pub struct Restored {
    pub checkpoint: Checkpoint,
    pub path: PathBuf,
    pub skipped: Vec<TrainError>,
}

impl CheckpointDir {
    pub fn new(dir: impl Into<PathBuf>, keep: usize) -> Self {
        Self {
            dir: dir.into(),
            keep: keep.max(1),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `checkpoint` atomically, then deletes all but the newest `keep`.
    pub fn save(&self, checkpoint: &Checkpoint) -> Result<PathBuf> {
        std::fs::create_dir_all(&self.dir).map_err(|e| TrainError::io(&self.dir, e))?;
        let path = self
            .dir
            .join(format!("{PREFIX}{:010}{SUFFIX}", checkpoint.state.step));
        pretext_data::npy::write_atomic(&path, &checkpoint.encode())?;
        let all = self.list()?;
        for old in &all[..all.len().saturating_sub(self.keep)] {
            // A checkpoint that cannot be removed only costs space.
            let _ = std::fs::remove_file(old);
        }
        Ok(path)
    }

    /// Checkpoint files, oldest first.
    pub fn list(&self) -> Result<Vec<PathBuf>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(TrainError::io(&self.dir, e)),
        };
        let mut found: Vec<(u64, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let step = name
                    .strip_prefix(PREFIX)?
                    .strip_suffix(SUFFIX)?
                    .parse()
                    .ok()?;
                Some((step, e.path()))
            })
            .collect();
        found.sort();
        Ok(found.into_iter().map(|(_, p)| p).collect())
    }

    /// The newest checkpoint that reads and verifies; corrupt newer ones are reported in
    /// [`Restored::skipped`] and left in place for inspection.
    pub fn latest(&self) -> Result<Option<Restored>> {
        let mut skipped = Vec::new();
        for path in self.list()?.into_iter().rev() {
            match Checkpoint::read(&path) {
                Ok(checkpoint) => {
                    return Ok(Some(Restored {
                        checkpoint,
                        path,
                        skipped,
                    }));
                }
                Err(e) => skipped.push(e),
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(step: u64) -> Checkpoint {
        Checkpoint {
            state: TrainState {
                epoch: step / 10,
                batch: (step % 10) as usize,
                step,
                config_digest: "abc".into(),
            },
            model: vec![1, 2, 3, step as u8],
            optimizer: vec![9; 17],
        }
    }

    #[test]
    fn round_trips_and_detects_every_single_byte_corruption() {
        let c = checkpoint(7);
        let bytes = c.encode();
        let p = Path::new("c.bin");
        assert_eq!(Checkpoint::decode(p, &bytes).unwrap(), c);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(
                Checkpoint::decode(p, &bad).is_err(),
                "flip at {i} went unnoticed"
            );
        }
        for len in 0..bytes.len() {
            let err = Checkpoint::decode(p, &bytes[..len])
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("c.bin: not a usable checkpoint"), "{err}");
        }
    }

    #[test]
    fn keeps_the_newest_and_falls_back_past_a_corrupt_one() {
        let dir = tempfile::tempdir().unwrap();
        let ckpts = CheckpointDir::new(dir.path().join("checkpoints"), 2);
        assert!(ckpts.latest().unwrap().is_none());
        for step in [5, 10, 15] {
            ckpts.save(&checkpoint(step)).unwrap();
        }
        let files = ckpts.list().unwrap();
        assert_eq!(files.len(), 2);
        assert!(files[1].ends_with("ckpt-0000000015.bin"));
        // Truncate the newest: the previous one is used and the bad one reported.
        let bytes = std::fs::read(&files[1]).unwrap();
        std::fs::write(&files[1], &bytes[..bytes.len() / 2]).unwrap();
        let restored = ckpts.latest().unwrap().unwrap();
        assert_eq!(restored.checkpoint, checkpoint(10));
        assert_eq!(restored.skipped.len(), 1);
        assert!(
            restored.skipped[0]
                .to_string()
                .contains("checksum mismatch")
        );
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(ckpts.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }
}
