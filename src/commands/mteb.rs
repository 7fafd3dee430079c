//! `frostline mteb`: MTEB's classification protocol replayed on the cache (k examples per label,
//! logistic regression, several seeded experiments).

use std::collections::HashMap;
use std::path::PathBuf;

use crate::commands::Outcome;
use crate::embedder::{EmbedSettings, SentenceEmbedder};
use crate::error::Result;
use crate::io::outfolder::{FolderKind, OutputFolder};
use crate::report::mteb::MtebReport;
use crate::tasks::read_labelled;

/// What `frostline mteb` replays, every setting decided.
pub(crate) struct MtebJob {
    pub settings: EmbedSettings,
    pub train: PathBuf,
    pub test: PathBuf,
    pub text_column: String,
    pub label_column: String,
    pub k: usize,
    pub experiments: usize,
    pub seed: u32,
    /// Report folder, when asked for.
    pub out: Option<PathBuf>,
    pub force: bool,
}

pub(crate) fn run(job: &MtebJob) -> Result<Outcome> {
    let out = job
        .out
        .as_deref()
        .map(|o| {
            OutputFolder::claim(
                o,
                FolderKind::MtebReport,
                job.force,
                &[&job.train, &job.test],
            )
        })
        .transpose()?;
    let report = replay(job)?;
    let mut text = report.markdown();
    if let Some(out) = &out {
        crate::report::mteb::write_mteb(out, &report)?;
        text.push_str(&format!("report: {}\n", out.path().display()));
    }
    let json = serde_json::json!({
        "dataset": report.job_name,
        "k": report.result.k,
        "classes": report.classes,
        "train_rows": report.train_rows,
        "test_rows": report.test_rows,
        "mean": report.result.mean,
        "std": report.result.std,
        "experiments": report.result.experiments,
        "embed": report.embed_stats,
        "report_dir": job.out,
    });
    Ok(Outcome::new(text, json))
}

/// MTEB's classification protocol on the cache: labels are numbered in order of first
/// appearance in train (as MTEB's datasets carry them), test labels unseen in train are errors.
fn replay(job: &MtebJob) -> Result<MtebReport> {
    let (train_texts, train_labels) =
        read_labelled(&job.train, &job.text_column, &job.label_column)?;
    let (test_texts, test_labels) = read_labelled(&job.test, &job.text_column, &job.label_column)?;
    let mut ids: HashMap<String, usize> = HashMap::new();
    for l in &train_labels {
        let next = ids.len();
        ids.entry(l.clone()).or_insert(next);
    }
    let classes = ids.len();
    let train_y: Vec<usize> = train_labels.iter().map(|l| ids[l]).collect();
    // An unseen test label gets an index no model predicts.
    let test_y: Vec<usize> = test_labels
        .iter()
        .map(|l| ids.get(l).copied().unwrap_or(usize::MAX))
        .collect();
    let mut embedder = SentenceEmbedder::open(job.settings.clone())?;
    let (train_x, s1) = embedder.embed(&train_texts)?;
    let (test_x, s2) = embedder.embed(&test_texts)?;
    let result = crate::mteb::replay(
        train_x.view(),
        &train_y,
        test_x.view(),
        &test_y,
        job.k,
        job.experiments,
        job.seed,
    );
    Ok(MtebReport {
        job_name: job
            .train
            .parent()
            .and_then(|p| p.file_name())
            .map_or("dataset".into(), |n| n.to_string_lossy().into_owned()),
        result,
        train_rows: train_texts.len(),
        test_rows: test_texts.len(),
        classes,
        embed_stats: vec![s1, s2],
    })
}
