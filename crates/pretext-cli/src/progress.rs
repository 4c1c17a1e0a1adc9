//! Progress bars for training: one bar per epoch with the loss, images per second and an ETA,
//! and a line per finished epoch. Drawn on stderr; hidden when stderr is not a terminal.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pretext_train::{EpochReport, StepReport, TrainObserver};

pub struct Progress {
    bar: Option<ProgressBar>,
    quiet: bool,
    /// What the epoch's held-out number measures, and what a training example is.
    monitor: &'static str,
    unit: &'static str,
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        Self {
            bar: None,
            quiet,
            monitor: "kNN accuracy",
            unit: "img/s",
        }
    }

    /// Labels for text: the task's held-out measure, sequences per second.
    pub fn for_text(self, monitor: &'static str) -> Self {
        Self {
            monitor,
            unit: "seq/s",
            ..self
        }
    }

    fn print(&self, line: &str) {
        match &self.bar {
            Some(bar) if !bar.is_hidden() => bar.println(line),
            _ => eprintln!("{line}"),
        }
    }
}

impl TrainObserver for Progress {
    fn epoch_started(&mut self, epoch: u64, epochs: u64, first: usize, batches: usize) {
        if self.quiet {
            return;
        }
        let bar = ProgressBar::with_draw_target(Some(batches as u64), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} batches {msg} (ETA {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("epoch {}/{epochs}", epoch + 1));
        bar.set_position(first as u64);
        bar.reset_eta();
        bar.enable_steady_tick(Duration::from_millis(500));
        self.bar = Some(bar);
    }

    fn step(&mut self, r: &StepReport) {
        if let Some(bar) = &self.bar {
            bar.set_position(r.batch as u64 + 1);
            bar.set_message(format!(
                "loss {:.4}, {:.0} {}, lr {:.2e}",
                r.loss, r.images_per_second, self.unit, r.lr
            ));
        }
    }

    fn epoch_finished(&mut self, r: &EpochReport) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if self.quiet {
            return;
        }
        let knn = r
            .knn_accuracy
            .map(|a| format!(", {} {a:.4}", self.monitor))
            .unwrap_or_default();
        let spread = r
            .embedding
            .map(|e| format!(", embedding spread {:.2}", e.relative()))
            .unwrap_or_default();
        eprintln!(
            "epoch {}: loss {:.4}{knn}{spread}, {:.1} s, {:.0} {}",
            r.epoch + 1,
            r.mean_loss,
            r.seconds,
            r.images_per_second,
            self.unit
        );
    }

    fn note(&mut self, message: &str) {
        self.print(message);
    }
}
