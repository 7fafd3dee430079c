//! `frostline embed`: texts in, vectors out, streamed (the pipeline is [`crate::streaming`]); this
//! command says what it did.

use std::path::Path;

use crate::commands::Outcome;
use crate::dataset;
use crate::embedder::EmbedStats;
use crate::error::Result;
use crate::streaming::{embed_texts, embed_words, EmbedJob};

pub(crate) fn run(job: &EmbedJob) -> Result<Outcome> {
    if crate::data::conll::is_conll(&job.input) {
        return run_words(job);
    }
    let done = embed_texts(job)?;
    let (stats, path) = (&done.stats, &done.path);
    let mut log = format!("{}\noutput: {}", stats.summary(), path.display());
    let mut json = stats_json(stats, path);
    if let Some(n) = done.imported {
        log.push_str(&format!(
            "\n{n} vectors taken from the dataset {} (same model and settings)",
            job.input.display()
        ));
        json["imported_from_dataset"] = n.into();
    }
    if let Some((shard, complete)) = done.shard {
        log.push_str(&format!(
            "\nshard {}/{}: {} rows; dataset {}",
            shard.index,
            shard.count,
            stats.rows,
            if complete {
                format!("complete ({} written)", dataset::SUCCESS)
            } else {
                "waiting for other shards".into()
            }
        ));
        json["shard"] = serde_json::json!({"index": shard.index, "count": shard.count});
        json["dataset_complete"] = complete.into();
    }
    let mut outcome = Outcome::new(String::new(), json);
    outcome.log = log;
    Ok(outcome)
}

/// A CoNLL file's word features at the job's layer.
fn run_words(job: &EmbedJob) -> Result<Outcome> {
    let done = embed_words(job)?;
    let (stats, path) = (&done.stats, &done.path);
    let (written, sentences) = (done.words, done.sentences);
    let mut outcome = Outcome::new(String::new(), stats_json(stats, path));
    outcome.log = format!(
        "{}\n{} words of {} sentences, layer {} ({:?} sub-token)\noutput: {}",
        stats.summary(),
        written,
        sentences,
        job.token_layer,
        job.word_feature,
        path.display()
    );
    Ok(outcome)
}

/// The summary figures of an embedding pass as JSON, with the file written.
pub(crate) fn stats_json(stats: &EmbedStats, output: &Path) -> serde_json::Value {
    let mut v = serde_json::to_value(stats).expect("stats serialise");
    v["padding_waste_pct"] = stats.padding_waste_pct().into();
    v["output"] = output.display().to_string().into();
    v
}
