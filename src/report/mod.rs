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
//! - `errors`:    task, rank (u32), text, true, predicted (str), probability (f32) — most confident
//!   first; for a token task one row per wrong span, the span marked `[[…]]` in its sentence

pub mod markdown;
pub mod plots;

use std::collections::BTreeMap;
use std::path::Path;

use polars::prelude::*;

use crate::error::{Error, Result};
use crate::metrics::TaskMetrics;
use crate::output;

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
}

fn frame(path_hint: &str, cols: Vec<Column>) -> Result<DataFrame> {
    DataFrame::new_infer_height(cols)
        .map_err(|e| Error::Internal(format!("building {path_hint}: {e}")))
}

pub fn overall(evals: &[TaskEval]) -> Result<DataFrame> {
    frame(
        "overall",
        vec![
            Column::new(
                "task".into(),
                evals.iter().map(|e| e.task.as_str()).collect::<Vec<_>>(),
            ),
            Column::new(
                "split".into(),
                evals.iter().map(|e| e.split.as_str()).collect::<Vec<_>>(),
            ),
            Column::new(
                "accuracy".into(),
                evals.iter().map(|e| e.metrics.accuracy).collect::<Vec<_>>(),
            ),
            Column::new(
                "micro_f1".into(),
                evals.iter().map(|e| e.metrics.micro_f1).collect::<Vec<_>>(),
            ),
            Column::new(
                "entity_f1".into(),
                evals
                    .iter()
                    .map(|e| e.metrics.entity_f1)
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "macro_f1".into(),
                evals.iter().map(|e| e.metrics.macro_f1).collect::<Vec<_>>(),
            ),
            Column::new(
                "weighted_f1".into(),
                evals
                    .iter()
                    .map(|e| e.metrics.weighted_f1)
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "support".into(),
                evals
                    .iter()
                    .map(|e| e.metrics.support as u64)
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "unseen_label_rows".into(),
                evals
                    .iter()
                    .map(|e| e.unseen_rows as u64)
                    .collect::<Vec<_>>(),
            ),
        ],
    )
}

pub fn per_class(evals: &[TaskEval]) -> Result<DataFrame> {
    let rows: Vec<(&str, &crate::metrics::ClassMetrics)> = evals
        .iter()
        .flat_map(|e| {
            e.metrics
                .per_class
                .iter()
                .map(move |c| (e.task.as_str(), c))
        })
        .collect();
    frame(
        "per_class",
        vec![
            Column::new("task".into(), rows.iter().map(|r| r.0).collect::<Vec<_>>()),
            Column::new(
                "label".into(),
                rows.iter().map(|r| r.1.label.as_str()).collect::<Vec<_>>(),
            ),
            Column::new(
                "precision".into(),
                rows.iter().map(|r| r.1.precision).collect::<Vec<_>>(),
            ),
            Column::new(
                "recall".into(),
                rows.iter().map(|r| r.1.recall).collect::<Vec<_>>(),
            ),
            Column::new("f1".into(), rows.iter().map(|r| r.1.f1).collect::<Vec<_>>()),
            Column::new(
                "support".into(),
                rows.iter().map(|r| r.1.support as u64).collect::<Vec<_>>(),
            ),
            Column::new(
                "predicted".into(),
                rows.iter()
                    .map(|r| r.1.predicted as u64)
                    .collect::<Vec<_>>(),
            ),
        ],
    )
}

/// A multi-label task's confusion column for a true label the prediction left out.
pub const MISSED: &str = "(missed)";
/// A multi-label task's confusion row for a predicted label the truth does not have.
pub const NONE: &str = "(none)";

/// (true, predicted) → count for one task, all cells with a count. A multi-label row adds one
/// count per label: (l, l) when found, (l, MISSED) when left out, (NONE, l) when wrongly added.
pub fn confusion_counts(e: &TaskEval) -> BTreeMap<(String, String), u64> {
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

pub fn confusion(evals: &[TaskEval]) -> Result<DataFrame> {
    let mut task = Vec::new();
    let mut truth = Vec::new();
    let mut pred = Vec::new();
    let mut count = Vec::new();
    for e in evals {
        for ((t, p), c) in confusion_counts(e) {
            task.push(e.task.clone());
            truth.push(t);
            pred.push(p);
            count.push(c);
        }
    }
    frame(
        "confusion",
        vec![
            Column::new("task".into(), task),
            Column::new("true".into(), truth),
            Column::new("predicted".into(), pred),
            Column::new("count".into(), count),
        ],
    )
}

/// The `top` most confident wrong predictions per task.
pub fn errors(evals: &[TaskEval], top: usize) -> Result<DataFrame> {
    let (mut task, mut rank, mut text, mut truth, mut pred, mut prob) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for e in evals {
        let mut wrong: Vec<usize> = (0..e.truth.len())
            .filter(|&i| e.truth[i] != e.pred[i])
            .collect();
        wrong.sort_by(|&a, &b| e.prob[b].total_cmp(&e.prob[a]).then(a.cmp(&b)));
        for (r, &i) in wrong.iter().take(top).enumerate() {
            task.push(e.task.clone());
            rank.push(r as u32 + 1);
            text.push(e.texts[i].clone());
            truth.push(e.truth[i].clone());
            pred.push(e.pred[i].clone());
            prob.push(e.prob[i]);
        }
    }
    frame(
        "errors",
        vec![
            Column::new("task".into(), task),
            Column::new("rank".into(), rank),
            Column::new("text".into(), text),
            Column::new("true".into(), truth),
            Column::new("predicted".into(), pred),
            Column::new("probability".into(), prob),
        ],
    )
}

/// Writes `name.parquet` and `name.csv` into `dir`.
pub fn write_frame(dir: &Path, name: &str, df: &mut DataFrame) -> Result<()> {
    output::write_parquet_frame(&dir.join(format!("{name}.parquet")), df)?;
    output::write_csv_frame(&dir.join(format!("{name}.csv")), df)
}

/// A DataFrame as a Markdown table (see [`markdown::frame_table`]).
pub fn markdown_table(df: &DataFrame, pct: &[&str]) -> String {
    markdown::frame_table(df, pct)
}

/// MTEB replay results in the same format: one row per experiment (dataset, k, experiment,
/// accuracy) as Parquet + CSV, the summary as Markdown, the raw result as JSON.
pub(crate) fn write_mteb(
    dir: &crate::outfolder::OutputFolder,
    report: &crate::commands::mteb::MtebReport,
) -> Result<()> {
    let r = &report.result;
    let n = r.experiments.len();
    let mut df = frame(
        "mteb",
        vec![
            Column::new("dataset".into(), vec![report.job_name.as_str(); n]),
            Column::new("k".into(), vec![r.k as u64; n]),
            Column::new("experiment".into(), (1..=n as u64).collect::<Vec<_>>()),
            Column::new("accuracy".into(), r.experiments.clone()),
        ],
    )?;
    dir.write(|tmp| {
        write_frame(tmp, "mteb", &mut df)?;
        crate::fsutil::write_bytes_atomic(&tmp.join("mteb.md"), report.markdown().as_bytes())?;
        let json = serde_json::to_vec_pretty(r).map_err(|e| Error::Internal(e.to_string()))?;
        crate::fsutil::write_bytes_atomic(&tmp.join("mteb.json"), &json)
    })
}
