//! The `mteb` replay's report: its summary table and the per-experiment rows.

use super::frame::Frame;
use super::markdown::MarkdownTable;
use super::write_frame;
use crate::embedder::EmbedStats;
use crate::error::{Error, Result};

pub(crate) struct MtebReport {
    pub job_name: String,
    pub result: crate::mteb::ReplayResult,
    pub train_rows: usize,
    pub test_rows: usize,
    pub classes: usize,
    pub embed_stats: Vec<EmbedStats>,
}

impl MtebReport {
    pub(crate) fn markdown(&self) -> String {
        let r = &self.result;
        let per: Vec<String> = r
            .experiments
            .iter()
            .map(|a| format!("{:.2}", 100.0 * a))
            .collect();
        let mut t = MarkdownTable::new(&[
            "dataset",
            ">k per label",
            ">experiments",
            ">classes",
            "train / test rows",
            ">accuracy mean ± sd",
        ]);
        t.row(vec![
            self.job_name.clone(),
            r.k.to_string(),
            r.experiments.len().to_string(),
            self.classes.to_string(),
            format!("{} / {}", self.train_rows, self.test_rows),
            format!("{:.2} ± {:.2}", 100.0 * r.mean, 100.0 * r.std),
        ]);
        format!("{}\nper experiment: {}\n", t.render(), per.join(", "))
    }
}

/// MTEB replay results in the same format: one row per experiment (dataset, k, experiment,
/// accuracy) as Parquet + CSV, the summary as Markdown, the raw result as JSON.
pub(crate) fn write_mteb(
    dir: &crate::io::outfolder::OutputFolder,
    report: &MtebReport,
) -> Result<()> {
    let r = &report.result;
    let experiments: Vec<(u64, f64)> = (1..).zip(r.experiments.iter().copied()).collect();
    let mut df = Frame::of(&experiments)
        .col("dataset", |_| report.job_name.as_str())
        .col("k", |_| r.k as u64)
        .col("experiment", |e| e.0)
        .col("accuracy", |e| e.1)
        .finish("mteb")?;
    dir.write(|tmp| {
        write_frame(tmp, "mteb", &mut df)?;
        crate::io::fsutil::write_bytes_atomic(&tmp.join("mteb.md"), report.markdown().as_bytes())?;
        let json = serde_json::to_vec_pretty(r).map_err(|e| Error::Internal(e.to_string()))?;
        crate::io::fsutil::write_bytes_atomic(&tmp.join("mteb.json"), &json)
    })
}
