//! `compare`'s report: one row per (variant, task, seed); the Markdown summary over seeds (mean ±
//! std), a recommendation per task chosen on dev and weighed against the noise, the trade-off
//! lines the numbers show, and the resources in a table of their own.

use std::fmt::Write as _;

use polars::prelude::DataFrame;

use super::frame::Frame;
use super::markdown::MarkdownTable;
use super::mean_std;
use crate::error::Result;

#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct CompareRow {
    pub seed: u64,
    pub variant: String,
    pub regime: String,
    pub head: String,
    pub task: String,
    /// What this task's head did in the variant: `trained`, `training-free`, `frozen` (the
    /// frozen-backbone/linear head, unchanged) or `continued` (started from that head and
    /// trained further while the other head stayed frozen).
    pub head_training: String,
    /// The dev split's headline score (entity F1 for a token task, accuracy otherwise) and
    /// macro-F1: what the recommendation is chosen on. `None` without dev rows.
    pub dev_score: Option<f64>,
    pub dev_macro_f1: Option<f64>,
    pub dev_rows: u64,
    /// The split of the scores below: test, or dev for a task without a test file.
    pub split: String,
    pub accuracy: f64,
    /// Token tasks: entity-level micro F1 (`accuracy` is then token accuracy).
    pub entity_f1: Option<f64>,
    pub macro_f1: f64,
    pub train_seconds: f64,
    pub embed_seconds: f64,
    pub cache_hit: bool,
    pub trainable_params: u64,
    /// Bytes of the checkpoint's tensor files (heads and what trained of the layers).
    pub checkpoint_bytes: u64,
    /// Peak resident memory of the process during this variant (Linux VmHWM after a reset), MiB.
    pub peak_rss_mib: Option<f64>,
    pub cache_bytes: u64,
}

impl CompareRow {
    /// The headline score: entity F1 for a token task, accuracy otherwise.
    pub(crate) fn score(&self) -> f64 {
        self.entity_f1.unwrap_or(self.accuracy)
    }
}

/// The comparison as a DataFrame (schema documented in README.md).
pub(crate) fn frame(rows: &[CompareRow]) -> Result<DataFrame> {
    Frame::of(rows)
        .col("seed", |r| r.seed)
        .col("variant", |r| r.variant.as_str())
        .col("regime", |r| r.regime.as_str())
        .col("head", |r| r.head.as_str())
        .col("task", |r| r.task.as_str())
        .col("head_training", |r| r.head_training.as_str())
        .col("dev_score", |r| r.dev_score)
        .col("dev_macro_f1", |r| r.dev_macro_f1)
        .col("dev_rows", |r| r.dev_rows)
        .col("split", |r| r.split.as_str())
        .col("accuracy", |r| r.accuracy)
        .col("entity_f1", |r| r.entity_f1)
        .col("macro_f1", |r| r.macro_f1)
        .col("train_seconds", |r| r.train_seconds)
        .col("embed_seconds", |r| r.embed_seconds)
        .col("cache_hit", |r| r.cache_hit)
        .col("trainable_params", |r| r.trainable_params)
        .col("checkpoint_bytes", |r| r.checkpoint_bytes)
        .col("peak_rss_mib", |r| r.peak_rss_mib)
        .col("cache_bytes", |r| r.cache_bytes)
        .finish("the comparison table")
}

/// One line per task stating the trade-offs the (test, mean over seeds) numbers show: what no
/// training reaches, what the MLP head and a frozen head change, against frozen-backbone/linear.
pub(crate) fn tradeoffs(rows: &[CompareRow]) -> Vec<String> {
    let all = summaries(rows);
    let mut tasks: Vec<&str> = Vec::new();
    for s in &all {
        if !tasks.contains(&s.task) {
            tasks.push(s.task);
        }
    }
    let mut lines = Vec::new();
    for task in tasks {
        let find = |v: &str| all.iter().find(|s| s.task == task && s.variant == v);
        let Some(lin) = find("frozen-backbone/linear") else {
            continue;
        };
        let what = if lin.first().entity_f1.is_some() {
            "entity F1"
        } else {
            "accuracy"
        };
        let lin_test = lin.test().0;
        let mut parts = Vec::new();
        let free = all
            .iter()
            .filter(|s| s.task == task && s.first().trainable_params == 0)
            .max_by(|a, b| a.test().0.total_cmp(&b.test().0));
        if let Some(free) = free {
            parts.push(format!(
                "without any training, {} reaches {:.1} % ({:+.1} points)",
                free.variant,
                100.0 * free.test().0,
                100.0 * (free.test().0 - lin_test)
            ));
        }
        if let Some(mlp) = find("frozen-backbone/mlp") {
            let ratio = if lin.seconds() > 0.0 {
                mlp.seconds() / lin.seconds()
            } else {
                f64::NAN
            };
            parts.push(format!(
                "the MLP head moves {what} {:+.1} points for {ratio:.1}× the linear head's training time",
                100.0 * (mlp.test().0 - lin_test)
            ));
        }
        if let Some(fz) = find(&format!("freeze-head={task}/linear")) {
            parts.push(format!(
                "with its head frozen (freeze-head={task}) it stays at {:.1} % ({:+.1}) while the other head trains on the fixed cache",
                100.0 * fz.test().0,
                100.0 * (fz.test().0 - lin_test)
            ));
        }
        let continued = all
            .iter()
            .any(|s| s.task == task && s.first().head_training == "continued");
        if continued {
            parts.push(format!("where the other head is frozen, `{task}`'s head continues from frozen-backbone/linear, so a gain there is more training, not the freezing"));
        }
        if !parts.is_empty() {
            lines.push(format!(
                "`{task}` (against frozen-backbone/linear, {what} {:.1} % on test): {}.",
                100.0 * lin_test,
                parts.join("; ")
            ));
        }
    }
    lines
}

/// One variant's rows for one task, over the seeds.
pub(crate) struct Summary<'a> {
    pub variant: &'a str,
    pub task: &'a str,
    pub runs: Vec<&'a CompareRow>,
}

impl Summary<'_> {
    fn first(&self) -> &CompareRow {
        self.runs[0]
    }

    fn stat(&self, value: impl Fn(&CompareRow) -> Option<f64>) -> Option<(f64, f64)> {
        let xs: Vec<f64> = self.runs.iter().map(|r| value(r)).collect::<Option<_>>()?;
        Some(mean_std(&xs))
    }

    fn dev(&self) -> Option<(f64, f64)> {
        self.stat(|r| r.dev_score)
    }

    fn test(&self) -> (f64, f64) {
        self.stat(|r| Some(r.score()))
            .expect("every row has a score")
    }

    fn seconds(&self) -> f64 {
        self.stat(|r| Some(r.train_seconds))
            .expect("every row has a time")
            .0
    }

    /// The noise a dev difference is weighed against: the spread over seeds where there are
    /// several, else the binomial standard error of the dev score, and which it is.
    fn noise(&self) -> Option<(f64, &'static str)> {
        let (mean, std) = self.dev()?;
        if self.runs.len() > 1 {
            return Some((std, "std over seeds"));
        }
        let n = self.first().dev_rows.max(1) as f64;
        Some(((mean * (1.0 - mean) / n).sqrt(), "standard error on dev"))
    }
}

/// The rows grouped by (variant, task), in the order they first appear.
pub(crate) fn summaries(rows: &[CompareRow]) -> Vec<Summary<'_>> {
    let mut out: Vec<Summary> = Vec::new();
    for r in rows {
        match out
            .iter_mut()
            .find(|s| s.variant == r.variant && s.task == r.task)
        {
            Some(s) => s.runs.push(r),
            None => out.push(Summary {
                variant: &r.variant,
                task: &r.task,
                runs: vec![r],
            }),
        }
    }
    out
}

fn pct((mean, std): (f64, f64), seeds: usize) -> String {
    if seeds > 1 {
        format!("{:.2} ± {:.2}", 100.0 * mean, 100.0 * std)
    } else {
        format!("{:.2}", 100.0 * mean)
    }
}

/// One line per task: the variant to use, chosen on dev — the best, or the cheapest to train
/// whose dev score is within one noise unit of the best ([`Summary::noise`]). A variant whose
/// head is frozen (not trained there) or continued (its training time leaves out the run it
/// started from) does not compete.
pub(crate) fn recommendations(rows: &[CompareRow]) -> Vec<String> {
    let all = summaries(rows);
    let mut tasks: Vec<&str> = Vec::new();
    for s in &all {
        if !tasks.contains(&s.task) {
            tasks.push(s.task);
        }
    }
    tasks
        .into_iter()
        .map(|task| {
            let of: Vec<&Summary> = all
                .iter()
                .filter(|s| {
                    s.task == task && !["frozen", "continued"].contains(&s.first().head_training.as_str())
                })
                .collect();
            let scored: Vec<(&Summary, f64)> = of
                .iter()
                .filter_map(|s| s.dev().map(|(m, _)| (*s, m)))
                .collect();
            let Some(&(best, best_dev)) = scored
                .iter()
                .fold(None, |b: Option<&(&Summary, f64)>, x| match b {
                    Some(b) if b.1 >= x.1 => Some(b),
                    _ => Some(x),
                })
            else {
                return format!("`{task}`: no dev split, so no recommendation (one would be chosen on test); give the task a dev file or a dev_fraction above 0.");
            };
            let seeds = best.runs.len();
            let (noise, noise_kind) = best.noise().expect("a dev score has a noise");
            let what = if best.first().entity_f1.is_some() { "entity F1" } else { "accuracy" };
            let cheapest = scored
                .iter()
                .filter(|(_, dev)| *dev >= best_dev - noise)
                .min_by(|a, b| {
                    a.0.seconds()
                        .total_cmp(&b.0.seconds())
                        .then(a.0.first().trainable_params.cmp(&b.0.first().trainable_params))
                })
                .map(|x| x.0)
                .unwrap_or(best);
            let (b_test, c_test) = (best.test(), cheapest.test());
            if std::ptr::eq(cheapest, best) {
                format!(
                    "`{task}`: use {} — best on dev ({what} {} %, {noise_kind} {:.2}); test {} %; nothing cheaper to train is within one {noise_kind} of it.",
                    best.variant,
                    pct(best.dev().unwrap(), seeds),
                    100.0 * noise,
                    pct(b_test, seeds),
                )
            } else {
                let cost = if cheapest.seconds() <= 0.0 {
                    "with no training at all".to_string()
                } else {
                    format!("{:.0}× cheaper to train ({:.2} s vs {:.2} s)", best.seconds() / cheapest.seconds(), cheapest.seconds(), best.seconds())
                };
                format!(
                    "`{task}`: use {} — within one {noise_kind} ({:.2} points) of the best on dev, {} ({what} {} % vs {} %), {cost}; test {} % vs {} %.",
                    cheapest.variant,
                    100.0 * noise,
                    best.variant,
                    pct(cheapest.dev().unwrap(), seeds),
                    pct(best.dev().unwrap(), seeds),
                    pct(c_test, seeds),
                    pct(b_test, seeds),
                )
            }
        })
        .collect()
}

pub(crate) fn markdown(rows: &[CompareRow]) -> Result<String> {
    let all = summaries(rows);
    let seeds = all.first().map_or(1, |s| s.runs.len());
    let mut s = String::from("# frostline compare\n\n");
    let mut scores = MarkdownTable::new(&[
        "variant",
        "task",
        "head",
        ">dev score",
        ">accuracy",
        ">entity F1",
        ">macro-F1",
        ">train s",
        ">trainable params",
        ">checkpoint MB",
    ]);
    for x in &all {
        let r = x.first();
        scores.row(vec![
            x.variant.to_string(),
            x.task.to_string(),
            r.head_training.clone(),
            x.dev().map_or("—".into(), |d| pct(d, seeds)),
            pct(x.stat(|r| Some(r.accuracy)).expect("accuracy"), seeds),
            x.stat(|r| r.entity_f1)
                .map_or("—".into(), |e| pct(e, seeds)),
            pct(x.stat(|r| Some(r.macro_f1)).expect("macro-F1"), seeds),
            format!("{:.2}", x.seconds()),
            r.trainable_params.to_string(),
            format!("{:.2}", r.checkpoint_bytes as f64 / 1e6),
        ]);
    }
    s.push_str(&scores.render());
    let seeds_words = if seeds > 1 {
        format!("mean ± std over {seeds} seeds")
    } else {
        "one seed (`--seeds K` for mean ± std)".into()
    };
    let _ = write!(
        s,
        "\nScores in % on the `{}` split, {seeds_words}; the dev score (entity F1 for a token task, accuracy otherwise) is what the recommendation is chosen on, never the test score. A token task's accuracy is token accuracy. `head`: what the task's head did in the variant. Seconds are wall time on this machine.\n\n## Recommendation\n\n",
        rows.first().map_or("test", |r| r.split.as_str())
    );
    for l in recommendations(rows) {
        let _ = writeln!(s, "- {l}");
    }
    s.push_str("\n## Trade-offs\n\n");
    for l in tradeoffs(rows) {
        let _ = writeln!(s, "- {l}");
    }
    s.push_str("\n![accuracy vs training time](plots/accuracy_vs_time.svg)\n\n## Resources\n\n");
    let mut res = MarkdownTable::new(&[
        "variant",
        ">embed s",
        "cache hit",
        ">peak RSS MiB",
        ">cache MB",
    ]);
    let mut seen: Vec<&str> = Vec::new();
    for x in all.iter().filter(|x| {
        let new = !seen.contains(&x.variant);
        seen.push(x.variant);
        new
    }) {
        let r = x.first();
        res.row(vec![
            x.variant.to_string(),
            format!(
                "{:.2}",
                x.stat(|r| Some(r.embed_seconds)).expect("seconds").0
            ),
            if x.runs.iter().all(|r| r.cache_hit) {
                "yes"
            } else {
                "no"
            }
            .into(),
            x.stat(|r| r.peak_rss_mib)
                .map_or("—".into(), |(m, _)| format!("{m:.0}")),
            format!("{:.1}", r.cache_bytes as f64 / 1e6),
        ]);
    }
    s.push_str(&res.render());
    s.push_str("\nPeak RSS: the process's peak resident memory while the variant ran; cache MB: the embedding cache entry on disk.\n");
    Ok(s)
}
