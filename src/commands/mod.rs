//! One file per subcommand: orchestration only (a resolved job in, an [`Outcome`] out); the work
//! is done by the library modules they call.

pub(crate) mod compare;
pub(crate) mod doctor;
pub(crate) mod embed;
pub(crate) mod eval;
pub(crate) mod export;
pub(crate) mod mteb;
pub(crate) mod predict;
pub(crate) mod quantize;
pub(crate) mod train;

use crate::cli::jobs::Job;
use crate::error::Result;

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

/// Runs a resolved job.
pub(crate) fn run(job: Job) -> Result<Outcome> {
    match job {
        Job::Doctor { model, ort_lib } => Ok(doctor::run(ort_lib.as_deref(), &model)),
        Job::Embed(j) => embed::run(&j),
        Job::Train(spec, source) => train::run(&spec, &source),
        Job::Predict(j) => predict::run(&j),
        Job::Eval(j) => eval::run(&j),
        Job::Compare(j) => compare::run(&j),
        Job::Mteb(j) => mteb::run(&j),
        Job::Export(j) => export::run(&j),
        Job::Quantize(j) => quantize::run(&j),
    }
}
