//! `fewshot`'s report: one row per (task, regime, seed); the Markdown table of mean ± std per
//! task and regime on the full test split, with training time.

use polars::prelude::DataFrame;

use super::frame::Frame;
use super::markdown::MarkdownTable;
use crate::error::Result;

#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct FewshotRow {
    pub task: String,
    pub regime: String,
    pub seed: u64,
    /// Rows per label asked for; `train_rows` is what it came to (a label with fewer keeps all).
    pub k: u64,
    pub train_rows: u64,
    /// Entity F1 is not scored here (token tasks have no pairs); accuracy on the test split.
    pub accuracy: f64,
    pub macro_f1: f64,
    /// Micro-F1 for a multi-label task.
    pub micro_f1: Option<f64>,
    /// Training time: the contrastive stage and the heads (embedding is not in it).
    pub train_seconds: f64,
    /// Pairs the contrastive stage drew (0 without one).
    pub pairs: u64,
}

pub(crate) fn frame(rows: &[FewshotRow]) -> Result<DataFrame> {
    Frame::of(rows)
        .col("task", |r| r.task.as_str())
        .col("regime", |r| r.regime.as_str())
        .col("seed", |r| r.seed)
        .col("k", |r| r.k)
        .col("train_rows", |r| r.train_rows)
        .col("accuracy", |r| r.accuracy)
        .col("macro_f1", |r| r.macro_f1)
        .col("micro_f1", |r| r.micro_f1)
        .col("train_seconds", |r| r.train_seconds)
        .col("pairs", |r| r.pairs)
        .finish("the fewshot table")
}

/// The distinct values of `key` over `rows`, in first-seen order.
fn distinct(rows: &[FewshotRow], key: fn(&FewshotRow) -> &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in rows {
        if !out.iter().any(|v| v == key(r)) {
            out.push(key(r).to_string());
        }
    }
    out
}

pub(crate) fn markdown(rows: &[FewshotRow], k: usize, seeds: usize, head: &str) -> String {
    let mut s = format!(
        "# frostline fewshot\n\n{k} training rows per label, drawn afresh with each of {seeds} seed(s) (every regime of a seed trains on the same rows, listed in samples.csv); no dev rows (a few-shot user has none to spare), so every run keeps its last epoch; head `{head}`. Scores in % on each task's full test split, mean ± std over seeds; training seconds are the contrastive stage plus the heads (the one-time embedding is not counted).\n\n"
    );
    let mut t = MarkdownTable::new(&[
        "task",
        "regime",
        ">train rows",
        ">accuracy",
        ">macro-F1",
        ">micro-F1",
        ">training s",
        ">pairs",
    ]);
    for task in distinct(rows, |r| &r.task) {
        for regime in distinct(rows, |r| &r.regime) {
            let of: Vec<&FewshotRow> = rows
                .iter()
                .filter(|r| r.task == task && r.regime == regime)
                .collect();
            if of.is_empty() {
                continue;
            }
            let stat = |v: &dyn Fn(&FewshotRow) -> f64| {
                super::mean_std(&of.iter().map(|r| v(r)).collect::<Vec<_>>())
            };
            let pm = |(m, sd): (f64, f64)| format!("{:.2} ± {:.2}", 100.0 * m, 100.0 * sd);
            let micro = if of.iter().all(|r| r.micro_f1.is_some()) {
                pm(stat(&|r| r.micro_f1.unwrap_or_default()))
            } else {
                "–".into()
            };
            t.row(vec![
                task.clone(),
                regime.clone(),
                format!("{:.0}", stat(&|r| r.train_rows as f64).0),
                pm(stat(&|r| r.accuracy)),
                pm(stat(&|r| r.macro_f1)),
                micro,
                format!("{:.1}", stat(&|r| r.train_seconds).0),
                format!("{:.0}", stat(&|r| r.pairs as f64).0),
            ]);
        }
    }
    s.push_str(&t.render());
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(regime: &str, seed: u64, accuracy: f64) -> FewshotRow {
        FewshotRow {
            task: "intent".into(),
            regime: regime.into(),
            seed,
            k: 8,
            train_rows: 16,
            accuracy,
            macro_f1: accuracy,
            micro_f1: None,
            train_seconds: 1.0,
            pairs: 0,
        }
    }

    #[test]
    fn one_line_per_task_and_regime_with_mean_and_spread() {
        let rows = [
            row("frozen-backbone", 1, 0.6),
            row("frozen-backbone", 2, 0.7),
            row("contrastive,frost-line=0", 1, 0.8),
        ];
        let md = markdown(&rows, 8, 2, "linear");
        assert!(
            md.contains("| intent | frozen-backbone | 16 | 65.00 ± 7.07 |"),
            "{md}"
        );
        assert!(
            md.contains("| intent | contrastive,frost-line=0 | 16 | 80.00 ± 0.00 |"),
            "{md}"
        );
        assert_eq!(frame(&rows).unwrap().height(), 3);
    }
}
