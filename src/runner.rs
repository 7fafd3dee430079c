//! `frostline train`: a run file → task data through the cache → heads the regime allows →
//! training → dev/test scores → checkpoint. The regime only picks the optimizer's parameters.

use std::path::Path;

use crate::checkpoint::{self, Checkpoint, Manifest, TaskEntry};
use crate::embed::{EmbedSettings, EmbedStats, Embedder, TokenStates};
use crate::error::{Error, Result};
use crate::eval::TaskMetrics;
use crate::heads::{Head, HeadSpec};
use crate::nn::bert::NativeEncoder;
use crate::nn::{ParamStore, Rng};
use crate::regime::Regime;
use crate::runfile::RunFile;
use crate::train::data::{load_task, no_vectors, sentence_vectors};
use crate::train::features::{FrostFeatures, TaskStates};
use crate::train::{self, evaluate, Features, Split, TaskData, TrainReport, Which};

/// Everything a finished run knows, for the table, the checkpoint and the reports.
pub struct RunResult {
    pub regime: Regime,
    pub tasks: Vec<TaskData>,
    pub store: ParamStore,
    pub heads: Vec<Head>,
    pub report: TrainReport,
    pub trainable_params: usize,
    pub embed_stats: Vec<EmbedStats>,
    pub dev: Vec<TaskMetrics>,
    pub test: Vec<Option<TaskMetrics>>,
    pub manifest: Manifest,
}

impl RunResult {
    pub fn embed_seconds(&self) -> f64 {
        self.embed_stats.iter().map(|s| s.seconds).sum()
    }

    pub fn cache_hit(&self) -> bool {
        self.embed_stats.iter().all(|s| s.embedded == 0)
    }

    /// A short per-task table (Markdown).
    pub fn table(&self) -> String {
        let mut s = String::from(
            "| task | regime | head | classes | train / dev / test rows | dev macro-F1 | test accuracy | test macro-F1 |\n|---|---|---|---:|---|---:|---:|---:|\n",
        );
        for (i, t) in self.tasks.iter().enumerate() {
            let test = self.test[i].as_ref();
            let pct = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{:.2}", 100.0 * v));
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} / {}{} / {} | {} | {} | {} |\n",
                t.config.name,
                self.regime,
                head_name(&self.heads[i].spec),
                t.classes.len(),
                t.train.len(),
                t.dev.len(),
                if t.dev_carved { " (carved)" } else { "" },
                t.test
                    .as_ref()
                    .map_or("–".to_string(), |s| s.len().to_string()),
                pct(Some(self.dev[i].macro_f1)),
                pct(test.map(|m| m.accuracy)),
                pct(test.map(|m| m.macro_f1)),
            ));
        }
        s.push_str(&format!(
            "\ntraining {:.2} s ({} trainable parameters{}), embedding {:.2} s ({})\n",
            self.report.seconds,
            self.trainable_params,
            if self.report.best_epoch > 0 {
                format!(", best epoch {}", self.report.best_epoch)
            } else {
                String::new()
            },
            self.embed_seconds(),
            if self.cache_hit() {
                "all cached"
            } else {
                "cache filled"
            },
        ));
        for t in &self.tasks {
            if t.unseen_dev + t.unseen_test > 0 {
                s.push_str(&format!(
                    "note: task {:?}: {} dev and {} test rows have labels that never occur in train; they count as errors\n",
                    t.config.name, t.unseen_dev, t.unseen_test
                ));
            }
        }
        s
    }
}

pub fn head_name(spec: &HeadSpec) -> String {
    match spec {
        HeadSpec::Linear => "linear".into(),
        HeadSpec::Mlp { hidden, dropout } => format!("mlp({hidden}, dropout {dropout})"),
        HeadSpec::Centroid => "nearest-centroid".into(),
        HeadSpec::ZeroShot => "zero-shot".into(),
    }
}

/// Label descriptions for zero-shot heads: the task's `label_descriptions` CSV (`label,description`)
/// or the label names with `_`/`-` read as spaces.
fn label_prompts(task: &TaskData) -> Result<Vec<String>> {
    let Some(path) = &task.config.label_descriptions else {
        return Ok(task
            .classes
            .iter()
            .map(|c| c.replace(['_', '-'], " "))
            .collect());
    };
    let table = crate::data::read_table(path)?;
    let labels = table.required_strings("label")?;
    let descriptions = table.required_strings("description")?;
    task.classes
        .iter()
        .map(|c| {
            labels
                .iter()
                .position(|l| l == c)
                .map(|i| descriptions[i].clone())
                .ok_or_else(|| Error::InputFile {
                    path: path.clone(),
                    reason: format!("no description for label {c:?}"),
                })
        })
        .collect()
}

fn build_heads(
    run: &RunFile,
    regime: &Regime,
    tasks: &[TaskData],
    embedder: &mut Embedder,
    store: &mut ParamStore,
) -> Result<Vec<Head>> {
    let spec = run.train.head_spec();
    let names: Vec<String> = tasks.iter().map(|t| t.config.name.clone()).collect();
    let frozen = regime.frozen_head(&names)?;
    let from = match &run.train.from {
        Some(dir) => {
            let ck = checkpoint::load(dir)?;
            ck.check_backbone(&embedder.key)?;
            Some(ck)
        }
        None => None,
    };
    match regime {
        Regime::FullyFrozen if from.is_none() && !spec.is_training_free() => {
            return Err(Error::Usage(
                "regime fully-frozen trains nothing: give train.from = CHECKPOINT, or head = \"centroid\" or \"zero-shot\"".into(),
            ))
        }
        Regime::FreezeHead { head: which, .. } if from.is_none() => {
            return Err(Error::Usage(format!("regime freeze-head={which} keeps a trained head fixed: give train.from = CHECKPOINT holding it")))
        }
        Regime::FrozenBackbone | Regime::FreezeHead { .. } | Regime::FrostLine(_) if spec.is_training_free() => {
            return Err(Error::Usage(format!("head {} is training-free; use regime fully-frozen", head_name(&spec))))
        }
        _ => {}
    }
    let mut rng = Rng::new(run.seed);
    let mut heads = Vec::new();
    for (i, task) in tasks.iter().enumerate() {
        let dim = embedder.folder.hidden_size;
        // With a checkpoint every head starts from it: kept as it is when the regime freezes it,
        // trained further otherwise (a warm start: linear probe, then fine-tune). Only an
        // explicitly training-free head under fully-frozen is built afresh.
        let from_checkpoint = from.as_ref().filter(|_| {
            frozen == Some(i) || !(spec.is_training_free() && matches!(regime, Regime::FullyFrozen))
        });
        let head = if let Some(ck) = from_checkpoint {
            copy_head(ck, task, store)?
        } else {
            match spec {
                HeadSpec::Centroid => Head::from_prototypes(
                    store,
                    &task.config.name,
                    spec.clone(),
                    train::centroids(task).view(),
                ),
                HeadSpec::ZeroShot => {
                    let (protos, _) = embedder.embed(&label_prompts(task)?)?;
                    Head::from_prototypes(store, &task.config.name, spec.clone(), protos.view())
                }
                _ => Head::new(
                    store,
                    &task.config.name,
                    spec.clone(),
                    dim,
                    task.classes.len(),
                    &mut rng,
                ),
            }
        };
        heads.push(head);
    }
    Ok(heads)
}

/// Copies one task's head out of a checkpoint into `store`, checking that it fits the task.
fn copy_head(ck: &Checkpoint, task: &TaskData, store: &mut ParamStore) -> Result<Head> {
    let name = &task.config.name;
    let idx = ck
        .manifest
        .tasks
        .iter()
        .position(|t| &t.name == name)
        .ok_or_else(|| Error::InputFile {
            path: ck.dir.join(checkpoint::MANIFEST),
            reason: format!("checkpoint has no head for task {name:?}"),
        })?;
    let entry = &ck.manifest.tasks[idx];
    if entry.classes != task.classes {
        return Err(Error::InputFile {
            path: ck.dir.join(checkpoint::MANIFEST),
            reason: format!(
                "head {name:?} was trained on {} classes that differ from this task's {}",
                entry.classes.len(),
                task.classes.len()
            ),
        });
    }
    let src = &ck.heads[idx];
    let mut head = src.clone();
    for (layer, src_layer) in head.layers.iter_mut().zip(&src.layers) {
        let w = ck.store.get(src_layer.weight);
        let b = ck.store.get(src_layer.bias);
        layer.weight = store.add(w.name.clone(), w.value.clone());
        layer.bias = store.add(b.name.clone(), b.value.clone());
    }
    Ok(head)
}

/// Runs a whole training job; writes the checkpoint to `out` when given.
pub fn run_training(
    run: &RunFile,
    mut settings: EmbedSettings,
    out: Option<&Path>,
    progress: bool,
) -> Result<RunResult> {
    let regime: Regime = run.train.regime.parse()?;
    if let Some(out) = out {
        crate::fsutil::check_folder_writable(out)?;
    }
    settings.model_dir = run.model.clone();
    let mut embedder = Embedder::open(settings.clone())?;
    let mut embed_stats = Vec::new();
    let frost = regime.frost_line();
    let mut tasks: Vec<TaskData> = if frost.is_some() {
        // Above a frost line the native layers make the sentence vectors from token states.
        run.tasks
            .iter()
            .map(|t| load_task(t, run.seed, &mut no_vectors))
            .collect::<Result<_>>()?
    } else {
        let mut embed = sentence_vectors(&mut embedder, &mut embed_stats);
        run.tasks
            .iter()
            .map(|t| load_task(t, run.seed, &mut embed))
            .collect::<Result<_>>()?
    };

    let mut store = ParamStore::default();
    let features = match frost {
        None => Features::Cached,
        Some(n) => frost_features(settings, n, &tasks, &mut store, &mut embed_stats)?,
    };
    let heads = build_heads(run, &regime, &tasks, &mut embedder, &mut store)?;
    let trainable = regime.trainable(&heads, &features.param_ids())?;
    let frozen: Vec<usize> = (0..store.len())
        .filter(|i| !trainable.contains(i))
        .collect();
    let before: Vec<_> = frozen.iter().map(|&i| store.get(i).value.clone()).collect();

    let report = train::train(
        &tasks, &features, &mut store, &heads, &trainable, &run.train, run.seed, progress,
    )?;

    // The regime's promise, checked: every parameter outside the optimizer is bit-for-bit unchanged.
    for (&i, b) in frozen.iter().zip(&before) {
        let now = &store.get(i).value;
        if now
            .iter()
            .zip(b.iter())
            .any(|(x, y)| x.to_bits() != y.to_bits())
        {
            return Err(Error::Usage(format!(
                "internal error: frozen parameter {} changed during training",
                store.get(i).name
            )));
        }
    }
    if let Features::Frost(_) = &features {
        // Score with the tuned layers: dev and test vectors made by the final weights.
        for t in 0..tasks.len() {
            tasks[t].dev.x = features.split_vectors(&store, &tasks, t, Which::Dev)?;
            if tasks[t].test.is_some() {
                let x = features.split_vectors(&store, &tasks, t, Which::Test)?;
                tasks[t].test.as_mut().expect("checked").x = x;
            }
        }
    }

    let dev: Vec<TaskMetrics> = tasks
        .iter()
        .zip(&heads)
        .map(|(t, h)| evaluate(&store, h, &t.classes, &t.dev))
        .collect();
    let test: Vec<Option<TaskMetrics>> = tasks
        .iter()
        .zip(&heads)
        .map(|(t, h)| t.test.as_ref().map(|s| evaluate(&store, h, &t.classes, s)))
        .collect();
    let encoder_ids = features.param_ids();
    let manifest = Manifest {
        frostline_version: env!("CARGO_PKG_VERSION").to_string(),
        model_dir: run.model.clone(),
        backbone: embedder.key.clone(),
        frost_line: frost,
        regime: regime.to_string(),
        seed: run.seed,
        train: run.train.clone(),
        trainable_params: store.count(&trainable),
        training_seconds: report.seconds,
        tasks: tasks
            .iter()
            .zip(&heads)
            .enumerate()
            .map(|(i, (t, h))| TaskEntry {
                name: t.config.name.clone(),
                classes: t.classes.clone(),
                head: h.spec.clone(),
                input_dim: h.input_dim,
                text_column: t.config.text_column.clone(),
                label_column: t.config.label_column.clone(),
                train_file: t.config.train.clone(),
                dev_file: t.config.dev.clone(),
                test_file: t.config.test.clone(),
                dev_fraction: t.config.dev_fraction,
                trained: h.param_ids().iter().any(|p| trainable.contains(p)),
                dev: Some(dev[i].clone()),
                test: test[i].clone(),
            })
            .collect(),
    };
    if let Some(out) = out {
        checkpoint::save(out, &manifest, &store, &heads, &encoder_ids, &report.log)?;
    }
    Ok(RunResult {
        regime,
        trainable_params: store.count(&trainable),
        tasks,
        store,
        heads,
        report,
        embed_stats,
        dev,
        test,
        manifest,
    })
}

/// Token states of every split at frost line `n` (cached), and the native layers above it.
fn frost_features(
    settings: EmbedSettings,
    n: usize,
    tasks: &[TaskData],
    store: &mut ParamStore,
    stats: &mut Vec<EmbedStats>,
) -> Result<Features> {
    let mut tok = Embedder::open_tokens(settings, n)?;
    let mut states = |split: &Split| -> Result<TokenStates> {
        let (s, st) = tok.token_states(&split.texts)?;
        stats.push(st);
        Ok(s)
    };
    let mut task_states = Vec::new();
    for t in tasks {
        task_states.push(TaskStates {
            train: states(&t.train)?,
            dev: states(&t.dev)?,
            test: t.test.as_ref().map(&mut states).transpose()?,
        });
    }
    let encoder = NativeEncoder::load(store, &tok.folder, n)?;
    Ok(Features::Frost(FrostFeatures {
        encoder,
        pooling: tok.folder.pooling,
        tasks: task_states,
        eval_batch: 64,
    }))
}

/// What `frostline mteb` replays.
pub struct MtebJob {
    pub train: std::path::PathBuf,
    pub test: std::path::PathBuf,
    pub text_column: String,
    pub label_column: String,
    pub k: usize,
    pub experiments: usize,
    pub seed: u32,
}

pub struct MtebReport {
    pub job_name: String,
    pub result: crate::mteb::ReplayResult,
    pub train_rows: usize,
    pub test_rows: usize,
    pub classes: usize,
    pub embed_stats: Vec<EmbedStats>,
}

impl MtebReport {
    pub fn markdown(&self) -> String {
        let r = &self.result;
        let per: Vec<String> = r
            .experiments
            .iter()
            .map(|a| format!("{:.2}", 100.0 * a))
            .collect();
        format!(
            "| dataset | k per label | experiments | classes | train / test rows | accuracy mean ± sd |\n|---|---:|---:|---:|---|---:|\n| {} | {} | {} | {} | {} / {} | {:.2} ± {:.2} |\n\nper experiment: {}\n",
            self.job_name,
            r.k,
            r.experiments.len(),
            self.classes,
            self.train_rows,
            self.test_rows,
            100.0 * r.mean,
            100.0 * r.std,
            per.join(", ")
        )
    }
}

/// MTEB's classification protocol on the cache: labels are numbered in order of first
/// appearance in train (as MTEB's datasets carry them), test labels unseen in train are errors.
pub fn run_mteb(settings: EmbedSettings, job: &MtebJob) -> Result<MtebReport> {
    use crate::train::data::read_labelled;
    let (train_texts, train_labels) =
        read_labelled(&job.train, &job.text_column, &job.label_column)?;
    let (test_texts, test_labels) = read_labelled(&job.test, &job.text_column, &job.label_column)?;
    let mut ids: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for l in &train_labels {
        let next = ids.len();
        ids.entry(l.clone()).or_insert(next);
    }
    let classes = ids.len();
    let train_y: Vec<usize> = train_labels.iter().map(|l| ids[l]).collect();
    // An unseen test label gets an index no model predicts.
    let test_y: Vec<usize> = test_labels
        .iter()
        .map(|l| ids.get(l).copied().unwrap_or(usize::MAX))
        .collect();
    let mut embedder = Embedder::open(settings)?;
    let (train_x, s1) = embedder.embed(&train_texts)?;
    let (test_x, s2) = embedder.embed(&test_texts)?;
    let result = crate::mteb::replay(
        train_x.view(),
        &train_y,
        test_x.view(),
        &test_y,
        job.k,
        job.experiments,
        job.seed,
    );
    Ok(MtebReport {
        job_name: job
            .train
            .parent()
            .and_then(|p| p.file_name())
            .map_or("dataset".into(), |n| n.to_string_lossy().into_owned()),
        result,
        train_rows: train_texts.len(),
        test_rows: test_texts.len(),
        classes,
        embed_stats: vec![s1, s2],
    })
}
