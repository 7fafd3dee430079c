//! The features of a run's tasks, made once before training: every split through the cache
//! (sentence vectors, or a token task's word features at its layer), or — with a frost line —
//! token states at the line plus the native layers above it.

use crate::backbone::ModelFolder;
use crate::embedder::{EmbedSettings, EmbedStats, SentenceEmbedder, TokenStateEmbedder};
use crate::error::{Error, Result};
use crate::kind::Input;
use crate::nn::adapter::{Adapter, LoraShape, Tuning};
use crate::nn::bert::NativeEncoder;
use crate::nn::ParamStore;
use crate::tasks::{Split, TaskData};

use super::{
    sentence_offsets, word_vectors, Features, FrostFeatures, SplitStates, TaskStates, TaskVectors,
};

/// Every split of every task through the cache: sentence vectors, or for a token task the word
/// features at its layer (token states of the graph cut there).
pub(crate) fn cached_vectors(
    settings: &EmbedSettings,
    embedder: &mut SentenceEmbedder,
    tasks: &[TaskData],
    stats: &mut Vec<EmbedStats>,
) -> Result<Vec<TaskVectors>> {
    let hidden = embedder.folder().hidden_size;
    let mut out = Vec::new();
    for t in tasks {
        let name = &t.config.name;
        if t.config.kind.input() == Input::Words {
            let layer = t.config.resolved_token_layer();
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

/// What a run tunes of the native layers above its frost line: the regime's tuning, and for
/// LoRA the factors' shape and the seed of their initial values.
pub(crate) struct LayerTuning<'a> {
    pub tuning: Tuning,
    pub lora: &'a LoraShape,
    pub seed: u64,
}

/// Token states of every split at frost line `n` (cached), and the native layers above it.
pub(crate) fn frost_features(
    settings: &EmbedSettings,
    quantize_frozen: bool,
    folder: &ModelFolder,
    (n, tuned): (usize, LayerTuning),
    tasks: &[TaskData],
    store: &mut ParamStore,
    stats: &mut Vec<EmbedStats>,
) -> Result<Features> {
    // The layers load first: a folder without usable weights fails before any embedding.
    let mut encoder = NativeEncoder::load(store, &folder.native_source()?, n)?;
    if tuned.tuning == Tuning::Lora {
        encoder.attach_lora(store, tuned.lora, tuned.seed);
    }
    let mut tok = TokenStateEmbedder::open(settings.clone(), n, quantize_frozen)?;
    let mut states = |task: &TaskData, split: &str, s: &Split| {
        tok.set_progress_label(&format!("{} {split} (below layer {n})", task.config.name));
        let (states, windows, st) = match task.config.kind.input() {
            Input::Words => {
                let (states, ww, st) = tok.word_states(&s.words, task.config.word_feature)?;
                (states, Some(ww), st)
            }
            Input::Sentence => {
                let (states, st) = tok.token_states(&s.texts)?;
                (states, None, st)
            }
        };
        stats.push(st);
        Ok::<_, Error>(SplitStates { states, windows })
    };
    // Each task's depth is checked before anything is embedded.
    let depths: Vec<usize> = tasks
        .iter()
        .map(|t| match t.config.kind.input() {
            Input::Words => encoder.depth_for(&t.config.name, t.config.resolved_token_layer()),
            Input::Sentence => Ok(encoder.layers.len()),
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
    let owners: Vec<(&str, Adapter)> = tasks
        .iter()
        .map(|t| (t.config.name.as_str(), t.config.adapter))
        .collect();
    Ok(Features::Frost(FrostFeatures {
        encoders: encoder.per_task(store, tuned.tuning, &owners),
        tuning: tuned.tuning,
        pooling: folder.pooling,
        tasks: task_states,
        eval_batch: 64,
    }))
}
