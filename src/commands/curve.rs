//! `frostline curve`: accuracy against the share of training labels — the run trained on
//! stratified, seeded samples of each task's train rows (`train_fraction`), from the cache, so a
//! user sees whether more labels would help before labelling them.

use std::path::PathBuf;

use crate::commands::Outcome;
use crate::embedder::EmbedSettings;
use crate::error::Result;
use crate::io::fsutil;
use crate::io::outfolder::{FolderKind, OutputFolder};
use crate::report::curve::{frame, markdown, CurveRow};
use crate::report::{self, plots};
use crate::runfile::RunFile;
use crate::train::{self, Narration, TrainSpec};

/// What `frostline curve` was asked to do, every setting decided.
pub(crate) struct CurveJob {
    pub run: RunFile,
    pub settings: EmbedSettings,
    /// Shares of the train rows, ascending, each in (0, 1].
    pub fractions: Vec<f64>,
    pub seeds: Vec<u64>,
    pub out: PathBuf,
    pub force: bool,
}

impl CurveJob {
    /// The run file that made the curve, the model folder written in and headed by the command
    /// that makes it again.
    fn remake_file(&self) -> Result<String> {
        let mut run = self.run.clone();
        run.model = Some(self.settings.model_dir.clone());
        run.train.resolve_defaults();
        let fractions: Vec<String> = self.fractions.iter().map(f64::to_string).collect();
        Ok(format!(
            "# made by: frostline curve --run run.toml --fractions {} --seeds {}\n{}",
            fractions.join(","),
            self.seeds.len(),
            run.to_toml()?
        ))
    }
}

pub(crate) fn run(job: &CurveJob) -> Result<Outcome> {
    let out = OutputFolder::claim(&job.out, FolderKind::CurveReport, job.force, &[])?;
    let mut rows = Vec::new();
    let quiet = Narration {
        bars: false,
        epoch_lines: false,
    };
    for &fraction in &job.fractions {
        for &seed in &job.seeds {
            let mut run = job.run.clone();
            run.seed = seed;
            for t in &mut run.tasks {
                t.train_fraction = fraction;
            }
            if job.settings.progress {
                eprintln!("curve: {:.0} % of train, seed {seed}", 100.0 * fraction);
            }
            let spec = TrainSpec::new(run, job.settings.clone(), None, false)?;
            let res = train::run(&spec, quiet)?;
            for t in &res.tasks {
                let Some(m) = t.test.as_ref().or(t.dev.as_ref()) else {
                    continue;
                };
                rows.push(CurveRow {
                    task: t.data.config.name.clone(),
                    fraction,
                    seed,
                    train_rows: t.data.train.len() as u64,
                    split: if t.test.is_some() { "test" } else { "dev" }.into(),
                    score: m.entity_f1.unwrap_or(m.accuracy),
                    macro_f1: m.macro_f1,
                    train_seconds: res.report.seconds,
                });
            }
        }
    }
    let markdown = markdown(
        &rows,
        &job.run.train.regime.to_string(),
        job.run.train.head.name(),
    )?;
    out.write(|dir| {
        report::write_frame(dir, "curve", &mut frame(&rows)?)?;
        let plot_dir = dir.join("plots");
        std::fs::create_dir(&plot_dir).map_err(|e| crate::error::Error::io(&plot_dir, e))?;
        plots::data_efficiency(&rows, &plot_dir.join("curve.svg"))?;
        fsutil::write_bytes_atomic(&dir.join("run.toml"), job.remake_file()?.as_bytes())?;
        fsutil::write_bytes_atomic(&dir.join("curve.md"), markdown.as_bytes())?;
        report::write_html(dir, "frostline curve", &markdown)
    })?;
    let text = format!(
        "{markdown}\nreport: {}\n",
        job.out.join("curve.md").display()
    );
    let json = serde_json::json!({ "rows": rows, "report_dir": job.out });
    Ok(Outcome::new(text, json))
}
