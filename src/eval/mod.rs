//! Evaluation: metrics computed from true and predicted label names.

pub mod metrics;

pub use metrics::{classification_metrics, ClassMetrics, TaskMetrics};
