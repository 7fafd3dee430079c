//! Evaluation reports as polars DataFrames, written as Parquet + CSV with a Markdown summary and
//! SVG plots. Column names and types are part of the interface (documented in README.md):
//!
//! - `overall`:   task, split, accuracy, micro_f1 (null unless multi-label), entity_f1 (null
//!   unless a token task), macro_f1, weighted_f1 (f64), support, unseen_label_rows (u64). For a
//!   token task accuracy is token accuracy, the F1s are over entity types, support counts true
//!   entities and unseen_label_rows sentences with an unknown tag.
//! - `per_class`: task, label, precision, recall, f1 (f64), support, predicted (u64) — for a token
//!   task one row per entity type (exact span and type)
//! - `confusion`: task, true, predicted (str), count (u64) — long format, non-zero cells only;
//!   for a multi-label task, per label: (l, l) hits, (l, "(missed)"), ("(none)", l) false alarms;
//!   for a token task, per entity: (type, type) same span, (type, "(missed)") a true span not
//!   predicted, ("(none)", type) a predicted span that is not true
//! - `errors`:    task, rank (u32), row (u64), the `--keep-columns`, text, true, predicted (str),
//!   probability (f32; null for a missed span) — most confident first; for a token task one row
//!   per wrong span, the span marked `[[…]]` in its sentence; `row` is the row's 0-based position
//!   in its file (the sentence's, for CoNLL)
//! - `predictions`: task, row (u64), the `--keep-columns`, text, true, predicted (str),
//!   probability (f32, null for a missed span), correct (bool) — every row, file order

pub(crate) mod compare;
pub(crate) mod curve;
pub(crate) mod eval;
pub(crate) mod fewshot;
pub(crate) mod frame;
pub(crate) mod html;
pub(crate) mod markdown;
pub(crate) mod mteb;
pub(crate) mod plots;

use std::collections::BTreeMap;
use std::path::Path;

use polars::prelude::*;

use crate::error::Result;
use crate::io::output;
use crate::metrics::TaskMetrics;
use frame::Frame;

/// One task's predictions on one split, and the metrics over them.
pub struct TaskEval {
    pub task: String,
    pub split: String,
    pub texts: Vec<String>,
    pub truth: Vec<String>,
    pub pred: Vec<String>,
    pub prob: Vec<f32>,
    pub metrics: TaskMetrics,
    /// Multi-label tasks: the separator joining the label sets in `truth` and `pred` (each set
    /// in sorted order, so equal sets are equal strings).
    pub separator: Option<String>,
    /// Labels in the file that the checkpoint does not know, and how many rows carry them.
    pub unseen_labels: Vec<String>,
    pub unseen_rows: usize,
    /// Each row's 0-based position in its file (the sentence's, for a token task's spans).
    pub rows: Vec<usize>,
    /// The input columns `eval --keep-columns` carries, each row's value (null where the
    /// task's file is CoNLL, which has no columns).
    pub kept: Vec<(String, Vec<Option<String>>)>,
}

impl TaskEval {
    /// The probability shown for row `i`: none for a span the model missed (what it "predicted"
    /// there is the absence of an entity, not a label with a probability).
    fn shown_prob(&self, i: usize) -> Option<f32> {
        (self.pred[i] != MISSED).then_some(self.prob[i])
    }
}

pub(crate) fn overall(evals: &[TaskEval]) -> Result<DataFrame> {
    Frame::of(evals)
        .col("task", |e| e.task.as_str())
        .col("split", |e| e.split.as_str())
        .col("accuracy", |e| e.metrics.accuracy)
        .col("micro_f1", |e| e.metrics.micro_f1)
        .col("entity_f1", |e| e.metrics.entity_f1)
        .col("macro_f1", |e| e.metrics.macro_f1)
        .col("weighted_f1", |e| e.metrics.weighted_f1)
        .col("support", |e| e.metrics.support as u64)
        .col("unseen_label_rows", |e| e.unseen_rows as u64)
        .finish("overall")
}

pub(crate) fn per_class(evals: &[TaskEval]) -> Result<DataFrame> {
    let rows: Vec<(&str, &crate::metrics::ClassMetrics)> = evals
        .iter()
        .flat_map(|e| {
            e.metrics
                .per_class
                .iter()
                .map(move |c| (e.task.as_str(), c))
        })
        .collect();
    Frame::of(&rows)
        .col("task", |r| r.0)
        .col("label", |r| r.1.label.as_str())
        .col("precision", |r| r.1.precision)
        .col("recall", |r| r.1.recall)
        .col("f1", |r| r.1.f1)
        .col("support", |r| r.1.support as u64)
        .col("predicted", |r| r.1.predicted as u64)
        .finish("per_class")
}

/// A multi-label task's confusion column for a true label the prediction left out.
pub(crate) const MISSED: &str = "(missed)";
/// A multi-label task's confusion row for a predicted label the truth does not have.
pub(crate) const NONE: &str = "(none)";

/// (true, predicted) → count for one task, all cells with a count. A multi-label row adds one
/// count per label: (l, l) when found, (l, MISSED) when left out, (NONE, l) when wrongly added.
pub(crate) fn confusion_counts(e: &TaskEval) -> BTreeMap<(String, String), u64> {
    let mut m = BTreeMap::new();
    let mut add = |t: &str, p: &str| *m.entry((t.to_string(), p.to_string())).or_insert(0) += 1;
    for (t, p) in e.truth.iter().zip(&e.pred) {
        match &e.separator {
            None => add(t, p),
            Some(sep) => {
                let split = |s: &'_ str| -> Vec<String> {
                    s.split(sep.as_str())
                        .filter(|l| !l.is_empty())
                        .map(str::to_string)
                        .collect()
                };
                let (truth, pred) = (split(t), split(p));
                for l in &truth {
                    add(l, if pred.contains(l) { l } else { MISSED });
                }
                for l in pred.iter().filter(|l| !truth.contains(l)) {
                    add(NONE, l);
                }
            }
        }
    }
    m
}

pub(crate) fn confusion(evals: &[TaskEval]) -> Result<DataFrame> {
    let cells: Vec<(&str, (String, String), u64)> = evals
        .iter()
        .flat_map(|e| {
            confusion_counts(e)
                .into_iter()
                .map(move |(cell, c)| (e.task.as_str(), cell, c))
        })
        .collect();
    Frame::of(&cells)
        .col("task", |c| c.0)
        .col("true", |c| c.1 .0.as_str())
        .col("predicted", |c| c.1 .1.as_str())
        .col("count", |c| c.2)
        .finish("confusion")
}

/// A task's wrong rows, most confident first (a missed span ranks by how sure the model was
/// that nothing is there).
pub(crate) fn wrong_rows(e: &TaskEval) -> Vec<usize> {
    let mut wrong: Vec<usize> = (0..e.truth.len())
        .filter(|&i| e.truth[i] != e.pred[i])
        .collect();
    wrong.sort_by(|&a, &b| e.prob[b].total_cmp(&e.prob[a]).then(a.cmp(&b)));
    wrong
}

/// The `top` most confident wrong predictions per task.
pub(crate) fn errors(evals: &[TaskEval], top: usize) -> Result<DataFrame> {
    // (task, rank, row) of each error shown.
    let mut shown: Vec<(&TaskEval, u32, usize)> = Vec::new();
    for e in evals {
        for (r, i) in wrong_rows(e).into_iter().take(top).enumerate() {
            shown.push((e, r as u32 + 1, i));
        }
    }
    let frame = Frame::of(&shown)
        .col("task", |&(e, _, _)| e.task.as_str())
        .col("rank", |&(_, r, _)| r)
        .col("row", |&(e, _, i)| e.rows[i] as u64);
    with_kept(frame, evals, |&(e, _, i)| (e, i))
        .col("text", |&(e, _, i)| e.texts[i].as_str())
        .col("true", |&(e, _, i)| e.truth[i].as_str())
        .col("predicted", |&(e, _, i)| e.pred[i].as_str())
        .col("probability", |&(e, _, i)| e.shown_prob(i))
        .finish("errors")
}

/// Every row of every task with its prediction, in file order.
pub(crate) fn predictions(evals: &[TaskEval]) -> Result<DataFrame> {
    let rows: Vec<(&TaskEval, usize)> = evals
        .iter()
        .flat_map(|e| (0..e.truth.len()).map(move |i| (e, i)))
        .collect();
    let frame = Frame::of(&rows)
        .col("task", |&(e, _)| e.task.as_str())
        .col("row", |&(e, i)| e.rows[i] as u64);
    with_kept(frame, evals, |&(e, i)| (e, i))
        .col("text", |&(e, i)| e.texts[i].as_str())
        .col("true", |&(e, i)| e.truth[i].as_str())
        .col("predicted", |&(e, i)| e.pred[i].as_str())
        .col("probability", |&(e, i)| e.shown_prob(i))
        .col("correct", |&(e, i)| e.truth[i] == e.pred[i])
        .finish("predictions")
}

/// `frame` with the kept input columns (the same names in every task), each row's value found
/// by `at` (its task and row).
fn with_kept<'a, R>(
    mut frame: Frame<'a, R>,
    evals: &[TaskEval],
    at: impl Fn(&'a R) -> (&'a TaskEval, usize) + Copy,
) -> Frame<'a, R> {
    let names: Vec<String> = evals
        .first()
        .map(|e| e.kept.iter().map(|(n, _)| n.clone()).collect())
        .unwrap_or_default();
    for (k, name) in names.iter().enumerate() {
        frame = frame.col(name, move |r| {
            let (e, i) = at(r);
            e.kept.get(k).and_then(|(_, v)| v[i].clone())
        });
    }
    frame
}

/// Mean and sample standard deviation (0 for one value).
pub(crate) fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (mean, 0.0);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// Writes `dir/report.html`: `markdown` (the report's summary, already in `dir`) as one page
/// with its plots inlined.
pub(crate) fn write_html(dir: &Path, title: &str, markdown: &str) -> Result<()> {
    let page = html::page(title, markdown, dir)?;
    crate::io::fsutil::write_bytes_atomic(&dir.join("report.html"), page.as_bytes())
}

/// Writes `name.parquet` and `name.csv` into `dir`.
pub(crate) fn write_frame(dir: &Path, name: &str, df: &mut DataFrame) -> Result<()> {
    output::write_parquet_frame(&dir.join(format!("{name}.parquet")), df)?;
    output::write_csv_frame(&dir.join(format!("{name}.csv")), df)
}

/// A DataFrame as a Markdown table (see [`markdown::frame_table`]).
pub(crate) fn markdown_table(df: &DataFrame, pct: &[&str]) -> String {
    markdown::frame_table(df, pct)
}
