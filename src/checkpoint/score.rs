//! A checkpoint's heads scored on one split of their tasks, the rows read exactly as training
//! read them (`tasks::read_split` with the manifest's seed).

use crate::checkpoint::vectors::CheckpointEncoder;
use crate::checkpoint::Checkpoint;
use crate::embedder::EmbedStats;
use crate::error::Result;
use crate::metrics::classification_metrics;
use crate::report::TaskEval;
use crate::tasks::{read_split, SplitName};
use crate::train;

/// Scores every head of `ck` on `split` (tasks without that split are skipped with a note).
pub fn evaluate_checkpoint(
    ck: &Checkpoint,
    encoder: &mut CheckpointEncoder,
    split: SplitName,
) -> Result<(Vec<TaskEval>, Vec<String>, Vec<EmbedStats>)> {
    let mut evals = Vec::new();
    let mut notes = Vec::new();
    let mut stats = Vec::new();
    for (entry, head) in ck.manifest.tasks.iter().zip(&ck.heads) {
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
        let (pred_idx, prob) = train::predict(&ck.store, head, x.view());
        let pred: Vec<String> = pred_idx.iter().map(|&i| entry.classes[i].clone()).collect();
        let mut unseen: Vec<String> = rows
            .labels
            .iter()
            .filter(|l| !entry.classes.contains(l))
            .cloned()
            .collect();
        let unseen_rows = unseen.len();
        unseen.sort();
        unseen.dedup();
        if unseen_rows > 0 {
            notes.push(format!(
                "task {name:?}: {unseen_rows} {} rows carry labels the checkpoint does not know ({}); they count as errors",
                split.as_str(),
                unseen.join(", ")
            ));
        }
        let metrics = classification_metrics(&rows.labels, &pred);
        evals.push(TaskEval {
            task: name.clone(),
            split: split.as_str().into(),
            texts: rows.texts,
            truth: rows.labels,
            pred,
            prob,
            metrics,
            unseen_labels: unseen,
            unseen_rows,
        });
    }
    Ok((evals, notes, stats))
}
