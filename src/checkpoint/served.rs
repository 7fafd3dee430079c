//! `frostline export --with-heads`: a checkpoint as one served ONNX model — the tokenizer's ids
//! in; the pooled embedding and every task's probabilities out — and `heads.json` (also in the
//! graph's `metadata_props`), which says how a caller in any language turns them into what
//! `frostline predict` prints: labels, label sets, entity spans.

use std::path::Path;

use super::{Checkpoint, TaskEntry};
use crate::backbone::ModelFolder;
use crate::error::{Error, Result};
use crate::io::fsutil;
use crate::io::outfolder::OutputFolder;
use crate::kind::Input;
use crate::nn::tensors::to_safetensors;
use crate::nn::{ParamId, ParamStore};
use crate::pool::PoolingMode;

/// The layout of heads.json; the exporter refuses any other.
const HEADS_FORMAT: &str = "frostline-heads-v1";

/// What was exported: the graph's branches above the frost line, and the numerics.
pub struct Served {
    pub branches: Vec<String>,
    pub numerics: String,
}

/// The branch a task reads: the one shared copy, or its own adapter above the frost line.
fn branch_of(t: &TaskEntry) -> String {
    if t.config.adapter.is_shared() {
        "shared".into()
    } else {
        format!("own.{}", t.config.name)
    }
}

/// Writes the served model folder of `ck` into `out`: `folder`'s weights with what the run tuned
/// merged per branch, pooling and every head in one graph, int8 below the frost line where the
/// checkpoint's backbone runs int8 there.
pub fn export_with_heads(
    ck: &mut Checkpoint,
    folder: &ModelFolder,
    out: &OutputFolder,
) -> Result<Served> {
    let recipe =
        crate::backbone::quantize::frozen_recipe(folder, ck.manifest.train.quantize_frozen);
    let line = ck.manifest.frost_line;
    let below = line.unwrap_or(folder.num_layers);
    let numerics = match recipe {
        Some(r) if below < folder.num_layers => format!(
            "{} in the layers below {below}; the layers above and the heads fp32",
            r.describe()
        ),
        Some(r) => format!("{} in every layer; the heads fp32", r.describe()),
        None => "fp32".into(),
    };
    let encoders = ck.encoders(folder)?;
    // One branch per distinct copy, in task order, each with a task that reads it.
    let mut branches: Vec<(String, usize)> = Vec::new();
    for (i, t) in ck.manifest.tasks.iter().enumerate() {
        let b = branch_of(t);
        if !branches.iter().any(|(n, _)| *n == b) {
            branches.push((b, i));
        }
    }
    let base = std::env::temp_dir().join("frostline-served");
    crate::io::stale::sweep_stale(&base);
    let dir = fsutil::temp_path(&base);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let built = (|| {
        let mut with_weights = Vec::new();
        if let Some(encoders) = &encoders {
            for (name, task) in &branches {
                // Each branch merges its own factors into its own copy of the weights: an own
                // adapter's factors sit on the shared frozen base.
                let mut store = ck.store.clone();
                let mut encoder = encoders[*task].clone();
                encoder.merge_lora(&mut store);
                let owner = &ck.manifest.tasks[*task].config.name;
                write_tensors(
                    &dir.join(format!("branch-{name}.safetensors")),
                    &encoder.model_tensors(&store, owner),
                )?;
                with_weights.push(name.clone());
            }
        }
        let mut heads = ParamStore::default();
        for t in ck.tasks() {
            let mut named: Vec<_> = t.head.tensors(&ck.store).into_iter().collect();
            named.sort_by(|a, b| a.0.cmp(&b.0));
            for (name, value) in named {
                heads.add(name, value);
            }
        }
        write_tensors(&dir.join("heads.safetensors"), &heads)?;
        let spec = describe(ck, folder, &branches, &with_weights, &numerics);
        let text = serde_json::to_vec_pretty(&spec).map_err(|e| Error::Internal(e.to_string()))?;
        fsutil::write_bytes_atomic(&dir.join("heads.json"), &text)?;
        out.write(|tmp| {
            crate::backbone::export::export_served(folder, &dir, tmp)?;
            if let Some(r) = recipe {
                crate::backbone::quantize::quantize_served(
                    folder,
                    r,
                    &tmp.join("model.onnx"),
                    below,
                )?;
            }
            // Where the served model came from, in its own record.
            super::record_in(
                &tmp.join("frostline.json"),
                "served_from",
                serde_json::json!({
                    "checkpoint": ck.absolute_dir(),
                    "regime": ck.manifest.regime.to_string(),
                }),
            )
        })
    })();
    let _ = std::fs::remove_dir_all(&dir);
    built?;
    Ok(Served {
        branches: branches.into_iter().map(|(n, _)| n).collect(),
        numerics,
    })
}

fn write_tensors(path: &Path, store: &ParamStore) -> Result<()> {
    let ids: Vec<ParamId> = (0..store.len()).collect();
    let bytes =
        to_safetensors(store, &ids).map_err(|e| Error::Internal(format!("safetensors: {e}")))?;
    fsutil::write_bytes_atomic(path, &bytes)
}

/// heads.json: everything a caller needs besides the graph and tokenizer.json.
fn describe(
    ck: &Checkpoint,
    folder: &ModelFolder,
    branches: &[(String, usize)],
    with_weights: &[String],
    numerics: &str,
) -> serde_json::Value {
    let pooling = match folder.pooling.mode {
        PoolingMode::Mean => "mean",
        PoolingMode::Cls => "cls",
        PoolingMode::Max => "max",
        PoolingMode::MeanSqrtLen => "mean_sqrt_len",
    };
    let embedding = |b: &str| match b.strip_prefix("own.") {
        Some(task) => format!("embedding.{task}"),
        None => "embedding".into(),
    };
    let tasks: Vec<serde_json::Value> = ck
        .tasks()
        .map(|t| {
            let c = &t.entry.config;
            let words = c.kind.input() == Input::Words;
            let mut task = serde_json::json!({
                "name": c.name,
                "kind": c.kind,
                "input": if words { "words" } else { "sentence" },
                "branch": branch_of(t.entry),
                "classes": t.entry.classes,
                "head": {"type": t.entry.head.name(), "layers": t.head.layers.len()},
                "output": format!("{}.probabilities", c.name),
                "embedding": (!words).then(|| embedding(&branch_of(t.entry))),
            });
            let decision = t.decision.served(&c.label_separator);
            task["activation"] = decision["activation"].clone();
            task["decision"] = decision;
            if words {
                task["token_layer"] = c.resolved_token_layer().into();
                task["word_feature"] = serde_json::to_value(c.word_feature).unwrap_or_default();
            }
            task
        })
        .collect();
    serde_json::json!({
        "format": HEADS_FORMAT,
        "produced_by": {
            "frostline": env!("CARGO_PKG_VERSION"),
            "checkpoint": ck.absolute_dir(),
            "regime": ck.manifest.regime.to_string(),
        },
        "inputs": {
            "input_ids": "int64 [batch, sequence]: tokenizer.json's ids, special tokens included, padded with any id",
            "attention_mask": "int64 [batch, sequence]: 1 for a real token, 0 for padding",
            "token_type_ids": "int64 [batch, sequence]: zeros",
            "word_spans": "int64 [batch, words, 2], only with a token task: per word its token range [start, end) in the row (word_feature first: the word's first sub-token alone; mean: all of its sub-tokens); rows with fewer words pad with [0, 0]",
        },
        "tokenizer": {
            "file": "tokenizer.json",
            "max_length": ck.manifest.backbone.max_length,
            "truncation": "longest-first, from the right, at max_length tokens (special tokens included); no padding but to the batch's longest row",
            "prefix": folder.prefix,
            "special_tokens": true,
        },
        "pooling": {"mode": pooling, "normalize": folder.pooling.normalize},
        "frost_line": ck.manifest.frost_line,
        "numerics": numerics,
        "branches": branches.iter().map(|(b, _)| serde_json::json!({
            "name": b,
            "weights": with_weights.contains(b),
            "embedding": embedding(b),
        })).collect::<Vec<_>>(),
        "words": {
            "split": "a token task reads a text as words: split on whitespace, then ASCII punctuation at either edge of a piece split off one character at a time (@ and # stay on the word)",
            "windows": "a sentence is fed as its words joined by single spaces, prefix first; one longer than max_length - 2 - the prefix's tokens is fed as windows of whole words overlapping by about half a window (scripts/predict_onnx.py plans them as frostline does); a word's feature is its first sub-token's state (word_feature first) or the mean of its sub-tokens' (mean); a word that makes no token takes the token before it",
        },
        "tasks": tasks,
    })
}
