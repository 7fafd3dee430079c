//! How a head's outputs become labels — the one place for it, used by training's dev scores,
//! `eval` and `predict` alike. A classification task: softmax, the most probable class. A
//! multi-label task: a sigmoid per label, every label whose probability reaches its threshold
//! (tuned on dev after training and kept in the checkpoint). A token task: softmax per word,
//! then each sentence's tags — the most probable sequence that is valid BIO (no `I-X` after `O`
//! or `B-Y`), or each word's most probable tag.

use ndarray::{Array2, ArrayView2, Axis};

use crate::data::conll::Bio;
use crate::heads::Head;
use crate::nn::loss::{sigmoid, softmax};
use crate::nn::ParamStore;
use serde::{Deserialize, Serialize};

/// How a token task's per-word tag probabilities become tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TagDecoding {
    /// The most probable tag sequence with no `I-X` after `O` or `B-Y` (Viterbi).
    #[default]
    Constrained,
    /// Each word's most probable tag on its own.
    Argmax,
}

/// How a multi-label task's decision thresholds are tuned on dev.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ThresholdTuning {
    /// One threshold for every label, the one with the best dev micro-F1.
    #[default]
    Global,
    /// Each label its own threshold, the one with its best dev F1 (the global one for a label
    /// with no dev positives).
    PerLabel,
}

/// Threshold a multi-label task uses when it has no dev rows to tune one on.
pub(crate) const DEFAULT_THRESHOLD: f32 = 0.5;

/// The candidate thresholds: 0.01, 0.02, …, 0.99.
fn grid() -> impl Iterator<Item = f32> {
    (1..100).map(|i| i as f32 / 100.0)
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The most probable class.
    Single,
    /// Every label whose probability reaches its threshold (one per label).
    Multi { thresholds: Vec<f32> },
    /// A tag per word, decided per sentence.
    Tags(TagDecoding),
}

/// A head's decisions on a batch of vectors.
pub struct Predictions {
    /// Per row, each class's probability (softmax or sigmoids).
    pub probs: Array2<f32>,
    /// Per row, the chosen classes: one, or the set (possibly empty), in class order.
    pub picks: Vec<Vec<usize>>,
}

impl Predictions {
    /// A token task's decided tags and their probabilities, sentence by sentence (`lens`: each
    /// sentence's word count, in order).
    pub fn sentence_tags<'a>(
        &self,
        classes: &'a [String],
        lens: impl IntoIterator<Item = usize>,
    ) -> Vec<(Vec<&'a str>, Vec<f32>)> {
        let mut at = 0;
        lens.into_iter()
            .map(|n| {
                let words = at..at + n;
                at += n;
                words
                    .map(|w| {
                        let c = self.picks[w][0];
                        (classes[c].as_str(), self.probs[[w, c]])
                    })
                    .unzip()
            })
            .collect()
    }

    /// Row `i`'s labels as the task writes them: the class, or the names joined by `separator`.
    pub fn label(&self, i: usize, classes: &[String], separator: &str) -> String {
        let names: Vec<&str> = self.picks[i].iter().map(|&c| classes[c].as_str()).collect();
        names.join(separator)
    }

    /// How likely the prediction is, by the model: the chosen class's probability, or for a set,
    /// the probability of exactly that set with the labels taken as independent.
    pub fn confidence(&self, i: usize, decision: &Decision) -> f32 {
        let row = self.probs.row(i);
        match decision {
            Decision::Single | Decision::Tags(_) => row[self.picks[i][0]],
            Decision::Multi { .. } => row
                .iter()
                .enumerate()
                .map(|(c, &p)| {
                    if self.picks[i].contains(&c) {
                        p
                    } else {
                        1.0 - p
                    }
                })
                .product(),
        }
    }
}

impl Decision {
    /// A multi-label decision's thresholds in words: one for every label, or the per-label
    /// range and median; `None` for the other decisions.
    pub(crate) fn describe_thresholds(&self) -> Option<String> {
        self.thresholds().and_then(thresholds_in_words)
    }

    pub fn thresholds(&self) -> Option<&[f32]> {
        match self {
            Decision::Single | Decision::Tags(_) => None,
            Decision::Multi { thresholds } => Some(thresholds),
        }
    }

    /// How a served model's caller turns this task's probabilities into labels, as heads.json
    /// writes it (`export --with-heads`): the activation the graph applies and the rule after it.
    pub fn served(&self, label_separator: &str) -> serde_json::Value {
        match self {
            Decision::Single => serde_json::json!({
                "activation": "softmax",
                "rule": "argmax: the most probable class (the first on a tie)",
            }),
            Decision::Multi { thresholds } => serde_json::json!({
                "activation": "sigmoid",
                "rule": "threshold: every label whose probability >= its threshold (possibly none), in class order, joined by label_separator",
                "thresholds": thresholds,
                "label_separator": label_separator,
            }),
            Decision::Tags(TagDecoding::Argmax) => serde_json::json!({
                "activation": "softmax",
                "rule": "argmax: each word's most probable tag",
            }),
            Decision::Tags(TagDecoding::Constrained) => serde_json::json!({
                "activation": "softmax",
                "rule": "bio-viterbi: per sentence, the tag sequence with the largest sum of ln(max(p, 1e-12)) in which every I-X follows B-X or I-X (tags that are not O, B-X or I-X may go anywhere); entities are the B-X I-X… runs (an I-X after anything but X starts one), scored by the mean probability of their tags",
            }),
        }
    }

    /// Probabilities from logits.
    pub fn probabilities(&self, logits: ArrayView2<f32>) -> Array2<f32> {
        match self {
            Decision::Single | Decision::Tags(_) => softmax(logits),
            Decision::Multi { .. } => sigmoid(logits),
        }
    }

    /// The chosen classes of each row of `probs`.
    pub fn pick(&self, probs: ArrayView2<f32>) -> Vec<Vec<usize>> {
        probs
            .axis_iter(Axis(0))
            .map(|row| match self {
                Decision::Single | Decision::Tags(_) => vec![argmax(row.iter().copied())],
                Decision::Multi { thresholds } => row
                    .iter()
                    .zip(thresholds)
                    .enumerate()
                    .filter(|(_, (&p, &t))| p >= t)
                    .map(|(c, _)| c)
                    .collect(),
            })
            .collect()
    }

    /// The head run over `x`, decided. For a token task `x` holds the words of sentences of
    /// `words` words each, in order, and each sentence is decoded whole.
    pub fn predict(
        &self,
        store: &ParamStore,
        head: &Head,
        x: ArrayView2<f32>,
        words: Option<&[usize]>,
        classes: &[String],
    ) -> Predictions {
        let probs = self.probabilities(head.forward(store, x).view());
        let picks = self.decide(probs.view(), words, classes);
        Predictions { probs, picks }
    }

    /// [`Decision::pick`], with a token task's sentences (`words` words each) decoded whole.
    pub fn decide(
        &self,
        probs: ArrayView2<f32>,
        words: Option<&[usize]>,
        classes: &[String],
    ) -> Vec<Vec<usize>> {
        match (self, words) {
            (Decision::Tags(TagDecoding::Constrained), Some(lens)) => {
                let mut picks = Vec::with_capacity(probs.nrows());
                let mut at = 0;
                for &n in lens {
                    let tags = viterbi_bio(probs.slice(ndarray::s![at..at + n, ..]), classes);
                    picks.extend(tags.into_iter().map(|t| vec![t]));
                    at += n;
                }
                picks
            }
            _ => self.pick(probs),
        }
    }

    /// This decision with its thresholds tuned on dev probabilities `probs` and the rows' true
    /// label sets (class indices). A classification decision has nothing to tune; with no dev
    /// rows the thresholds stay as they are.
    pub fn tuned(
        &self,
        tuning: ThresholdTuning,
        probs: ArrayView2<f32>,
        truth: &[Vec<usize>],
    ) -> Self {
        match self {
            Decision::Single | Decision::Tags(_) => self.clone(),
            Decision::Multi { .. } if truth.is_empty() => self.clone(),
            Decision::Multi { .. } => Decision::Multi {
                thresholds: tune_thresholds(tuning, probs, truth),
            },
        }
    }
}

/// Thresholds in words: one for every label, or the per-label range and median.
pub(crate) fn thresholds_in_words(t: &[f32]) -> Option<String> {
    let mut sorted = t.to_vec();
    sorted.sort_by(f32::total_cmp);
    let (lo, hi) = (*sorted.first()?, *sorted.last()?);
    Some(if lo == hi {
        format!("threshold {lo:.2} for every label")
    } else {
        format!(
            "per-label thresholds {lo:.2}–{hi:.2} (median {:.2}; each in manifest.json)",
            sorted[sorted.len() / 2]
        )
    })
}

/// One entity a token task found: its type, its words (a range of the sentence's words) and its
/// score (the mean probability of the span's decided tags).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entity {
    pub kind: String,
    pub words: std::ops::Range<usize>,
    pub score: f32,
}

/// The entities of one sentence's decided tags (`tag_probs`: each tag's probability).
pub(crate) fn entities<S: AsRef<str>>(tags: &[S], tag_probs: &[f32]) -> Vec<Entity> {
    crate::data::conll::spans(tags)
        .into_iter()
        .map(|(kind, s, e)| Entity {
            kind,
            score: tag_probs[s..e].iter().sum::<f32>() / (e - s) as f32,
            words: s..e,
        })
        .collect()
}

/// The most probable tag sequence of one sentence (`probs`: words × classes) in which every
/// `I-X` continues an `X` entity (Viterbi over log-probabilities).
pub(crate) fn viterbi_bio(probs: ArrayView2<f32>, classes: &[String]) -> Vec<usize> {
    let (n, k) = probs.dim();
    if n == 0 {
        return Vec::new();
    }
    let bio: Vec<Option<Bio>> = classes.iter().map(|c| Bio::parse(c)).collect();
    let allowed = |prev: Option<usize>, cur: usize| match bio[cur] {
        Some(b) => b.may_follow(prev.and_then(|p| bio[p])),
        None => true,
    };
    let lp = |i: usize, c: usize| probs[[i, c]].max(1e-12).ln();
    let mut score: Vec<f32> = (0..k)
        .map(|c| {
            if allowed(None, c) {
                lp(0, c)
            } else {
                f32::NEG_INFINITY
            }
        })
        .collect();
    let mut back = vec![vec![0usize; k]; n];
    for (i, from) in back.iter_mut().enumerate().skip(1) {
        let mut next = vec![f32::NEG_INFINITY; k];
        for (c, (best, prev)) in next.iter_mut().zip(from.iter_mut()).enumerate() {
            for (p, &s) in score.iter().enumerate() {
                if s > f32::NEG_INFINITY && allowed(Some(p), c) && s > *best {
                    *best = s;
                    *prev = p;
                }
            }
            *best += lp(i, c);
        }
        score = next;
    }
    let mut c = argmax(score.iter().copied());
    let mut path = vec![c; n];
    for i in (1..n).rev() {
        c = back[i][c];
        path[i - 1] = c;
    }
    path
}

fn argmax(values: impl Iterator<Item = f32>) -> usize {
    values
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, p)| {
            if p > best.1 {
                (i, p)
            } else {
                best
            }
        })
        .0
}

/// (true positives, false positives, false negatives) of label `c` at threshold `t`.
fn counts(probs: ArrayView2<f32>, truth: &[Vec<usize>], c: usize, t: f32) -> (usize, usize, usize) {
    let mut n = (0, 0, 0);
    for (p, y) in probs.column(c).iter().zip(truth) {
        match (*p >= t, y.contains(&c)) {
            (true, true) => n.0 += 1,
            (true, false) => n.1 += 1,
            (false, true) => n.2 += 1,
            (false, false) => {}
        }
    }
    n
}

fn f1_of((tp, fp, fn_): (usize, usize, usize)) -> f64 {
    if tp == 0 {
        0.0
    } else {
        2.0 * tp as f64 / (2 * tp + fp + fn_) as f64
    }
}

/// The grid threshold with the best micro-F1 over all labels (`Global`), or for each label the
/// one with its best F1 (`PerLabel`; a label without dev positives takes the global one). Ties go
/// to the threshold nearest 0.5.
pub(crate) fn tune_thresholds(
    tuning: ThresholdTuning,
    probs: ArrayView2<f32>,
    truth: &[Vec<usize>],
) -> Vec<f32> {
    let k = probs.ncols();
    let best = |score: &dyn Fn(f32) -> f64| {
        grid()
            .map(|t| (score(t), -(t - 0.5).abs(), t))
            .fold(
                (f64::NEG_INFINITY, f32::NEG_INFINITY, DEFAULT_THRESHOLD),
                |a, b| {
                    if (b.0, b.1) > (a.0, a.1) {
                        b
                    } else {
                        a
                    }
                },
            )
            .2
    };
    let global = best(&|t| {
        let sum = (0..k)
            .map(|c| counts(probs, truth, c, t))
            .fold((0, 0, 0), |a, n| (a.0 + n.0, a.1 + n.1, a.2 + n.2));
        f1_of(sum)
    });
    match tuning {
        ThresholdTuning::Global => vec![global; k],
        ThresholdTuning::PerLabel => (0..k)
            .map(|c| {
                if truth.iter().any(|y| y.contains(&c)) {
                    best(&|t| f1_of(counts(probs, truth, c, t)))
                } else {
                    global
                }
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn constrained_decoding_never_starts_an_entity_with_i() {
        let classes: Vec<String> = ["B-loc", "B-per", "I-loc", "I-per", "O"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        // Per word argmax: O, I-per, I-per, B-loc, I-per — two invalid I- tags.
        let probs = array![
            [0.1, 0.1, 0.1, 0.1, 0.6],
            [0.1, 0.3, 0.1, 0.45, 0.05],
            [0.1, 0.1, 0.1, 0.6, 0.1],
            [0.6, 0.1, 0.1, 0.1, 0.1],
            [0.1, 0.1, 0.35, 0.4, 0.05],
        ];
        let argmax = Decision::Tags(TagDecoding::Argmax).decide(probs.view(), Some(&[5]), &classes);
        assert_eq!(argmax, [[4], [3], [3], [0], [3]]);
        let path = viterbi_bio(probs.view(), &classes);
        // Best valid: O B-per I-per B-loc I-loc.
        assert_eq!(path, [4, 1, 3, 0, 2]);
        let tags: Vec<&str> = path.iter().map(|&c| classes[c].as_str()).collect();
        let mut prev = None;
        for t in &tags {
            let b = crate::data::conll::Bio::parse(t).unwrap();
            assert!(b.may_follow(prev), "{tags:?}");
            prev = Some(b);
        }
        // Sentences are decoded one by one: an I- at a sentence start is not allowed.
        let two =
            Decision::Tags(TagDecoding::Constrained).decide(probs.view(), Some(&[2, 3]), &classes);
        assert_eq!(two[..2], [[4], [1]], "sentence 1: O B-per");
        assert!(
            !classes[two[2][0]].starts_with("I-"),
            "sentence 2 starts with {}",
            classes[two[2][0]]
        );
        let spans = entities(&["O", "B-per", "I-per", "B-loc"], &[0.9, 0.8, 0.6, 0.5]);
        assert_eq!(spans.len(), 2);
        assert_eq!(
            (spans[0].kind.as_str(), spans[0].words.clone()),
            ("per", 1..3)
        );
        assert!((spans[0].score - 0.7).abs() < 1e-6);
    }

    #[test]
    fn thresholds_are_tuned_for_micro_f1_or_per_label() {
        // Label 0 is right above 0.3, label 1 above 0.7.
        let probs = array![
            [0.35f32, 0.75],
            [0.32, 0.2],
            [0.1, 0.72],
            [0.2, 0.65],
            [0.05, 0.1]
        ];
        let truth = vec![vec![0, 1], vec![0], vec![1], vec![], vec![]];
        let per = tune_thresholds(ThresholdTuning::PerLabel, probs.view(), &truth);
        assert!(per[0] > 0.2 && per[0] <= 0.32, "{per:?}");
        assert!(per[1] > 0.65 && per[1] <= 0.72, "{per:?}");
        let global = tune_thresholds(ThresholdTuning::Global, probs.view(), &truth);
        assert_eq!(global[0], global[1]);
        let d = Decision::Multi { thresholds: per };
        assert_eq!(
            d.pick(probs.view()),
            truth,
            "per-label thresholds separate both labels"
        );
        // Not every label can be separated with one threshold: the global one misses something.
        assert_ne!(
            Decision::Multi { thresholds: global }.pick(probs.view()),
            truth
        );
    }

    #[test]
    fn a_set_s_confidence_is_the_probability_of_exactly_that_set() {
        let p = Predictions {
            probs: array![[0.9f32, 0.2, 0.6]],
            picks: vec![vec![0, 2]],
        };
        let d = Decision::Multi {
            thresholds: vec![0.5; 3],
        };
        assert!((p.confidence(0, &d) - 0.9 * 0.8 * 0.6).abs() < 1e-6);
        let classes: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        assert_eq!(p.label(0, &classes, "|"), "a|c");
    }
}
