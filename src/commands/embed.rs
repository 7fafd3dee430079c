//! `frostline embed`: read a table, embed its texts through the cache, write the vectors (with
//! the id and text columns for Parquet) atomically, in input order.

use std::path::PathBuf;

use ndarray::Array2;

use crate::commands::Outcome;
use crate::data::{self, Table};
use crate::embedder::{EmbedSettings, EmbedStats, SentenceEmbedder};
use crate::error::Result;
use crate::format::{Format, EMBEDDING_OUTPUTS};
use crate::fsutil;
use crate::outfolder::check_not_input;
use crate::output::{self, CarriedColumn};

/// What `frostline embed` was asked to do, every setting decided.
#[derive(Debug, Clone)]
pub(crate) struct EmbedJob {
    pub settings: EmbedSettings,
    pub input: PathBuf,
    pub text_column: String,
    /// Carried into Parquet output; `None` = the input's `id` column if it has one.
    pub id_column: Option<String>,
    pub output: PathBuf,
}

pub(crate) fn run(job: &EmbedJob) -> Result<Outcome> {
    Format::output(&job.output, EMBEDDING_OUTPUTS)?;
    check_not_input(&job.output, &[&job.input])?;
    fsutil::check_writable(&job.output)?;
    let table = data::read_table(&job.input)?;
    let texts = table.texts(&job.text_column)?;
    let id_column = match &job.id_column {
        Some(c) => {
            table.column_index(c)?;
            Some(c.clone())
        }
        None => table.column("id").map(|_| "id".to_string()),
    };
    let mut embedder = SentenceEmbedder::open(job.settings.clone())?;
    let (vectors, stats) = embedder.embed(&texts)?;
    write_output(job, &table, id_column.as_deref(), &vectors)?;
    let mut outcome = Outcome::new(String::new(), stats_json(&stats, &job.output));
    outcome.log = format!("{}\noutput: {}", stats.summary(), job.output.display());
    Ok(outcome)
}

/// The summary figures of an embedding pass as JSON, with the file written.
pub(crate) fn stats_json(stats: &EmbedStats, output: &std::path::Path) -> serde_json::Value {
    let mut v = serde_json::to_value(stats).expect("stats serialise");
    v["padding_waste_pct"] = stats.padding_waste_pct().into();
    v["output"] = output.display().to_string().into();
    v
}

fn write_output(
    job: &EmbedJob,
    table: &Table,
    id_column: Option<&str>,
    vectors: &Array2<f32>,
) -> Result<()> {
    let carry = |name: &str| -> Option<CarriedColumn> {
        table.column(name).map(|values| CarriedColumn {
            name: table_name(table, name),
            values: values.iter().map(Option::as_deref).collect(),
        })
    };
    let mut carried = Vec::new();
    if let Some(id) = id_column.filter(|id| *id != job.text_column) {
        carried.extend(carry(id));
    }
    carried.extend(carry(&job.text_column));
    output::write_embeddings(&job.output, &carried, vectors)
}

fn table_name<'a>(table: &'a Table, name: &str) -> &'a str {
    table
        .names
        .iter()
        .find(|n| *n == name)
        .map(String::as_str)
        .unwrap_or("text")
}
