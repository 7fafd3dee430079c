//! `curve`'s report: one row per (task, fraction, seed); the Markdown table of mean ± std per
//! fraction and one line per task on what the last doubling of labels bought.

use std::fmt::Write as _;

use polars::prelude::DataFrame;

use super::frame::Frame;
use super::markdown::MarkdownTable;
use crate::error::Result;

#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct CurveRow {
    pub task: String,
    /// The share of train asked for; `train_rows` is what it came to (every label keeps a row).
    pub fraction: f64,
    pub seed: u64,
    pub train_rows: u64,
    pub split: String,
    /// Entity F1 for a token task, accuracy otherwise.
    pub score: f64,
    pub macro_f1: f64,
    pub train_seconds: f64,
}

pub(crate) fn frame(rows: &[CurveRow]) -> Result<DataFrame> {
    Frame::of(rows)
        .col("task", |r| r.task.as_str())
        .col("fraction", |r| r.fraction)
        .col("seed", |r| r.seed)
        .col("train_rows", |r| r.train_rows)
        .col("split", |r| r.split.as_str())
        .col("score", |r| r.score)
        .col("macro_f1", |r| r.macro_f1)
        .col("train_seconds", |r| r.train_seconds)
        .finish("the curve table")
}

/// One point of a task's curve: a fraction's mean and std over seeds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Point {
    pub fraction: f64,
    pub train_rows: f64,
    pub mean: f64,
    pub std: f64,
    pub macro_f1: f64,
}

/// Each task's points, in the order tasks first appear, fractions ascending.
pub(crate) fn points(rows: &[CurveRow]) -> Vec<(String, Vec<Point>)> {
    let mut tasks: Vec<String> = Vec::new();
    for r in rows {
        if !tasks.contains(&r.task) {
            tasks.push(r.task.clone());
        }
    }
    tasks
        .into_iter()
        .map(|task| {
            let mut fractions: Vec<f64> = rows
                .iter()
                .filter(|r| r.task == task)
                .map(|r| r.fraction)
                .collect();
            fractions.sort_by(f64::total_cmp);
            fractions.dedup();
            let pts = fractions
                .into_iter()
                .map(|f| {
                    let of: Vec<&CurveRow> = rows
                        .iter()
                        .filter(|r| r.task == task && r.fraction == f)
                        .collect();
                    let stat = |v: fn(&CurveRow) -> f64| {
                        super::mean_std(&of.iter().map(|r| v(r)).collect::<Vec<_>>())
                    };
                    let (mean, std) = stat(|r| r.score);
                    Point {
                        fraction: f,
                        train_rows: stat(|r| r.train_rows as f64).0,
                        mean,
                        std,
                        macro_f1: stat(|r| r.macro_f1).0,
                    }
                })
                .collect();
            (task, pts)
        })
        .collect()
}

/// What the last step of the curve bought, against the spread over seeds.
fn verdict(task: &str, pts: &[Point]) -> Option<String> {
    let [.., a, b] = pts else {
        return None;
    };
    let gain = 100.0 * (b.mean - a.mean);
    let noise = 100.0 * a.std.max(b.std);
    let words = if gain > 2.0 * noise.max(0.1) {
        "still climbing: more labels are likely to help"
    } else if gain > noise.max(0.1) {
        "flattening: more labels may help a little"
    } else {
        "flat within the spread over seeds: more labels of the same kind are unlikely to help much"
    };
    Some(format!(
        "`{task}`: {:.0} → {:.0} train rows ({:.0} % → {:.0} %) moves the score {gain:+.2} points (spread {noise:.2}): {words}.",
        a.train_rows,
        b.train_rows,
        100.0 * a.fraction,
        100.0 * b.fraction
    ))
}

pub(crate) fn markdown(rows: &[CurveRow], regime: &str, head: &str) -> Result<String> {
    let seeds = {
        let mut s: Vec<u64> = rows.iter().map(|r| r.seed).collect();
        s.sort_unstable();
        s.dedup();
        s.len()
    };
    let mut s = format!(
        "# frostline curve\n\nScore against the share of training labels: regime `{regime}`, head `{head}`, {seeds} seed(s) per point; each share a stratified sample of the train rows (every label keeps at least one), taken of every task at once (one joint run per point, as training runs the tasks together), dev and test unchanged. Score: accuracy (entity F1 for a token task) in % on the `{}` split, mean ± std over seeds.\n\n",
        rows.first().map_or("test", |r| r.split.as_str())
    );
    let mut t = MarkdownTable::new(&[
        "task",
        ">share of train",
        ">train rows",
        ">score",
        ">macro-F1",
    ]);
    let all = points(rows);
    for (task, pts) in &all {
        for p in pts {
            t.row(vec![
                task.clone(),
                format!("{:.0} %", 100.0 * p.fraction),
                format!("{:.0}", p.train_rows),
                format!("{:.2} ± {:.2}", 100.0 * p.mean, 100.0 * p.std),
                format!("{:.2}", 100.0 * p.macro_f1),
            ]);
        }
    }
    s.push_str(&t.render());
    s.push_str("\n## More labels?\n\n");
    for (task, pts) in &all {
        if let Some(v) = verdict(task, pts) {
            let _ = writeln!(s, "- {v}");
        }
    }
    s.push_str("\n![score vs train rows](plots/curve.svg)\n");
    Ok(s)
}
