//! `frostline eval`: a checkpoint's heads on a split of their tasks' data → polars reports
//! (overall, per class, confusion, most confident errors, every row's prediction) as Parquet + CSV, a Markdown summary,
//! and SVG plots (learning curves, confusion heat maps). The report folder is written whole or
//! not at all.

use std::path::PathBuf;

use crate::checkpoint;
use crate::commands::Outcome;
use crate::embedder::EmbedSettings;
use crate::error::{Error, Result};
use crate::inference::{evaluate_checkpoint, CheckpointEncoder};
use crate::io::fsutil;
use crate::io::outfolder::{FolderKind, OutputFolder};
use crate::report::{self, plots};
use crate::tasks::SplitName;

/// What `frostline eval` was asked to do, every setting decided (the backbone from the
/// checkpoint unless `--model` / `$FROSTLINE_MODEL` named another).
pub(crate) struct EvalJob {
    pub settings: EmbedSettings,
    pub checkpoint: PathBuf,
    pub split: SplitName,
    /// Report folder.
    pub out: PathBuf,
    pub top_errors: usize,
    /// Input columns (an id, say) carried into `errors` and `predictions`.
    pub keep_columns: Vec<String>,
    pub force: bool,
    /// Run heads trained on fp32 vectors on an int8 folder (or the reverse), with a warning.
    pub allow_quantized: bool,
}

pub(crate) fn run(job: &EvalJob) -> Result<Outcome> {
    let out_dir = &job.out;
    let out = OutputFolder::claim(
        out_dir,
        FolderKind::EvalReport,
        job.force,
        &[&job.checkpoint],
    )?;
    let mut ck = checkpoint::load(&job.checkpoint)?;
    let log = checkpoint::read_log(&ck)?;
    let (mut encoder, warnings) =
        CheckpointEncoder::open(&mut ck, job.settings.clone(), job.allow_quantized)?;
    let (evals, notes, stats) =
        evaluate_checkpoint(&ck, &mut encoder, job.split, &job.keep_columns)?;
    if evals.is_empty() {
        return Err(Error::Usage(format!(
            "no task of {} has a {} split",
            job.checkpoint.display(),
            job.split.as_str()
        )));
    }
    let markdown = report::eval::summary(&ck.manifest, &job.checkpoint, job.split, &evals, &notes)?;
    out.write(|dir| {
        report::write_frame(dir, "overall", &mut report::overall(&evals)?)?;
        report::write_frame(dir, "per_class", &mut report::per_class(&evals)?)?;
        report::write_frame(dir, "confusion", &mut report::confusion(&evals)?)?;
        report::write_frame(dir, "errors", &mut report::errors(&evals, job.top_errors)?)?;
        report::write_frame(dir, "predictions", &mut report::predictions(&evals)?)?;
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
        fsutil::write_bytes_atomic(&dir.join("report.md"), markdown.as_bytes())?;
        report::write_html(dir, "frostline eval", &markdown)
    })?;
    let overall = report::overall(&evals)?;
    let text = format!(
        "{}report: {}\n",
        report::markdown_table(
            &overall,
            &[
                "accuracy",
                "micro_f1",
                "entity_f1",
                "macro_f1",
                "weighted_f1"
            ]
        ),
        out_dir.join("report.md").display()
    );
    let tasks: Vec<serde_json::Value> = evals
        .iter()
        .map(|e| {
            serde_json::json!({
                "task": e.task,
                "split": e.split,
                "rows": e.truth.len(),
                "unseen_label_rows": e.unseen_rows,
                "metrics": e.metrics,
            })
        })
        .collect();
    let json = serde_json::json!({
        "checkpoint": job.checkpoint,
        "split": job.split.as_str(),
        "tasks": tasks,
        "report_dir": out_dir,
        "embed": stats,
        "notes": notes,
        "warnings": warnings,
    });
    let mut outcome = Outcome::new(text, json);
    outcome.warnings = warnings.into_iter().chain(notes).collect();
    Ok(outcome)
}
