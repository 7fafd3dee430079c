//! `frostline eval`: a checkpoint's heads on a split of their tasks' data → polars reports
//! (overall, per class, confusion, most confident errors) as Parquet + CSV, a Markdown summary,
//! and SVG plots (learning curves, confusion heat maps). The report folder is written whole or
//! not at all.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::checkpoint::{self, score::evaluate_checkpoint, vectors::CheckpointEncoder, Checkpoint};
use crate::commands::Outcome;
use crate::embedder::EmbedSettings;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::outfolder::{FolderKind, OutputFolder};
use crate::report::markdown::{escape, MarkdownTable};
use crate::report::{self, plots, TaskEval};
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
    let (evals, notes, stats) = evaluate_checkpoint(&ck, &mut encoder, job.split)?;
    if evals.is_empty() {
        return Err(Error::Usage(format!(
            "no task of {} has a {} split",
            job.checkpoint.display(),
            job.split.as_str()
        )));
    }
    let markdown = summary_markdown(&ck, &evals, &notes, job)?;
    out.write(|dir| {
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
        m.backbone.model_dir.display(),
        m.seed,
        m.trainable_params,
        m.training_seconds
    );
    let _ = writeln!(
        s,
        "## Overall (%)\n\n{}",
        report::markdown_table(
            &report::overall(evals)?,
            &[
                "accuracy",
                "micro_f1",
                "entity_f1",
                "macro_f1",
                "weighted_f1"
            ]
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
            .any(|t| t.config.name == e.task && t.trained)
        {
            let _ = writeln!(s, "![learning curves](plots/learning_{}.svg)\n", e.task);
        }
        let _ = writeln!(s, "![confusion](plots/confusion_{}.svg)\n", e.task);
        let mut classes = e.metrics.per_class.clone();
        classes.sort_by(|a, b| a.f1.total_cmp(&b.f1).then(a.label.cmp(&b.label)));
        let _ = writeln!(
            s,
            "Weakest classes by F1 (all {} in `per_class.csv`):\n",
            classes.len()
        );
        let mut weakest = MarkdownTable::new(&[
            "label",
            ">precision",
            ">recall",
            ">F1",
            ">support",
            ">predicted",
        ]);
        for c in classes.iter().take(10) {
            weakest.row(vec![
                c.label.clone(),
                format!("{:.2}", 100.0 * c.precision),
                format!("{:.2}", 100.0 * c.recall),
                format!("{:.2}", 100.0 * c.f1),
                c.support.to_string(),
                c.predicted.to_string(),
            ]);
        }
        s.push_str(&weakest.render());
        let mut conf: Vec<((String, String), u64)> = report::confusion_counts(e)
            .into_iter()
            .filter(|((t, p), _)| t != p)
            .collect();
        conf.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let _ = writeln!(s, "\nTop confusions (true → predicted):\n");
        for ((t, p), c) in conf.iter().take(10) {
            let _ = writeln!(s, "- {} → {}: {c}", escape(t), escape(p));
        }
        let mut wrong: Vec<usize> = (0..e.truth.len())
            .filter(|&i| e.truth[i] != e.pred[i])
            .collect();
        wrong.sort_by(|&a, &b| e.prob[b].total_cmp(&e.prob[a]));
        let _ = writeln!(s, "\nMost confident errors (more in `errors.csv`):\n");
        let mut errors = MarkdownTable::new(&["text", "true", "predicted", ">probability"]);
        for &i in wrong.iter().take(5) {
            errors.row(vec![
                e.texts[i].chars().take(90).collect(),
                e.truth[i].clone(),
                e.pred[i].clone(),
                format!("{:.3}", e.prob[i]),
            ]);
        }
        s.push_str(&errors.render());
        let _ = writeln!(s);
    }
    Ok(s)
}
