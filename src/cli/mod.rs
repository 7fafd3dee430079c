//! Command-line flags (clap) as typed, then turned into one complete job per subcommand by
//! [`jobs::resolve`] — the one place where defaults and paths are decided.

pub(crate) mod jobs;

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::backbone::choice::ModelSource;
use crate::backbone::{Device, Kernels, QuantMethod};
use crate::heads::HeadKind;
use crate::kind::TaskKind;
use crate::regime::Regime;
use crate::runfile::{RunFile, TaskFlags};
use crate::tasks::SplitName;

/// Runs a parsed command line: resolve (every setting decided once) → run → print the outcome
/// (or the error) → the process exit code (README.md, "Exit codes").
pub fn run(cli: Cli) -> u8 {
    let result = jobs::resolve(cli).and_then(|r| Ok((r.json, crate::commands::run(r.job)?)));
    match result {
        Ok((json, outcome)) => {
            for w in &outcome.warnings {
                eprintln!("warning: {w}");
            }
            if !outcome.log.is_empty() {
                eprintln!("{}", outcome.log);
            }
            let mut stdout = std::io::stdout().lock();
            let _ = if json {
                writeln!(stdout, "{}", outcome.json)
            } else {
                write!(stdout, "{}", outcome.text)
            };
            outcome.exit
        }
        Err(e) => {
            eprintln!("frostline: error: {e}");
            e.kind().exit_code()
        }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "frostline",
    version,
    about = "Multi-task sentence transformers where freezing is the point"
)]
pub struct Cli {
    /// Path to libonnxruntime.so (default: $ORT_DYLIB_PATH, the frostline venv, python3's onnxruntime).
    #[arg(long, global = true, value_name = "PATH")]
    pub ort_lib: Option<PathBuf>,
    /// Print one JSON object with the summary figures on stdout instead of the human summary.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Where README.md states a flag's default ("`--flag` … default N" before the line or the
    /// parenthesis ends), it is the binary's.
    #[test]
    fn readme_states_the_binary_s_defaults() {
        let readme = include_str!("../../README.md");
        let cli = super::Cli::command();
        let mut checked = 0;
        for sub in cli.get_subcommands() {
            for arg in sub.get_arguments() {
                let (Some(long), [default]) = (arg.get_long(), arg.get_default_values()) else {
                    continue;
                };
                let default = default.to_string_lossy();
                let flag = format!("`--{long}`");
                for (at, _) in readme.match_indices(&flag) {
                    let rest = &readme[at + flag.len()..];
                    let window = &rest[..rest.find(['\n', ')']).unwrap_or(rest.len())];
                    let Some(d) = window.find("default ") else {
                        continue;
                    };
                    let stated: String = window[d + 8..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == ',' || *c == '.')
                        .filter(|c| *c != ',')
                        .collect();
                    assert_eq!(
                        stated.trim_end_matches('.'),
                        default,
                        "README says --{long} defaults to {stated}, the binary to {default}"
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked >= 3, "only {checked} stated defaults found");
    }

    /// Every flag of every subcommand says what it does, and every subcommand ends its --help
    /// with an example.
    #[test]
    fn every_flag_has_help_and_every_subcommand_an_example() {
        let cli = super::Cli::command();
        for sub in cli.get_subcommands() {
            let name = sub.get_name();
            if name == "help" {
                continue;
            }
            let after = sub
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            assert!(after.contains("frostline "), "{name} has no example");
            for arg in sub.get_arguments() {
                if arg.is_hide_set() || ["help", "version"].contains(&arg.get_id().as_str()) {
                    continue;
                }
                assert!(
                    arg.get_help()
                        .is_some_and(|h| !h.to_string().trim().is_empty()),
                    "{name} --{} has no help text",
                    arg.get_id()
                );
            }
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show where ONNX Runtime was found, its execution providers and the model folder's check.
    #[command(after_help = "Example:\n  frostline doctor --model models/all-MiniLM-L6-v2")]
    Doctor {
        /// Model folder [default: $FROSTLINE_MODEL, then models/all-MiniLM-L6-v2].
        #[arg(long)]
        model: Option<PathBuf>,
    },
    /// Embed texts from a CSV, JSONL, Parquet or text file into .parquet or .npy (through the cache).
    #[command(
        after_help = "Examples:\n  frostline embed --input data/banking77/test.csv --output banking_test.parquet\n  frostline embed --input 'corpus/*.csv' --output vectors/ --shard 0/4 --carry label"
    )]
    Embed(EmbedArgs),
    /// Train (or build training-free) task heads as a run file or the data flags describe, evaluate, checkpoint.
    #[command(
        after_help = "Examples:\n  frostline train --train data/sst2/train.csv --test data/sst2/test.csv --out ckpt\n  frostline train --train data/sst2/train.csv --label-column label --print-run > my-run.toml\n  frostline train --run runs/default.toml --out ckpt\n  frostline train --run runs/default.toml --regime frost-line=4 --set train.epochs=3 --out ckpt-frost"
    )]
    Train(TrainArgs),
    /// Predict every task's label and probability for new texts with a checkpoint.
    #[command(
        after_help = "Examples:\n  frostline predict --checkpoint ckpt --input new.csv --output predictions.parquet\n  frostline predict --checkpoint ckpt --input new.csv --output p.csv --tasks intent --top-k 3 --keep-columns id"
    )]
    Predict(PredictArgs),
    /// Replay MTEB's classification protocol (k per label, 10 experiments, logistic regression).
    #[command(
        after_help = "Example:\n  frostline mteb --train ../shared/data/sst2/train.csv --test ../shared/data/sst2/test.csv --k 8 --out mteb-sst2"
    )]
    Mteb(MtebArgs),
    /// Evaluate a checkpoint on a split: Parquet/CSV tables, Markdown summary, SVG plots.
    #[command(
        after_help = "Examples:\n  frostline eval --checkpoint ckpt\n  frostline eval --checkpoint ckpt --split dev --out ckpt-dev-report --keep-columns id"
    )]
    Eval(EvalArgs),
    /// Train and evaluate every regime on the run file's tasks; one comparison table.
    #[command(
        after_help = "Examples:\n  frostline compare --run runs/default.toml --out compare-report\n  frostline compare --run runs/default.toml --frost-lines 3,5\n  frostline compare --run runs/default.toml --no-frost-line --seeds 3"
    )]
    Compare(CompareArgs),
    /// Accuracy against the share of training labels (frozen heads from the cache: seconds).
    #[command(
        after_help = "Examples:\n  frostline curve --run runs/default.toml --out curve-report\n  frostline curve --train data/tickets/train.csv --test data/tickets/test.csv --text-column body --label-column category --fractions 0.1,0.5,1 --seeds 5"
    )]
    Curve(CurveArgs),
    /// The few-shot protocol: k training rows per label, drawn with each seed; the regimes side
    /// by side on the full test split (frozen head vs contrastive tuning at frost lines).
    #[command(
        after_help = "Examples:\n  frostline fewshot --run runs/default.toml --k 8 --seeds 10\n  frostline fewshot --train data/sst2/train.csv --test data/sst2/test.csv --k 16 --regime frozen-backbone --regime contrastive,frost-line=3"
    )]
    Fewshot(FewshotArgs),
    /// Export a frost-line checkpoint's tuned backbone as one ONNX model folder, or (--with-heads)
    /// any checkpoint as one ONNX graph that predicts.
    #[command(
        after_help = "Examples:\n  frostline export --checkpoint ckpt-frost --out models/minilm-tuned\n  frostline export --checkpoint ckpt --with-heads --out served/intent\n  python scripts/predict_onnx.py --model served/intent --input new.csv --output predictions.csv"
    )]
    Export(ExportArgs),
    /// Write an int8 copy of a model folder (per-token by default; static or dynamic on request).
    #[command(
        after_help = "Examples:\n  frostline quantize --model models/all-MiniLM-L6-v2 --out models/all-MiniLM-L6-v2-int8\n  frostline quantize --out models/minilm-static --method static --calibration data/banking77/train.csv"
    )]
    Quantize(QuantizeArgs),
}

#[derive(Debug, Args)]
pub struct QuantizeArgs {
    /// The fp32 model folder to quantize [default: $FROSTLINE_MODEL, then models/all-MiniLM-L6-v2].
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The int8 model folder to write.
    #[arg(long)]
    pub out: PathBuf,
    /// per-token: activations scaled per token at run time (batch-independent, no calibration);
    /// static: ranges fixed from --calibration texts; dynamic: one range per batch (a text's
    /// vector then depends on its batch-mates).
    #[arg(long, value_enum, default_value_t = QuantMethod::PerToken)]
    pub method: QuantMethod,
    /// One weight scale per matrix instead of one per output channel.
    #[arg(long)]
    pub per_tensor: bool,
    /// Texts to calibrate static ranges on (.txt one per line, or .csv/.tsv/.jsonl/.parquet with
    /// --text-column); use texts like the ones you will embed.
    #[arg(long)]
    pub calibration: Option<PathBuf>,
    /// Column of --calibration holding the text (ignored for .txt).
    #[arg(long, default_value = "text")]
    pub text_column: String,
    /// At most this many calibration texts (the first ones).
    #[arg(long, default_value_t = 512)]
    pub calibration_rows: usize,
    /// Replace the output folder even if frostline did not write it (its contents are lost).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub backbone: BackboneArgs,
    /// The checkpoint folder written by `train`; its manifest names the model, the tasks' files
    /// and the dev carve, so the split is re-read exactly as training read it.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Which split of each task to score.
    #[arg(long, value_enum, default_value_t = SplitName::Test)]
    pub split: SplitName,
    /// Report folder [default: CHECKPOINT/eval-SPLIT].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Most confident errors kept per task.
    #[arg(long, default_value_t = 50)]
    pub top_errors: usize,
    /// Input columns (an id, say) copied into `errors` and `predictions`, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub keep_columns: Vec<String>,
    /// Accept a model folder in another numeric format than the heads were trained on (int8
    /// vectors for fp32-trained heads, or the reverse); warned about.
    #[arg(long)]
    pub allow_quantized: bool,
    /// Replace the output folder even if frostline did not write it (its contents are lost).
    #[arg(long)]
    pub force: bool,
}

/// A run file and overrides of its values; shared by `train` and `compare`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The run file (TOML): model, tasks, training settings. Without one, --train and the flags
    /// beside it describe the run (see --print-run).
    #[arg(long, value_name = "FILE", required_unless_present = "train_file")]
    pub run: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataArgs,
    /// Override any run-file value: --set train.epochs=5 --set tasks.intent.loss_weight=2. A path
    /// given here is relative to the current directory, like every flag's; the paths inside the
    /// run file are relative to the file.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Print the run file this command line amounts to (flags and --set applied) and stop:
    /// save it, annotate it, run it with --run.
    #[arg(long)]
    pub print_run: bool,
}

/// A run without a run file: the data flags, one task per label column.
#[derive(Debug, Args)]
pub struct DataArgs {
    /// Training file (.csv, .tsv, .jsonl, .parquet; CoNLL for token-classification): with it
    /// no run file is needed.
    #[arg(long = "train", value_name = "FILE", conflicts_with = "run")]
    pub train_file: Option<PathBuf>,
    /// Dev file (tunes thresholds, stops early) [default: 10 % of --train, stratified].
    #[arg(long = "dev", value_name = "FILE", requires = "train_file")]
    pub dev_file: Option<PathBuf>,
    /// Test file, scored after training.
    #[arg(long = "test", value_name = "FILE", requires = "train_file")]
    pub test_file: Option<PathBuf>,
    /// Column holding the text [default: text].
    #[arg(long, requires = "train_file")]
    pub text_column: Option<String>,
    /// Label columns, comma-separated: one task per column, named after it [default: label].
    #[arg(long, value_delimiter = ',', requires = "train_file")]
    pub label_column: Vec<String>,
    /// What a label is: one class per text, a set of labels per text, or one tag per word.
    #[arg(long, value_enum, requires = "train_file")]
    pub kind: Option<TaskKind>,
    /// Field separator of the .csv / .tsv files when not the extension's: one character, or tab.
    #[arg(long, value_parser = check_delimiter, requires = "train_file")]
    pub delimiter: Option<String>,
}

/// A `--delimiter` value checked as a field separator, kept as given (it is written into run
/// files as the user spelled it).
fn check_delimiter(s: &str) -> Result<String, String> {
    crate::data::parse_delimiter(s).map(|_| s.to_string())
}

impl RunArgs {
    /// The run these flags name — the file, or the data flags — with `overrides` applied (the
    /// shortcut flags first, then every --set), and its model as a recorded choice.
    pub(crate) fn load(
        &self,
        overrides: &[String],
    ) -> crate::error::Result<(RunFile, Option<(PathBuf, ModelSource)>)> {
        match (&self.run, &self.data.train_file) {
            (Some(path), _) => {
                let run = RunFile::load(path, overrides)?;
                let recorded = run
                    .model
                    .clone()
                    .map(|m| (m, ModelSource::RunFile(path.clone())));
                Ok((run, recorded))
            }
            (None, Some(train)) => {
                let flags = TaskFlags {
                    train: train.clone(),
                    dev: self.data.dev_file.clone(),
                    test: self.data.test_file.clone(),
                    text_column: self.data.text_column.clone(),
                    label_columns: self.data.label_column.clone(),
                    kind: self.data.kind,
                    delimiter: self.data.delimiter.clone(),
                };
                Ok((RunFile::from_flags(&flags, overrides)?, None))
            }
            (None, None) => Err(crate::error::Error::Usage(
                "give a run file (--run FILE) or the data (--train FILE)".into(),
            )),
        }
    }
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    #[command(flatten)]
    pub backbone: BackboneArgs,
    #[command(flatten)]
    pub run: RunArgs,
    /// Report folder (compare.{parquet,csv,md}, plots/, checkpoints/).
    #[arg(long, default_value = "compare-report")]
    pub out: PathBuf,
    /// Frost lines to measure (e.g. --frost-lines 4,5): for each N, frost-line=N,
    /// bitfit,frost-line=N, lora,frost-line=N and freeze-head=<task>,frost-line=N rows (layers
    /// ≥ N train with the heads). Default: the top layer alone (N = layers − 1).
    #[arg(long, value_delimiter = ',', conflicts_with = "no_frost_line")]
    pub frost_lines: Vec<usize>,
    /// Measure no frost line (only the regimes that run on the sentence cache).
    #[arg(long)]
    pub no_frost_line: bool,
    /// Train every variant with K seeds (the run's seed and the K − 1 after it): scores as
    /// mean ± std, and the recommendation weighs differences against that spread.
    #[arg(long, value_name = "K", default_value_t = 1)]
    pub seeds: u64,
    /// Replace the output folder even if frostline did not write it (its contents are lost).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct CurveArgs {
    #[command(flatten)]
    pub backbone: BackboneArgs,
    #[command(flatten)]
    pub run: RunArgs,
    /// Shares of each task's train rows to train on, comma-separated, each in (0, 1].
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0.01,0.02,0.05,0.1,0.25,0.5,1"
    )]
    pub fractions: Vec<f64>,
    /// Seeds per share (the run's seed and the ones after it): each draws its own sample.
    #[arg(long, value_name = "K", default_value_t = 3)]
    pub seeds: u64,
    /// Report folder (curve.{parquet,csv,md}, plots/curve.svg).
    #[arg(long, default_value = "curve-report")]
    pub out: PathBuf,
    /// Replace the output folder even if frostline did not write it (its contents are lost).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct FewshotArgs {
    #[command(flatten)]
    pub backbone: BackboneArgs,
    #[command(flatten)]
    pub run: RunArgs,
    /// Training rows per label (a label with fewer keeps all of its rows).
    #[arg(long, default_value_t = 8)]
    pub k: usize,
    /// Seeds (the run's seed and the ones after it): each draws its own k rows per label.
    #[arg(long, value_name = "COUNT", default_value_t = 5)]
    pub seeds: u64,
    /// A regime to run, once per flag [default: frozen-backbone, contrastive,frost-line=0 and
    /// contrastive at half the model's depth].
    #[arg(long = "regime", value_parser = parse_regime)]
    pub regimes: Vec<Regime>,
    /// Report folder (fewshot.{parquet,csv,md}, samples.csv, report.html).
    #[arg(long, default_value = "fewshot-report")]
    pub out: PathBuf,
    /// Replace the output folder even if frostline did not write it (its contents are lost).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A frost-line checkpoint whose tuned layers go into the exported model.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Model folder to write (a full model: model.onnx + tokenizer/config/pooling + weights).
    #[arg(long)]
    pub out: PathBuf,
    /// The base model folder, if it moved since training (checked by content hash) [default:
    /// $FROSTLINE_MODEL, then the checkpoint's].
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The task whose tuned backbone to export, where tasks own their adapters
    /// (`tasks.X.adapter = "own"`); a checkpoint of one shared copy needs none.
    #[arg(long, conflicts_with = "with_heads")]
    pub task: Option<String>,
    /// One ONNX graph with pooling and every task's head: ids and mask in, the embedding and
    /// each task's probabilities out (per-task adapters as branches above the frost line; int8
    /// below it where the backbone runs int8), with heads.json saying how to decide labels.
    #[arg(long)]
    pub with_heads: bool,
    /// Replace the output folder even if frostline did not write it (its contents are lost).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub backbone: BackboneArgs,
    #[command(flatten)]
    pub run: RunArgs,
    /// Shortcut for --set train.regime=…: fully-frozen, frozen-backbone,
    /// freeze-head=a|b|TASK[,bitfit|lora][,frost-line=N], frost-line=N, bitfit,frost-line=N,
    /// lora,frost-line=N (train.lora: rank, alpha, targets), contrastive,frost-line=N.
    #[arg(long, value_parser = parse_regime)]
    pub regime: Option<Regime>,
    /// Shortcut for --set train.head=….
    #[arg(long, value_enum)]
    pub head: Option<HeadKind>,
    /// Shortcut for --set train.from=…: checkpoint holding heads to start from / keep frozen.
    #[arg(long)]
    pub from: Option<PathBuf>,
    /// Shortcut for --set seed=….
    #[arg(long)]
    pub seed: Option<u64>,
    /// Shortcut for --set train.quantize_frozen=true: with a frost line, run the frozen layers
    /// below it in int8 (per-token) while the layers above train in fp32.
    #[arg(long)]
    pub quantize_frozen: bool,
    /// Checkpoint folder to write.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace the output folder even if frostline did not write it (its contents are lost).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    #[command(flatten)]
    pub backbone: BackboneArgs,
    /// The checkpoint folder written by `train` (its manifest names the model, the tasks and the
    /// max length; nothing needs repeating).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Texts to label: .csv, .jsonl, .parquet or .txt (one text per line), a folder of them, a
    /// quoted glob, or a frostline dataset folder.
    #[arg(long)]
    pub input: PathBuf,
    /// Column holding the text (default: the one the checkpoint was trained with).
    #[arg(long)]
    pub text_column: Option<String>,
    /// Field separator of a .csv / .tsv input when not the extension's: one character, or tab.
    #[arg(long, value_parser = crate::data::parse_delimiter)]
    pub delimiter: Option<u8>,
    /// Output: .csv or .parquet, input order: the kept input columns, then per task
    /// `<task>_label` (a multi-label task's labels joined by its separator) and `<task>_prob`
    /// (the probability of that prediction), plus the columns the flags below add.
    #[arg(long)]
    pub output: PathBuf,
    /// Only these tasks' heads (comma-separated names; default: every task).
    #[arg(long, value_delimiter = ',')]
    pub tasks: Option<Vec<String>>,
    /// Add `<task>_top_k`: the K most probable labels with their probabilities (a list of
    /// {label, prob} in Parquet, JSON text in CSV).
    #[arg(long, value_name = "K")]
    pub top_k: Option<usize>,
    /// Add `<task>_probs`: every label's probability (a struct column in Parquet, a JSON object
    /// in CSV).
    #[arg(long)]
    pub all_probs: bool,
    /// Input columns copied to the output (comma-separated; "" for none). Default: all of them.
    #[arg(long, value_delimiter = ',')]
    pub keep_columns: Option<Vec<String>>,
    /// Token tasks: leave out entities whose score (the mean probability of their tags) is
    /// below S, in [0, 1].
    #[arg(long, value_name = "S")]
    pub min_score: Option<f32>,
    /// Accept a model folder in another numeric format than the heads were trained on (int8
    /// vectors for fp32-trained heads, or the reverse); warned about.
    #[arg(long)]
    pub allow_quantized: bool,
}

#[derive(Debug, Args)]
pub struct MtebArgs {
    #[command(flatten)]
    pub backbone: BackboneArgs,
    /// Training file the k examples per label are drawn from (.csv, .jsonl, .parquet).
    #[arg(long)]
    pub train: PathBuf,
    /// Test file every experiment is scored on (same columns as --train).
    #[arg(long)]
    pub test: PathBuf,
    /// Column holding the text.
    #[arg(long, default_value = "text")]
    pub text_column: String,
    /// Column holding the label.
    #[arg(long, default_value = "label")]
    pub label_column: String,
    /// Examples per label in each experiment.
    #[arg(long, default_value_t = 8)]
    pub k: usize,
    /// Experiments, each a fresh draw of k per label and a fresh fit (MTEB runs 10).
    #[arg(long, default_value_t = 10)]
    pub experiments: usize,
    /// numpy RandomState seed (MTEB uses 42).
    #[arg(long, default_value_t = 42)]
    pub seed: u32,
    /// Report folder: mteb.{parquet,csv} (one row per experiment), mteb.md, mteb.json.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace the output folder even if frostline did not write it (its contents are lost).
    #[arg(long)]
    pub force: bool,
}

/// `--regime`, checked as it is parsed, so a typo is the flag's error, not the run file's.
fn parse_regime(s: &str) -> Result<Regime, String> {
    s.parse().map_err(|e: crate::Error| e.to_string())
}

impl TrainArgs {
    /// Run-file overrides: the shortcut flags first, then every --set in order.
    pub fn all_overrides(&self) -> Vec<String> {
        let mut o = Vec::new();
        if let Some(r) = &self.regime {
            o.push(format!("train.regime=\"{r}\""));
        }
        if let Some(h) = &self.head {
            o.push(format!("train.head=\"{}\"", h.name()));
        }
        if let Some(f) = &self.from {
            o.push(format!("train.from={}", toml_string(&f.to_string_lossy())));
        }
        if let Some(s) = self.seed {
            o.push(format!("seed={s}"));
        }
        if self.quantize_frozen {
            o.push("train.quantize_frozen=true".into());
        }
        o.extend(self.run.overrides.iter().cloned());
        o
    }
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// Flags that decide how the backbone runs; shared by every command that embeds.
#[derive(Debug, Args, Clone)]
pub struct BackboneArgs {
    /// Model folder made by scripts/export_onnx.py [default: $FROSTLINE_MODEL, then the run
    /// file's / checkpoint's model, then models/all-MiniLM-L6-v2].
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Execution provider: cpu, cuda (fails if unavailable) or auto (CUDA if it works, says which ran).
    #[arg(long, value_enum, default_value_t = Device::Cpu)]
    pub device: Device,
    /// Whose kernels run the layers on CPU: frostline's fused ones (the graph rewritten in
    /// memory), or ONNX Runtime's on the graph as written — the bits a served graph gives under
    /// ONNX Runtime (int8 vectors of the two agree to int8 rounding and are cached apart)
    /// [default: the checkpoint's, else frostline].
    #[arg(long, value_enum)]
    pub kernels: Option<Kernels>,
    /// Truncation length in tokens [default: the checkpoint's, else the model's
    /// sentence_bert_config.json].
    #[arg(long)]
    pub max_length: Option<usize>,
    /// ONNX Runtime intra-op threads (0 = one per physical core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Padded tokens per batch (rows × longest row); batches are length-sorted and packed to it.
    #[arg(long, default_value_t = crate::embedder::DEFAULT_TOKEN_BUDGET)]
    pub batch_tokens: usize,
    /// At most this many rows per batch.
    #[arg(long, default_value_t = crate::embedder::DEFAULT_MAX_BATCH_ROWS)]
    pub max_batch: usize,
    /// Embedding cache root (default: $FROSTLINE_CACHE or ~/.cache/frostline/embeddings).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Hide the progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Rows per cache chunk (each chunk is one atomic write; smaller = finer-grained resume).
    #[arg(long, default_value_t = crate::embedder::DEFAULT_ROWS_PER_CHUNK, hide = true)]
    pub chunk_rows: usize,
}

#[derive(Debug, Args)]
pub struct EmbedArgs {
    #[command(flatten)]
    pub backbone: BackboneArgs,
    /// Input: a .csv, .tsv, .jsonl/.ndjson, .parquet or .txt file (one text per line), a folder of
    /// them, a quoted glob ('data/*.csv') or a frostline dataset folder; read in windows of rows.
    #[arg(long)]
    pub input: PathBuf,
    /// Column holding the text (ignored for .txt).
    #[arg(long, default_value = "text")]
    pub text_column: String,
    /// Field separator of .csv / .tsv inputs when not the extension's: one character, or tab.
    #[arg(long, value_parser = crate::data::parse_delimiter)]
    pub delimiter: Option<u8>,
    /// Column carried into Parquet output as the row id (default: `id` if the input has one).
    #[arg(long)]
    pub id_column: Option<String>,
    /// Output: .parquet (input order, id/text + `embedding`), .npy (f32 [N, H]), or DIR/ (a
    /// Parquet dataset: part-I-of-N.parquet per shard, then _SUCCESS once all parts are there).
    #[arg(long)]
    pub output: PathBuf,
    /// Embed shard I of N (0-based) into DIR/part-I-of-N.parquet [default: from
    /// $JOB_COMPLETION_INDEX with --shards, or $SLURM_ARRAY_TASK_ID / $SLURM_ARRAY_TASK_COUNT].
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// The shard count when the index comes from the scheduler ($JOB_COMPLETION_INDEX).
    #[arg(long, value_name = "N")]
    pub shards: Option<usize>,
    /// More input columns carried into Parquet output, e.g. --carry label,source (for a dataset
    /// that trains heads later).
    #[arg(long, value_delimiter = ',', value_name = "COLS")]
    pub carry: Vec<String>,
    /// Rows read, embedded and written at a time (memory follows this, not the input).
    #[arg(long, default_value_t = 32768)]
    pub window_rows: usize,
    /// CoNLL input (.conll): the layer whose states make the word features, one row per word
    /// (0 = the embeddings; the model's layer count = its last layer).
    #[arg(long, default_value_t = crate::kind::DEFAULT_TOKEN_LAYER)]
    pub token_layer: usize,
    /// CoNLL input: a word's feature is its first sub-token's state, or their mean.
    #[arg(long, value_enum, default_value = "first")]
    pub word_feature: WordFeatureArg,
}

/// `--word-feature` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WordFeatureArg {
    First,
    Mean,
}

impl From<WordFeatureArg> for crate::align::WordFeature {
    fn from(a: WordFeatureArg) -> Self {
        match a {
            WordFeatureArg::First => Self::First,
            WordFeatureArg::Mean => Self::Mean,
        }
    }
}
