//! One file per subcommand: orchestration only (a resolved job in, an [`Outcome`] out); the work
//! is done by the library modules they call.

pub(crate) mod compare;
pub(crate) mod curve;
pub(crate) mod doctor;
pub(crate) mod embed;
pub(crate) mod eval;
pub(crate) mod export;
pub(crate) mod fewshot;
pub(crate) mod mteb;
pub(crate) mod predict;
pub(crate) mod quantize;
pub(crate) mod train;

use std::path::PathBuf;

use crate::backbone::choice::{ModelChoice, ModelSource};
use crate::error::Result;
use crate::streaming::EmbedJob;
use crate::train::TrainSpec;
use compare::CompareJob;
use curve::CurveJob;
use eval::EvalJob;
use export::ExportJob;
use fewshot::FewshotJob;
use mteb::MtebJob;
use predict::PredictJob;
use quantize::QuantizeJob;

/// What a command reports: the human summary, the same figures as JSON (`--json`), warnings for
/// stderr, and an exit status for commands that finish but find problems (`doctor`).
pub(crate) struct Outcome {
    /// For stdout (without `--json`).
    pub text: String,
    /// For stderr in either mode (progress-style summaries, e.g. `embed`'s).
    pub log: String,
    pub json: serde_json::Value,
    pub warnings: Vec<String>,
    pub exit: u8,
}

impl Outcome {
    pub(crate) fn new(text: String, json: serde_json::Value) -> Self {
        Self {
            text,
            log: String::new(),
            json,
            warnings: Vec::new(),
            exit: 0,
        }
    }
}

/// One subcommand's job, every setting decided (by `cli::jobs`, where flags become jobs).
pub(crate) enum Job {
    Doctor {
        model: ModelChoice,
        ort_lib: Option<PathBuf>,
    },
    Embed(EmbedJob),
    Train(TrainSpec, ModelSource),
    Predict(PredictJob),
    Eval(EvalJob),
    Compare(CompareJob),
    Curve(CurveJob),
    Fewshot(FewshotJob),
    Mteb(MtebJob),
    Export(ExportJob),
    Quantize(QuantizeJob),
    /// `--print-run`: the run file a command line amounts to, printed instead of run.
    PrintRun(String),
}

/// Runs a resolved job.
pub(crate) fn run(job: Job) -> Result<Outcome> {
    match job {
        Job::Doctor { model, ort_lib } => Ok(doctor::run(ort_lib.as_deref(), &model)),
        Job::Embed(j) => embed::run(&j),
        Job::Train(spec, source) => train::run(&spec, &source),
        Job::Predict(j) => predict::run(&j),
        Job::Eval(j) => eval::run(&j),
        Job::Compare(j) => compare::run(&j),
        Job::Curve(j) => curve::run(&j),
        Job::Fewshot(j) => fewshot::run(&j),
        Job::Mteb(j) => mteb::run(&j),
        Job::Export(j) => export::run(&j),
        Job::Quantize(j) => quantize::run(&j),
        Job::PrintRun(toml) => Ok(Outcome::new(
            toml.clone(),
            serde_json::json!({ "run": toml }),
        )),
    }
}
