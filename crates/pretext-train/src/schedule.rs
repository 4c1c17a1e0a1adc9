//! Learning-rate schedule: linear warm-up, then cosine decay to a floor.

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// Defaults: one epoch of warm-up, cosine decay to 0 at the last step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Warm-up length in epochs (fractions allowed).
    pub warmup_epochs: f64,
    /// The learning rate at the end, as a fraction of the peak.
    pub final_fraction: f64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            warmup_epochs: 1.0,
            final_fraction: 0.0,
        }
    }
}

impl ScheduleConfig {
    pub fn validate(&self) -> Result<()> {
        if !(self.warmup_epochs.is_finite() && self.warmup_epochs >= 0.0) {
            return Err(TrainError::config(format!(
                "schedule.warmup_epochs = {} must be >= 0",
                self.warmup_epochs
            )));
        }
        if !(0.0..=1.0).contains(&self.final_fraction) {
            return Err(TrainError::config(format!(
                "schedule.final_fraction = {} must lie in [0, 1]",
                self.final_fraction
            )));
        }
        Ok(())
    }
}

/// The schedule of one run, in optimizer steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    peak: f64,
    warmup_steps: u64,
    total_steps: u64,
    floor: f64,
}

impl Schedule {
    pub fn new(config: &ScheduleConfig, peak: f64, steps_per_epoch: u64, epochs: u64) -> Self {
        let total_steps = (steps_per_epoch * epochs).max(1);
        let warmup_steps = ((config.warmup_epochs * steps_per_epoch as f64).round() as u64)
            .min(total_steps.saturating_sub(1));
        Self {
            peak,
            warmup_steps,
            total_steps,
            floor: peak * config.final_fraction,
        }
    }

    /// The same schedule compressed into at most `max_steps` steps (warm-up kept, shortened
    /// if it would fill them).
    pub fn truncated(mut self, max_steps: Option<u64>) -> Self {
        if let Some(m) = max_steps {
            self.total_steps = self.total_steps.min(m).max(1);
            self.warmup_steps = self.warmup_steps.min(self.total_steps.saturating_sub(1));
        }
        self
    }

    /// Optimizer steps of the whole run.
    pub fn total_steps(&self) -> u64 {
        self.total_steps
    }

    /// The learning rate of optimizer step `step` (0-based).
    pub fn lr(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            // Linear from peak / warmup up to peak, so the first step already moves.
            return self.peak * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let decay_steps = (self.total_steps - self.warmup_steps).max(1);
        let t = ((step - self.warmup_steps) as f64 / decay_steps as f64).min(1.0);
        self.floor + (self.peak - self.floor) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
    }
}

/// BYOL's and MoCo v3's momentum, 0.99 rising to 1 (solo-learn's setting for small images).
pub const DEFAULT_MOMENTUM: [f64; 2] = [0.99, 1.0];

/// The momentum of a target network's moving average (BYOL, MoCo v3): from `base` at the first
/// step up to `final` at the last along a half cosine, `m(k) = final - (final - base) *
/// (cos(pi k / K) + 1) / 2`, so the target follows the online network closely early on and
/// settles at the end.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MomentumSchedule {
    base: f64,
    end: f64,
    total_steps: u64,
}

impl MomentumSchedule {
    pub fn new([base, end]: [f64; 2], total_steps: u64) -> Self {
        Self {
            base,
            end,
            total_steps: total_steps.max(1),
        }
    }

    /// The momentum applied after optimizer step `step` (0-based).
    pub fn at(&self, step: u64) -> f64 {
        let t = (step.min(self.total_steps) as f64) / self.total_steps as f64;
        self.end - (self.end - self.base) * ((std::f64::consts::PI * t).cos() + 1.0) / 2.0
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn momentum_rises_from_base_to_final_along_a_half_cosine() {
        let m = MomentumSchedule::new([0.99, 1.0], 100);
        assert!((m.at(0) - 0.99).abs() < 1e-15);
        assert!((m.at(50) - 0.995).abs() < 1e-12);
        assert!((m.at(100) - 1.0).abs() < 1e-15);
        assert!((m.at(500) - 1.0).abs() < 1e-15);
        assert!(m.at(30) < m.at(31));
    }

    #[test]
    fn truncated_schedules_end_at_the_floor_on_their_last_step() {
        let config = ScheduleConfig {
            warmup_epochs: 1.0,
            final_fraction: 0.0,
        };
        let s = Schedule::new(&config, 1.0, 10, 100).truncated(Some(30));
        assert!((s.lr(9) - 1.0).abs() < 1e-12, "warm-up kept");
        assert!(s.lr(29) < 0.01 && s.lr(30) == 0.0);
        // A limit shorter than the warm-up leaves the last step to decay.
        let short = Schedule::new(&config, 1.0, 10, 100).truncated(Some(5));
        assert_eq!(short.warmup_steps, 4);
        assert_eq!(
            Schedule::new(&config, 1.0, 10, 3)
                .truncated(None)
                .total_steps,
            30
        );
    }

    use super::*;

    #[test]
    fn warms_up_linearly_then_decays_by_cosine() {
        let config = ScheduleConfig {
            warmup_epochs: 1.0,
            final_fraction: 0.1,
        };
        let s = Schedule::new(&config, 1.0, 10, 5);
        assert!((s.lr(0) - 0.1).abs() < 1e-12);
        assert!((s.lr(4) - 0.5).abs() < 1e-12);
        assert!((s.lr(10) - 1.0).abs() < 1e-12);
        // Half-way through the decay: the mean of peak and floor.
        assert!((s.lr(30) - 0.55).abs() < 1e-12);
        assert!((s.lr(49) - 0.1).abs() < 0.01);
        assert!((s.lr(500) - 0.1).abs() < 1e-12);
        let mut last = f64::INFINITY;
        for step in 10..50 {
            assert!(s.lr(step) <= last);
            last = s.lr(step);
        }
    }

    #[test]
    fn no_warmup_starts_at_the_peak() {
        let config = ScheduleConfig {
            warmup_epochs: 0.0,
            final_fraction: 0.0,
        };
        let s = Schedule::new(&config, 0.5, 4, 1);
        assert_eq!(s.lr(0), 0.5);
    }
}
