//! What a task kind means — the one place that asks which kind a task is. Per kind it says what
//! a row's input is (a sentence vector, or one vector per word), how a label-column value becomes
//! targets, the loss, how probabilities become labels (the [`Decision`]: argmax, tuned
//! thresholds, constrained BIO), the metrics, and which word layer a token task reads.
//! Everything else asks it; a new kind (or a new objective such as a contrastive loss) is one
//! more arm in each method below, and the compiler lists every arm still missing.
//!
//! An enum with its behaviour beside it, not a trait with one impl per kind: the kinds are a
//! closed set named in run files and manifests (serde maps the name straight onto the variant),
//! each behaviour is a few lines, and one `match` per question keeps the kinds side by side
//! where they can be compared — the habit of candle-nn's `impl Module for Activation`.

use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::data::conll::Bio;
use crate::decision::{Decision, Predictions, TagDecoding, DEFAULT_THRESHOLD};
use crate::error::{Error, Result};
use crate::heads::{HeadKind, HeadSpec};
use crate::metrics::{classification_metrics, entity_metrics, multilabel_metrics, TaskMetrics};
use crate::nn::loss::{bce_with_logits, cross_entropy};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum TaskKind {
    /// One label per text (softmax over the classes).
    #[default]
    Classification,
    /// Any set of labels per text, the label column holding the names joined by
    /// `label_separator` (a sigmoid per label, thresholds tuned on dev).
    MultiLabel,
    /// One tag per word (BIO / IOB2 tags, entities as spans): the files are CoNLL
    /// (`word<TAB>tag`, a blank line between sentences).
    TokenClassification,
}

/// What one row of a task is to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// A text, read from a table, seen as its pooled sentence vector.
    Sentence,
    /// A sentence of words, read from CoNLL, seen as one vector per word (its sub-token states
    /// at the task's token layer); the head sees the words, in order.
    Words,
}

/// How the loss weighs classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ClassWeights {
    #[default]
    None,
    /// n_samples / (n_classes · count(class)), as scikit-learn's `class_weight="balanced"`; for
    /// a multi-label task each label's positive weight, negatives / positives (PyTorch's
    /// `pos_weight`).
    Balanced,
}

/// Token tasks on a frozen backbone read the states after 4 layers unless told otherwise: of
/// all-MiniLM-L6-v2's seven, the best dev entity F1 on WNUT-17, 13 points above the last layer
/// (bench-results/ner.md measures every layer).
pub(crate) const DEFAULT_TOKEN_LAYER: usize = 4;

impl TaskKind {
    pub fn input(self) -> Input {
        match self {
            TaskKind::Classification | TaskKind::MultiLabel => Input::Sentence,
            TaskKind::TokenClassification => Input::Words,
        }
    }

    /// The labels of one label-column value: the value itself for a classification task, the
    /// names between `separator`s for a multi-label task, the tags between spaces for a token
    /// task (a sentence's tags) — trimmed, empty ones dropped, each once.
    pub fn label_set<'a>(self, value: &'a str, separator: &str) -> Vec<&'a str> {
        let parts: Box<dyn Iterator<Item = &str>> = match self {
            TaskKind::Classification => return vec![value],
            TaskKind::MultiLabel => Box::new(value.split(separator)),
            TaskKind::TokenClassification => Box::new(value.split(' ')),
        };
        let mut set: Vec<&str> = Vec::new();
        for l in parts.map(str::trim) {
            if !l.is_empty() && !set.contains(&l) {
                set.push(l);
            }
        }
        set
    }

    /// Why a sentence task's label-column value cannot be a row's label, if it cannot. A
    /// multi-label row may name no label (an empty set is a real answer: none applies); a label
    /// ending in a backslash is refused, since the separator has no escape and `a\|b` would make
    /// the label `a\`. Token tasks' tags are checked by the CoNLL reader.
    pub fn refuse_label(self, value: &str, column: &str, separator: &str) -> Option<String> {
        match self {
            TaskKind::Classification | TaskKind::TokenClassification => value
                .trim()
                .is_empty()
                .then(|| format!("field {column:?} is empty")),
            TaskKind::MultiLabel => self
                .label_set(value.trim(), separator)
                .iter()
                .any(|l| l.ends_with('\\'))
                .then(|| format!(
                    "field {column:?} ({value:?}) has a label ending in a backslash: labels are split at every {separator:?}, with no escaping; use a label_separator that no label contains"
                )),
        }
    }

    /// What a row and its labels are called in messages: rows and labels, or sentences and tags.
    pub fn row_nouns(self) -> (&'static str, &'static str) {
        match self.input() {
            Input::Sentence => ("rows", "labels"),
            Input::Words => ("sentences", "tags"),
        }
    }

    /// Why `label_separator` cannot split this kind's label sets, if it cannot.
    pub fn refuse_separator(self, separator: &str) -> Option<&'static str> {
        (self == TaskKind::MultiLabel && separator.trim().is_empty()).then_some(
            "is empty or blank; a multi-label task needs the text that joins its labels (default \"|\")",
        )
    }

    /// The stratum a row falls in when dev is carved from train: its (first) label — a
    /// multi-label row with no label is a stratum of its own — or, for a sentence of tags,
    /// whether it holds an entity.
    pub fn stratum<'a>(self, value: &'a str, separator: &str) -> &'a str {
        match self {
            TaskKind::TokenClassification if value.split(' ').any(|t| t != "O") => "entity",
            TaskKind::TokenClassification => "none",
            TaskKind::Classification | TaskKind::MultiLabel => self
                .label_set(value, separator)
                .first()
                .copied()
                .unwrap_or(""),
        }
    }

    /// Each row's labels as indices into `classes` (sorted): one for a classification task, the
    /// set for a multi-label task (labels the task does not know left out), each word's tag in
    /// order for a token task (an unknown tag becomes `O`'s index, so every word keeps a target;
    /// such rows are counted as unseen).
    pub fn targets(
        self,
        classes: &[String],
        labels: &[String],
        separator: &str,
    ) -> Vec<Vec<usize>> {
        let index = |l: &str| classes.binary_search_by(|c| c.as_str().cmp(l)).ok();
        match self {
            TaskKind::TokenClassification => {
                let outside = index("O").unwrap_or(0);
                labels
                    .iter()
                    .map(|l| l.split(' ').map(|t| index(t).unwrap_or(outside)).collect())
                    .collect()
            }
            TaskKind::Classification | TaskKind::MultiLabel => labels
                .iter()
                .map(|l| {
                    self.label_set(l, separator)
                        .into_iter()
                        .filter_map(index)
                        .collect()
                })
                .collect(),
        }
    }

    /// One target per row the head sees: a row's own targets, or for a token task one per word.
    pub fn head_rows(self, targets: &[Vec<usize>]) -> Vec<Vec<usize>> {
        match self.input() {
            Input::Sentence => targets.to_vec(),
            Input::Words => targets.iter().flatten().map(|&y| vec![y]).collect(),
        }
    }

    /// The loss of a batch and its gradient by the logits: cross-entropy over a softmax (per
    /// row, or per word), or binary cross-entropy per label.
    pub fn loss(
        self,
        logits: ArrayView2<f32>,
        targets: &[Vec<usize>],
        class_weights: Option<&[f32]>,
        smoothing: f32,
    ) -> (f32, Array2<f32>) {
        match self {
            TaskKind::MultiLabel => bce_with_logits(logits, targets, class_weights),
            // A row is a sentence; the head saw its words, in order.
            TaskKind::TokenClassification => {
                let y: Vec<usize> = targets.iter().flatten().copied().collect();
                cross_entropy(logits, &y, class_weights, smoothing)
            }
            TaskKind::Classification => {
                let y: Vec<usize> = targets.iter().map(|y| y[0]).collect();
                cross_entropy(logits, &y, class_weights, smoothing)
            }
        }
    }

    /// The loss's per-class weights for `weights` over these train targets, or `None`.
    pub fn class_weights(
        self,
        weights: ClassWeights,
        classes: usize,
        targets: &[Vec<usize>],
    ) -> Option<Vec<f32>> {
        if weights == ClassWeights::None {
            return None;
        }
        let mut counts = vec![0usize; classes];
        for y in targets.iter().flatten() {
            counts[*y] += 1;
        }
        // Rows — or for a token task, words.
        let n = match self.input() {
            Input::Sentence => targets.len(),
            Input::Words => counts.iter().sum::<usize>(),
        } as f32;
        let weight = |c: usize| match (c, self) {
            (0, _) => 0.0,
            (c, TaskKind::MultiLabel) => (n - c as f32) / c as f32,
            (c, TaskKind::Classification | TaskKind::TokenClassification) => {
                n / (classes as f32 * c as f32)
            }
        };
        Some(counts.into_iter().map(weight).collect())
    }

    /// The decision of a task whose head was just built (thresholds not tuned yet).
    pub fn untuned_decision(self, classes: usize, decoding: TagDecoding) -> Decision {
        match self {
            TaskKind::Classification => Decision::Single,
            TaskKind::MultiLabel => Decision::Multi {
                thresholds: vec![DEFAULT_THRESHOLD; classes],
            },
            TaskKind::TokenClassification => Decision::Tags(decoding),
        }
    }

    /// The decision a checkpoint records — checked, not trusted: a multi-label task needs one
    /// threshold in [0, 1] per class, the other kinds none.
    pub fn recorded_decision(
        self,
        thresholds: Option<&[f32]>,
        classes: usize,
        decoding: TagDecoding,
    ) -> std::result::Result<Decision, String> {
        match (self, thresholds) {
            (TaskKind::Classification | TaskKind::TokenClassification, None) => {
                Ok(self.untuned_decision(classes, decoding))
            }
            (TaskKind::Classification, Some(_)) => {
                Err("a classification task has no thresholds, but some are recorded".into())
            }
            (TaskKind::TokenClassification, Some(_)) => {
                Err("a token task has no thresholds, but some are recorded".into())
            }
            (TaskKind::MultiLabel, None) => {
                Err("a multi-label task's thresholds are missing; train it again".into())
            }
            (TaskKind::MultiLabel, Some(t)) => {
                if t.len() != classes {
                    return Err(format!("{} thresholds for {classes} labels", t.len()));
                }
                if let Some(v) = t.iter().find(|v| !(0.0..=1.0).contains(*v)) {
                    return Err(format!("threshold {v} is outside [0, 1]"));
                }
                Ok(Decision::Multi {
                    thresholds: t.to_vec(),
                })
            }
        }
    }

    /// Each sentence's word count, for decoding a token task's words sentence by sentence
    /// (`None` for sentence tasks, whose rows are decided one by one).
    pub fn word_counts(self, labels: &[String]) -> Option<Vec<usize>> {
        (self.input() == Input::Words)
            .then(|| labels.iter().map(|l| l.split(' ').count()).collect())
    }

    /// Metrics of `pred` against the rows' label-column values (labels the task does not know
    /// count as errors): accuracy and F1, micro/macro F1 over label sets, or entity-level F1.
    pub fn metrics(
        self,
        classes: &[String],
        labels: &[String],
        separator: &str,
        pred: &Predictions,
    ) -> TaskMetrics {
        match self {
            TaskKind::Classification => {
                let names: Vec<&str> = pred.picks.iter().map(|p| classes[p[0]].as_str()).collect();
                classification_metrics(labels, &names)
            }
            TaskKind::TokenClassification => {
                let truth: Vec<Vec<&str>> = labels.iter().map(|l| l.split(' ').collect()).collect();
                let mut words = pred.picks.iter().map(|p| classes[p[0]].as_str());
                let tagged: Vec<Vec<&str>> = truth
                    .iter()
                    .map(|t| words.by_ref().take(t.len()).collect())
                    .collect();
                entity_metrics(&truth, &tagged)
            }
            TaskKind::MultiLabel => {
                let truth: Vec<Vec<&str>> = labels
                    .iter()
                    .map(|l| self.label_set(l, separator))
                    .collect();
                let picked: Vec<Vec<&str>> = pred
                    .picks
                    .iter()
                    .map(|p| p.iter().map(|&c| classes[c].as_str()).collect())
                    .collect();
                multilabel_metrics(classes, &truth, &picked)
            }
        }
    }

    /// A label-column value written canonically, so equal labels compare equal: a multi-label
    /// set sorted and joined by one separator; other kinds as they are.
    pub fn canonical_label(self, value: &str, separator: &str) -> String {
        match self {
            TaskKind::MultiLabel => {
                let mut set = self.label_set(value, separator);
                set.sort_unstable();
                set.join(separator)
            }
            TaskKind::Classification | TaskKind::TokenClassification => value.to_string(),
        }
    }

    /// The separator a prediction's label set is written with (`None`: one label per row).
    pub fn set_separator(self, separator: &str) -> Option<&str> {
        (self == TaskKind::MultiLabel).then_some(separator)
    }

    /// Refuses settings this kind cannot use, naming the task, before any data is read.
    pub fn check_settings(
        self,
        task: &str,
        head: &HeadSpec,
        token_layer: Option<usize>,
    ) -> Result<()> {
        match (self.input(), head.kind, token_layer) {
            (Input::Words, HeadKind::ZeroShot, _) => Err(Error::Usage(format!(
                "task {task:?} is a token task: zero-shot label prompts are for sentence tasks; use head = \"centroid\" for a training-free token head"
            ))),
            (Input::Sentence, _, Some(_)) => Err(Error::Usage(format!(
                "task {task:?}: token_layer is for token-classification tasks (sentence tasks read the pooled vector)"
            ))),
            _ => Ok(()),
        }
    }

    /// Refuses regime `contrastive` for a kind whose rows have no sentence labels to pair texts
    /// by ([`crate::pairs`]: same label, or overlapping label sets for a multi-label task).
    pub fn check_pairs(self, task: &str) -> Result<()> {
        match self.input() {
            Input::Sentence => Ok(()),
            Input::Words => Err(Error::Usage(format!(
                "task {task:?} is a token task: regime contrastive pairs texts by their sentence labels, and a token task's labels are per word; train it with frost-line=N, or leave it out of the contrastive run"
            ))),
        }
    }

    /// The layer a task's word features come from, decided once (training records it): the run
    /// file's, else the `from` checkpoint's (its head was trained there), else the top layer
    /// above a frost line (every trained layer is read) and [`DEFAULT_TOKEN_LAYER`] on a frozen
    /// backbone. `None` for a sentence task. A layer outside the model is refused here, once.
    pub fn token_layer(self, task: &str, rule: TokenLayerRule) -> Result<Option<usize>> {
        if self.input() == Input::Sentence {
            return Ok(None);
        }
        let layer = rule
            .explicit
            .or(rule.recorded)
            .unwrap_or(match rule.frost_line {
                Some(_) => rule.num_layers,
                None => DEFAULT_TOKEN_LAYER,
            });
        check_layer(
            &format!("task {task:?}: token_layer"),
            layer,
            rule.num_layers,
        )?;
        Ok(Some(layer))
    }

    /// What a checkpoint records for a task of this kind, checked against its backbone and
    /// frost line: a token task's layer (a sentence task has none) and IOB2 classes.
    pub fn check_recorded(
        self,
        token_layer: Option<usize>,
        classes: &[String],
        num_layers: usize,
        frost_line: Option<usize>,
    ) -> std::result::Result<(), String> {
        match (self.input(), token_layer) {
            (Input::Sentence, None) => Ok(()),
            (Input::Sentence, Some(l)) => Err(format!(
                "token_layer {l} is recorded for a {self:?} task, which reads pooled vectors"
            )),
            (Input::Words, None) => Err("a token task without its token_layer".into()),
            (Input::Words, Some(l)) if l > num_layers => Err(format!(
                "token_layer {l} is outside 0..={num_layers} (the backbone has {num_layers} layers)"
            )),
            (Input::Words, Some(l)) if frost_line.is_some_and(|n| l < n) => Err(format!(
                "token_layer {l} is below the frost line {}",
                frost_line.unwrap_or_default()
            )),
            (Input::Words, Some(_)) => match classes.iter().find(|c| Bio::parse(c).is_none()) {
                Some(c) => Err(format!(
                    "class {c:?} is not an IOB2 tag (O, B-TYPE, I-TYPE), as a token task's classes are"
                )),
                None => Ok(()),
            },
        }
    }
}

/// What decides a token task's layer (see [`TaskKind::token_layer`]).
#[derive(Debug, Clone, Copy)]
pub struct TokenLayerRule {
    /// The run file's `token_layer`.
    pub explicit: Option<usize>,
    /// The `from` checkpoint's layer for this task.
    pub recorded: Option<usize>,
    pub frost_line: Option<usize>,
    pub num_layers: usize,
}

/// The frost line `compare` tries when none is given: the top layer trains — or, with a token
/// task whose layer is set lower, the layer just below it (nothing above that layer reaches its
/// head). A token task with no layer set reads the top layer under a frost line, by the same
/// rule training applies ([`TaskKind::token_layer`]).
pub(crate) fn default_frost_line(
    explicit_token_layers: impl Iterator<Item = usize>,
    num_layers: usize,
) -> usize {
    explicit_token_layers
        .min()
        .map_or(num_layers, |l| l.min(num_layers))
        .saturating_sub(1)
}

/// Refuses a layer outside `0..=num_layers`, naming what set it (`what`).
pub(crate) fn check_layer(what: &str, layer: usize, num_layers: usize) -> Result<()> {
    if layer > num_layers {
        return Err(Error::Usage(format!(
            "{what} {layer} is outside 0..={num_layers} (the model has {num_layers} layers)"
        )));
    }
    Ok(())
}
