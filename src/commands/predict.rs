//! `frostline predict`: a checkpoint's heads over new texts, embedded through the cache.
//! Output: one row per input row — the kept input columns, then per task its label and the
//! probability of that prediction, and on request the top K labels or every label's probability
//! — as CSV (lists and maps as JSON text) or Parquet (lists of structs, structs).

use std::path::PathBuf;

use polars::prelude::*;

use crate::align::split_words;
use crate::checkpoint::{self, TrainedTask};
use crate::commands::embed::stats_json;
use crate::commands::Outcome;
use crate::data::{self, Table};
use crate::decision::Decision;
use crate::decision::{entities, Predictions};
use crate::embedder::{EmbedSettings, EmbedStats};
use crate::error::{Error, Result};
use crate::inference::CheckpointEncoder;
use crate::io::format::{Format, TABLE_OUTPUTS};
use crate::io::fsutil;
use crate::io::outfolder::{check_not_in_cache, check_not_input};
use crate::io::output;
use crate::kind::Input;

/// What `frostline predict` was asked to do, every setting decided (the backbone from the
/// checkpoint unless `--model` / `$FROSTLINE_MODEL` named another).
pub(crate) struct PredictJob {
    pub settings: EmbedSettings,
    pub checkpoint: PathBuf,
    pub input: PathBuf,
    pub text_column: String,
    pub output: PathBuf,
    /// Run heads trained on fp32 vectors on an int8 folder (or the reverse), with a warning.
    pub allow_quantized: bool,
    /// The tasks whose heads run, in the order given (checked against the checkpoint).
    pub tasks: Vec<String>,
    pub top_k: Option<usize>,
    pub all_probs: bool,
    /// Input columns carried to the output; `None` = all of them.
    pub keep_columns: Option<Vec<String>>,
    /// Token tasks: entities scoring below this are left out.
    pub min_score: Option<f32>,
    /// Field separator of a .csv / .tsv input; `None` for the extension's.
    pub delimiter: Option<u8>,
}

pub(crate) fn run(job: &PredictJob) -> Result<Outcome> {
    let format = Format::output(&job.output, TABLE_OUTPUTS)?;
    check_not_input(&job.output, &[&job.input])?;
    check_not_in_cache(&job.output, &job.settings.cache_root)?;
    fsutil::check_writable(&job.output)?;
    let mut ck = checkpoint::load(&job.checkpoint)?;
    let (mut encoder, warnings) =
        CheckpointEncoder::open(&mut ck, job.settings.clone(), job.allow_quantized)?;
    encoder.import_dataset(&job.input)?;
    let table = data::read_input_delimited(&job.input, job.delimiter)?;
    let texts = table.texts(&job.text_column)?;
    let mut cols = kept_columns(&table, job.keep_columns.as_deref())?;
    let inputs: Vec<Input> = job
        .tasks
        .iter()
        .map(|name| {
            let task = ck
                .task(name)
                .expect("task names are checked when the job is made");
            task.entry.config.kind.input()
        })
        .collect();
    let mut stats = EmbedStats::default();
    // Token tasks read the texts as words (split as their CoNLL data was), each word's place
    // in its text kept for the entities' offsets.
    let places: Vec<Vec<std::ops::Range<usize>>> = if !inputs.contains(&Input::Words) {
        Vec::new()
    } else {
        texts.iter().map(|t| split_words(t)).collect()
    };
    let words: Vec<Vec<String>> = texts
        .iter()
        .zip(&places)
        .map(|(t, ps)| ps.iter().map(|r| t[r.clone()].to_string()).collect())
        .collect();

    let json = format != Format::Parquet;
    for name in &job.tasks {
        let TrainedTask {
            entry,
            head,
            decision,
        } = ck
            .task(name)
            .expect("task names are checked when the job is made");
        let classes = &entry.classes;
        if entry.config.kind.input() == Input::Words {
            let (wx, s) = encoder.word_vectors(&ck, &entry.config, &words)?;
            stats.add(s);
            let lens: Vec<usize> = words.iter().map(Vec::len).collect();
            let pred = decision.predict(&ck.store, head, wx.view(), Some(&lens), classes);
            cols.push(entity_column(
                &format!("{name}_entities"),
                (&texts, &places),
                classes,
                &pred,
                job.min_score.unwrap_or(0.0),
                json,
            )?);
            continue;
        }
        let (x, s) = encoder.vectors(&ck, name, &texts)?;
        stats.add(s);
        let pred = decision.predict(&ck.store, head, x.view(), None, classes);
        let sep = &entry.config.label_separator;
        cols.extend(sentence_columns(
            name, classes, sep, decision, &pred, job, json,
        )?);
    }
    if let Some(dup) = duplicate_name(&cols) {
        return Err(Error::Usage(format!(
            "the output would have two columns named {dup:?} (an input column and a prediction); choose the input columns to keep with --keep-columns"
        )));
    }
    let mut df =
        DataFrame::new_infer_height(cols).map_err(|e| Error::output(&job.output, e.to_string()))?;
    match format {
        Format::Parquet => output::write_parquet_frame(&job.output, &mut df)?,
        _ => output::write_csv_frame(&job.output, &df)?,
    }
    let mut outcome = Outcome::new(String::new(), stats_json(&stats, &job.output));
    outcome.log = format!("{}\noutput: {}", stats.summary(), job.output.display());
    outcome.warnings = warnings;
    Ok(outcome)
}

/// A sentence task's prediction columns: `_label` and `_prob` (a multi-label task: `_set_prob`
/// and `_labels`), then `_top_k` and `_probs` when asked for.
fn sentence_columns(
    name: &str,
    classes: &[String],
    separator: &str,
    decision: &Decision,
    pred: &Predictions,
    job: &PredictJob,
    json: bool,
) -> Result<Vec<Column>> {
    let n = pred.picks.len();
    let labels: Vec<String> = (0..n).map(|i| pred.label(i, classes, separator)).collect();
    let prob: Vec<f32> = (0..n).map(|i| pred.confidence(i, decision)).collect();
    let mut cols = vec![Column::new(format!("{name}_label").into(), labels)];
    if let Decision::Multi { .. } = decision {
        // The probability of exactly this set (labels taken as independent): small for a set of
        // several labels, so named for what it is; each label's own probability is in
        // `_labels`, most probable first.
        cols.push(Column::new(format!("{name}_set_prob").into(), prob));
        let by_prob: Vec<Vec<usize>> = (0..n)
            .map(|i| {
                let mut set = pred.picks[i].clone();
                set.sort_by(|&a, &b| pred.probs[[i, b]].total_cmp(&pred.probs[[i, a]]));
                set
            })
            .collect();
        let labels_name = format!("{name}_labels");
        cols.push(label_probs(&labels_name, classes, pred, &by_prob, json)?);
    } else {
        cols.push(Column::new(format!("{name}_prob").into(), prob));
    }
    if let Some(k) = job.top_k {
        let top: Vec<Vec<usize>> = (0..n).map(|i| top_k(pred, i, k)).collect();
        cols.push(label_probs(
            &format!("{name}_top_k"),
            classes,
            pred,
            &top,
            json,
        )?);
    }
    if job.all_probs {
        cols.push(all_probs(&format!("{name}_probs"), classes, pred, json)?);
    }
    Ok(cols)
}

/// The input columns carried through, as strings, in input order (or in `keep`'s order).
fn kept_columns(table: &Table, keep: Option<&[String]>) -> Result<Vec<Column>> {
    let names: Vec<&str> = match keep {
        None => table.names.iter().map(String::as_str).collect(),
        Some(keep) => {
            if let Some(missing) = keep.iter().find(|k| !table.names.contains(k)) {
                return Err(Error::InputFile {
                    path: table.path.clone(),
                    reason: format!(
                        "--keep-columns names {missing:?}, which the input does not have; its columns: {}",
                        table.names.join(", ")
                    ),
                });
            }
            keep.iter().map(String::as_str).collect()
        }
    };
    Ok(names
        .into_iter()
        .map(|n| {
            let values = table.column(n).expect("the column exists");
            Column::new(n.into(), values.to_vec())
        })
        .collect())
}

fn duplicate_name(cols: &[Column]) -> Option<String> {
    let mut seen = std::collections::HashSet::new();
    cols.iter()
        .map(|c| c.name().to_string())
        .find(|n| !seen.insert(n.clone()))
}

/// Row `i`'s `k` most probable classes, most probable first.
fn top_k(pred: &Predictions, i: usize, k: usize) -> Vec<usize> {
    let row = pred.probs.row(i);
    let mut order: Vec<usize> = (0..row.len()).collect();
    order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
    order.truncate(k);
    order
}

/// Per row, the classes in `chosen[i]` with their probabilities: a list of {label, prob} structs,
/// or (CSV) the same as JSON text.
fn label_probs(
    name: &str,
    classes: &[String],
    pred: &Predictions,
    chosen: &[Vec<usize>],
    json: bool,
) -> Result<Column> {
    let entry = |i: usize, c: usize| (classes[c].as_str(), pred.probs[[i, c]]);
    if json {
        let text: Vec<String> = chosen
            .iter()
            .enumerate()
            .map(|(i, cs)| {
                let items: Vec<serde_json::Value> = cs
                    .iter()
                    .map(|&c| {
                        let (label, prob) = entry(i, c);
                        serde_json::json!({ "label": label, "prob": prob })
                    })
                    .collect();
                serde_json::Value::Array(items).to_string()
            })
            .collect();
        return Ok(Column::new(name.into(), text));
    }
    let err = |e: PolarsError| Error::Internal(format!("building column {name}: {e}"));
    let rows: Vec<Series> = chosen
        .iter()
        .enumerate()
        .map(|(i, cs)| {
            let (labels, probs): (Vec<&str>, Vec<f32>) = cs.iter().map(|&c| entry(i, c)).unzip();
            let fields = [
                Series::new("label".into(), labels),
                Series::new("prob".into(), probs),
            ];
            StructChunked::from_series("".into(), cs.len(), fields.iter())
                .map(IntoSeries::into_series)
        })
        .collect::<PolarsResult<_>>()
        .map_err(err)?;
    let list = Series::new(name.into(), rows);
    Ok(list.into_column())
}

/// Every class's probability per row: a struct with one f32 field per class, or (CSV) a JSON
/// object `{label: prob}`.
fn all_probs(name: &str, classes: &[String], pred: &Predictions, json: bool) -> Result<Column> {
    if json {
        let text: Vec<String> = pred
            .probs
            .rows()
            .into_iter()
            .map(|row| {
                let map: serde_json::Map<String, serde_json::Value> = classes
                    .iter()
                    .zip(row.iter())
                    .map(|(c, &p)| (c.clone(), serde_json::json!(p)))
                    .collect();
                serde_json::Value::Object(map).to_string()
            })
            .collect();
        return Ok(Column::new(name.into(), text));
    }
    let fields: Vec<Series> = classes
        .iter()
        .enumerate()
        .map(|(c, label)| Series::new(label.as_str().into(), pred.probs.column(c).to_vec()))
        .collect();
    StructChunked::from_series(name.into(), pred.probs.nrows(), fields.iter())
        .map(|s| s.into_series().into_column())
        .map_err(|e| Error::Internal(format!("building column {name}: {e}")))
}

/// A token task's entities per text: a list of {start, end, type, text, score} structs (start
/// and end in characters of the text, end exclusive), or (CSV) the same as JSON text.
fn entity_column(
    name: &str,
    (texts, places): (&[String], &[Vec<std::ops::Range<usize>>]),
    classes: &[String],
    pred: &Predictions,
    min_score: f32,
    json: bool,
) -> Result<Column> {
    let mut per_text = Vec::with_capacity(texts.len());
    let decided = pred.sentence_tags(classes, places.iter().map(Vec::len));
    for ((text, ps), (tags, probs)) in texts.iter().zip(places).zip(decided) {
        let char_at = |byte: usize| text[..byte].chars().count() as u32;
        let found: Vec<(u32, u32, String, String, f32)> = entities(&tags, &probs)
            .into_iter()
            .filter(|e| e.score >= min_score)
            .map(|e| {
                let (s, end) = (ps[e.words.start].start, ps[e.words.end - 1].end);
                (
                    char_at(s),
                    char_at(end),
                    e.kind,
                    text[s..end].to_string(),
                    e.score,
                )
            })
            .collect();
        per_text.push(found);
    }
    if json {
        let cells: Vec<String> = per_text
            .iter()
            .map(|es| {
                let items: Vec<serde_json::Value> = es
                    .iter()
                    .map(|(s, e, ty, t, p)| {
                        serde_json::json!({"start": s, "end": e, "type": ty, "text": t, "score": p})
                    })
                    .collect();
                serde_json::Value::Array(items).to_string()
            })
            .collect();
        return Ok(Column::new(name.into(), cells));
    }
    let err = |e: PolarsError| Error::Internal(format!("building column {name}: {e}"));
    let rows: Vec<Series> = per_text
        .iter()
        .map(|es| {
            let fields = [
                Series::new("start".into(), es.iter().map(|e| e.0).collect::<Vec<_>>()),
                Series::new("end".into(), es.iter().map(|e| e.1).collect::<Vec<_>>()),
                Series::new(
                    "type".into(),
                    es.iter().map(|e| e.2.as_str()).collect::<Vec<_>>(),
                ),
                Series::new(
                    "text".into(),
                    es.iter().map(|e| e.3.as_str()).collect::<Vec<_>>(),
                ),
                Series::new("score".into(), es.iter().map(|e| e.4).collect::<Vec<_>>()),
            ];
            StructChunked::from_series("".into(), es.len(), fields.iter())
                .map(IntoSeries::into_series)
        })
        .collect::<PolarsResult<_>>()
        .map_err(err)?;
    Ok(Series::new(name.into(), rows).into_column())
}
