//! `frostline fewshot`: the few-shot protocol. With each seed, k training rows per label are
//! drawn (`per_label`), every chosen regime trains on exactly those rows (no dev rows: a few-shot
//! user has none to spare), and each is scored on the full test split; the report gives mean ±
//! std per task and regime with training time, and the rows drawn, so another tool can be run on
//! the same examples.

use std::path::PathBuf;

use crate::commands::Outcome;
use crate::embedder::EmbedSettings;
use crate::error::{Error, Result};
use crate::io::fsutil;
use crate::io::outfolder::{FolderKind, OutputFolder};
use crate::regime::Regime;
use crate::report::fewshot::{frame, markdown, FewshotRow};
use crate::report::frame::Frame;
use crate::report::{self};
use crate::runfile::RunFile;
use crate::train::{self, Narration, TrainSpec};

/// What `frostline fewshot` was asked to do, every setting decided: `run`'s tasks already set
/// to k rows per label and no dev rows.
pub(crate) struct FewshotJob {
    pub run: RunFile,
    pub settings: EmbedSettings,
    pub k: usize,
    pub seeds: Vec<u64>,
    pub regimes: Vec<Regime>,
    pub out: PathBuf,
    pub force: bool,
}

impl FewshotJob {
    /// The run file that made the report, the model folder written in and headed by the command
    /// that makes it again (k is each task's `per_label`; seeds and regimes are in the header).
    fn remake_file(&self) -> Result<String> {
        let mut run = self.run.clone();
        run.model = Some(self.settings.model_dir.clone());
        run.train.resolve_defaults();
        let regimes: String = self
            .regimes
            .iter()
            .map(|r| format!(" --regime '{r}'"))
            .collect();
        Ok(format!(
            "# made by: frostline fewshot --run run.toml --k {} --seeds {}{regimes}\n# (seeds {}..={})\n{}",
            self.k,
            self.seeds.len(),
            self.seeds[0],
            self.seeds[self.seeds.len() - 1],
            run.to_toml()?
        ))
    }
}

/// One training row drawn for a seed.
struct Sample {
    task: String,
    seed: u64,
    text: String,
    label: String,
}

pub(crate) fn run(job: &FewshotJob) -> Result<Outcome> {
    let out = OutputFolder::claim(&job.out, FolderKind::FewshotReport, job.force, &[])?;
    let quiet = Narration {
        bars: false,
        epoch_lines: false,
    };
    let mut rows = Vec::new();
    let mut samples = Vec::new();
    for &seed in &job.seeds {
        for (i, regime) in job.regimes.iter().enumerate() {
            let mut run = job.run.clone();
            run.seed = seed;
            run.train.regime = regime.clone();
            if job.settings.progress {
                eprintln!("fewshot: seed {seed}, {regime}");
            }
            let spec = TrainSpec::new(run, job.settings.clone(), None, false)?;
            let res = train::run(&spec, quiet)?;
            let pairs = res
                .report
                .pairs
                .as_ref()
                .map_or(0, |p| (p.pairs.similar + p.pairs.dissimilar) as u64);
            for t in &res.tasks {
                let m = t.test.as_ref().ok_or_else(|| {
                    Error::Internal("fewshot runs only tasks with a test split".into())
                })?;
                let train = &t.data.train;
                if i == 0 {
                    samples.extend(train.texts.iter().zip(&train.labels).map(|(x, l)| Sample {
                        task: t.data.config.name.clone(),
                        seed,
                        text: x.clone(),
                        label: l.clone(),
                    }));
                }
                rows.push(FewshotRow {
                    task: t.data.config.name.clone(),
                    regime: regime.to_string(),
                    seed,
                    k: job.k as u64,
                    train_rows: train.len() as u64,
                    accuracy: m.accuracy,
                    macro_f1: m.macro_f1,
                    micro_f1: m.micro_f1,
                    train_seconds: res.report.seconds,
                    pairs,
                });
            }
        }
    }
    let markdown = markdown(&rows, job.k, job.seeds.len(), job.run.train.head.name());
    out.write(|dir| {
        report::write_frame(dir, "fewshot", &mut frame(&rows)?)?;
        let mut drawn = Frame::of(&samples)
            .col("task", |s| s.task.as_str())
            .col("seed", |s| s.seed)
            .col("text", |s| s.text.as_str())
            .col("label", |s| s.label.as_str())
            .finish("the drawn rows")?;
        report::write_frame(dir, "samples", &mut drawn)?;
        fsutil::write_bytes_atomic(&dir.join("run.toml"), job.remake_file()?.as_bytes())?;
        fsutil::write_bytes_atomic(&dir.join("fewshot.md"), markdown.as_bytes())?;
        report::write_html(dir, "frostline fewshot", &markdown)
    })?;
    let text = format!(
        "{markdown}\nreport: {}\n",
        job.out.join("fewshot.md").display()
    );
    let json = serde_json::json!({ "rows": rows, "report_dir": job.out });
    Ok(Outcome::new(text, json))
}
