//! `frostline export`: a frost-line checkpoint's tuned backbone as one ONNX model folder.

use std::path::PathBuf;

use crate::backbone::choice::{open_model, ModelChoice};
use crate::checkpoint::{self, BackboneIdentity, MANIFEST};
use crate::commands::Outcome;
use crate::error::Result;
use crate::io::outfolder::{FolderKind, OutputFolder};

/// What `frostline export` was asked to do: the base model folder from the checkpoint unless
/// `--model` / `$FROSTLINE_MODEL` named another (checked by content hash).
pub(crate) struct ExportJob {
    pub checkpoint: PathBuf,
    pub model: ModelChoice,
    /// Where tasks own their adapters: whose tuned backbone to export.
    pub task: Option<String>,
    /// The served graph with every head (`checkpoint::served`) instead of the tuned backbone.
    pub with_heads: bool,
    pub out: PathBuf,
    pub force: bool,
}

pub(crate) fn run(job: &ExportJob) -> Result<Outcome> {
    let mut ck = checkpoint::load(&job.checkpoint)?;
    let folder = open_model(&job.model)?;
    // Exporting runs no layers: the checkpoint's own length and kernels, so only the backbone
    // itself is checked.
    let recorded = &ck.manifest.backbone;
    let kernels = recorded.kernels.unwrap_or_default();
    let identity = BackboneIdentity::of(&folder, recorded.max_length, kernels)?;
    let warnings = ck
        .manifest
        .backbone
        .check(&identity, &job.checkpoint.join(MANIFEST), false)?;
    let out = OutputFolder::claim(
        &job.out,
        FolderKind::ModelFolder,
        job.force,
        &[&job.checkpoint, &folder.dir],
    )?;
    if job.with_heads {
        let served = checkpoint::served::export_with_heads(&mut ck, &folder, &out)?;
        let tasks: Vec<&str> = ck
            .manifest
            .tasks
            .iter()
            .map(|t| t.config.name.as_str())
            .collect();
        let text = format!(
            "exported {} from {}: one graph with the heads of {} ({}; branches {}); heads.json says how to decide labels, scripts/predict_onnx.py runs it\n",
            job.out.display(),
            job.checkpoint.display(),
            tasks.join(", "),
            served.numerics,
            served.branches.join(", "),
        );
        let json = serde_json::json!({
            "checkpoint": job.checkpoint,
            "model_dir": folder.dir,
            "with_heads": true,
            "tasks": tasks,
            "branches": served.branches,
            "numerics": served.numerics,
            "output": job.out,
        });
        let mut outcome = Outcome::new(text, json);
        outcome.warnings = warnings;
        return Ok(outcome);
    }
    checkpoint::export_model(&mut ck, job.task.as_deref(), &folder, &out)?;
    let of_task = job
        .task
        .as_ref()
        .map(|t| format!(" (task {t}'s)"))
        .unwrap_or_default();
    let text = format!(
        "exported {} with the tuned layers{of_task} of {}\n",
        job.out.display(),
        job.checkpoint.display()
    );
    let json = serde_json::json!({
        "checkpoint": job.checkpoint,
        "model_dir": folder.dir,
        "task": job.task,
        "output": job.out,
    });
    let mut outcome = Outcome::new(text, json);
    outcome.warnings = warnings;
    Ok(outcome)
}
