//! Checkpoints: a folder with `heads.safetensors` (tensors named `heads.<task>.<layer>.weight|bias`),
//! `manifest.json` (labels, dims, head kinds, the backbone's cache key, regime, seed, metrics), and
//! `training_log.csv`. The folder is written beside its target and renamed into place, so a
//! checkpoint is never half-written; loading checks every file and every shape.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ndarray::ArrayD;
use serde::{Deserialize, Serialize};

use crate::backbone::ModelFolder;
use crate::cache::CacheKey;
use crate::error::{Error, Result};
use crate::eval::TaskMetrics;
use crate::fsutil;
use crate::heads::{Head, HeadSpec};
use crate::nn::bert::NativeEncoder;
use crate::nn::tensors::{from_safetensors, to_safetensors};
use crate::nn::{Linear, ParamId, ParamStore};
use crate::runfile::TrainConfig;
use crate::train::EpochLog;

pub const WEIGHTS: &str = "heads.safetensors";
pub const ENCODER: &str = "encoder.safetensors";
pub const MANIFEST: &str = "manifest.json";
pub const LOG: &str = "training_log.csv";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskEntry {
    pub name: String,
    pub classes: Vec<String>,
    pub head: HeadSpec,
    pub input_dim: usize,
    pub text_column: String,
    pub label_column: String,
    /// The task's data files as trained (eval re-reads them; a carved dev split is re-carved
    /// from `train` with `dev_fraction` and the manifest's seed).
    pub train_file: PathBuf,
    pub dev_file: Option<PathBuf>,
    pub test_file: Option<PathBuf>,
    pub dev_fraction: f64,
    /// Whether this head's weights changed in the run that wrote the checkpoint.
    pub trained: bool,
    pub dev: Option<TaskMetrics>,
    pub test: Option<TaskMetrics>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub frostline_version: String,
    pub model_dir: PathBuf,
    /// The backbone the heads were trained on; predicting with another one is refused.
    pub backbone: CacheKey,
    /// Set when layers ≥ N were tuned natively: their weights are in `encoder.safetensors`, and
    /// prediction runs the graph below N + those layers.
    pub frost_line: Option<usize>,
    pub regime: String,
    pub seed: u64,
    pub train: TrainConfig,
    pub trainable_params: usize,
    pub training_seconds: f64,
    pub tasks: Vec<TaskEntry>,
}

/// Every tensor of a checkpoint's safetensors file, each checked finite.
fn read_tensors(path: &Path) -> Result<Vec<(String, ArrayD<f32>)>> {
    let bad = |reason: String| Error::InputFile {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let tensors = from_safetensors(&bytes, false).map_err(bad)?;
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
    pub heads: Vec<Head>,
}

fn log_csv(log: &[EpochLog]) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for row in log {
        w.serialize(row)
            .map_err(|e| Error::Usage(format!("training log: {e}")))?;
    }
    w.into_inner()
        .map_err(|e| Error::Usage(format!("training log: {e}")))
}

/// Writes the checkpoint folder atomically (built in a temp folder, then renamed over `dir`).
pub fn save(
    dir: &Path,
    manifest: &Manifest,
    store: &ParamStore,
    heads: &[Head],
    encoder: &[ParamId],
    log: &[EpochLog],
) -> Result<()> {
    let tensors = |ids: &[ParamId]| {
        to_safetensors(store, ids).map_err(|e| Error::Usage(format!("safetensors: {e}")))
    };
    let head_ids: Vec<ParamId> = heads.iter().flat_map(Head::param_ids).collect();
    fsutil::write_dir_atomic(dir, |tmp| {
        fsutil::write_bytes_atomic(&tmp.join(WEIGHTS), &tensors(&head_ids)?)?;
        if !encoder.is_empty() {
            fsutil::write_bytes_atomic(&tmp.join(ENCODER), &tensors(encoder)?)?;
        }
        fsutil::write_bytes_atomic(&tmp.join(LOG), &log_csv(log)?)?;
        let json = serde_json::to_vec_pretty(manifest).map_err(|e| Error::Usage(e.to_string()))?;
        fsutil::write_bytes_atomic(&tmp.join(MANIFEST), &json)
    })
}

pub fn load(dir: &Path) -> Result<Checkpoint> {
    let bad = |file: &str, reason: String| Error::InputFile {
        path: dir.join(file),
        reason,
    };
    if !dir.is_dir() {
        return Err(Error::InputFile {
            path: dir.to_path_buf(),
            reason: "checkpoint folder not found".into(),
        });
    }
    for f in [MANIFEST, WEIGHTS] {
        if !dir.join(f).is_file() {
            return Err(bad(
                f,
                "missing from the checkpoint folder (was it copied whole?)".into(),
            ));
        }
    }
    let text = std::fs::read_to_string(dir.join(MANIFEST))
        .map_err(|e| Error::io(dir.join(MANIFEST), e))?;
    let manifest: Manifest = serde_json::from_str(&text)
        .map_err(|e| bad(MANIFEST, format!("unreadable manifest: {e}")))?;
    let mut by_name: HashMap<String, ArrayD<f32>> =
        read_tensors(&dir.join(WEIGHTS))?.into_iter().collect();
    let mut store = ParamStore::default();
    let mut heads = Vec::new();
    for task in &manifest.tasks {
        let prefix = Head::prefix(&task.name);
        let n_layers = if matches!(task.head, HeadSpec::Mlp { .. }) {
            2
        } else {
            1
        };
        let mut layers = Vec::new();
        for l in 0..n_layers {
            let mut take = |part: &str| -> Result<usize> {
                let name = format!("{prefix}.{l}.{part}");
                let value = by_name
                    .remove(&name)
                    .ok_or_else(|| bad(WEIGHTS, format!("tensor {name} missing")))?;
                Ok(store.add(name, value))
            };
            let (w, b) = (take("weight")?, take("bias")?);
            if store.get(w).value.ndim() != 2 || store.get(b).value.ndim() != 1 {
                return Err(bad(
                    WEIGHTS,
                    format!("{prefix}.{l}: weight must be 2-D and bias 1-D"),
                ));
            }
            layers.push(Linear::from_params(&store, w, b));
        }
        let head = Head {
            task: task.name.clone(),
            spec: task.head.clone(),
            num_classes: layers.last().expect("one layer at least").out_dim,
            input_dim: layers[0].in_dim,
            layers,
        };
        if head.num_classes != task.classes.len() || head.input_dim != task.input_dim {
            return Err(bad(
                WEIGHTS,
                format!(
                    "head {:?} is {}→{} but the manifest says {}→{} classes",
                    task.name,
                    head.input_dim,
                    head.num_classes,
                    task.input_dim,
                    task.classes.len()
                ),
            ));
        }
        head.check_shapes(&store).map_err(|e| bad(WEIGHTS, e))?;
        heads.push(head);
    }
    Ok(Checkpoint {
        dir: dir.to_path_buf(),
        manifest,
        store,
        heads,
    })
}

impl Checkpoint {
    /// The native layers above the checkpoint's frost line, with its tuned weights (their
    /// structure from the model folder, their values from `encoder.safetensors`).
    pub fn encoder(&mut self, folder: &ModelFolder) -> Result<Option<NativeEncoder>> {
        let Some(n) = self.manifest.frost_line else {
            return Ok(None);
        };
        let encoder = NativeEncoder::load(&mut self.store, folder, n)?;
        let path = self.dir.join(ENCODER);
        if !path.is_file() {
            return Err(Error::InputFile { path, reason: "missing from the checkpoint folder (a frost-line checkpoint keeps its tuned layers here)".into() });
        }
        let tuned = read_tensors(&path)?;
        for id in encoder.param_ids() {
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
                        "tensor {name} has shape {:?}, the model's is {:?}",
                        value.shape(),
                        self.store.get(id).value.shape()
                    ),
                });
            }
            self.store.set(id, value.clone());
        }
        Ok(Some(encoder))
    }

    /// Refuses heads trained on another backbone (other graph, tokenizer, pooling, length or dim).
    pub fn check_backbone(&self, key: &CacheKey) -> Result<()> {
        let m = &self.manifest.backbone;
        if m == key {
            return Ok(());
        }
        let mut diffs = Vec::new();
        if m.onnx_sha256 != key.onnx_sha256 {
            diffs.push("ONNX graph".to_string());
        }
        if m.tokenizer_sha256 != key.tokenizer_sha256 {
            diffs.push("tokenizer".into());
        }
        if m.dim != key.dim {
            diffs.push(format!("dimension {} vs {}", m.dim, key.dim));
        }
        if m.max_length != key.max_length {
            diffs.push(format!("max length {} vs {}", m.max_length, key.max_length));
        }
        if m.pooling != key.pooling || m.split_layer != key.split_layer || m.dtype != key.dtype {
            diffs.push("pooling / split layer / dtype".into());
        }
        Err(Error::InputFile {
            path: self.dir.join(MANIFEST),
            reason: format!(
                "these heads were trained on another backbone ({} differ{}); use the model folder they were trained with ({})",
                diffs.join(", "),
                if diffs.len() == 1 { "s" } else { "" },
                self.manifest.model_dir.display()
            ),
        })
    }
}

/// Writes a full model folder whose weights are the checkpoint's base model with its tuned
/// layers applied, so the tuned backbone runs anywhere onnxruntime runs.
pub fn export_model(ck: &Checkpoint, out: &Path) -> Result<()> {
    if ck.manifest.frost_line.is_none() {
        return Err(Error::Usage(format!(
            "{} was trained with regime {}: its backbone is the unchanged model {}; only frost-line checkpoints carry tuned layers",
            ck.dir.display(),
            ck.manifest.regime,
            ck.manifest.model_dir.display()
        )));
    }
    let folder = ModelFolder::open(&ck.manifest.model_dir)?;
    let tuned = ck.dir.join(ENCODER);
    if !tuned.is_file() {
        return Err(Error::InputFile {
            path: tuned,
            reason: "missing from the checkpoint folder".into(),
        });
    }
    fsutil::check_folder_writable(out)?;
    crate::backbone::export::export_tuned(&folder, &tuned, out)
}
