//! A head scored on one split's vectors — the dev score each epoch is selected by, and the final
//! dev/test scores of a run.

use ndarray::ArrayView2;

use crate::decision::{Decision, Predictions};
use crate::heads::Head;
use crate::metrics::TaskMetrics;
use crate::nn::ParamStore;
use crate::tasks::TaskData;

/// A head scored on one split's vectors: probabilities, then — for a multi-label task — its
/// thresholds tuned on this same split when `tune` is set (dev), then the metrics. Returns the
/// decision used, so a tuned one can be applied to test and kept in the checkpoint.
pub(crate) fn score_vectors(
    store: &ParamStore,
    head: &Head,
    task: &TaskData,
    decision: &Decision,
    tune: bool,
    labels: &[String],
    x: ArrayView2<f32>,
) -> (Decision, TaskMetrics) {
    let logits = head.forward(store, x);
    let probs = decision.probabilities(logits.view());
    let decision = if tune {
        decision.tuned(task.config.threshold, probs.view(), &task.targets(labels))
    } else {
        decision.clone()
    };
    let kind = task.config.kind;
    let words = kind.word_counts(labels);
    let picks = decision.decide(probs.view(), words.as_deref(), &task.classes);
    let metrics = kind.metrics(
        &task.classes,
        labels,
        &task.config.label_separator,
        &Predictions { probs, picks },
    );
    (decision, metrics)
}
