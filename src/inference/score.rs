//! A checkpoint's heads scored on one split of their tasks, the rows read exactly as training
//! read them (`tasks::read_split` with the manifest's seed).

use crate::checkpoint::{Checkpoint, TrainedTask};
use crate::decision::{entities, Predictions};
use crate::embedder::EmbedStats;
use crate::error::{Error, Result};
use crate::inference::CheckpointEncoder;
use crate::kind::Input;
use crate::metrics::TaskMetrics;
use crate::report::{TaskEval, MISSED, NONE};
use crate::tasks::{read_split, unseen_labels, Split, SplitName};

/// Scores every head of `ck` on `split` (tasks without that split are skipped with a note),
/// each row carrying the input columns `keep` names.
pub fn evaluate_checkpoint(
    ck: &Checkpoint,
    encoder: &mut CheckpointEncoder,
    split: SplitName,
    keep: &[String],
) -> Result<(Vec<TaskEval>, Vec<String>, Vec<EmbedStats>)> {
    let mut evals = Vec::new();
    let mut notes = Vec::new();
    let mut stats = Vec::new();
    for TrainedTask {
        entry,
        head,
        decision,
    } in ck.tasks()
    {
        let name = &entry.config.name;
        let Some(rows) = read_split(&entry.config, split, ck.manifest.seed)? else {
            notes.push(format!(
                "task {name:?} has no {} file; skipped",
                split.as_str()
            ));
            continue;
        };
        let config = &entry.config;
        let kind = config.kind;
        let sep = config.label_separator.as_str();
        if kind.input() == Input::Words {
            let (x, st) = encoder.word_vectors(ck, config, &rows.words)?;
            stats.push(st);
            let lens: Vec<usize> = rows.words.iter().map(Vec::len).collect();
            let pred = decision.predict(&ck.store, head, x.view(), Some(&lens), &entry.classes);
            let metrics = kind.metrics(&entry.classes, &rows.labels, sep, &pred);
            let (unseen, unseen_rows) = unseen_labels(config, &entry.classes, &rows.labels);
            if unseen_rows > 0 {
                notes.push(format!(
                    "task {name:?}: {unseen_rows} {} sentences carry tags the checkpoint does not know ({}); their entities count as missed",
                    split.as_str(),
                    unseen.join(", ")
                ));
            }
            let mut e = span_comparisons(&rows.words, &rows.labels, &pred, &entry.classes);
            e.rows = e.rows.iter().map(|&s| rows.rows[s]).collect();
            e.kept = keep
                .iter()
                .map(|k| (k.clone(), vec![None; e.rows.len()]))
                .collect();
            e.task = name.clone();
            e.split = split.as_str().into();
            e.metrics = metrics;
            e.unseen_labels = unseen;
            e.unseen_rows = unseen_rows;
            evals.push(e);
            continue;
        }
        let (x, st) = encoder.vectors(ck, name, &rows.texts)?;
        stats.push(st);
        let pred = decision.predict(&ck.store, head, x.view(), None, &entry.classes);
        let metrics = kind.metrics(&entry.classes, &rows.labels, sep, &pred);
        let truth: Vec<String> = rows
            .labels
            .iter()
            .map(|l| kind.canonical_label(l, sep))
            .collect();
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
        let kept = kept_columns(&rows, keep, config.delimiter())?;
        evals.push(TaskEval {
            task: name.clone(),
            split: split.as_str().into(),
            kept,
            rows: rows.rows,
            texts: rows.texts,
            truth,
            pred: labels,
            prob,
            metrics,
            separator: kind.set_separator(sep).map(str::to_string),
            unseen_labels: unseen,
            unseen_rows,
        });
    }
    Ok((evals, notes, stats))
}

/// A token task's predictions as span comparisons, one row per entity in truth or prediction:
/// (type, type) for a predicted span with a true span's extent, (type, MISSED) for a true span
/// no prediction has, (NONE, type) for a predicted span no true span has. The text marks the
/// span in its sentence; the probability is the predicted span's score (for a missed span, the
/// mean probability of the tags predicted over its words: it ranks the miss, reports show none).
fn span_comparisons(
    words: &[Vec<String>],
    labels: &[String],
    pred: &Predictions,
    classes: &[String],
) -> TaskEval {
    let (mut texts, mut truth, mut predicted, mut prob) = (vec![], vec![], vec![], vec![]);
    // Each span's sentence (its index in `words`).
    let mut sentences = vec![];
    let decided = pred.sentence_tags(classes, words.iter().map(Vec::len));
    for (n, ((sentence, label), (tags, tag_probs))) in
        words.iter().zip(labels).zip(decided).enumerate()
    {
        let before = texts.len();
        let gold = crate::data::conll::spans(&label.split(' ').collect::<Vec<_>>());
        let found = entities(&tags, &tag_probs);
        let marked = |r: std::ops::Range<usize>| {
            let mut s = String::new();
            for (i, w) in sentence.iter().enumerate() {
                if i > 0 {
                    s.push(' ');
                }
                if i == r.start {
                    s.push_str("[[");
                }
                s.push_str(w);
                if i + 1 == r.end {
                    s.push_str("]]");
                }
            }
            s
        };
        for (ty, s, e) in &gold {
            texts.push(marked(*s..*e));
            truth.push(ty.clone());
            match found.iter().find(|f| f.words == (*s..*e)) {
                Some(f) => {
                    predicted.push(f.kind.clone());
                    prob.push(f.score);
                }
                None => {
                    predicted.push(MISSED.to_string());
                    prob.push(tag_probs[*s..*e].iter().sum::<f32>() / (e - s) as f32);
                }
            }
        }
        for f in found
            .iter()
            .filter(|f| !gold.iter().any(|(_, s, e)| f.words == (*s..*e)))
        {
            texts.push(marked(f.words.clone()));
            truth.push(NONE.to_string());
            predicted.push(f.kind.clone());
            prob.push(f.score);
        }
        sentences.resize(sentences.len() + texts.len() - before, n);
    }
    TaskEval {
        task: String::new(),
        split: String::new(),
        texts,
        truth,
        pred: predicted,
        prob,
        metrics: TaskMetrics::default(),
        separator: None,
        unseen_labels: Vec::new(),
        unseen_rows: 0,
        rows: sentences,
        kept: Vec::new(),
    }
}

/// The values of the input columns `keep` names at the split's rows, read from its file.
fn kept_columns(
    split: &Split,
    keep: &[String],
    delimiter: Option<u8>,
) -> Result<Vec<(String, Vec<Option<String>>)>> {
    if keep.is_empty() {
        return Ok(Vec::new());
    }
    let table = crate::data::read_input_delimited(&split.source, delimiter)?;
    keep.iter()
        .map(|name| {
            let column = table.column(name).ok_or_else(|| Error::InputFile {
                path: split.source.clone(),
                reason: format!(
                    "--keep-columns names {name:?}, which this file does not have; its columns: {}",
                    table.names.join(", ")
                ),
            })?;
            Ok((
                name.clone(),
                split.rows.iter().map(|&r| column[r].clone()).collect(),
            ))
        })
        .collect()
}
