//! `frostline train`: run the resolved training job, print the per-task table, say where the
//! checkpoint went.

use crate::backbone::choice::ModelSource;
use crate::backbone::ModelFolder;
use crate::commands::Outcome;
use crate::error::Result;
use crate::report::markdown::{pct, MarkdownTable};
use crate::train::estimate::Estimate;
use crate::train::{self, Narration, TrainOutcome, TrainSpec};

pub(crate) fn run(spec: &TrainSpec, source: &ModelSource) -> Result<Outcome> {
    let narration = Narration {
        bars: spec.settings.progress,
        epoch_lines: true,
    };
    // A frost line trains layers natively: about how long, said before anything runs.
    if spec.plan.frost_line.is_some() {
        let folder = ModelFolder::open(&spec.settings.model_dir)?;
        if let Some(e) = Estimate::of(spec, &folder)? {
            eprintln!(
                "train: the layers above the frost line train natively: {}",
                e.describe(folder.hidden_size)
            );
        }
    }
    let result = train::run(spec, narration)?;
    let mut text = table(spec, &result);
    text.push_str(&format!("products: {}\n", spec.products()));
    if let Some(out) = &spec.out {
        text.push_str(&format!("checkpoint: {}\n", out.display()));
    }
    let mut json = summary_json(spec, &result);
    json["model_source"] = source.to_string().into();
    json["precision"] = spec.kernel.precision().as_str().into();
    let mut outcome = Outcome::new(text, json);
    outcome.warnings = result.warnings.clone();
    if spec.out.is_none() {
        outcome.warnings.push(
            "no --out: the trained heads were scored but not saved; pass --out DIR to keep a checkpoint"
                .into(),
        );
    }
    for t in &result.tasks {
        let d = &t.data;
        for (split, unseen, s) in [
            ("dev", d.unseen_dev, Some(&d.dev)),
            ("test", d.unseen_test, d.test.as_ref()),
        ] {
            let Some(s) = s.filter(|_| unseen > 0) else {
                continue;
            };
            let (names, _) = crate::tasks::unseen_labels(&d.config, &d.classes, &s.labels);
            let (rows, what) = d.config.kind.row_nouns();
            outcome.warnings.push(format!(
                "task {:?}: {unseen} of {} {split} {rows} have {what} that never occur in train ({}); they count as errors",
                d.config.name,
                s.len(),
                names.join(", ")
            ));
        }
    }
    Ok(outcome)
}

/// The run's figures as JSON: per task, the split sizes and dev/test metrics; overall, the
/// training and embedding time, trainable parameters, and the checkpoint written.
pub(crate) fn summary_json(spec: &TrainSpec, r: &TrainOutcome) -> serde_json::Value {
    let tasks: Vec<serde_json::Value> = r
        .tasks
        .iter()
        .map(|t| {
            serde_json::json!({
                "name": t.data.config.name,
                "head": t.head.spec.name(),
                "classes": t.data.classes.len(),
                "train_rows": t.data.train.len(),
                "dev_rows": t.data.dev.len(),
                "dev_carved": t.data.dev_carved,
                "test_rows": t.data.test.as_ref().map(|s| s.len()),
                "unseen_dev_rows": t.data.unseen_dev,
                "unseen_test_rows": t.data.unseen_test,
                "dev": t.dev,
                "test": t.test,
            })
        })
        .collect();
    serde_json::json!({
        "regime": spec.run.train.regime.to_string(),
        "model_dir": spec.settings.model_dir,
        "max_length": spec.settings.max_length,
        "tasks": tasks,
        "training_seconds": r.report.seconds,
        "best_epoch": r.report.best_epoch,
        "stopped_early": r.report.stopped_early,
        "contrastive": r.report.pairs,
        "trainable_params": r.trainable_params,
        "checkpoint_bytes": r.checkpoint_bytes,
        "embed_seconds": r.embed_seconds(),
        "cache_hit": r.cache_hit(),
        "embed": r.embed_stats,
        "checkpoint": spec.out,
        "warnings": r.warnings,
    })
}

/// A short per-task table (Markdown) and the run's totals.
fn table(spec: &TrainSpec, r: &TrainOutcome) -> String {
    let mut t = MarkdownTable::new(&[
        "task",
        "regime",
        "head",
        ">classes",
        "train / dev / test rows",
        ">dev macro-F1",
        ">dev entity F1",
        ">test accuracy",
        ">test micro-F1",
        ">test entity F1",
        ">test macro-F1",
    ]);
    for task in &r.tasks {
        let d = &task.data;
        t.row(vec![
            d.config.name.clone(),
            spec.run.train.regime.to_string(),
            task.head.spec.name().to_string(),
            d.classes.len().to_string(),
            format!(
                "{} / {}{} / {}",
                d.train.len(),
                d.dev.len(),
                if d.dev_carved { " (carved)" } else { "" },
                d.test
                    .as_ref()
                    .map_or("–".to_string(), |s| s.len().to_string())
            ),
            pct(task.dev.as_ref().map(|m| m.macro_f1)),
            pct(task.dev.as_ref().and_then(|m| m.entity_f1)),
            pct(task.test.as_ref().map(|m| m.accuracy)),
            pct(task.test.as_ref().and_then(|m| m.micro_f1)),
            pct(task.test.as_ref().and_then(|m| m.entity_f1)),
            pct(task.test.as_ref().map(|m| m.macro_f1)),
        ]);
    }
    let mut s = t.render();
    s.push_str(&format!(
        "\ntraining {:.2} s ({} trainable parameters, checkpoint tensors {:.2} MB{}), embedding {:.2} s ({})\n",
        r.report.seconds,
        r.trainable_params,
        r.checkpoint_bytes as f64 / 1e6,
        if r.report.best_epoch > 0 {
            format!(", best epoch {}", r.report.best_epoch)
        } else {
            String::new()
        },
        r.embed_seconds(),
        if r.cache_hit() {
            "all cached"
        } else {
            "cache filled"
        },
    ));
    if let Some(p) = &r.report.pairs {
        s.push_str(&format!("{}\n", p.describe()));
    }
    for task in &r.tasks {
        if let Some(t) = task.decision.describe_thresholds() {
            let on = if task.dev.is_some() {
                "tuned on dev"
            } else {
                "no dev rows to tune on"
            };
            s.push_str(&format!("{}: {t} ({on})\n", task.data.config.name));
        }
    }
    for task in &r.tasks {
        let d = &task.data;
        if d.unseen_dev + d.unseen_test > 0 {
            s.push_str(&format!(
                "note: task {:?}: {} dev and {} test rows have labels that never occur in train; they count as errors\n",
                d.config.name, d.unseen_dev, d.unseen_test
            ));
        }
    }
    s
}
