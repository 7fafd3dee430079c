//! One whole training run: a resolved [`TrainSpec`] → task data → features (the sentence cache,
//! or token states at the frost line + native layers) → heads as the regime's plan says → the
//! loop → dev/test scores → checkpoint. Shared by `train` and `compare`.

use crate::nn::gemm::{Cpu, Kernel, Precision};
use crate::runfile::PrecisionChoice;
use std::path::{Path, PathBuf};

use crate::backbone::ModelFolder;
use crate::checkpoint::{self, BackboneIdentity, Checkpoint, Manifest, TaskEntry};
use crate::decision::Decision;
use crate::embedder::{EmbedSettings, EmbedStats, SentenceEmbedder, TokenStateEmbedder};
use crate::error::{Error, Result};
use crate::heads::Head;
use crate::metrics::TaskMetrics;
use crate::nn::bert::NativeEncoder;
use crate::nn::ParamStore;
use crate::outfolder::{FolderKind, OutputFolder};
use crate::regime::Plan;
use crate::runfile::{RunFile, TaskConfig, DEFAULT_TOKEN_LAYER};
use crate::tasks::{load_task, Split, SplitName, TaskData};

use super::features::{
    sentence_offsets, word_vectors, Features, FrostFeatures, SplitStates, TaskStates, TaskVectors,
};
use super::fit::{fit, score_vectors, FitInputs, TrainReport};
use super::heads_init::{build_heads, HeadSources};

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
        for t in &run.tasks {
            if t.is_token_task() && run.train.head == crate::runfile::HeadChoice::ZeroShot {
                return Err(Error::Usage(format!(
                    "task {:?} is a token task: zero-shot label prompts are for sentence tasks; use head = \"centroid\" for a training-free token head",
                    t.name
                )));
            }
            if !t.is_token_task() && t.token_layer.is_some() {
                return Err(Error::Usage(format!(
                    "task {:?}: token_layer is for token-classification tasks (sentence tasks read the pooled vector)",
                    t.name
                )));
            }
        }
        let names: Vec<String> = run.tasks.iter().map(|t| t.name.clone()).collect();
        let plan =
            run.train
                .regime
                .plan(&names, &run.train.head_spec(), run.train.from.is_some())?;
        if run.train.quantize_frozen && plan.frost_line.is_none() {
            return Err(Error::Usage(format!(
                "train.quantize_frozen runs the graph below a frost line in int8, but regime {} has none; use frost-line=N (or freeze-head=TASK,frost-line=N), or quantize the whole model with frostline quantize",
                run.train.regime
            )));
        }
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
                    "precision auto: bf16 products (fp32 accumulation and master weights), as this CPU ({}) has AVX512-BF16",
                    cpu.model
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

/// Loads the `from` checkpoint and checks it against the backbone about to run — before any
/// embedding, so a mismatch costs nothing.
fn load_from(dir: &Path, identity: &BackboneIdentity) -> Result<(Checkpoint, Vec<String>)> {
    let ck = checkpoint::load(dir)?;
    let warnings = ck
        .manifest
        .backbone
        .check(identity, &dir.join(checkpoint::MANIFEST), false)?;
    Ok((ck, warnings))
}

/// Runs a whole training job; writes the checkpoint to `spec.out` when given.
pub fn run(spec: &TrainSpec, progress: bool) -> Result<TrainOutcome> {
    let TrainSpec {
        run,
        settings,
        plan,
        out,
        force,
        kernel,
        precision_note: _,
    } = spec;
    // Claimed before any work: a folder frostline may not replace, or one another run is
    // writing, fails now, not after training.
    let reads: Vec<&Path> = run.train.from.iter().map(PathBuf::as_path).collect();
    let out = out
        .as_deref()
        .map(|o| OutputFolder::claim(o, FolderKind::Checkpoint, *force, &reads))
        .transpose()?;
    let folder = ModelFolder::open(&settings.model_dir)?;
    let identity = BackboneIdentity::of(&folder, settings.max_length)?;
    let (from, mut warnings) = match &run.train.from {
        Some(dir) => {
            let (ck, w) = load_from(dir, &identity)?;
            (Some(ck), w)
        }
        None => (None, Vec::new()),
    };
    let configs = resolve_token_layers(&run.tasks, from.as_ref(), plan, folder.num_layers);
    if let Some(t) = configs
        .iter()
        .find(|t| t.is_token_task() && t.token_layer() > folder.num_layers)
    {
        return Err(Error::Usage(format!(
            "task {:?}: token_layer {} is outside 0..={} (the model has {} layers)",
            t.name,
            t.token_layer(),
            folder.num_layers,
            folder.num_layers
        )));
    }
    let tasks: Vec<TaskData> = configs
        .iter()
        .map(|t| load_task(t, run.seed))
        .collect::<Result<_>>()?;

    // Only a multi-label row can name no label (other kinds refuse an empty one on reading).
    for t in &tasks {
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

    let mut store = ParamStore::with_kernel(*kernel);
    let mut embed_stats = Vec::new();
    let (features, mut sentences) = match plan.frost_line {
        None => {
            let mut embedder = SentenceEmbedder::open(settings.clone())?;
            for t in run.tasks.iter().filter(|t| !t.is_token_task()) {
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
            let vectors = cached_vectors(settings, &mut embedder, &tasks, &mut embed_stats)?;
            (Features::Cached(vectors), Some(embedder))
        }
        Some(n) => (
            frost_features(
                settings,
                run.train.quantize_frozen,
                &folder,
                n,
                &tasks,
                &mut store,
                &mut embed_stats,
            )?,
            None,
        ),
    };
    let train_vectors = match &features {
        Features::Cached(v) => v.iter().map(|t| Some(t.train.view())).collect(),
        Features::Frost(_) => vec![None; tasks.len()],
    };
    let spec_head = run.train.head_spec();
    let heads = build_heads(
        plan,
        &tasks,
        HeadSources {
            spec: &spec_head,
            dim: folder.hidden_size,
            seed: run.seed,
            from: from.as_ref(),
            train_vectors,
            embedder: sentences.as_mut(),
            warnings: &mut warnings,
        },
        &mut store,
    )?;
    let trainable = plan.trainable(&heads, &features.param_ids());
    let frozen: Vec<usize> = (0..store.len())
        .filter(|i| !trainable.contains(i))
        .collect();
    let before: Vec<_> = frozen.iter().map(|&i| store.get(i).value.clone()).collect();

    let report = fit(
        FitInputs {
            tasks: &tasks,
            features: &features,
            heads: &heads,
            trainable: &trainable,
            cfg: &run.train,
            seed: run.seed,
            progress,
        },
        &mut store,
    )?;

    // The regime's promise, checked: every parameter outside the optimizer is bit-for-bit unchanged.
    for (&i, b) in frozen.iter().zip(&before) {
        let now = &store.get(i).value;
        if now
            .iter()
            .zip(b.iter())
            .any(|(x, y)| x.to_bits() != y.to_bits())
        {
            return Err(Error::Internal(format!(
                "frozen parameter {} changed during training",
                store.get(i).name
            )));
        }
    }

    // Scores with the final weights (for a frost line, vectors made by the tuned layers); a
    // multi-label task's thresholds are tuned on dev and then applied to test. They run in
    // fp32, as every later command (predict, eval, export) runs the checkpoint: bf16 only
    // speeds the training steps.
    store.set_kernel(Kernel::best_fp32());
    let mut outcomes = Vec::new();
    for (t, (data, head)) in tasks.into_iter().zip(heads).enumerate() {
        let mut decision = Decision::untuned(&data.config, data.classes.len());
        let mut dev = None;
        if !data.dev.is_empty() {
            let x = features
                .split_vectors(&store, t, SplitName::Dev)?
                .expect("every task has a dev split");
            let (tuned, m) = score_vectors(
                &store,
                &head,
                &data,
                &decision,
                true,
                &data.dev.labels,
                x.view(),
            );
            (decision, dev) = (tuned, Some(m));
        } else if data.is_multi_label() {
            warnings.push(format!(
                "task {:?} has no dev rows to tune its thresholds on; every label uses {}",
                data.config.name,
                crate::decision::DEFAULT_THRESHOLD
            ));
        }
        let test = match &data.test {
            Some(s) => features
                .split_vectors(&store, t, SplitName::Test)?
                .map(|x| {
                    score_vectors(&store, &head, &data, &decision, false, &s.labels, x.view()).1
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
    let encoder_ids = features.encoder_ids();
    let trainable_params = store.count(&trainable);
    let manifest = Manifest {
        format_version: checkpoint::MANIFEST_VERSION,
        frostline_version: env!("CARGO_PKG_VERSION").to_string(),
        backbone: identity,
        frost_line: plan.frost_line,
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
    };
    if let Some(out) = &out {
        let heads: Vec<&Head> = outcomes.iter().map(|o| &o.head).collect();
        checkpoint::save(out, &manifest, &store, &heads, &encoder_ids, &report.log)?;
    }
    Ok(TrainOutcome {
        tasks: outcomes,
        report,
        trainable_params,
        embed_stats,
        manifest,
        warnings,
    })
}

/// Each token task's layer, decided once and recorded in the checkpoint: the run file's, else
/// the `from` checkpoint's (its head was trained there), else the top layer above a frost line
/// (the layers trained there are all read) and [`DEFAULT_TOKEN_LAYER`] on a frozen backbone.
fn resolve_token_layers(
    tasks: &[TaskConfig],
    from: Option<&Checkpoint>,
    plan: &Plan,
    num_layers: usize,
) -> Vec<TaskConfig> {
    tasks
        .iter()
        .cloned()
        .map(|mut t| {
            if t.is_token_task() && t.token_layer.is_none() {
                let recorded = from.and_then(|ck| {
                    ck.manifest
                        .tasks
                        .iter()
                        .find(|e| e.config.name == t.name)
                        .and_then(|e| e.config.token_layer)
                });
                t.token_layer = Some(recorded.unwrap_or(match plan.frost_line {
                    Some(_) => num_layers,
                    None => DEFAULT_TOKEN_LAYER,
                }));
            }
            t
        })
        .collect()
}

/// Every split of every task through the cache: sentence vectors, or for a token task the word
/// features at its layer (token states of the graph cut there).
fn cached_vectors(
    settings: &EmbedSettings,
    embedder: &mut SentenceEmbedder,
    tasks: &[TaskData],
    stats: &mut Vec<EmbedStats>,
) -> Result<Vec<TaskVectors>> {
    let hidden = embedder.folder().hidden_size;
    let mut out = Vec::new();
    for t in tasks {
        let name = &t.config.name;
        if t.is_token_task() {
            let layer = t.config.token_layer();
            let mut tok = TokenStateEmbedder::open(settings.clone(), layer, false)?;
            let mut words = |split: &str, s: &Split| {
                tok.set_progress_label(&format!("{name} {split} (layer {layer})"));
                let (states, ww, st) = tok.word_states(&s.words, t.config.word_feature)?;
                stats.push(st);
                Ok::<_, Error>((word_vectors(&states, &ww, hidden), ww))
            };
            let (train, ww) = words("train", &t.train)?;
            out.push(TaskVectors {
                train,
                train_words: Some(sentence_offsets(&ww)),
                dev: words("dev", &t.dev)?.0,
                test: t
                    .test
                    .as_ref()
                    .map(|s| words("test", s).map(|w| w.0))
                    .transpose()?,
            });
            continue;
        }
        let mut embed = |split: &str, texts: &[String]| {
            embedder.set_progress_label(&format!("{name} {split}"));
            let (x, s) = embedder.embed(texts)?;
            stats.push(s);
            Ok::<_, Error>(x)
        };
        out.push(TaskVectors {
            train: embed("train", &t.train.texts)?,
            dev: embed("dev", &t.dev.texts)?,
            test: t
                .test
                .as_ref()
                .map(|s| embed("test", &s.texts))
                .transpose()?,
            train_words: None,
        });
    }
    Ok(out)
}

/// Token states of every split at frost line `n` (cached), and the native layers above it.
fn frost_features(
    settings: &EmbedSettings,
    quantize_frozen: bool,
    folder: &ModelFolder,
    n: usize,
    tasks: &[TaskData],
    store: &mut ParamStore,
    stats: &mut Vec<EmbedStats>,
) -> Result<Features> {
    // The layers load first: a folder without usable weights fails before any embedding.
    let encoder = NativeEncoder::load(store, folder, n)?;
    let mut tok = TokenStateEmbedder::open(settings.clone(), n, quantize_frozen)?;
    let mut states = |task: &TaskData, split: &str, s: &Split| {
        tok.set_progress_label(&format!("{} {split} (below layer {n})", task.config.name));
        let (states, windows, st) = if task.is_token_task() {
            let (states, ww, st) = tok.word_states(&s.words, task.config.word_feature)?;
            (states, Some(ww), st)
        } else {
            let (states, st) = tok.token_states(&s.texts)?;
            (states, None, st)
        };
        stats.push(st);
        Ok::<_, Error>(SplitStates { states, windows })
    };
    // Each task's depth is checked before anything is embedded.
    let depths: Vec<usize> = tasks
        .iter()
        .map(|t| match t.is_token_task() {
            true => encoder.depth_for(&t.config.name, t.config.token_layer()),
            false => Ok(encoder.layers.len()),
        })
        .collect::<Result<_>>()?;
    let mut task_states = Vec::new();
    for (t, depth) in tasks.iter().zip(depths) {
        task_states.push(TaskStates {
            depth,
            train: states(t, "train", &t.train)?,
            dev: states(t, "dev", &t.dev)?,
            test: t.test.as_ref().map(|s| states(t, "test", s)).transpose()?,
        });
    }
    Ok(Features::Frost(FrostFeatures {
        encoder,
        pooling: folder.pooling,
        tasks: task_states,
        eval_batch: 64,
    }))
}
