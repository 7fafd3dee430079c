//! `frostline predict`: a checkpoint's heads over new texts, embedded through the cache.
//! Output: one row per input row with each task's label and probability, as CSV or Parquet.

use std::path::PathBuf;

use polars::prelude::*;

use crate::checkpoint::{self, vectors::CheckpointEncoder};
use crate::commands::embed::stats_json;
use crate::commands::Outcome;
use crate::data;
use crate::embedder::EmbedSettings;
use crate::error::{Error, Result};
use crate::format::{Format, TABLE_OUTPUTS};
use crate::fsutil;
use crate::outfolder::check_not_input;
use crate::output;
use crate::train;

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
}

pub(crate) fn run(job: &PredictJob) -> Result<Outcome> {
    let format = Format::output(&job.output, TABLE_OUTPUTS)?;
    check_not_input(&job.output, &[&job.input])?;
    fsutil::check_writable(&job.output)?;
    let mut ck = checkpoint::load(&job.checkpoint)?;
    let (mut encoder, warnings) =
        CheckpointEncoder::open(&mut ck, job.settings.clone(), job.allow_quantized)?;
    encoder.import_dataset(&job.input)?;
    let table = data::read_input(&job.input)?;
    let texts = table.texts(&job.text_column)?;
    let (x, stats) = encoder.vectors(&ck, &texts)?;

    let mut cols: Vec<Column> = Vec::new();
    if let Some(ids) = table.column("id") {
        cols.push(Column::new("id".into(), ids.to_vec()));
    }
    cols.push(Column::new(job.text_column.as_str().into(), texts));
    for (entry, head) in ck.manifest.tasks.iter().zip(&ck.heads) {
        let (pred, prob) = train::predict(&ck.store, head, x.view());
        let labels: Vec<&str> = pred.iter().map(|&i| entry.classes[i].as_str()).collect();
        let name = &entry.config.name;
        cols.push(Column::new(format!("{name}_label").into(), labels));
        cols.push(Column::new(format!("{name}_prob").into(), prob));
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
