//! The study's results, one cell per line of `cells.jsonl`, appended as each is computed so an
//! interrupted study resumes where it stopped.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use pretext_data::LabelBudget;

use super::Protocol;
use crate::error::{Result, TrainError};

/// What a cell measures.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CellKey {
    pub representation: String,
    pub protocol: Protocol,
    pub budget: LabelBudget,
    pub seed: u64,
}

impl CellKey {
    pub fn new(representation: &str, protocol: Protocol, budget: LabelBudget, seed: u64) -> Self {
        Self {
            representation: representation.to_string(),
            protocol,
            budget,
            seed,
        }
    }
}

/// One measured number: a test accuracy (or a clustering score), with the balanced accuracy
/// and macro-F1 of a classifier's predictions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    #[serde(flatten)]
    pub key: CellKey,
    pub value: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balanced_accuracy: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub macro_f1: Option<f64>,
    pub seconds: f64,
}

/// What a protocol measures for one cell.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    pub value: f64,
    pub balanced_accuracy: Option<f64>,
    pub macro_f1: Option<f64>,
}

impl Score {
    /// A score with no class-wise companions (a clustering's NMI, say).
    pub fn plain(value: f64) -> Self {
        Self {
            value,
            balanced_accuracy: None,
            macro_f1: None,
        }
    }

    /// Accuracy, balanced accuracy and macro-F1 of predictions against the truth.
    pub fn of_predictions(truth: &[u32], predicted: &[u32]) -> Result<Self> {
        use pretext_baselines::metrics::{balanced_accuracy, macro_f1};
        Ok(Self {
            value: super::correct(predicted, truth) as f64 / truth.len().max(1) as f64,
            balanced_accuracy: Some(balanced_accuracy(truth, predicted)?),
            macro_f1: Some(macro_f1(truth, predicted)?),
        })
    }
}

/// The cells computed so far, backed by a JSON-lines file.
pub struct CellLog {
    path: PathBuf,
    cells: BTreeMap<CellKey, Cell>,
}

impl CellLog {
    /// Reads the cells already in `path` (a missing file is an empty log). A last line cut short
    /// by an interruption is dropped; any other unreadable line is an error naming it.
    pub fn open(path: &Path) -> Result<Self> {
        let mut cells = BTreeMap::new();
        match File::open(path) {
            Ok(file) => {
                let lines: Vec<String> = BufReader::new(file)
                    .lines()
                    .collect::<std::io::Result<_>>()
                    .map_err(|e| TrainError::io(path, e))?;
                let count = lines.len();
                for (i, line) in lines.into_iter().enumerate() {
                    if line.trim().is_empty() {
                        continue;
                    }
                    match serde_json::from_str::<Cell>(&line) {
                        Ok(cell) => {
                            cells.insert(cell.key.clone(), cell);
                        }
                        Err(_) if i + 1 == count => {}
                        Err(e) => {
                            return Err(TrainError::checkpoint(
                                path,
                                format!("line {}: {e}", i + 1),
                            ));
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(TrainError::io(path, e)),
        }
        Ok(Self {
            path: path.to_path_buf(),
            cells,
        })
    }

    pub fn len(&self) -> usize {
        self.cells.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    pub fn contains(&self, key: &CellKey) -> bool {
        self.cells.contains_key(key)
    }

    /// Appends one cell and flushes it to disk.
    pub fn append(&mut self, cell: &Cell) -> Result<()> {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| TrainError::io(&self.path, e))?;
        let line = serde_json::to_string(cell).unwrap_or_default();
        writeln!(file, "{line}")
            .and_then(|_| file.sync_data())
            .map_err(|e| TrainError::io(&self.path, e))?;
        self.cells.insert(cell.key.clone(), cell.clone());
        Ok(())
    }

    pub fn into_cells(self) -> Vec<Cell> {
        self.cells.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_a_torn_last_line_and_skips_known_cells() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cells.jsonl");
        let mut log = CellLog::open(&path).unwrap();
        let cell = Cell {
            key: CellKey::new("pixels", Protocol::Knn, LabelBudget::PerClass(10), 2),
            value: 0.75,
            balanced_accuracy: Some(0.7),
            macro_f1: None,
            seconds: 0.1,
        };
        log.append(&cell).unwrap();
        // An interruption mid-write leaves half a line.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        write!(f, "{{\"representation\":\"pca-50\",\"proto").unwrap();
        drop(f);
        let log = CellLog::open(&path).unwrap();
        assert_eq!(log.len(), 1);
        assert!(log.contains(&cell.key));
        assert_eq!(log.into_cells(), vec![cell]);
        std::fs::write(&path, "garbage\n{}\n").unwrap();
        let err = CellLog::open(&path).err().unwrap().to_string();
        assert!(err.contains("line 1"), "{err}");
    }
}
