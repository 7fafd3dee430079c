//! `frostline predict`: a checkpoint's heads over new texts, embedded through the cache.
//! Output: one row per input row with each task's label and probability, as CSV or Parquet.

use std::path::PathBuf;

use polars::prelude::*;

use crate::checkpoint;
use crate::data;
use crate::embed::{EmbedSettings, EmbedStats};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::infer::CheckpointEncoder;
use crate::output;
use crate::train;

pub struct PredictJob {
    pub checkpoint: PathBuf,
    pub input: PathBuf,
    /// Default: the text column the checkpoint's first task was trained with.
    pub text_column: Option<String>,
    pub output: PathBuf,
}

pub fn run(
    mut settings: EmbedSettings,
    model_override: bool,
    job: &PredictJob,
) -> Result<EmbedStats> {
    let ext = job
        .output
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if !matches!(ext.as_deref(), Some("csv" | "parquet")) {
        return Err(Error::output(
            &job.output,
            "unsupported output format; name the file .csv or .parquet",
        ));
    }
    fsutil::check_writable(&job.output)?;
    let mut ck = checkpoint::load(&job.checkpoint)?;
    if !model_override {
        settings.model_dir = ck.manifest.model_dir.clone();
    }
    let table = data::read_table(&job.input)?;
    let text_column = job.text_column.clone().unwrap_or_else(|| {
        if data::Format::of(&job.input).ok() == Some(data::Format::Text) {
            "text".into()
        } else {
            ck.manifest.tasks[0].text_column.clone()
        }
    });
    let texts = table.required_strings(&text_column)?;
    let mut encoder = CheckpointEncoder::open(&mut ck, settings)?;
    let (x, stats) = encoder.vectors(&ck, &texts)?;

    let mut cols: Vec<Column> = Vec::new();
    if let Some(ids) = table.column("id") {
        cols.push(Column::new("id".into(), ids.to_vec()));
    }
    cols.push(Column::new(text_column.as_str().into(), texts));
    for (entry, head) in ck.manifest.tasks.iter().zip(&ck.heads) {
        let (pred, prob) = train::predict(&ck.store, head, x.view());
        let labels: Vec<&str> = pred.iter().map(|&i| entry.classes[i].as_str()).collect();
        cols.push(Column::new(format!("{}_label", entry.name).into(), labels));
        cols.push(Column::new(format!("{}_prob", entry.name).into(), prob));
    }
    let mut df =
        DataFrame::new_infer_height(cols).map_err(|e| Error::output(&job.output, e.to_string()))?;
    match ext.as_deref() {
        Some("parquet") => output::write_parquet_frame(&job.output, &mut df)?,
        _ => output::write_csv_frame(&job.output, &df)?,
    }
    Ok(stats)
}
