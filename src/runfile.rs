//! The run file (TOML): model, tasks and training settings described once. Every value can be
//! overridden with `--set key=value` (dotted path; tasks by name: `tasks.intent.train=...`).
//! Unknown keys are errors that name the key. Paths in the file are relative to the file's folder;
//! paths given with `--set` are relative to the current directory, like any other flag.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::heads::HeadSpec;
use crate::nn::schedule::Decay;
use crate::regime::Regime;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TaskKind {
    /// One label per text (softmax over the classes).
    #[default]
    Classification,
    /// Any set of labels per text, the label column holding the names joined by
    /// `label_separator` (a sigmoid per label, thresholds tuned on dev).
    MultiLabel,
    /// One tag per word (BIO / IOB2 tags, entities as spans): the files are CoNLL
    /// (`word<TAB>tag`, a blank line between sentences).
    TokenClassification,
}

/// Which sub-token states make a word's feature (token tasks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum WordFeature {
    /// The word's first sub-token (as BERT's NER recipe).
    #[default]
    First,
    /// The mean of the word's sub-tokens.
    Mean,
}

/// How a token task's per-word tag probabilities become tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TagDecoding {
    /// The most probable tag sequence with no `I-X` after `O` or `B-Y` (Viterbi).
    #[default]
    Constrained,
    /// Each word's most probable tag on its own.
    Argmax,
}

/// How a multi-label task's decision thresholds are tuned on dev.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ThresholdTuning {
    /// One threshold for every label, the one with the best dev micro-F1.
    #[default]
    Global,
    /// Each label its own threshold, the one with its best dev F1 (the global one for a label
    /// with no dev positives).
    PerLabel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ClassWeights {
    #[default]
    None,
    /// n_samples / (n_classes · count(class)), as scikit-learn's `class_weight="balanced"`.
    Balanced,
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
    #[serde(default = "defaults::label_column")]
    pub label_column: String,
    #[serde(default = "defaults::one")]
    pub loss_weight: f32,
    #[serde(default)]
    pub class_weights: ClassWeights,
    /// Share of train carved (stratified, seeded) into dev when `dev` is absent.
    #[serde(default = "defaults::dev_fraction")]
    pub dev_fraction: f64,
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
    /// layer with a frost line (every trained layer is read), [`DEFAULT_TOKEN_LAYER`] without.
    /// Training records the layer used in the checkpoint.
    #[serde(default)]
    pub token_layer: Option<usize>,
    /// Token tasks: which sub-token states make a word's feature.
    #[serde(default)]
    pub word_feature: WordFeature,
    /// Token tasks: constrained BIO decoding or per-word argmax.
    #[serde(default)]
    pub decoding: TagDecoding,
}

/// Token tasks on a frozen backbone read the states after 4 layers unless told otherwise: of
/// all-MiniLM-L6-v2's seven, the best dev entity F1 on WNUT-17, 13 points above the last layer
/// (bench-results/ner.md measures every layer).
pub const DEFAULT_TOKEN_LAYER: usize = 4;

impl TaskConfig {
    pub fn is_token_task(&self) -> bool {
        self.kind == TaskKind::TokenClassification
    }

    /// The layer a token task's word features come from (training resolves an unset one and
    /// records it, so a checkpoint's tasks always have it set).
    pub fn token_layer(&self) -> usize {
        self.token_layer.unwrap_or(DEFAULT_TOKEN_LAYER)
    }

    /// The labels of one label-column value: the value itself for a classification task, the
    /// names between separators (trimmed, empty ones dropped, each once) for a multi-label task.
    pub fn label_set<'a>(&self, value: &'a str) -> Vec<&'a str> {
        match self.kind {
            TaskKind::Classification => vec![value],
            TaskKind::MultiLabel | TaskKind::TokenClassification => {
                let mut set: Vec<&str> = Vec::new();
                let parts: Box<dyn Iterator<Item = &str>> = match self.kind {
                    // A token task's label value is its sentence's tags joined by spaces.
                    TaskKind::TokenClassification => Box::new(value.split(' ')),
                    _ => Box::new(value.split(self.label_separator.as_str())),
                };
                for l in parts.map(str::trim) {
                    if !l.is_empty() && !set.contains(&l) {
                        set.push(l);
                    }
                }
                set
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeadChoice {
    Linear,
    Mlp,
    Centroid,
    ZeroShot,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sampling {
    Proportional,
    Uniform,
    Temperature,
}

/// `train.precision`: the precision of the training products. `auto` takes bf16 where the CPU
/// has bf16 dot products and says so; a checkpoint records the one that ran, never `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrecisionChoice {
    Fp32,
    Bf16,
    Auto,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub regime: Regime,
    pub head: HeadChoice,
    pub mlp_hidden: usize,
    pub dropout: f32,
    pub epochs: usize,
    pub batch_size: usize,
    /// Learning rate of the task heads.
    pub lr: f32,
    /// Learning rate of the native encoder layers above the frost line.
    pub encoder_lr: f32,
    pub weight_decay: f32,
    /// Warm-up as a fraction of all steps.
    pub warmup: f32,
    pub decay: Decay,
    /// Global gradient-norm clip; 0 = off.
    pub clip_norm: f32,
    /// Epochs without a better mean dev macro-F1 before stopping; 0 = never stop early.
    pub patience: usize,
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
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            regime: Regime::FrozenBackbone,
            head: HeadChoice::Linear,
            mlp_hidden: 256,
            dropout: 0.1,
            epochs: 20,
            batch_size: 64,
            lr: 2e-2,
            encoder_lr: 5e-5,
            weight_decay: 0.01,
            warmup: 0.05,
            decay: Decay::Cosine,
            clip_norm: 1.0,
            patience: 5,
            label_smoothing: 0.0,
            sampling: Sampling::Proportional,
            temperature: 2.0,
            from: None,
            quantize_frozen: false,
            precision: PrecisionChoice::Fp32,
        }
    }
}

impl TrainConfig {
    pub fn head_spec(&self) -> HeadSpec {
        match self.head {
            HeadChoice::Linear => HeadSpec::Linear,
            HeadChoice::Mlp => HeadSpec::Mlp {
                hidden: self.mlp_hidden,
                dropout: self.dropout,
            },
            HeadChoice::Centroid => HeadSpec::Centroid,
            HeadChoice::ZeroShot => HeadSpec::ZeroShot,
        }
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

impl RunFile {
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
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
            if t.kind == TaskKind::MultiLabel && t.label_separator.trim().is_empty() {
                return Err(bad(format!(
                    "{} is empty or blank; a multi-label task needs the text that joins its labels (default \"|\")",
                    key("label_separator")
                )));
            }
        }
        let c = &self.train;
        for (key, value) in [
            ("train.batch_size", c.batch_size),
            ("train.epochs", c.epochs),
            ("train.mlp_hidden", c.mlp_hidden),
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
        positive("train.lr", c.lr)?;
        positive("train.encoder_lr", c.encoder_lr)?;
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
        assert_eq!(run.train.epochs, 7);
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
        ] {
            let e = err(&[o]);
            assert!(e.contains(want), "{o}: {e}");
        }
        assert!(load(RUN, &["train.clip_norm=0", "train.warmup=0"]).is_ok());
    }
}
