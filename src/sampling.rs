//! How the multi-task loop picks the task of each step.

use serde::{Deserialize, Serialize};

/// `train.sampling`: each step's task is drawn with probability proportional to its train
/// size, uniformly, or to its size to the power 1 / `train.temperature`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sampling {
    Proportional,
    Uniform,
    Temperature,
}

impl Sampling {
    /// Each task's (unnormalised) probability of being sampled, from the tasks' train sizes.
    pub(crate) fn weights(self, sizes: &[usize], temperature: f64) -> Vec<f64> {
        sizes
            .iter()
            .map(|&n| match self {
                Sampling::Proportional => n as f64,
                Sampling::Uniform => 1.0,
                Sampling::Temperature => (n as f64).powf(1.0 / temperature),
            })
            .collect()
    }
}
