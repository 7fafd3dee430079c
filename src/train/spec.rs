//! A training run with every setting decided: the job `train` and `compare` hand to
//! [`super::run`]. Made by `cli::jobs` from the flags and the run file; everything that can be
//! refused without reading data is refused here.

use std::path::PathBuf;

use crate::embedder::EmbedSettings;
use crate::error::{Error, Result};
use crate::nn::gemm::{Cpu, Kernel, Precision, PrecisionChoice};
use crate::regime::Plan;
use crate::runfile::RunFile;

/// A training run with every setting decided: the run file's tasks and training settings, how
/// the backbone runs, the regime's plan, and where the checkpoint goes.
#[derive(Debug, Clone)]
pub struct TrainSpec {
    pub run: RunFile,
    pub settings: EmbedSettings,
    pub plan: Plan,
    pub out: Option<PathBuf>,
    /// Replace `out` even if frostline did not write it.
    pub force: bool,
    /// The kernel the training products run on (`run.train.precision` on this CPU; the run
    /// file then holds the precision it resolved to, never `auto`).
    pub kernel: Kernel,
    /// What `precision = "auto"` chose and why, for the run's output.
    pub precision_note: Option<String>,
}

impl TrainSpec {
    /// Computes the regime's plan for `run`'s tasks; refuses what cannot work before any data
    /// is read.
    pub fn new(
        mut run: RunFile,
        settings: EmbedSettings,
        out: Option<PathBuf>,
        force: bool,
    ) -> Result<Self> {
        let head = run.train.head_spec();
        for t in &run.tasks {
            t.kind.check_settings(&t.name, &head, t.token_layer)?;
        }
        let names: Vec<String> = run.tasks.iter().map(|t| t.name.clone()).collect();
        let plan = run
            .train
            .regime
            .plan(&names, &head, run.train.from.is_some())?;
        if plan.contrastive {
            for t in &run.tasks {
                t.kind.check_pairs(&t.name)?;
            }
        }
        if let Some(t) = run.tasks.iter().find(|t| !t.adapter.is_shared()) {
            let why = match plan.frost_line {
                None => Some("has no frost line"),
                Some(_) if plan.contrastive => Some("tunes one shared copy by contrastive pairs"),
                Some(_) => None,
            };
            if let Some(why) = why {
                return Err(Error::Usage(format!(
                    "tasks.{}.adapter = \"own\" gives the task its own copy of what trains above a frost line, but regime {} {why}; use lora,frost-line=N, bitfit,frost-line=N or frost-line=N, or drop the setting",
                    t.name, run.train.regime
                )));
            }
        }
        if run.train.quantize_frozen && plan.frost_line.is_none() {
            return Err(Error::Usage(format!(
                "train.quantize_frozen runs the graph below a frost line in int8, but regime {} has none; use frost-line=N (or freeze-head=TASK,frost-line=N), or quantize the whole model with frostline quantize",
                run.train.regime
            )));
        }
        run.train.resolve_defaults();
        let (kernel, precision_note) = resolve_precision(run.train.precision)?;
        run.train.precision = match kernel.precision() {
            Precision::Fp32 => PrecisionChoice::Fp32,
            Precision::Bf16 => PrecisionChoice::Bf16,
        };
        Ok(Self {
            run,
            settings,
            plan,
            out,
            force,
            kernel,
            precision_note,
        })
    }
}

impl TrainSpec {
    /// The kernel the products run on, in words, with what `auto` chose where it chose.
    pub fn products(&self) -> String {
        match &self.precision_note {
            Some(note) => format!("{} ({note})", self.kernel.describe()),
            None => self.kernel.describe(),
        }
    }
}

/// The kernel for a precision choice on this CPU: bf16 where asked for and missing is refused
/// naming the missing feature; `auto` says what it took.
fn resolve_precision(choice: PrecisionChoice) -> Result<(Kernel, Option<String>)> {
    let cpu = Cpu::get();
    Ok(match choice {
        PrecisionChoice::Fp32 => (Kernel::best_fp32(), None),
        PrecisionChoice::Bf16 => (
            Kernel::for_precision(Precision::Bf16)
                .map_err(|e| Error::Usage(format!("train.precision: {e}")))?,
            None,
        ),
        PrecisionChoice::Auto => match Kernel::bf16() {
            Some(k) => (
                k,
                Some(format!(
                    "precision auto: bf16 products (fp32 accumulation and master weights), as this CPU ({}) has {}",
                    cpu.model,
                    match k {
                        Kernel::AmxBf16 => "AMX-BF16",
                        _ => "AVX512-BF16",
                    }
                )),
            ),
            None => (
                Kernel::best_fp32(),
                Some(format!(
                    "precision auto: fp32, as this CPU ({}) has no AVX512-BF16",
                    cpu.model
                )),
            ),
        },
    })
}
