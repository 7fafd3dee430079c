//! Accuracy, per-class precision/recall/F1, macro and weighted F1 — over label *names*, so labels
//! seen only in dev/test count as errors rather than crashing anything. A class with no
//! predictions has precision 0 (defined, never NaN), as scikit-learn's `zero_division=0`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    pub label: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
    pub predicted: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskMetrics {
    pub accuracy: f64,
    pub macro_f1: f64,
    pub weighted_f1: f64,
    pub support: usize,
    pub per_class: Vec<ClassMetrics>,
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Metrics over the union of true and predicted labels (scikit-learn's default label set).
pub fn classification_metrics<S: AsRef<str>, T: AsRef<str>>(
    truth: &[S],
    pred: &[T],
) -> TaskMetrics {
    assert_eq!(truth.len(), pred.len());
    // label -> (true positives, support, predicted)
    let mut counts: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
    let mut correct = 0;
    for (t, p) in truth.iter().zip(pred) {
        let (t, p) = (t.as_ref(), p.as_ref());
        counts.entry(t).or_default().1 += 1;
        counts.entry(p).or_default().2 += 1;
        if t == p {
            correct += 1;
            counts.get_mut(t).expect("just added").0 += 1;
        }
    }
    let per_class: Vec<ClassMetrics> = counts
        .into_iter()
        .map(|(label, (tp, support, predicted))| {
            let precision = ratio(tp, predicted);
            let recall = ratio(tp, support);
            let f1 = if precision + recall > 0.0 {
                2.0 * precision * recall / (precision + recall)
            } else {
                0.0
            };
            ClassMetrics {
                label: label.to_string(),
                precision,
                recall,
                f1,
                support,
                predicted,
            }
        })
        .collect();
    let n = truth.len();
    let macro_f1 = if per_class.is_empty() {
        0.0
    } else {
        per_class.iter().map(|c| c.f1).sum::<f64>() / per_class.len() as f64
    };
    let weighted_f1 = if n == 0 {
        0.0
    } else {
        per_class
            .iter()
            .map(|c| c.f1 * c.support as f64)
            .sum::<f64>()
            / n as f64
    };
    TaskMetrics {
        accuracy: ratio(correct, n),
        macro_f1,
        weighted_f1,
        support: n,
        per_class,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_with_a_class_never_predicted() {
        // truth: a a a b b c ; pred: a a b b b a   (c never predicted)
        let truth = ["a", "a", "a", "b", "b", "c"];
        let pred = ["a", "a", "b", "b", "b", "a"];
        let m = classification_metrics(&truth, &pred);
        assert!((m.accuracy - 4.0 / 6.0).abs() < 1e-12);
        let a = &m.per_class[0];
        assert_eq!((a.label.as_str(), a.support, a.predicted), ("a", 3, 3));
        assert!((a.precision - 2.0 / 3.0).abs() < 1e-12 && (a.recall - 2.0 / 3.0).abs() < 1e-12);
        let b = &m.per_class[1];
        assert!((b.precision - 2.0 / 3.0).abs() < 1e-12 && (b.recall - 1.0).abs() < 1e-12);
        assert!((b.f1 - 0.8).abs() < 1e-12);
        let c = &m.per_class[2];
        assert_eq!(
            (c.precision, c.recall, c.f1, c.predicted),
            (0.0, 0.0, 0.0, 0)
        );
        assert!((m.macro_f1 - (2.0 / 3.0 + 0.8 + 0.0) / 3.0).abs() < 1e-12);
        assert!((m.weighted_f1 - (3.0 * 2.0 / 3.0 + 2.0 * 0.8) / 6.0).abs() < 1e-12);
        assert!(m
            .per_class
            .iter()
            .all(|c| c.f1.is_finite() && c.precision.is_finite()));
    }
}
