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

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskMetrics {
    /// Exact-match accuracy; for a multi-label task, subset accuracy (the whole set right).
    pub accuracy: f64,
    /// Multi-label tasks only: F1 over every (row, label) decision pooled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub micro_f1: Option<f64>,
    /// Token tasks only: entity-level micro F1 (exact span and type, seqeval's default mode);
    /// `accuracy` is then token accuracy, and the per-class rows are entity types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_f1: Option<f64>,
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
pub(crate) fn classification_metrics<S: AsRef<str>, T: AsRef<str>>(
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
    let per_class: Vec<ClassMetrics> = counts.into_iter().map(|(l, c)| class_row(l, c)).collect();
    let n = truth.len();
    let (macro_f1, weighted_f1) = averages(&per_class, n);
    TaskMetrics {
        accuracy: ratio(correct, n),
        micro_f1: None,
        entity_f1: None,
        macro_f1,
        weighted_f1,
        support: n,
        per_class,
    }
}

fn class_row(label: &str, (tp, support, predicted): (usize, usize, usize)) -> ClassMetrics {
    let precision = ratio(tp, predicted);
    let recall = ratio(tp, support);
    ClassMetrics {
        label: label.to_string(),
        precision,
        recall,
        f1: f1(precision, recall),
        support,
        predicted,
    }
}

/// Macro F1 (mean over classes) and F1 weighted by support (`total` = the supports' sum).
fn averages(per_class: &[ClassMetrics], total: usize) -> (f64, f64) {
    if per_class.is_empty() || total == 0 {
        return (0.0, 0.0);
    }
    let macro_f1 = per_class.iter().map(|c| c.f1).sum::<f64>() / per_class.len() as f64;
    let weighted = per_class
        .iter()
        .map(|c| c.f1 * c.support as f64)
        .sum::<f64>();
    (macro_f1, weighted / total as f64)
}

fn f1(precision: f64, recall: f64) -> f64 {
    if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    }
}

/// Multi-label metrics over label sets, by name: per label (every label in `labels` plus any
/// other that occurs in truth or prediction), micro-F1 (pooled counts), macro-F1 (mean over
/// labels), support-weighted F1, and subset accuracy. Support counts rows carrying the label.
pub(crate) fn multilabel_metrics<S: AsRef<str>, T: AsRef<str>>(
    labels: &[String],
    truth: &[Vec<S>],
    pred: &[Vec<T>],
) -> TaskMetrics {
    assert_eq!(truth.len(), pred.len());
    let mut counts: BTreeMap<&str, (usize, usize, usize)> =
        labels.iter().map(|l| (l.as_str(), (0, 0, 0))).collect();
    let mut exact = 0;
    for (t, p) in truth.iter().zip(pred) {
        let t: Vec<&str> = t.iter().map(AsRef::as_ref).collect();
        let p: Vec<&str> = p.iter().map(AsRef::as_ref).collect();
        for &l in &t {
            let c = counts.entry(l).or_default();
            c.1 += 1;
            if p.contains(&l) {
                c.0 += 1;
            }
        }
        for &l in &p {
            counts.entry(l).or_default().2 += 1;
        }
        if t.len() == p.len() && t.iter().all(|l| p.contains(l)) {
            exact += 1;
        }
    }
    let (tp, support, predicted) = counts
        .values()
        .fold((0, 0, 0), |a, c| (a.0 + c.0, a.1 + c.1, a.2 + c.2));
    let per_class: Vec<ClassMetrics> = counts.into_iter().map(|(l, c)| class_row(l, c)).collect();
    let (macro_f1, weighted_f1) = averages(&per_class, support);
    TaskMetrics {
        accuracy: ratio(exact, truth.len()),
        micro_f1: Some(f1(ratio(tp, predicted), ratio(tp, support))),
        entity_f1: None,
        macro_f1,
        weighted_f1,
        support: truth.len(),
        per_class,
    }
}

impl TaskMetrics {
    /// The score training selects epochs by: entity F1 for a token task, macro-F1 otherwise.
    pub fn selection_score(&self) -> f64 {
        self.entity_f1.unwrap_or(self.macro_f1)
    }
}

/// Entity-level metrics of a token task as seqeval's default mode computes them: spans read
/// from each sentence's BIO tags ([`crate::data::conll::spans`]), a predicted span right when
/// its start, end and type equal a true one's. Per type P/R/F1 over the types in truth or
/// prediction, micro F1 (`entity_f1`), macro and support-weighted F1; support = true entities;
/// `accuracy` = token accuracy.
pub(crate) fn entity_metrics<S: AsRef<str>, T: AsRef<str>>(
    truth: &[Vec<S>],
    pred: &[Vec<T>],
) -> TaskMetrics {
    assert_eq!(truth.len(), pred.len());
    let mut counts: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    let (mut tokens, mut right) = (0, 0);
    for (t, p) in truth.iter().zip(pred) {
        assert_eq!(t.len(), p.len(), "one predicted tag per word");
        tokens += t.len();
        right += t
            .iter()
            .zip(p)
            .filter(|(a, b)| a.as_ref() == b.as_ref())
            .count();
        let gold = crate::data::conll::spans(t);
        let found = crate::data::conll::spans(p);
        for g in &gold {
            let c = counts.entry(g.0.clone()).or_default();
            c.1 += 1;
            c.0 += usize::from(found.contains(g));
        }
        for f in &found {
            counts.entry(f.0.clone()).or_default().2 += 1;
        }
    }
    let (tp, support, predicted) = counts
        .values()
        .fold((0, 0, 0), |a, c| (a.0 + c.0, a.1 + c.1, a.2 + c.2));
    let per_class: Vec<ClassMetrics> = counts.into_iter().map(|(l, c)| class_row(&l, c)).collect();
    let (macro_f1, weighted_f1) = averages(&per_class, support);
    TaskMetrics {
        accuracy: ratio(right, tokens),
        micro_f1: None,
        entity_f1: Some(f1(ratio(tp, predicted), ratio(tp, support))),
        macro_f1,
        weighted_f1,
        support,
        per_class,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(s: &str) -> Vec<&str> {
        if s.is_empty() {
            Vec::new()
        } else {
            s.split(' ').collect()
        }
    }

    #[test]
    fn entity_metrics_hand_computed() {
        // 1: adjacent spans, both found; 2: an I- start in the prediction (an entity of its
        // own, seqeval's default mode) with the wrong extent; 3: a type mismatch; 4: nothing
        // predicted; 5: an entity at the end of the sentence, found.
        let truth = [
            tags("B-per I-per B-per O"),
            tags("O B-loc I-loc O"),
            tags("B-org O"),
            tags("B-per O B-loc"),
            tags("O O B-loc I-loc"),
        ];
        let pred = [
            tags("B-per I-per B-per O"),
            tags("O I-loc I-loc I-loc"),
            tags("B-per O"),
            tags("O O O"),
            tags("O O B-loc I-loc"),
        ];
        let m = entity_metrics(&truth, &pred);
        // gold: per 3, loc 3, org 1 = 7; predicted: per 3, loc 2 = 5; right: per 2, loc 1 = 3.
        assert_eq!(m.support, 7);
        let by = |l: &str| m.per_class.iter().find(|c| c.label == l).unwrap().clone();
        let (per, loc, org) = (by("per"), by("loc"), by("org"));
        assert_eq!((per.support, per.predicted), (3, 3));
        assert!(
            (per.precision - 2.0 / 3.0).abs() < 1e-12 && (per.recall - 2.0 / 3.0).abs() < 1e-12
        );
        assert_eq!((loc.support, loc.predicted), (3, 2));
        assert!((loc.precision - 0.5).abs() < 1e-12 && (loc.recall - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!((org.support, org.predicted, org.f1), (1, 0, 0.0));
        // micro: P 3/5, R 3/7 → F1 = 2·3/(5+7) = 0.5.
        assert!((m.entity_f1.unwrap() - 0.5).abs() < 1e-12);
        let f_loc = 2.0 * 0.5 * (1.0 / 3.0) / (0.5 + 1.0 / 3.0);
        assert!((m.macro_f1 - (2.0 / 3.0 + f_loc + 0.0) / 3.0).abs() < 1e-12);
        // tokens: 4 + 2 + 1 + 1 + 4 right of 4 + 4 + 2 + 3 + 4 = 12 / 17.
        assert!((m.accuracy - 12.0 / 17.0).abs() < 1e-12);
        // Empty predictions everywhere: no entity found, F1 0, never NaN.
        let none: Vec<Vec<&str>> = truth.iter().map(|t| vec!["O"; t.len()]).collect();
        let m = entity_metrics(&truth, &none);
        assert_eq!(m.entity_f1, Some(0.0));
        assert!(m.per_class.iter().all(|c| c.predicted == 0 && c.f1 == 0.0));
    }

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

    #[test]
    fn multi_label_hand_computed() {
        // rows: {a,b}→{a}, {c}→{c,b}, {a}→{} , {b}→{b}
        let truth = vec![vec!["a", "b"], vec!["c"], vec!["a"], vec!["b"]];
        let pred: Vec<Vec<&str>> = vec![vec!["a"], vec!["c", "b"], vec![], vec!["b"]];
        let labels: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let m = multilabel_metrics(&labels, &truth, &pred);
        // tp: a1 b1 c1 = 3; support 5; predicted 4 → P 3/4, R 3/5, micro F1 = 2/3.
        assert!((m.micro_f1.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        // a: P 1, R 1/2, F1 2/3; b: P 1/2, R 1/2, F1 1/2; c: 1; d: 0 (never seen, never predicted).
        let f: Vec<f64> = m.per_class.iter().map(|c| c.f1).collect();
        assert_eq!(m.per_class.len(), 4);
        assert!((f[0] - 2.0 / 3.0).abs() < 1e-12 && (f[1] - 0.5).abs() < 1e-12);
        assert!((f[2] - 1.0).abs() < 1e-12 && f[3] == 0.0);
        assert!((m.macro_f1 - (2.0 / 3.0 + 0.5 + 1.0) / 4.0).abs() < 1e-12);
        assert!((m.weighted_f1 - (2.0 * 2.0 / 3.0 + 2.0 * 0.5 + 1.0) / 5.0).abs() < 1e-12);
        assert!(
            (m.accuracy - 0.25).abs() < 1e-12,
            "only the last row is exact"
        );
        assert_eq!(m.support, 4);
    }
}
