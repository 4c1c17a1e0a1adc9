//! The metrics log: one JSON object per line (`metrics.jsonl`), a `"kind": "step"` line per
//! optimizer step and a `"kind": "epoch"` line per epoch.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::error::{Result, TrainError};
use crate::observer::{EpochReport, StepReport};

pub struct MetricsLog {
    path: PathBuf,
    out: BufWriter<File>,
}

impl MetricsLog {
    /// Opens the log for appending. After a resume at `keep_until_step`, lines of later steps
    /// (written before the interruption, and about to be redone) are dropped first.
    pub fn open(path: &Path, keep_until_step: Option<u64>) -> Result<Self> {
        if let Some(last) = keep_until_step
            && path.exists()
        {
            let file = File::open(path).map_err(|e| TrainError::io(path, e))?;
            let kept: Vec<String> = BufReader::new(file)
                .lines()
                .map_while(|l| l.ok())
                .filter(|line| {
                    serde_json::from_str::<Value>(line)
                        .ok()
                        .and_then(|v| v.get("step").and_then(Value::as_u64))
                        .is_some_and(|s| s <= last)
                })
                .collect();
            let mut text = kept.join("\n");
            if !text.is_empty() {
                text.push('\n');
            }
            pretext_data::npy::write_atomic(path, text.as_bytes())?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| TrainError::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
        })
    }

    pub fn step(&mut self, r: &StepReport) -> Result<()> {
        let mut line = json!({
            "kind": "step", "epoch": r.epoch, "batch": r.batch, "step": r.step,
            "loss": r.loss, "lr": r.lr, "images_per_second": r.images_per_second,
        });
        if let (Some(std), Some(map)) = (r.embedding_std, line.as_object_mut()) {
            map.insert("embedding_std".into(), json!(std));
        }
        self.line(line)
    }

    pub fn epoch(&mut self, r: &EpochReport, step: u64) -> Result<()> {
        let mut line = json!({
            "kind": "epoch", "epoch": r.epoch, "step": step, "mean_loss": r.mean_loss,
            "knn_accuracy": r.knn_accuracy, "seconds": r.seconds,
            "images_per_second": r.images_per_second,
        });
        if let (Some(spread), Some(map)) = (&r.embedding, line.as_object_mut()) {
            map.insert("embedding_std".into(), json!(spread.std));
            map.insert("embedding_collapsed".into(), json!(spread.collapsed()));
        }
        self.line(line)?;
        self.flush()
    }

    /// A resume that raised the run's epochs, at optimizer step `step`.
    pub fn extension(&mut self, from_epochs: u64, to_epochs: u64, step: u64) -> Result<()> {
        self.line(json!({
            "kind": "extension", "step": step, "from_epochs": from_epochs, "to_epochs": to_epochs,
        }))?;
        self.flush()
    }

    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(|e| TrainError::io(&self.path, e))
    }

    fn line(&mut self, value: Value) -> Result<()> {
        writeln!(self.out, "{value}").map_err(|e| TrainError::io(&self.path, e))
    }
}
