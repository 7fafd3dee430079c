//! The training log: one row per task and epoch, kept in the checkpoint and drawn in reports.

use serde::{Deserialize, Serialize};

/// One row of the training log: one task in one epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub task: String,
    pub steps: usize,
    pub train_loss: f64,
    /// `None` when the task has no dev rows (`dev_fraction = 0`).
    pub dev_accuracy: Option<f64>,
    pub dev_macro_f1: Option<f64>,
    /// Token tasks: dev entity-level micro F1 (what epochs are selected by).
    #[serde(default)]
    pub dev_entity_f1: Option<f64>,
    pub lr: f64,
    /// The epoch's training steps alone.
    pub train_seconds: f64,
    /// Steps plus scoring the dev split.
    pub seconds: f64,
}

impl EpochLog {
    /// The dev score epochs are selected by: entity F1 for a token task, macro-F1 otherwise.
    pub fn dev_score(&self) -> Option<f64> {
        self.dev_entity_f1.or(self.dev_macro_f1)
    }

    /// The row as the epoch's summary line says it: the loss and the dev score.
    pub fn summary(&self) -> String {
        match (self.dev_entity_f1, self.dev_macro_f1) {
            (Some(f1), _) => format!(
                "{} loss {:.4} dev entity F1 {f1:.3}",
                self.task, self.train_loss
            ),
            (None, Some(f1)) => format!("{} loss {:.4} dev F1 {f1:.3}", self.task, self.train_loss),
            (None, None) => format!("{} loss {:.4} (no dev)", self.task, self.train_loss),
        }
    }
}
