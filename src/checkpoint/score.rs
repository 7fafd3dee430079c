//! A checkpoint's heads scored on one split of their tasks, the rows read exactly as training
//! read them (`tasks::read_split` with the manifest's seed).

use crate::checkpoint::vectors::CheckpointEncoder;
use crate::checkpoint::Checkpoint;
use crate::embedder::EmbedStats;
use crate::error::Result;
use crate::report::TaskEval;
use crate::runfile::TaskKind;
use crate::tasks::{read_split, unseen_labels, SplitName};

/// Scores every head of `ck` on `split` (tasks without that split are skipped with a note).
pub fn evaluate_checkpoint(
    ck: &Checkpoint,
    encoder: &mut CheckpointEncoder,
    split: SplitName,
) -> Result<(Vec<TaskEval>, Vec<String>, Vec<EmbedStats>)> {
    let mut evals = Vec::new();
    let mut notes = Vec::new();
    let mut stats = Vec::new();
    for (t, (entry, head)) in ck.manifest.tasks.iter().zip(&ck.heads).enumerate() {
        let name = &entry.config.name;
        let Some(rows) = read_split(&entry.config, split, ck.manifest.seed)? else {
            notes.push(format!(
                "task {name:?} has no {} file; skipped",
                split.as_str()
            ));
            continue;
        };
        let (x, st) = encoder.vectors(ck, &rows.texts)?;
        stats.push(st);
        let config = &entry.config;
        let decision = &ck.decisions[t];
        let pred = decision.predict(&ck.store, head, x.view());
        let metrics = decision.metrics(config, &entry.classes, &rows.labels, &pred);
        let multi = config.kind == TaskKind::MultiLabel;
        let sep = config.label_separator.as_str();
        // Label sets written canonically (sorted, one separator) so equal sets compare equal.
        let truth: Vec<String> = if multi {
            rows.labels
                .iter()
                .map(|l| {
                    let mut set = config.label_set(l);
                    set.sort_unstable();
                    set.join(sep)
                })
                .collect()
        } else {
            rows.labels.clone()
        };
        let labels: Vec<String> = (0..pred.picks.len())
            .map(|i| pred.label(i, &entry.classes, sep))
            .collect();
        let prob: Vec<f32> = (0..pred.picks.len())
            .map(|i| pred.confidence(i, decision))
            .collect();
        let (unseen, unseen_rows) = unseen_labels(config, &entry.classes, &rows.labels);
        if unseen_rows > 0 {
            notes.push(format!(
                "task {name:?}: {unseen_rows} {} rows carry labels the checkpoint does not know ({}); they count as errors",
                split.as_str(),
                unseen.join(", ")
            ));
        }
        evals.push(TaskEval {
            task: name.clone(),
            split: split.as_str().into(),
            texts: rows.texts,
            truth,
            pred: labels,
            prob,
            metrics,
            separator: multi.then(|| sep.to_string()),
            unseen_labels: unseen,
            unseen_rows,
        });
    }
    Ok((evals, notes, stats))
}
