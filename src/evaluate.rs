//! `frostline eval`: a checkpoint's heads on a split of their tasks' data → polars reports
//! (overall, per class, confusion, most confident errors) as Parquet + CSV, a Markdown summary,
//! and SVG plots (learning curves, confusion heat maps). The report folder is written whole or
//! not at all.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::checkpoint::{self, Checkpoint, TaskEntry};
use crate::embed::EmbedSettings;
use crate::error::{Error, Result};
use crate::eval::classification_metrics;
use crate::fsutil;
use crate::infer::CheckpointEncoder;
use crate::report::{self, plots, TaskEval};
use crate::train::{self, data::read_labelled, data::stratified_split, EpochLog};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SplitName {
    Test,
    Dev,
    Train,
}

impl SplitName {
    pub fn as_str(self) -> &'static str {
        match self {
            SplitName::Test => "test",
            SplitName::Dev => "dev",
            SplitName::Train => "train",
        }
    }
}

pub struct EvalJob {
    pub checkpoint: PathBuf,
    pub split: SplitName,
    /// Report folder (default: CHECKPOINT/eval-<split>).
    pub out: Option<PathBuf>,
    pub top_errors: usize,
}

pub struct EvalOutcome {
    pub out_dir: PathBuf,
    pub evals: Vec<TaskEval>,
    pub notes: Vec<String>,
    pub markdown: String,
}

/// The texts and labels of one task's split, as the checkpoint was trained (a carved dev split is
/// carved again from train with the same fraction and seed).
fn split_rows(
    entry: &TaskEntry,
    split: SplitName,
    seed: u64,
) -> Result<Option<(Vec<String>, Vec<String>)>> {
    let read = |p: &Path| read_labelled(p, &entry.text_column, &entry.label_column);
    Ok(match split {
        SplitName::Test => entry.test_file.as_deref().map(read).transpose()?,
        SplitName::Dev | SplitName::Train => match (&entry.dev_file, split) {
            (Some(dev), SplitName::Dev) => Some(read(dev)?),
            (Some(_), _) => Some(read(&entry.train_file)?),
            (None, _) => {
                let (texts, labels) = read(&entry.train_file)?;
                let (tr, dv) = stratified_split(&labels, entry.dev_fraction, seed);
                let rows = if split == SplitName::Dev { dv } else { tr };
                Some((
                    rows.iter().map(|&i| texts[i].clone()).collect(),
                    rows.iter().map(|&i| labels[i].clone()).collect(),
                ))
            }
        },
    })
}

pub fn read_log(dir: &Path) -> Result<Vec<EpochLog>> {
    let path = dir.join(checkpoint::LOG);
    let mut reader = csv::Reader::from_path(&path).map_err(|e| Error::InputFile {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    reader
        .deserialize()
        .enumerate()
        .map(|(i, r)| {
            r.map_err(|e| Error::BadRow {
                path: path.clone(),
                row: i + 2,
                reason: e.to_string(),
            })
        })
        .collect()
}

/// Scores every head of `ck` on `split` (tasks without that split are skipped with a note).
pub fn evaluate_checkpoint(
    ck: &Checkpoint,
    encoder: &mut CheckpointEncoder,
    split: SplitName,
) -> Result<(Vec<TaskEval>, Vec<String>)> {
    let mut evals = Vec::new();
    let mut notes = Vec::new();
    for (entry, head) in ck.manifest.tasks.iter().zip(&ck.heads) {
        let Some((texts, truth)) = split_rows(entry, split, ck.manifest.seed)? else {
            notes.push(format!(
                "task {:?} has no {} file; skipped",
                entry.name,
                split.as_str()
            ));
            continue;
        };
        let (x, _) = encoder.vectors(ck, &texts)?;
        let (pred_idx, prob) = train::predict(&ck.store, head, x.view());
        let pred: Vec<String> = pred_idx.iter().map(|&i| entry.classes[i].clone()).collect();
        let mut unseen: Vec<String> = truth
            .iter()
            .filter(|l| !entry.classes.contains(l))
            .cloned()
            .collect();
        let unseen_rows = unseen.len();
        unseen.sort();
        unseen.dedup();
        if unseen_rows > 0 {
            notes.push(format!(
                "task {:?}: {unseen_rows} {} rows carry labels the checkpoint does not know ({}); they count as errors",
                entry.name,
                split.as_str(),
                unseen.join(", ")
            ));
        }
        let metrics = classification_metrics(&truth, &pred);
        evals.push(TaskEval {
            task: entry.name.clone(),
            split: split.as_str().into(),
            texts,
            truth,
            pred,
            prob,
            metrics,
            unseen_labels: unseen,
            unseen_rows,
        });
    }
    Ok((evals, notes))
}

pub fn run(
    mut settings: EmbedSettings,
    model_override: bool,
    job: &EvalJob,
) -> Result<EvalOutcome> {
    let out_dir = job
        .out
        .clone()
        .unwrap_or_else(|| job.checkpoint.join(format!("eval-{}", job.split.as_str())));
    fsutil::check_folder_writable(&out_dir)?;
    let mut ck = checkpoint::load(&job.checkpoint)?;
    let log = read_log(&job.checkpoint)?;
    if !model_override {
        settings.model_dir = ck.manifest.model_dir.clone();
    }
    let mut encoder = CheckpointEncoder::open(&mut ck, settings)?;
    let (evals, notes) = evaluate_checkpoint(&ck, &mut encoder, job.split)?;
    if evals.is_empty() {
        return Err(Error::Usage(format!(
            "no task of {} has a {} split",
            job.checkpoint.display(),
            job.split.as_str()
        )));
    }
    let markdown = summary_markdown(&ck, &evals, &notes, job)?;
    fsutil::write_dir_atomic(&out_dir, |dir| {
        report::write_frame(dir, "overall", &mut report::overall(&evals)?)?;
        report::write_frame(dir, "per_class", &mut report::per_class(&evals)?)?;
        report::write_frame(dir, "confusion", &mut report::confusion(&evals)?)?;
        report::write_frame(dir, "errors", &mut report::errors(&evals, job.top_errors)?)?;
        let plot_dir = dir.join("plots");
        std::fs::create_dir(&plot_dir).map_err(|e| Error::io(&plot_dir, e))?;
        for e in &evals {
            if log.iter().any(|r| r.task == e.task) {
                plots::learning_curves(
                    &log,
                    &e.task,
                    &plot_dir.join(format!("learning_{}.svg", e.task)),
                )?;
            }
            plots::confusion_heatmap(e, &plot_dir.join(format!("confusion_{}.svg", e.task)))?;
        }
        fsutil::write_bytes_atomic(&dir.join("report.md"), markdown.as_bytes())
    })?;
    Ok(EvalOutcome {
        out_dir,
        evals,
        notes,
        markdown,
    })
}

fn summary_markdown(
    ck: &Checkpoint,
    evals: &[TaskEval],
    notes: &[String],
    job: &EvalJob,
) -> Result<String> {
    let m = &ck.manifest;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# frostline eval — {} ({} split)\n",
        job.checkpoint.display(),
        job.split.as_str()
    );
    let _ = writeln!(
        s,
        "Regime `{}`, model `{}`, seed {}, {} trainable parameters, {:.2} s training.\n",
        m.regime,
        m.model_dir.display(),
        m.seed,
        m.trainable_params,
        m.training_seconds
    );
    let _ = writeln!(
        s,
        "## Overall (%)\n\n{}",
        report::markdown_table(
            &report::overall(evals)?,
            &["accuracy", "macro_f1", "weighted_f1"]
        )
    );
    for n in notes {
        let _ = writeln!(s, "> note: {n}\n");
    }
    for e in evals {
        let _ = writeln!(s, "## Task `{}`\n", e.task);
        if ck
            .manifest
            .tasks
            .iter()
            .any(|t| t.name == e.task && t.trained)
        {
            let _ = writeln!(s, "![learning curves](plots/learning_{}.svg)\n", e.task);
        }
        let _ = writeln!(s, "![confusion](plots/confusion_{}.svg)\n", e.task);
        let mut classes = e.metrics.per_class.clone();
        classes.sort_by(|a, b| a.f1.total_cmp(&b.f1).then(a.label.cmp(&b.label)));
        let _ = writeln!(s, "Weakest classes by F1 (all {} in `per_class.csv`):\n\n| label | precision | recall | F1 | support | predicted |\n|---|---:|---:|---:|---:|---:|", classes.len());
        for c in classes.iter().take(10) {
            let _ = writeln!(
                s,
                "| {} | {:.2} | {:.2} | {:.2} | {} | {} |",
                c.label,
                100.0 * c.precision,
                100.0 * c.recall,
                100.0 * c.f1,
                c.support,
                c.predicted
            );
        }
        let mut conf: Vec<((String, String), u64)> = report::confusion_counts(e)
            .into_iter()
            .filter(|((t, p), _)| t != p)
            .collect();
        conf.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let _ = writeln!(s, "\nTop confusions (true → predicted):\n");
        for ((t, p), c) in conf.iter().take(10) {
            let _ = writeln!(s, "- {t} → {p}: {c}");
        }
        let mut wrong: Vec<usize> = (0..e.truth.len())
            .filter(|&i| e.truth[i] != e.pred[i])
            .collect();
        wrong.sort_by(|&a, &b| e.prob[b].total_cmp(&e.prob[a]));
        let _ = writeln!(s, "\nMost confident errors (more in `errors.csv`):\n\n| text | true | predicted | probability |\n|---|---|---|---:|");
        for &i in wrong.iter().take(5) {
            let text: String = e.texts[i].chars().take(90).collect();
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.3} |",
                text.replace('|', "\\|"),
                e.truth[i],
                e.pred[i],
                e.prob[i]
            );
        }
        let _ = writeln!(s);
    }
    Ok(s)
}
