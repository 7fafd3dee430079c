//! Checkpoints: a folder with `heads.safetensors` (tensors named `heads.<task>.<layer>.weight|bias`),
//! `manifest.json` (labels, dims, head kinds, the backbone's identity, regime, seed, metrics), and
//! `training_log.csv`. The manifest carries the backbone's identity, so predict, eval, export and
//! warm starts need no flag repeated. The folder is written beside its target and renamed into place, so a
//! checkpoint is never half-written; loading checks every file and every shape.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ndarray::ArrayD;
use serde::{Deserialize, Serialize};

use crate::backbone::ModelFolder;
use crate::decision::Decision;
use crate::epoch_log::EpochLog;
use crate::error::{Error, Result};
use crate::heads::{Head, HeadSpec, HeadWeights};
use crate::io::fsutil;
use crate::io::outfolder::OutputFolder;
use crate::metrics::TaskMetrics;
use crate::nn::adapter::{Adapter, Tuning};
use crate::nn::bert::NativeEncoder;
use crate::nn::tensors::{from_safetensors, to_safetensors};
use crate::nn::{ParamId, ParamStore};
use crate::regime::Regime;
use crate::runfile::{TaskConfig, TrainConfig};

pub mod identity;
pub mod seal;
pub mod served;

pub use identity::BackboneIdentity;

pub const WEIGHTS: &str = "heads.safetensors";
pub const ENCODER: &str = "encoder.safetensors";
pub const MANIFEST: &str = "manifest.json";
pub const LOG: &str = "training_log.csv";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskEntry {
    /// The task as trained: its files (absolute), columns and dev carve, so `eval` re-reads the
    /// same splits (`tasks::read_split` with the manifest's seed).
    pub config: TaskConfig,
    pub classes: Vec<String>,
    pub head: HeadSpec,
    pub input_dim: usize,
    /// Whether this head's weights changed in the run that wrote the checkpoint.
    pub trained: bool,
    /// Multi-label tasks: each label's decision threshold, tuned on dev.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thresholds: Option<Vec<f32>>,
    pub dev: Option<TaskMetrics>,
    pub test: Option<TaskMetrics>,
}

/// Bumped when the manifest's layout changes; older checkpoints are refused by name. Format 3
/// added the seal ([`seal`]).
pub const MANIFEST_VERSION: u32 = 3;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format_version: u32,
    pub frostline_version: String,
    /// The backbone the heads were trained on: where it was and what it is.
    pub backbone: BackboneIdentity,
    /// Set when layers ≥ N were tuned natively: their weights are in `encoder.safetensors`, and
    /// prediction runs the graph below N + those layers.
    pub frost_line: Option<usize>,
    pub regime: Regime,
    pub seed: u64,
    pub train: TrainConfig,
    pub trainable_params: usize,
    pub training_seconds: f64,
    pub tasks: Vec<TaskEntry>,
    /// Checksum of every other file of the checkpoint, verified on every load.
    #[serde(default)]
    pub files: std::collections::BTreeMap<String, String>,
}

impl Manifest {
    /// Reads and checks `dir/manifest.json` alone (no tensors): what a command needs to resolve
    /// its settings from a checkpoint.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST);
        if !dir.is_dir() {
            // A run killed while replacing this checkpoint left it beside its place: put it back.
            for note in crate::io::stale::sweep_stale(dir) {
                eprintln!("note: {note}");
            }
        }
        if !dir.is_dir() {
            return Err(Error::InputFile {
                path: dir.to_path_buf(),
                reason: "checkpoint folder not found".into(),
            });
        }
        let bad = |reason: String| Error::InputFile {
            path: path.clone(),
            reason,
        };
        let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                bad("missing from the checkpoint folder (was it copied whole?)".into())
            }
            _ => Error::io(&path, e),
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            bad(format!(
                "not UTF-8 (byte {}): the manifest is damaged; restore it or train again",
                e.utf8_error().valid_up_to()
            ))
        })?;
        let mut value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(format!("unreadable manifest: {e}")))?;
        let version = value
            .get("format_version")
            .and_then(serde_json::Value::as_u64);
        if version != Some(MANIFEST_VERSION as u64) {
            return Err(bad(format!(
                "manifest format {} but this frostline reads format {MANIFEST_VERSION}; train the checkpoint again with this version",
                version.map_or("1 (unversioned)".to_string(), |v| v.to_string())
            )));
        }
        seal::verify(&text).map_err(bad)?;
        if let Some(fields) = value.as_object_mut() {
            fields.remove("seal");
        }
        let manifest: Manifest =
            serde_json::from_value(value).map_err(|e| bad(format!("unreadable manifest: {e}")))?;
        manifest.validate().map_err(bad)?;
        Ok(manifest)
    }

    /// What the manifest says must make sense on its own, seal or not: every field a later
    /// command acts on is checked against the others and the backbone it names.
    fn validate(&self) -> std::result::Result<(), String> {
        let b = &self.backbone;
        if b.num_layers == 0 || b.hidden_size == 0 || b.max_length < 2 {
            return Err(format!(
                "backbone with {} layers, hidden size {} and max length {} cannot be",
                b.num_layers, b.hidden_size, b.max_length
            ));
        }
        if self.frost_line != self.regime.frost_line() {
            return Err(format!(
                "frost_line {:?} disagrees with regime {}",
                self.frost_line, self.regime
            ));
        }
        if let Some(n) = self.frost_line {
            if n >= b.num_layers {
                return Err(format!(
                    "frost_line {n} leaves no layer to tune in a {}-layer backbone",
                    b.num_layers
                ));
            }
        }
        let want_files: Vec<&str> = match self.frost_line {
            Some(_) => vec![ENCODER, WEIGHTS, LOG],
            None => vec![WEIGHTS, LOG],
        };
        let files: Vec<&str> = self.files.keys().map(String::as_str).collect();
        let mut want_sorted = want_files.clone();
        want_sorted.sort_unstable();
        if files != want_sorted {
            return Err(format!(
                "lists the files {files:?}, but a checkpoint {} holds {want_sorted:?}",
                match self.frost_line {
                    Some(n) => format!("with frost line {n}"),
                    None => "without a frost line".into(),
                }
            ));
        }
        if self.tasks.is_empty() {
            return Err("the manifest lists no task".into());
        }
        let contrastive = matches!(self.regime, Regime::Contrastive { .. });
        if let Some(t) = self.tasks.iter().find(|t| !t.config.adapter.is_shared()) {
            if self.frost_line.is_none() || contrastive {
                return Err(format!(
                    "task {:?} owns an adapter, which regime {} cannot have trained",
                    t.config.name, self.regime
                ));
            }
        }
        let mut names = std::collections::HashSet::new();
        for task in &self.tasks {
            let name = &task.config.name;
            if !names.insert(name.as_str()) {
                return Err(format!("task {name:?} is listed twice"));
            }
            task.validate(b, self.frost_line)
                .map_err(|e| format!("task {name:?}: {e}"))?;
        }
        Ok(())
    }
}

impl TaskEntry {
    fn validate(
        &self,
        backbone: &BackboneIdentity,
        frost_line: Option<usize>,
    ) -> std::result::Result<(), String> {
        if self.classes.is_empty() {
            return Err("no classes".into());
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = self.classes.iter().find(|c| !seen.insert(c.as_str())) {
            return Err(format!(
                "class {dup:?} is listed twice: labels would be ambiguous"
            ));
        }
        if let Some(why) = self.head.refusal() {
            return Err(why);
        }
        if self.input_dim != backbone.hidden_size {
            return Err(format!(
                "head input {} differs from the backbone's hidden size {}",
                self.input_dim, backbone.hidden_size
            ));
        }
        self.config.kind.check_recorded(
            self.config.token_layer,
            &self.classes,
            backbone.num_layers,
            frost_line,
        )
    }
}

/// Every tensor of a checkpoint's safetensors file, each checked finite.
fn parse_tensors(path: &Path, bytes: &[u8]) -> Result<Vec<(String, ArrayD<f32>)>> {
    let bad = |reason: String| Error::InputFile {
        path: path.to_path_buf(),
        reason,
    };
    let tensors = from_safetensors(bytes, false).map_err(bad)?;
    if let Some((name, _)) = tensors
        .iter()
        .find(|(_, a)| a.iter().any(|v| !v.is_finite()))
    {
        return Err(bad(format!("tensor {name} holds NaN or infinite values")));
    }
    Ok(tensors)
}

pub struct Checkpoint {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub store: ParamStore,
    /// Per task, in manifest order: its head, built into `store`.
    heads: Vec<Head>,
    /// Per task, in manifest order: how its head's outputs become labels.
    decisions: Vec<Decision>,
}

/// What a checkpoint folder about to be replaced holds, for the announcement (or the refusal):
/// its tasks and when it was written. `None` where there is no readable checkpoint.
pub(crate) struct Previous {
    tasks: Vec<String>,
    written: Option<std::time::SystemTime>,
}

impl Previous {
    pub(crate) fn at(dir: &Path) -> Option<Self> {
        let manifest = Manifest::read(dir).ok()?;
        let written = std::fs::metadata(dir.join(MANIFEST))
            .and_then(|m| m.modified())
            .ok();
        Some(Self {
            tasks: manifest.tasks.into_iter().map(|t| t.config.name).collect(),
            written,
        })
    }

    /// Whether it holds exactly these tasks (in any order).
    pub(crate) fn has_tasks(&self, tasks: &[&str]) -> bool {
        let mut a: Vec<&str> = self.tasks.iter().map(String::as_str).collect();
        let mut b = tasks.to_vec();
        a.sort_unstable();
        b.sort_unstable();
        a == b
    }

    pub(crate) fn describe(&self) -> String {
        let when = self
            .written
            .map(|t| format!(", written {}", crate::io::fsutil::utc_time(t)))
            .unwrap_or_default();
        format!("tasks {}{when}", self.tasks.join(", "))
    }
}

/// One trained task of a checkpoint: what the manifest records of it, its head, and how the
/// head's outputs become labels.
#[derive(Clone, Copy)]
pub struct TrainedTask<'a> {
    pub entry: &'a TaskEntry,
    pub head: &'a Head,
    pub decision: &'a Decision,
}

impl Checkpoint {
    /// Every trained task, in manifest order.
    pub fn tasks(&self) -> impl Iterator<Item = TrainedTask<'_>> {
        self.manifest
            .tasks
            .iter()
            .zip(&self.heads)
            .zip(&self.decisions)
            .map(|((entry, head), decision)| TrainedTask {
                entry,
                head,
                decision,
            })
    }

    /// The trained task named `name`.
    pub fn task(&self, name: &str) -> Option<TrainedTask<'_>> {
        self.tasks().find(|t| t.entry.config.name == name)
    }
}

fn log_csv(log: &[EpochLog]) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for row in log {
        w.serialize(row)
            .map_err(|e| Error::Internal(format!("training log: {e}")))?;
    }
    w.into_inner()
        .map_err(|e| Error::Internal(format!("training log: {e}")))
}

/// A checkpoint's tensor files, serialised once: their size is reported whether or not a
/// checkpoint is written. The encoder file holds only what trained of the native layers (full
/// layers, their biases, or LoRA factors).
pub struct TensorFiles {
    heads: Vec<u8>,
    encoder: Option<Vec<u8>>,
}

impl TensorFiles {
    pub fn of(store: &ParamStore, heads: &[&Head], encoder: &[ParamId]) -> Result<Self> {
        let tensors = |ids: &[ParamId]| {
            to_safetensors(store, ids).map_err(|e| Error::Internal(format!("safetensors: {e}")))
        };
        let head_ids: Vec<ParamId> = heads.iter().flat_map(|h| h.param_ids()).collect();
        Ok(Self {
            heads: tensors(&head_ids)?,
            encoder: (!encoder.is_empty())
                .then(|| tensors(encoder))
                .transpose()?,
        })
    }

    /// Bytes of the tensor files (heads, and the tuned layers where there are some).
    pub fn bytes(&self) -> u64 {
        (self.heads.len() + self.encoder.as_ref().map_or(0, Vec::len)) as u64
    }
}

/// Writes the checkpoint folder atomically (built in a temp folder, then renamed over `dir`).
pub fn save(
    dir: &OutputFolder,
    manifest: &Manifest,
    tensors: &TensorFiles,
    log: &[EpochLog],
) -> Result<()> {
    let mut files = vec![(WEIGHTS, tensors.heads.clone()), (LOG, log_csv(log)?)];
    if let Some(encoder) = &tensors.encoder {
        files.push((ENCODER, encoder.clone()));
    }
    // The manifest, written last, carries a checksum of every other file.
    let mut manifest = manifest.clone();
    manifest.files = files
        .iter()
        .map(|(name, bytes)| (name.to_string(), checksum(bytes)))
        .collect();
    dir.write(|tmp| {
        for (name, bytes) in &files {
            fsutil::write_bytes_atomic(&tmp.join(name), bytes)?;
        }
        let json =
            serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Internal(e.to_string()))?;
        fsutil::write_bytes_atomic(&tmp.join(MANIFEST), &seal::seal(&json))
    })
}

/// A file's checksum as the manifest records it.
fn checksum(bytes: &[u8]) -> String {
    format!("xxh3-64:{:016x}", xxhash_rust::xxh3::xxh3_64(bytes))
}

/// Reads a checkpoint file whose checksum the manifest records, refusing a damaged one by name.
fn read_verified(dir: &Path, manifest: &Manifest, name: &str) -> Result<Vec<u8>> {
    let path = dir.join(name);
    let bad = |reason: String| Error::InputFile {
        path: path.clone(),
        reason,
    };
    let want = manifest.files.get(name).ok_or_else(|| {
        bad("not listed in the manifest's checksums; the checkpoint was altered".into())
    })?;
    let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            bad("missing from the checkpoint folder (was it copied whole?)".into())
        }
        _ => Error::io(&path, e),
    })?;
    let got = checksum(&bytes);
    if &got != want {
        return Err(bad(format!(
            "checksum mismatch ({got}, the manifest says {want}): the file is damaged or was edited; restore it or train again"
        )));
    }
    Ok(bytes)
}

pub fn load(dir: &Path) -> Result<Checkpoint> {
    let manifest = Manifest::read(dir)?;
    let weights = dir.join(WEIGHTS);
    let mut by_name: HashMap<String, ArrayD<f32>> =
        parse_tensors(&weights, &read_verified(dir, &manifest, WEIGHTS)?)?
            .into_iter()
            .collect();
    let mut store = ParamStore::default();
    let mut heads = Vec::new();
    let mut decisions = Vec::new();
    for task in &manifest.tasks {
        decisions.push(task_decision(dir, task)?);
        let head = Head::build(
            &mut store,
            &task.config.name,
            task.head.clone(),
            task.input_dim,
            task.classes.len(),
            HeadWeights::Named(&mut by_name),
        )
        .map_err(|reason| Error::InputFile {
            path: weights.clone(),
            reason: format!("head {:?}: {reason}", task.config.name),
        })?;
        heads.push(head);
    }
    Ok(Checkpoint {
        dir: dir.to_path_buf(),
        manifest,
        store,
        heads,
        decisions,
    })
}

/// How a task's head outputs become labels, as the manifest records it — checked, not trusted:
/// a multi-label task needs one threshold in [0, 1] per class, a classification task none.
fn task_decision(dir: &Path, task: &TaskEntry) -> Result<Decision> {
    let bad = |reason: String| Error::InputFile {
        path: dir.join(MANIFEST),
        reason: format!("task {:?}: {reason}", task.config.name),
    };
    task.config
        .kind
        .recorded_decision(
            task.thresholds.as_deref(),
            task.classes.len(),
            task.config.decoding,
        )
        .map_err(bad)
}

/// The training log (one row per task and epoch).
pub fn read_log(ck: &Checkpoint) -> Result<Vec<EpochLog>> {
    let path = ck.dir.join(LOG);
    let bytes = read_verified(&ck.dir, &ck.manifest, LOG)?;
    let mut reader = csv::Reader::from_reader(bytes.as_slice());
    reader
        .deserialize()
        .enumerate()
        .map(|(i, r)| {
            r.map_err(|e| Error::BadRow {
                path: path.clone(),
                row: i + 2,
                reason: e.to_string(),
            })
        })
        .collect()
}

impl Checkpoint {
    /// The native layers above the checkpoint's frost line, one encoder per task in manifest
    /// order, with what the run tuned applied (base weights from `folder`, the tuned tensors
    /// from `encoder.safetensors`). Where every task shares one copy, LoRA factors are merged
    /// into the weights, so predict runs plain layers; a task's own factors stay beside the
    /// shared weights.
    pub fn encoders(&mut self, folder: &ModelFolder) -> Result<Option<Vec<NativeEncoder>>> {
        let Some(n) = self.manifest.frost_line else {
            return Ok(None);
        };
        let tuning = self.manifest.regime.tuning();
        let mut base = NativeEncoder::load(&mut self.store, &folder.native_source()?, n)?;
        if tuning == Tuning::Lora {
            // Placeholder values: every factor is replaced by the checkpoint's below.
            base.attach_lora(&mut self.store, &self.manifest.train.lora, 0);
        }
        let owners: Vec<(&str, Adapter)> = self
            .manifest
            .tasks
            .iter()
            .map(|t| (t.config.name.as_str(), t.config.adapter))
            .collect();
        let mut encoders = base.per_task(&mut self.store, tuning, &owners);
        let path = self.dir.join(ENCODER);
        let tuned = parse_tensors(&path, &read_verified(&self.dir, &self.manifest, ENCODER)?)?;
        let wanted = NativeEncoder::tuned_union(&encoders, tuning, |i| encoders[i].layers.len());
        // Every tuned tensor must be one the regime trains: a tensor of another layer, or a
        // weight under bitfit, means the manifest and the weights disagree.
        let names: std::collections::HashSet<String> = wanted
            .iter()
            .map(|&id| self.store.get(id).name.clone())
            .collect();
        if let Some((name, _)) = tuned.iter().find(|(name, _)| !names.contains(name)) {
            return Err(Error::InputFile {
                path: path.clone(),
                reason: format!(
                    "tensor {name} is not one that regime {} tunes above frost line {n}; the checkpoint's parts disagree, train again",
                    self.manifest.regime
                ),
            });
        }
        for id in wanted {
            let name = self.store.get(id).name.clone();
            let (_, value) =
                tuned
                    .iter()
                    .find(|(n, _)| *n == name)
                    .ok_or_else(|| Error::InputFile {
                        path: path.clone(),
                        reason: format!("tensor {name} missing"),
                    })?;
            if value.shape() != self.store.get(id).value.shape() {
                return Err(Error::InputFile {
                    path: path.clone(),
                    reason: format!(
                        "tensor {name} has shape {:?}, the regime's is {:?}",
                        value.shape(),
                        self.store.get(id).value.shape()
                    ),
                });
            }
            self.store.set(id, value.clone());
        }
        if owners.iter().all(|(_, a)| a.is_shared()) {
            // One copy: merged once, in place, and handed to every task.
            encoders[0].merge_lora(&mut self.store);
            let merged = encoders[0].clone();
            encoders.iter_mut().for_each(|e| *e = merged.clone());
        }
        Ok(Some(encoders))
    }

    /// Where the checkpoint lies, absolute: what an exported folder records of its source reads
    /// the same from any directory.
    pub fn absolute_dir(&self) -> PathBuf {
        std::fs::canonicalize(&self.dir).unwrap_or_else(|_| self.dir.clone())
    }

    /// Whether some task owns its adapter (its own copy of what trained above the frost line).
    pub fn has_own_adapters(&self) -> bool {
        self.manifest
            .tasks
            .iter()
            .any(|t| !t.config.adapter.is_shared())
    }
}

/// Writes a full model folder whose weights are the checkpoint's base model with what its run
/// tuned applied (LoRA merged into the weights) — task `task`'s, where tasks own their
/// adapters — so the tuned backbone runs anywhere onnxruntime runs.
pub fn export_model(
    ck: &mut Checkpoint,
    task: Option<&str>,
    folder: &ModelFolder,
    out: &OutputFolder,
) -> Result<()> {
    if ck.manifest.frost_line.is_none() {
        return Err(Error::Usage(format!(
            "{} was trained with regime {}: its backbone is the unchanged model {}; only frost-line checkpoints carry tuned layers",
            ck.dir.display(),
            ck.manifest.regime,
            ck.manifest.backbone.model_dir.display()
        )));
    }
    let index = match task {
        Some(name) => ck
            .manifest
            .tasks
            .iter()
            .position(|t| t.config.name == name)
            .ok_or_else(|| {
                Error::Usage(format!(
                    "--task {name}: {} has no such task (tasks: {})",
                    ck.dir.display(),
                    ck.manifest
                        .tasks
                        .iter()
                        .map(|t| t.config.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?,
        None if ck.has_own_adapters() => {
            return Err(Error::Usage(format!(
                "{}'s tasks own their adapters, so each task has its own tuned backbone: name the one to export with --task TASK",
                ck.dir.display()
            )))
        }
        None => 0,
    };
    // Read and checked (a damaged file is named as such) before the exporter runs.
    let mut encoder = ck
        .encoders(folder)?
        .expect("a frost line has encoders")
        .swap_remove(index);
    // A task's own factors are folded into the shared weights here: this store is the export's.
    encoder.merge_lora(&mut ck.store);
    let owner = &ck.manifest.tasks[index].config.name;
    let layers = encoder.model_tensors(&ck.store, owner);
    let ids: Vec<ParamId> = (0..layers.len()).collect();
    let merged =
        to_safetensors(&layers, &ids).map_err(|e| Error::Internal(format!("safetensors: {e}")))?;
    out.write(|tmp| {
        // The merged layers lie in a temp file only while the exporter reads them (the file
        // of a run killed midway is removed by the next run once that process is gone).
        let base = std::env::temp_dir().join("frostline-tuned-layers.safetensors");
        crate::io::stale::sweep_stale(&base);
        let weights = fsutil::temp_path(&base);
        fsutil::write_bytes_atomic(&weights, &merged)?;
        let exported = crate::backbone::export::export_tuned(folder, &weights, tmp);
        std::fs::remove_file(&weights).map_err(|e| Error::io(&weights, e))?;
        exported?;
        record_tuning(&tmp.join("frostline.json"), ck, task)
    })
}

/// Names the checkpoint and regime the exported weights came from in the folder's
/// `frostline.json` (the exporter saw only a temporary file of merged layers).
fn record_tuning(path: &Path, ck: &Checkpoint, task: Option<&str>) -> Result<()> {
    record_in(
        path,
        "weights_override",
        serde_json::json!({
            "checkpoint": ck.absolute_dir(),
            "regime": ck.manifest.regime.to_string(),
            "lora_merged": ck.manifest.regime.tuning() == Tuning::Lora,
            "task": task,
        }),
    )
}

/// Sets `key` of the exporter's record `path` (a folder's `frostline.json`) to `value`.
pub(crate) fn record_in(path: &Path, key: &str, value: serde_json::Value) -> Result<()> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut info: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Internal(format!("{}: {e}", path.display())))?;
    info[key] = value;
    let json = serde_json::to_vec_pretty(&info).map_err(|e| Error::Internal(e.to_string()))?;
    fsutil::write_bytes_atomic(path, &json)
}
