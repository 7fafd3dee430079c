//! One whole training run, read top to bottom as its steps: claim the output → load the `from`
//! checkpoint → task data → features (the sentence cache, or token states at the frost line +
//! native layers) → heads as the regime's plan says → the loop → the frozen-bits check →
//! dev/test scores → checkpoint. Shared by `train` and `compare`.

use std::path::{Path, PathBuf};

use crate::backbone::ModelFolder;
use crate::checkpoint::{self, BackboneIdentity, Checkpoint, Manifest, TaskEntry, TensorFiles};
use crate::decision::Decision;
use crate::embedder::{EmbedStats, SentenceEmbedder};
use crate::error::{Error, Result};
use crate::features::build::{cached_vectors, frost_features, LayerTuning};
use crate::features::Features;
use crate::heads::Head;
use crate::io::outfolder::{FolderKind, OutputFolder};
use crate::kind::{Input, TokenLayerRule};
use crate::metrics::TaskMetrics;
use crate::nn::gemm::Kernel;
use crate::nn::ParamStore;
use crate::regime::Plan;
use crate::runfile::TaskConfig;
use crate::tasks::{check_split_labels, load_task, SplitName, TaskData};

use super::contrastive::tune;
use super::fit::{fit, FitInputs, TrainReport};
use super::heads_init::{build_heads, HeadSources};
use super::score::score_vectors;
use super::TrainSpec;

/// One task's result.
pub struct TaskOutcome {
    pub data: TaskData,
    pub head: Head,
    /// How the head's outputs become labels (a multi-label task's thresholds, tuned on dev).
    pub decision: Decision,
    /// `None` when the task has no dev rows.
    pub dev: Option<TaskMetrics>,
    pub test: Option<TaskMetrics>,
}

/// Everything a finished run knows, for the table, the checkpoint and the reports.
pub struct TrainOutcome {
    pub tasks: Vec<TaskOutcome>,
    pub report: TrainReport,
    pub trainable_params: usize,
    /// Bytes of the checkpoint's tensor files: the heads and what trained of the layers.
    pub checkpoint_bytes: u64,
    pub embed_stats: Vec<EmbedStats>,
    pub manifest: Manifest,
    /// Things the user should know (another max length than the `from` checkpoint's, …).
    pub warnings: Vec<String>,
}

impl TrainOutcome {
    pub fn embed_seconds(&self) -> f64 {
        self.embed_stats.iter().map(|s| s.seconds).sum()
    }

    pub fn cache_hit(&self) -> bool {
        self.embed_stats.iter().all(|s| s.embedded == 0)
    }
}

/// What a run says while it works, on stderr.
#[derive(Debug, Clone, Copy)]
pub struct Narration {
    /// Progress bars (embedding, training steps); `--no-progress` hides them.
    pub bars: bool,
    /// Each epoch's summary line and the early-stopping line: results, not progress, so
    /// `train` prints them with or without bars; `compare` keeps its many runs quiet.
    pub epoch_lines: bool,
}

/// Runs a whole training job, step by step; writes the checkpoint to `spec.out` when given.
pub fn run(spec: &TrainSpec, narration: Narration) -> Result<TrainOutcome> {
    let TrainSpec { run, plan, .. } = spec;
    let out = claim_output(spec)?;
    let folder = ModelFolder::open(&spec.settings.model_dir)?;
    let identity = BackboneIdentity::of(
        &folder,
        spec.settings.max_length,
        spec.settings.session.kernels,
    )?;
    let (from, mut warnings) = load_from(run.train.from.as_deref(), &identity)?;
    let configs = resolve_token_layers(&run.tasks, from.as_ref(), plan, folder.num_layers)?;
    let tasks: Vec<TaskData> = configs
        .iter()
        .map(|t| load_task(t, run.seed))
        .collect::<Result<_>>()?;
    warnings.extend(data_warnings(&tasks));
    for t in &tasks {
        warnings.extend(check_split_labels(t)?);
    }

    let mut store = ParamStore::with_kernel(spec.kernel);
    let mut embed_stats = Vec::new();
    let (features, mut sentences) = make_features(
        spec,
        &folder,
        &tasks,
        &mut store,
        &mut embed_stats,
        &mut warnings,
    )?;
    let heads = build_heads(
        plan,
        &tasks,
        HeadSources {
            spec: &run.train.head_spec(),
            dim: folder.hidden_size,
            seed: run.seed,
            from: from.as_ref(),
            train_vectors: features.train_vectors(tasks.len()),
            embedder: sentences.as_mut(),
            warnings: &mut warnings,
        },
        &mut store,
    )?;
    let encoder_ids = features.encoder_ids();
    let layers = features.param_ids();
    let trainable = plan.trainable(&heads, &layers);
    let stages = plan.stages(&heads, &layers);
    let frozen = FrozenValues::take(&store, &trainable);
    store.train_only(&trainable);
    let (features, pairs) = if plan.contrastive {
        let pairs = tune(
            &features,
            &tasks,
            &run.train.contrastive,
            &stages.pairs,
            run.seed,
            narration.bars,
            &mut store,
        )?;
        // The heads train on the tuned layers' vectors made once, in fp32 as every later
        // command makes them.
        store.set_kernel(Kernel::best_fp32());
        (features.into_cached(&store)?, Some(pairs))
    } else {
        (features, None)
    };
    let mut report = fit(
        FitInputs {
            tasks: &tasks,
            features: &features,
            heads: &heads,
            trainable: &stages.heads,
            cfg: &run.train,
            seed: run.seed,
            progress: narration.bars,
            epoch_lines: narration.epoch_lines,
        },
        &mut store,
    )?;
    if let Some(p) = &pairs {
        report.seconds += p.seconds;
    }
    report.pairs = pairs;
    frozen.check_unchanged(&store)?;

    // Scored in fp32, as every later command (predict, eval, export) runs the checkpoint: bf16
    // only speeds the training steps.
    store.set_kernel(Kernel::best_fp32());
    let outcomes = score_tasks(&store, &features, tasks, heads, &mut warnings)?;
    let trainable_params = store.count(&trainable);
    let manifest = manifest(
        spec,
        identity,
        &outcomes,
        &trainable,
        trainable_params,
        &report,
    );
    let heads: Vec<&Head> = outcomes.iter().map(|o| &o.head).collect();
    let tensors = TensorFiles::of(&store, &heads, &encoder_ids)?;
    if let Some(out) = &out {
        checkpoint::save(out, &manifest, &tensors, &report.log)?;
    }
    Ok(TrainOutcome {
        tasks: outcomes,
        report,
        trainable_params,
        checkpoint_bytes: tensors.bytes(),
        embed_stats,
        manifest,
        warnings,
    })
}

/// The checkpoint folder, claimed before any work: a folder frostline may not replace, or one
/// another run is writing, fails now, not after training. Replacing a checkpoint is announced
/// with what it holds; one of other tasks is replaced only with `--force`.
fn claim_output(spec: &TrainSpec) -> Result<Option<OutputFolder>> {
    let reads: Vec<&Path> = spec.run.train.from.iter().map(PathBuf::as_path).collect();
    let Some(out) = spec.out.as_deref() else {
        return Ok(None);
    };
    let claimed = OutputFolder::claim(out, FolderKind::Checkpoint, spec.force, &reads)?;
    if let Some(old) = checkpoint::Previous::at(out) {
        let tasks: Vec<&str> = spec.run.tasks.iter().map(|t| t.name.as_str()).collect();
        if !old.has_tasks(&tasks) && !spec.force {
            return Err(Error::Usage(format!(
                "{} holds a checkpoint of other tasks ({}); this run trains {}: choose another --out, or pass --force to replace it",
                out.display(),
                old.describe(),
                tasks.join(", ")
            )));
        }
        eprintln!(
            "note: replacing the checkpoint {} ({})",
            out.display(),
            old.describe()
        );
    }
    Ok(Some(claimed))
}

/// Loads the `from` checkpoint, if any, and checks it against the backbone about to run —
/// before any embedding, so a mismatch costs nothing.
fn load_from(
    dir: Option<&Path>,
    identity: &BackboneIdentity,
) -> Result<(Option<Checkpoint>, Vec<String>)> {
    let Some(dir) = dir else {
        return Ok((None, Vec::new()));
    };
    let ck = checkpoint::load(dir)?;
    let warnings = ck
        .manifest
        .backbone
        .check(identity, &dir.join(checkpoint::MANIFEST), false)?;
    Ok((Some(ck), warnings))
}

/// What the user should know about the data before training: rows that name no label (only a
/// multi-label row can; other kinds refuse an empty one on reading) and tasks without dev rows.
fn data_warnings(tasks: &[TaskData]) -> Vec<String> {
    let mut warnings = Vec::new();
    for t in tasks {
        let empty = t
            .train
            .labels
            .iter()
            .filter(|l| t.config.label_set(l.trim()).is_empty())
            .count();
        if empty > 0 {
            warnings.push(format!(
                "task {:?}: {empty} of {} train rows name no label (an empty set: every label's target is 0)",
                t.config.name,
                t.train.len()
            ));
        }
    }
    for t in tasks.iter().filter(|t| t.dev.is_empty()) {
        let why = if t.config.dev_fraction == 0.0 {
            "no dev file and dev_fraction = 0".to_string()
        } else {
            format!(
                "no dev file, and dev_fraction = {} carved no rows (no class has two train rows to spare one)",
                t.config.dev_fraction
            )
        };
        warnings.push(format!(
            "task {:?} has {why}: all {} train rows train, it has no dev scores{}",
            t.config.name,
            t.train.len(),
            if tasks.iter().all(|t| t.dev.is_empty()) {
                ", and early stopping is off (the last epoch is kept)"
            } else {
                " and does not take part in early stopping"
            }
        ));
    }
    warnings
}

/// The tasks' features: the sentence cache on a frozen backbone (vectors of a finished dataset
/// folder taken as they are, and said so; the embedder is kept for zero-shot label prompts), or
/// token states at the frost line and the native layers above it.
fn make_features(
    spec: &TrainSpec,
    folder: &ModelFolder,
    tasks: &[TaskData],
    store: &mut ParamStore,
    embed_stats: &mut Vec<EmbedStats>,
    warnings: &mut Vec<String>,
) -> Result<(Features, Option<SentenceEmbedder>)> {
    let settings = &spec.settings;
    let Some(n) = spec.plan.frost_line else {
        let mut embedder = SentenceEmbedder::open(settings.clone())?;
        let sentence_tasks = spec
            .run
            .tasks
            .iter()
            .filter(|t| t.kind.input() == Input::Sentence);
        for t in sentence_tasks {
            for dir in [Some(&t.train), t.dev.as_ref(), t.test.as_ref()]
                .into_iter()
                .flatten()
            {
                if let Some(n) = embedder.import_dataset(dir)?.filter(|&n| n > 0) {
                    warnings.push(format!(
                        "{n} vectors taken from the dataset {} (made with this model and settings), not embedded again",
                        dir.display()
                    ));
                }
            }
        }
        let vectors = cached_vectors(settings, &mut embedder, tasks, embed_stats)?;
        return Ok((Features::Cached(vectors), Some(embedder)));
    };
    let quantize = spec.run.train.quantize_frozen;
    let tuned = LayerTuning {
        tuning: spec.plan.tuning,
        lora: &spec.run.train.lora,
        seed: spec.run.seed,
    };
    let features = frost_features(
        settings,
        quantize,
        folder,
        (n, tuned),
        tasks,
        store,
        embed_stats,
    )?;
    Ok((features, None))
}

/// Every parameter outside the optimizer, as it was before training: the regime's promise is
/// checked after it, bit for bit.
struct FrozenValues(Vec<(usize, ndarray::ArrayD<f32>)>);

impl FrozenValues {
    fn take(store: &ParamStore, trainable: &[usize]) -> Self {
        Self(
            (0..store.len())
                .filter(|i| !trainable.contains(i))
                .map(|i| (i, store.get(i).value.clone()))
                .collect(),
        )
    }

    fn check_unchanged(&self, store: &ParamStore) -> Result<()> {
        for (i, before) in &self.0 {
            let now = &store.get(*i).value;
            if now
                .iter()
                .zip(before.iter())
                .any(|(x, y)| x.to_bits() != y.to_bits())
            {
                return Err(Error::Internal(format!(
                    "frozen parameter {} changed during training",
                    store.get(*i).name
                )));
            }
        }
        Ok(())
    }
}

/// Each task scored with the final weights (for a frost line, vectors made by the tuned layers):
/// on dev, where a multi-label task's thresholds are tuned, then on test with that decision.
fn score_tasks(
    store: &ParamStore,
    features: &Features,
    tasks: Vec<TaskData>,
    heads: Vec<Head>,
    warnings: &mut Vec<String>,
) -> Result<Vec<TaskOutcome>> {
    let mut outcomes = Vec::new();
    for (t, (data, head)) in tasks.into_iter().zip(heads).enumerate() {
        let mut decision = data
            .config
            .kind
            .untuned_decision(data.classes.len(), data.config.decoding);
        let mut dev = None;
        if !data.dev.is_empty() {
            let x = features
                .split_vectors(store, t, SplitName::Dev)?
                .expect("every task has a dev split");
            let labels = &data.dev.labels;
            let (tuned, m) = score_vectors(store, &head, &data, &decision, true, labels, x.view());
            (decision, dev) = (tuned, Some(m));
        } else if let Decision::Multi { .. } = decision {
            warnings.push(format!(
                "task {:?} has no dev rows to tune its thresholds on; every label uses {}",
                data.config.name,
                crate::decision::DEFAULT_THRESHOLD
            ));
        }
        let test = match &data.test {
            Some(s) => features.split_vectors(store, t, SplitName::Test)?.map(|x| {
                score_vectors(store, &head, &data, &decision, false, &s.labels, x.view()).1
            }),
            None => None,
        };
        outcomes.push(TaskOutcome {
            data,
            head,
            decision,
            dev,
            test,
        });
    }
    Ok(outcomes)
}

/// The checkpoint's manifest: the run as it was decided, and each task as it was trained.
fn manifest(
    spec: &TrainSpec,
    backbone: BackboneIdentity,
    outcomes: &[TaskOutcome],
    trainable: &[usize],
    trainable_params: usize,
    report: &TrainReport,
) -> Manifest {
    let run = &spec.run;
    Manifest {
        format_version: checkpoint::MANIFEST_VERSION,
        frostline_version: env!("CARGO_PKG_VERSION").to_string(),
        backbone,
        frost_line: spec.plan.frost_line,
        regime: run.train.regime.clone(),
        seed: run.seed,
        train: run.train.clone(),
        trainable_params,
        training_seconds: report.seconds,
        files: Default::default(),
        tasks: outcomes
            .iter()
            .map(|o| TaskEntry {
                config: o.data.config.clone(),
                classes: o.data.classes.clone(),
                head: o.head.spec.clone(),
                input_dim: o.head.input_dim,
                trained: o.head.param_ids().iter().any(|p| trainable.contains(p)),
                thresholds: o.decision.thresholds().map(<[f32]>::to_vec),
                dev: o.dev.clone(),
                test: o.test.clone(),
            })
            .collect(),
    }
}

/// Each token task's layer, decided once by its kind's rule ([`crate::kind::TaskKind::token_layer`])
/// and recorded in the checkpoint; the `from` checkpoint's layer for the task takes part.
fn resolve_token_layers(
    tasks: &[TaskConfig],
    from: Option<&Checkpoint>,
    plan: &Plan,
    num_layers: usize,
) -> Result<Vec<TaskConfig>> {
    tasks
        .iter()
        .cloned()
        .map(|mut t| {
            let recorded = from.and_then(|ck| {
                ck.manifest
                    .tasks
                    .iter()
                    .find(|e| e.config.name == t.name)
                    .and_then(|e| e.config.token_layer)
            });
            let rule = TokenLayerRule {
                explicit: t.token_layer,
                recorded,
                frost_line: plan.frost_line,
                num_layers,
            };
            t.token_layer = t.kind.token_layer(&t.name, rule)?;
            Ok(t)
        })
        .collect()
}
