//! The run file (TOML): model, tasks and training settings described once. Every value can be
//! overridden with `--set key=value` (dotted path; tasks by name: `tasks.intent.train=...`).
//! Unknown keys are errors that name the key. Paths in the file are relative to the file's folder;
//! paths given with `--set` are relative to the current directory, like any other flag.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::align::WordFeature;
use crate::decision::{TagDecoding, ThresholdTuning};
use crate::error::{Error, Result};
use crate::heads::{HeadKind, HeadSpec, MlpShape};
use crate::kind::{ClassWeights, TaskKind};
use crate::nn::adapter::{Adapter, LoraShape};
use crate::nn::gemm::PrecisionChoice;
use crate::nn::schedule::Decay;
use crate::pairs::PairRecipe;
use crate::regime::Regime;
use crate::sampling::Sampling;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunFile {
    /// The model folder; `--model` and `$FROSTLINE_MODEL` take precedence (see `cli::jobs`).
    #[serde(default)]
    pub model: Option<PathBuf>,
    #[serde(default = "defaults::seed")]
    pub seed: u64,
    #[serde(default)]
    pub train: TrainConfig,
    pub tasks: Vec<TaskConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    pub name: String,
    #[serde(default)]
    pub kind: TaskKind,
    pub train: PathBuf,
    #[serde(default)]
    pub dev: Option<PathBuf>,
    #[serde(default)]
    pub test: Option<PathBuf>,
    #[serde(default = "defaults::text_column")]
    pub text_column: String,
    /// The field separator of the task's .csv / .tsv files when not the extension's (`;`, `tab`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<String>,
    #[serde(default = "defaults::label_column")]
    pub label_column: String,
    #[serde(default = "defaults::one")]
    pub loss_weight: f32,
    #[serde(default)]
    pub class_weights: ClassWeights,
    /// Share of train carved (stratified, seeded) into dev when `dev` is absent.
    #[serde(default = "defaults::dev_fraction")]
    pub dev_fraction: f64,
    /// Share of the train rows (after any dev carve) to train on: a stratified, seeded sample
    /// keeping at least one row of every label with two or more (`frostline curve` sweeps it).
    #[serde(default = "defaults::one_f64")]
    pub train_fraction: f64,
    /// Train on k rows of each label (seeded; a label with fewer keeps all of its rows, a
    /// multi-label row counts for its first label): the few-shot protocol (`frostline fewshot`
    /// sets it per seed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_label: Option<usize>,
    /// Zero-shot only: a CSV with columns `label,description` (default: the label names).
    #[serde(default)]
    pub label_descriptions: Option<PathBuf>,
    /// Multi-label only: what joins the label names in the label column.
    #[serde(default = "defaults::label_separator")]
    pub label_separator: String,
    /// Multi-label only: one decision threshold, or one per label.
    #[serde(default)]
    pub threshold: ThresholdTuning,
    /// Token tasks: the layer whose states make the word features (0 = the embeddings, the
    /// model's layer count = its last layer). Default: the `from` checkpoint's; else the top
    /// layer with a frost line (every trained layer is read), [`crate::kind::DEFAULT_TOKEN_LAYER`]
    /// without (the rule: [`TaskKind::token_layer`]).
    /// Training records the layer used in the checkpoint.
    #[serde(default)]
    pub token_layer: Option<usize>,
    /// Token tasks: which sub-token states make a word's feature.
    #[serde(default)]
    pub word_feature: WordFeature,
    /// Token tasks: constrained BIO decoding or per-word argmax.
    #[serde(default)]
    pub decoding: TagDecoding,
    /// Above a frost line: `shared` (one copy of what the regime tunes, trained by every task)
    /// or `own` (this task's own LoRA factors, biases or layers on the one frozen backbone).
    #[serde(default, skip_serializing_if = "Adapter::is_shared")]
    pub adapter: Adapter,
    /// Whether a file or flags described this task: errors name what sets a value.
    #[serde(skip)]
    pub described_by: DescribedBy,
}

/// What described a run: a run file, or `train`'s / `compare`'s data flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DescribedBy {
    #[default]
    RunFile,
    Flags,
}

/// A run described by flags instead of a file (`frostline train --train t.csv …`): one task
/// per label column, named after it. Paths are relative to the current directory.
#[derive(Debug, Clone, Default)]
pub struct TaskFlags {
    pub train: PathBuf,
    pub dev: Option<PathBuf>,
    pub test: Option<PathBuf>,
    pub text_column: Option<String>,
    /// Empty: the default `label` (one task).
    pub label_columns: Vec<String>,
    pub kind: Option<TaskKind>,
    pub delimiter: Option<String>,
}

impl TaskFlags {
    /// The run-file tree these flags amount to; the same deserializing and checks as a file's.
    fn to_value(&self) -> toml::Value {
        let path = |p: &Path| {
            toml::Value::String(
                std::path::absolute(p)
                    .unwrap_or_else(|_| p.to_path_buf())
                    .to_string_lossy()
                    .into_owned(),
            )
        };
        let kind = self.kind.unwrap_or_default();
        let columns = match (self.label_columns.is_empty(), kind.input()) {
            // A task of words reads CoNLL: no label column, one task.
            (_, crate::kind::Input::Words) => vec![None],
            (true, _) => vec![Some(defaults::label_column())],
            (false, _) => self.label_columns.iter().cloned().map(Some).collect(),
        };
        let tasks = columns
            .into_iter()
            .map(|column| {
                let mut t = toml::Table::new();
                let name = column.as_deref().map_or("tags".into(), task_name_of_column);
                t.insert("name".into(), name.into());
                if kind != TaskKind::default() {
                    let kind = toml::Value::try_from(kind).expect("a kind is a string");
                    t.insert("kind".into(), kind);
                }
                t.insert("train".into(), path(&self.train));
                for (key, file) in [("dev", &self.dev), ("test", &self.test)] {
                    if let Some(f) = file {
                        t.insert(key.into(), path(f));
                    }
                }
                if let Some(c) = &self.text_column {
                    t.insert("text_column".into(), c.clone().into());
                }
                if let Some(d) = &self.delimiter {
                    t.insert("delimiter".into(), d.clone().into());
                }
                if let Some(c) = column {
                    t.insert("label_column".into(), c.into());
                }
                toml::Value::Table(t)
            })
            .collect();
        let mut root = toml::Table::new();
        root.insert("tasks".into(), toml::Value::Array(tasks));
        toml::Value::Table(root)
    }
}

/// A task's name from its label column: the characters a task name may hold, others as `_`.
fn task_name_of_column(column: &str) -> String {
    let name: String = column
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if name.trim_matches('_').is_empty() {
        "task".into()
    } else {
        name
    }
}

impl TaskConfig {
    /// What sets one of this task's keys, for an error about its value: the flag where flags
    /// described the task, else the run-file key (and its `--set`).
    pub fn setter(&self, field: &str) -> String {
        match (self.described_by, field) {
            (DescribedBy::Flags, "text_column") => "--text-column".into(),
            (DescribedBy::Flags, "label_column") => "--label-column".into(),
            _ => {
                let key = format!("tasks.{}.{field}", self.name);
                format!("{key} (in the run file, or --set {key}=NAME)")
            }
        }
    }

    /// A token task's layer once resolved: training decides it before reading any data
    /// ([`TaskKind::token_layer`]) and a loaded checkpoint's is checked present.
    pub fn resolved_token_layer(&self) -> usize {
        self.token_layer
            .expect("a token task's layer is resolved before its features are made")
    }

    /// The field separator of the task's table files, `None` for the extension's (checked when
    /// the run loads).
    pub fn delimiter(&self) -> Option<u8> {
        self.delimiter
            .as_deref()
            .and_then(|d| crate::data::parse_delimiter(d).ok())
    }

    /// The labels of one label-column value, as this task's kind reads it.
    pub fn label_set<'a>(&self, value: &'a str) -> Vec<&'a str> {
        self.kind.label_set(value, &self.label_separator)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub regime: Regime,
    pub head: HeadKind,
    pub mlp_hidden: usize,
    pub dropout: f32,
    /// Passes over the train rows; unset = the head's default ([`HeadKind::defaults`]: 20 for a
    /// linear head, more for an MLP). Training records the value it used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epochs: Option<usize>,
    pub batch_size: usize,
    /// Learning rate of the task heads; unset = the head's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lr: Option<f32>,
    /// Learning rate of what trains in the native layers above the frost line; unset = the
    /// tuning's default ([`crate::nn::adapter::Tuning::default_encoder_lr`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoder_lr: Option<f32>,
    pub weight_decay: f32,
    /// Warm-up as a fraction of all steps.
    pub warmup: f32,
    pub decay: Decay,
    /// Global gradient-norm clip; 0 = off.
    pub clip_norm: f32,
    /// Epochs without a better mean dev macro-F1 before stopping; 0 = never stop early; unset =
    /// the head's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patience: Option<usize>,
    pub label_smoothing: f32,
    pub sampling: Sampling,
    /// Sampling temperature T: task probability ∝ n^(1/T).
    pub temperature: f64,
    /// Checkpoint whose heads every run starts from: kept as they are where the regime freezes
    /// them (`fully-frozen`, the frozen head of `freeze-head`), trained further otherwise.
    pub from: Option<PathBuf>,
    /// Run the graph below the frost line in int8 (per-token activations, per-channel weights)
    /// while the layers above train in fp32: the frozen part is frozen anyway.
    pub quantize_frozen: bool,
    /// Products in fp32 or bf16 (fp32 accumulation, fp32 master weights and optimizer state).
    pub precision: PrecisionChoice,
    /// How regime `contrastive,frost-line=N` draws its pairs and tunes the layers with them.
    pub contrastive: PairRecipe,
    /// The factors of regime `lora,frost-line=N`: rank, α and the dense layers they adapt.
    pub lora: LoraShape,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            regime: Regime::FrozenBackbone,
            head: HeadKind::Linear,
            mlp_hidden: 512,
            dropout: 0.3,
            epochs: None,
            batch_size: 64,
            lr: None,
            encoder_lr: None,
            weight_decay: 0.01,
            warmup: 0.05,
            decay: Decay::Cosine,
            clip_norm: 1.0,
            patience: None,
            label_smoothing: 0.0,
            sampling: Sampling::Proportional,
            temperature: 2.0,
            from: None,
            quantize_frozen: false,
            precision: PrecisionChoice::Fp32,
            contrastive: PairRecipe::default(),
            lora: LoraShape::default(),
        }
    }
}

impl TrainConfig {
    /// The heads' learning rate: the run's, else the head's default.
    pub fn lr(&self) -> f32 {
        self.lr.unwrap_or(self.head.defaults().lr)
    }

    /// The native layers' learning rate: the run's, else the regime's tuning's default.
    pub fn encoder_lr(&self) -> f32 {
        self.encoder_lr
            .unwrap_or(self.regime.tuning().default_encoder_lr())
    }

    /// Epochs: the run's, else the head's default.
    pub fn epochs(&self) -> usize {
        self.epochs.unwrap_or(self.head.defaults().epochs)
    }

    /// Patience: the run's, else the head's default.
    pub fn patience(&self) -> usize {
        self.patience.unwrap_or(self.head.defaults().patience)
    }

    /// Writes the head's and the tuning's defaults into every unset value, so the run (and the checkpoint that
    /// records it) says what trained.
    pub fn resolve_defaults(&mut self) {
        self.lr = Some(self.lr());
        self.epochs = Some(self.epochs());
        self.patience = Some(self.patience());
        self.encoder_lr = Some(self.encoder_lr());
    }

    pub fn head_spec(&self) -> HeadSpec {
        let mlp = MlpShape {
            hidden: self.mlp_hidden,
            dropout: self.dropout,
        };
        HeadSpec::new(self.head, mlp)
    }
}

mod defaults {
    pub(super) fn seed() -> u64 {
        13
    }
    pub(super) fn text_column() -> String {
        "text".into()
    }
    pub(super) fn label_column() -> String {
        "label".into()
    }
    pub(super) fn one() -> f32 {
        1.0
    }
    pub(super) fn one_f64() -> f64 {
        1.0
    }
    pub(super) fn dev_fraction() -> f64 {
        0.1
    }
    pub(super) fn label_separator() -> String {
        "|".into()
    }
}

/// Keys whose values are paths relative to the run file; made absolute, so a checkpoint that
/// records them can be read from any directory.
fn resolve_paths(value: &mut toml::Value, base: &Path) {
    let join = |v: &mut toml::Value| {
        if let toml::Value::String(s) = v {
            let p = base.join(s.as_str());
            *s = std::path::absolute(&p)
                .unwrap_or(p)
                .to_string_lossy()
                .into_owned();
        }
    };
    if let Some(t) = value.as_table_mut() {
        if let Some(v) = t.get_mut("model") {
            join(v);
        }
        if let Some(v) = t.get_mut("train").and_then(|t| t.get_mut("from")) {
            join(v);
        }
        if let Some(tasks) = t.get_mut("tasks").and_then(toml::Value::as_array_mut) {
            for task in tasks {
                for key in ["train", "dev", "test", "label_descriptions"] {
                    if let Some(v) = task.get_mut(key) {
                        join(v);
                    }
                }
            }
        }
    }
}

/// Applies one `key=value` override. The value is read as TOML (numbers, booleans, strings), and
/// taken as a plain string when it is not valid TOML.
fn apply_override(root: &mut toml::Value, assignment: &str) -> Result<()> {
    let (key, raw) = assignment
        .split_once('=')
        .ok_or_else(|| Error::Usage(format!("--set {assignment:?}: expected KEY=VALUE")))?;
    let mut value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let parts: Vec<&str> = key.trim().split('.').collect();
    // A path given with --set is relative to the current directory, like any other flag.
    let is_path = matches!(parts.as_slice(), ["model"] | ["train", "from"])
        || matches!(
            parts.as_slice(),
            ["tasks", _, "train" | "dev" | "test" | "label_descriptions"]
        );
    if let (true, toml::Value::String(s)) = (is_path, &mut value) {
        if let Ok(abs) = std::path::absolute(s.as_str()) {
            *s = abs.to_string_lossy().into_owned();
        }
    }
    let mut node = root;
    for (i, part) in parts.iter().enumerate() {
        let last = i == parts.len() - 1;
        node = match node {
            toml::Value::Array(items) => {
                let idx = items
                    .iter()
                    .position(|t| t.get("name").and_then(toml::Value::as_str) == Some(part))
                    .or_else(|| part.parse::<usize>().ok().filter(|&n| n < items.len()))
                    .ok_or_else(|| Error::Usage(format!("--set {key}: no task named {part:?}")))?;
                &mut items[idx]
            }
            toml::Value::Table(t) => {
                if last {
                    t.insert(part.to_string(), value);
                    return Ok(());
                }
                t.entry(part.to_string())
                    .or_insert_with(|| toml::Value::Table(Default::default()))
            }
            _ => {
                return Err(Error::Usage(format!(
                    "--set {key}: {part:?} is not a table"
                )))
            }
        };
    }
    Err(Error::Usage(format!(
        "--set {key}: cannot set a whole task"
    )))
}

/// Where errors in a flag-described run point.
const FLAGS_ORIGIN: &str = "the command line";

impl RunFile {
    /// The run `flags` describe, then `overrides` applied: checked as a run file is.
    pub fn from_flags(flags: &TaskFlags, overrides: &[String]) -> Result<Self> {
        let mut run = Self::from_value(flags.to_value(), Path::new(FLAGS_ORIGIN), overrides)?;
        for t in &mut run.tasks {
            t.described_by = DescribedBy::Flags;
        }
        Ok(run)
    }

    /// This run as a run file: every setting spelled out, paths absolute (so the file works
    /// from any folder); [`RunFile::load`] reads it back to the same run.
    pub fn to_toml(&self) -> Result<String> {
        let body = toml::to_string(self)
            .map_err(|e| Error::Internal(format!("a run does not print as TOML: {e}")))?;
        Ok(format!(
            "# A frostline run file (`frostline train --run FILE`); paths are absolute.\n{body}"
        ))
    }

    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        if !path.exists() {
            return Err(Error::InputFile {
                path: path.to_path_buf(),
                reason: "run file not found (--run is relative to the current directory; the paths inside a run file are relative to the file)".into(),
            });
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut value: toml::Value = toml::from_str(&text).map_err(|e| Error::RunFile {
            path: path.to_path_buf(),
            reason: format!("invalid TOML: {e}"),
        })?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        resolve_paths(&mut value, base);
        Self::from_value(value, path, overrides)
    }

    /// A run from its TOML tree (paths already absolute), `overrides` applied, then checked;
    /// errors point at `path`.
    fn from_value(mut value: toml::Value, path: &Path, overrides: &[String]) -> Result<Self> {
        for o in overrides {
            apply_override(&mut value, o)?;
        }
        // The key path goes into every type error ("train.epochs: invalid type: …").
        let run: RunFile = serde_path_to_error::deserialize(value).map_err(|e| {
            let key = e.path().to_string();
            Error::RunFile {
                path: path.to_path_buf(),
                reason: if key == "." {
                    e.inner().message().to_string()
                } else {
                    format!("{key}: {}", e.inner().message())
                },
            }
        })?;
        run.validate(path)?;
        Ok(run)
    }

    /// Every setting within its valid range; task names from a safe character set (they become
    /// file and tensor names). Each error names the key, the value and the range.
    fn validate(&self, path: &Path) -> Result<()> {
        let bad = |reason: String| Error::RunFile {
            path: path.to_path_buf(),
            reason,
        };
        if self.tasks.is_empty() {
            return Err(bad("no [[tasks]]".into()));
        }
        for (i, t) in self.tasks.iter().enumerate() {
            let safe = !t.name.is_empty()
                && t.name.len() <= 64
                && t.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !safe {
                return Err(bad(format!(
                    "tasks[{i}].name = {:?}: use 1 to 64 of A-Z, a-z, 0-9, '_' and '-' (the name becomes file and tensor names)",
                    t.name
                )));
            }
            if self.tasks[..i].iter().any(|o| o.name == t.name) {
                return Err(bad(format!("two tasks are named {:?}", t.name)));
            }
            let key = |field: &str| format!("tasks.{}.{field}", t.name);
            check(
                &key("dev_fraction"),
                t.dev_fraction,
                0.0,
                Some(0.9),
                "[0, 0.9)",
            )
            .map_err(bad)?;
            check(&key("loss_weight"), t.loss_weight, 0.0, None, "≥ 0").map_err(bad)?;
            if !(t.train_fraction > 0.0 && t.train_fraction <= 1.0) {
                return Err(bad(format!(
                    "{} = {}: must be in (0, 1]",
                    key("train_fraction"),
                    t.train_fraction
                )));
            }
            if t.per_label == Some(0) {
                return Err(bad(format!(
                    "{} = 0: must be at least 1 (rows per label)",
                    key("per_label")
                )));
            }
            if t.per_label.is_some() && t.train_fraction < 1.0 {
                return Err(bad(format!(
                    "{} and {} both shrink train: give one",
                    key("per_label"),
                    key("train_fraction")
                )));
            }
            if let Some(Err(why)) = t.delimiter.as_deref().map(crate::data::parse_delimiter) {
                return Err(bad(format!("{} = {why}", key("delimiter"))));
            }
            if let Some(why) = t.kind.refuse_separator(&t.label_separator) {
                return Err(bad(format!("{} {why}", key("label_separator"))));
            }
        }
        let c = &self.train;
        for (key, value) in [
            ("train.batch_size", c.batch_size),
            ("train.epochs", c.epochs()),
            ("train.mlp_hidden", c.mlp_hidden),
            ("train.contrastive.iterations", c.contrastive.iterations),
            ("train.contrastive.epochs", c.contrastive.epochs),
            ("train.contrastive.batch_size", c.contrastive.batch_size),
        ] {
            if value == 0 {
                return Err(bad(format!("{key} = 0: must be at least 1")));
            }
        }
        let positive = |key: &str, v: f32| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(bad(format!("{key} = {v}: must be a finite number > 0")))
            }
        };
        positive("train.lr", c.lr())?;
        positive("train.encoder_lr", c.encoder_lr())?;
        if let Some(why) = c.lora.refusal() {
            return Err(bad(why));
        }
        positive("train.contrastive.lr", c.contrastive.lr)?;
        if !(c.temperature.is_finite() && c.temperature > 0.0) {
            return Err(bad(format!(
                "train.temperature = {}: must be a finite number > 0",
                c.temperature
            )));
        }
        check("train.weight_decay", c.weight_decay, 0.0, None, "≥ 0").map_err(bad)?;
        check("train.clip_norm", c.clip_norm, 0.0, None, "≥ 0 (0 = off)").map_err(bad)?;
        check(
            "train.warmup",
            c.warmup,
            0.0,
            Some(1.0),
            "[0, 1) (a share of all steps)",
        )
        .map_err(bad)?;
        check("train.dropout", c.dropout, 0.0, Some(1.0), "[0, 1)").map_err(bad)?;
        check(
            "train.label_smoothing",
            c.label_smoothing,
            0.0,
            Some(1.0),
            "[0, 1)",
        )
        .map_err(bad)?;
        Ok(())
    }
}

/// `value` in `[low, high)` (or `≥ low` without `high`) and finite; else a message naming the key,
/// the value and the range.
fn check<T: Into<f64> + std::fmt::Display + Copy>(
    key: &str,
    value: T,
    low: f64,
    high: Option<f64>,
    range: &str,
) -> std::result::Result<(), String> {
    let v: f64 = value.into();
    let ok = v.is_finite() && v >= low && high.is_none_or(|h| v < h);
    if ok {
        Ok(())
    } else {
        let how = if range.starts_with('[') { "in " } else { "" };
        Err(format!("{key} = {value}: must be {how}{range}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, overrides: &[&str]) -> Result<RunFile> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("run.toml");
        std::fs::write(&p, text).unwrap();
        RunFile::load(
            &p,
            &overrides.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
    }

    const RUN: &str = "model = \"m\"\n[train]\nepochs = 3\n[[tasks]]\nname = \"a\"\ntrain = \"a.csv\"\n[[tasks]]\nname = \"b\"\ntrain = \"b.csv\"\n";

    #[test]
    fn overrides_by_task_name_and_dotted_key() {
        let run = load(
            RUN,
            &[
                "train.epochs=7",
                "tasks.b.loss_weight=0.5",
                "tasks.a.train=/x/y.csv",
                "train.decay=linear",
            ],
        )
        .unwrap();
        assert_eq!(run.train.epochs, Some(7));
        assert_eq!(run.tasks[1].loss_weight, 0.5);
        assert_eq!(run.tasks[0].train, PathBuf::from("/x/y.csv"));
        assert!(run.tasks[1].train.ends_with("b.csv") && run.tasks[1].train.is_absolute());
        assert_eq!(run.train.decay, Decay::Linear);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = load(&RUN.replace("epochs = 3", "epochs = 3\nepoch = 4"), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `epoch`"), "{err}");
        let err = load(RUN, &["tasks.a.labelcolumn=x"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `labelcolumn`"), "{err}");
        let err = load(RUN, &["tasks.c.train=x"]).unwrap_err().to_string();
        assert!(err.contains("no task named \"c\""), "{err}");
    }

    #[test]
    fn settings_out_of_range_and_type_errors_name_the_key() {
        let err = |o: &[&str]| load(RUN, o).unwrap_err().to_string();
        for (o, want) in [
            (
                "train.lr=-0.1",
                "train.lr = -0.1: must be a finite number > 0",
            ),
            (
                "train.lr=nan",
                "train.lr = NaN: must be a finite number > 0",
            ),
            ("train.warmup=2.0", "train.warmup = 2: must be in [0, 1)"),
            ("train.clip_norm=-1", "train.clip_norm = -1: must be ≥ 0"),
            (
                "train.weight_decay=-5",
                "train.weight_decay = -5: must be ≥ 0",
            ),
            (
                "train.epochs=",
                "train.epochs: invalid type: string \"\", expected usize",
            ),
            (
                "train.epochs=-3",
                "train.epochs: invalid value: integer `-3`, expected usize",
            ),
            (
                "tasks.a.loss_weight=-1",
                "tasks.a.loss_weight = -1: must be ≥ 0",
            ),
            (
                "tasks.a.name=a/../../evil",
                "tasks[0].name = \"a/../../evil\"",
            ),
            ("tasks.b.name=", "tasks[1].name = \"\""),
            (
                "train.regime=thawed",
                "train.regime: unknown regime \"thawed\"",
            ),
            (
                "tasks.a.train_fraction=0",
                "tasks.a.train_fraction = 0: must be in (0, 1]",
            ),
            (
                "tasks.b.train_fraction=1.5",
                "tasks.b.train_fraction = 1.5: must be in (0, 1]",
            ),
        ] {
            let e = err(&[o]);
            assert!(e.contains(want), "{o}: {e}");
        }
        assert!(load(RUN, &["train.clip_norm=0", "train.warmup=0"]).is_ok());
    }

    /// Flags make one task per label column; the printed run file reads back to the same run.
    #[test]
    fn flags_make_a_run_that_prints_and_reads_back_the_same() {
        let flags = TaskFlags {
            train: "t.csv".into(),
            test: Some("s.csv".into()),
            text_column: Some("body".into()),
            label_columns: vec!["category".into(), "priority level".into()],
            ..TaskFlags::default()
        };
        let run = RunFile::from_flags(&flags, &["train.epochs=4".into()]).unwrap();
        let names: Vec<&str> = run.tasks.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["category", "priority_level"]);
        assert_eq!(run.tasks[1].label_column, "priority level");
        assert_eq!(run.tasks[0].text_column, "body");
        assert!(run.tasks[0].train.is_absolute() && run.tasks[0].dev.is_none());
        assert_eq!(run.train.epochs, Some(4));
        assert_eq!(run.tasks[0].setter("label_column"), "--label-column");

        let printed = run.to_toml().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("run.toml");
        std::fs::write(&p, &printed).unwrap();
        let back = RunFile::load(&p, &[]).unwrap();
        assert_eq!(back.to_toml().unwrap(), printed);
        assert!(back.tasks[0]
            .setter("label_column")
            .contains("tasks.category.label_column"));

        // A token task reads CoNLL: one task, no label column.
        let ner = TaskFlags {
            train: "t.conll".into(),
            kind: Some(TaskKind::TokenClassification),
            ..TaskFlags::default()
        };
        let run = RunFile::from_flags(&ner, &[]).unwrap();
        assert_eq!(run.tasks.len(), 1);
        assert_eq!(run.tasks[0].kind, TaskKind::TokenClassification);
        // Bad values are the command line's, named by key.
        let err = RunFile::from_flags(&flags, &["train.lr=-1".into()])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("the command line: train.lr = -1"), "{err}");
    }
}
