//! Flags → one complete job per subcommand. Every default and every path is decided here, once,
//! with the source of the model folder named in errors; the commands receive no `Option`s or
//! override flags to re-decide.

use std::path::{Path, PathBuf};

use super::{
    BackboneArgs, Cli, Command, CompareArgs, CurveArgs, EmbedArgs, EvalArgs, FewshotArgs, MtebArgs,
    PredictArgs, QuantizeArgs, RunArgs, TrainArgs,
};
use crate::backbone::choice::{choose_model, open_model, ModelSource};
use crate::backbone::{Kernels, ModelFolder, QuantMethod, Recipe, SessionOptions};
use crate::cache;
use crate::checkpoint::{self, Manifest};
use crate::commands::{
    compare::CompareJob,
    curve::CurveJob,
    eval::EvalJob,
    export::ExportJob,
    fewshot::FewshotJob,
    mteb::MtebJob,
    predict::PredictJob,
    quantize::{Calibration, QuantizeJob},
    Job,
};
use crate::embedder::EmbedSettings;
use crate::error::{Error, Result};
use crate::io::format::Format;
use crate::regime::Regime;
use crate::shard::Shard;
use crate::streaming::{EmbedJob, EmbedOutput};
use crate::train::TrainSpec;

/// A resolved command line: the job, and how to print its outcome.
pub(crate) struct Resolved {
    pub job: Job,
    pub json: bool,
}

impl BackboneArgs {
    /// The backbone settings for `folder` with truncation at `max_length` (already checked),
    /// the layers on `kernels`.
    fn settings(
        &self,
        folder: &ModelFolder,
        max_length: usize,
        kernels: Kernels,
        ort_lib: Option<PathBuf>,
    ) -> Result<EmbedSettings> {
        if self.batch_tokens == 0 || self.max_batch == 0 {
            return Err(Error::Usage(
                "--batch-tokens and --max-batch must be at least 1".into(),
            ));
        }
        let (provider, device_note) = self.device.resolve(ort_lib.as_deref())?;
        Ok(EmbedSettings {
            model_dir: folder.dir.clone(),
            session: SessionOptions {
                provider,
                device_note,
                kernels,
                threads: self.threads,
            },
            max_length,
            token_budget: self.batch_tokens,
            max_batch_rows: self.max_batch,
            cache_root: self.cache_dir.clone().unwrap_or_else(cache::default_root),
            ort_lib,
            rows_per_chunk: self.chunk_rows.max(1),
            progress: !self.no_progress,
        })
    }

    /// Settings for a model chosen from the flags (and `recorded`, a run file's model).
    fn resolve(
        &self,
        recorded: Option<(PathBuf, ModelSource)>,
        ort_lib: Option<PathBuf>,
    ) -> Result<(EmbedSettings, ModelSource)> {
        let choice = choose_model(self.model.as_deref(), recorded);
        let folder = open_model(&choice)?;
        let max_length = folder.checked_max_length(self.max_length.map(|n| (n, "--max-length")))?;
        let kernels = self.kernels.unwrap_or_default();
        Ok((
            self.settings(&folder, max_length, kernels, ort_lib)?,
            choice.source,
        ))
    }

    /// Settings for running a checkpoint's heads: its model folder (unless `--model` or the
    /// environment names another, checked by content hash later) at its max length and on its
    /// kernels (unless `--max-length` or `--kernels` say otherwise, which is allowed and warned
    /// about).
    fn resolve_for_checkpoint(
        &self,
        manifest: &Manifest,
        ckpt: &Path,
        ort_lib: Option<PathBuf>,
    ) -> Result<EmbedSettings> {
        let recorded = (
            manifest.backbone.model_dir.clone(),
            ModelSource::Checkpoint(ckpt.join(checkpoint::MANIFEST)),
        );
        let choice = choose_model(self.model.as_deref(), Some(recorded));
        let folder = open_model(&choice)?;
        let max_length = match self.max_length {
            Some(n) => folder.checked_max_length(Some((n, "--max-length")))?,
            // The checkpoint's own value: a bad one is the checkpoint's fault, not a flag's.
            None => folder
                .checked_max_length(Some((
                    manifest.backbone.max_length,
                    "the checkpoint's backbone.max_length",
                )))
                .map_err(|e| Error::InputFile {
                    path: ckpt.join(checkpoint::MANIFEST),
                    reason: e.to_string(),
                })?,
        };
        let kernels = self
            .kernels
            .or(manifest.backbone.kernels)
            .unwrap_or_default();
        self.settings(&folder, max_length, kernels, ort_lib)
    }
}

/// Turns the parsed command line into its job.
pub(crate) fn resolve(cli: Cli) -> Result<Resolved> {
    let ort_lib = cli.ort_lib;
    let job = match cli.command {
        Command::Doctor { model } => Job::Doctor {
            model: choose_model(model.as_deref(), None),
            ort_lib,
        },
        Command::Embed(a) => Job::Embed(embed_job(a, ort_lib)?),
        Command::Train(a) if a.run.print_run => Job::PrintRun(print_run(
            &a.run,
            &a.all_overrides(),
            a.backbone.model.as_deref(),
        )?),
        Command::Train(a) => {
            let (spec, source) = train_job(a, ort_lib)?;
            Job::Train(spec, source)
        }
        Command::Compare(a) if a.run.print_run => Job::PrintRun(print_run(
            &a.run,
            &a.run.overrides,
            a.backbone.model.as_deref(),
        )?),
        Command::Predict(a) => Job::Predict(predict_job(a, ort_lib)?),
        Command::Eval(a) => Job::Eval(eval_job(a, ort_lib)?),
        Command::Compare(a) => Job::Compare(compare_job(a, ort_lib)?),
        Command::Curve(a) if a.run.print_run => Job::PrintRun(print_run(
            &a.run,
            &a.run.overrides,
            a.backbone.model.as_deref(),
        )?),
        Command::Curve(a) => Job::Curve(curve_job(a, ort_lib)?),
        Command::Fewshot(a) if a.run.print_run => Job::PrintRun(print_run(
            &a.run,
            &a.run.overrides,
            a.backbone.model.as_deref(),
        )?),
        Command::Fewshot(a) => Job::Fewshot(fewshot_job(a, ort_lib)?),
        Command::Mteb(a) => Job::Mteb(mteb_job(a, ort_lib)?),
        Command::Quantize(a) => Job::Quantize(quantize_job(a)?),
        Command::Export(a) => {
            let manifest = Manifest::read(&a.checkpoint)?;
            let recorded = (
                manifest.backbone.model_dir.clone(),
                ModelSource::Checkpoint(a.checkpoint.join(checkpoint::MANIFEST)),
            );
            let model = choose_model(a.model.as_deref(), Some(recorded));
            Job::Export(ExportJob {
                checkpoint: a.checkpoint,
                model,
                task: a.task,
                with_heads: a.with_heads,
                out: a.out,
                force: a.force,
            })
        }
    };
    Ok(Resolved {
        job,
        json: cli.json,
    })
}

/// The text column of an input: `text` for plain-text files (one text per line), else `given`.
fn text_column_of(input: &Path, given: String) -> String {
    if Format::of(input) == Some(Format::Text) {
        "text".into()
    } else {
        given
    }
}

fn embed_job(a: EmbedArgs, ort_lib: Option<PathBuf>) -> Result<EmbedJob> {
    let (mut settings, _) = a.backbone.resolve(None, ort_lib)?;
    if a.window_rows == 0 {
        return Err(Error::Usage("--window-rows must be at least 1".into()));
    }
    let dataset = a.output.as_os_str().to_string_lossy().ends_with('/') || a.output.is_dir();
    let output = if dataset {
        let env = |name: &str| std::env::var(name).ok();
        let shard = Shard::resolve(a.shard.as_deref(), a.shards, env)?.unwrap_or(Shard::WHOLE);
        if shard.count > 1 {
            // A shard's own cache entry: shards on one machine (or one shared home) never wait
            // for each other's lock, and a retried shard resumes from its own.
            settings.cache_root = settings
                .cache_root
                .join(format!("shard-{:05}-of-{:05}", shard.index, shard.count));
        }
        EmbedOutput::Dataset {
            dir: std::path::absolute(&a.output).unwrap_or(a.output),
            shard,
        }
    } else {
        if a.shard.is_some() || a.shards.is_some() {
            return Err(Error::Usage(format!(
                "--shard / --shards write one part of a dataset: give a folder, --output {}/",
                a.output.display()
            )));
        }
        Format::output(&a.output, crate::io::format::EMBEDDING_OUTPUTS)?;
        EmbedOutput::File(a.output)
    };
    Ok(EmbedJob {
        settings,
        token_layer: a.token_layer,
        word_feature: a.word_feature.into(),
        text_column: text_column_of(&a.input, a.text_column),
        delimiter: a.delimiter,
        input: a.input,
        id_column: a.id_column,
        carry: a.carry,
        output,
        window_rows: a.window_rows,
    })
}

/// The run file a command line amounts to, `--model` written in (it outranks the run's).
fn print_run(run: &RunArgs, overrides: &[String], model: Option<&Path>) -> Result<String> {
    let (mut run, _) = run.load(overrides)?;
    // What would train: the head's defaults written in where the run leaves them unset.
    run.train.resolve_defaults();
    if let Some(m) = model {
        run.model = Some(std::path::absolute(m).unwrap_or_else(|_| m.to_path_buf()));
    }
    run.to_toml()
}

fn train_job(a: TrainArgs, ort_lib: Option<PathBuf>) -> Result<(TrainSpec, ModelSource)> {
    let (run, recorded) = a.run.load(&a.all_overrides())?;
    let (settings, source) = a.backbone.resolve(recorded, ort_lib)?;
    let out = a.out.map(|o| std::path::absolute(&o).unwrap_or(o));
    Ok((TrainSpec::new(run, settings, out, a.force)?, source))
}

fn predict_job(a: PredictArgs, ort_lib: Option<PathBuf>) -> Result<PredictJob> {
    let manifest = Manifest::read(&a.checkpoint)?;
    let settings = a
        .backbone
        .resolve_for_checkpoint(&manifest, &a.checkpoint, ort_lib)?;
    let text_column = text_column_of(
        &a.input,
        a.text_column
            .unwrap_or_else(|| manifest.tasks[0].config.text_column.clone()),
    );
    let known: Vec<&str> = manifest
        .tasks
        .iter()
        .map(|t| t.config.name.as_str())
        .collect();
    let tasks = match a.tasks {
        None => known.iter().map(|t| t.to_string()).collect(),
        Some(asked) => {
            let asked: Vec<String> = asked.into_iter().filter(|t| !t.is_empty()).collect();
            if let Some(t) = asked.iter().find(|t| !known.contains(&t.as_str())) {
                return Err(Error::Usage(format!(
                    "--tasks names {t:?}, which the checkpoint does not have; its tasks: {}",
                    known.join(", ")
                )));
            }
            if asked.is_empty() {
                return Err(Error::Usage(format!(
                    "--tasks names no task; the checkpoint's tasks: {}",
                    known.join(", ")
                )));
            }
            asked
        }
    };
    if a.top_k == Some(0) {
        return Err(Error::Usage("--top-k must be at least 1".into()));
    }
    let keep_columns = a
        .keep_columns
        .map(|c| c.into_iter().filter(|c| !c.is_empty()).collect());
    if let Some(s) = a.min_score {
        if !(0.0..=1.0).contains(&s) {
            return Err(Error::Usage(format!(
                "--min-score {s}: an entity's score is a probability, give one in [0, 1]"
            )));
        }
        let token_task = manifest.tasks.iter().any(|t| {
            tasks.contains(&t.config.name) && t.config.kind.input() == crate::kind::Input::Words
        });
        if !token_task {
            return Err(Error::Usage(format!(
                "--min-score filters a token task's entities, and none of the tasks predicted ({}) is one",
                tasks.join(", ")
            )));
        }
    }
    Ok(PredictJob {
        settings,
        checkpoint: a.checkpoint,
        input: a.input,
        text_column,
        output: a.output,
        allow_quantized: a.allow_quantized,
        tasks,
        top_k: a.top_k,
        all_probs: a.all_probs,
        keep_columns,
        min_score: a.min_score,
        delimiter: a.delimiter,
    })
}

fn eval_job(a: EvalArgs, ort_lib: Option<PathBuf>) -> Result<EvalJob> {
    let manifest = Manifest::read(&a.checkpoint)?;
    let settings = a
        .backbone
        .resolve_for_checkpoint(&manifest, &a.checkpoint, ort_lib)?;
    let out = a
        .out
        .unwrap_or_else(|| a.checkpoint.join(format!("eval-{}", a.split.as_str())));
    Ok(EvalJob {
        settings,
        checkpoint: a.checkpoint,
        split: a.split,
        out,
        top_errors: a.top_errors,
        keep_columns: a
            .keep_columns
            .into_iter()
            .filter(|c| !c.is_empty())
            .collect(),
        force: a.force,
        allow_quantized: a.allow_quantized,
    })
}

fn compare_job(a: CompareArgs, ort_lib: Option<PathBuf>) -> Result<CompareJob> {
    let (run, recorded) = a.run.load(&a.run.overrides)?;
    let (settings, _) = a.backbone.resolve(recorded, ort_lib)?;
    let layers = ModelFolder::open(&settings.model_dir)?.num_layers;
    for &n in &a.frost_lines {
        crate::kind::check_layer("--frost-lines", n, layers)?;
    }
    let token_layers = run.tasks.iter().filter_map(|t| t.token_layer);
    let default_frost_line = crate::kind::default_frost_line(token_layers, layers);
    let frost_lines = match (a.no_frost_line, a.frost_lines.is_empty()) {
        (true, _) => Vec::new(),
        (false, true) => vec![default_frost_line],
        (false, false) => a.frost_lines,
    };
    let seeds = seeds_from(run.seed, a.seeds)?;
    Ok(CompareJob {
        run,
        settings,
        layers,
        frost_lines,
        seeds,
        out: a.out,
        force: a.force,
    })
}

fn quantize_job(a: QuantizeArgs) -> Result<QuantizeJob> {
    let calibration = match (a.method, a.calibration) {
        (QuantMethod::Static, None) => {
            return Err(Error::Usage(
                "--method static fixes activation ranges from texts: pass --calibration FILE with a few hundred texts like the ones you will embed".into(),
            ))
        }
        (QuantMethod::Static, Some(c)) => {
            if a.calibration_rows == 0 {
                return Err(Error::Usage("--calibration-rows must be at least 1".into()));
            }
            Some(Calibration {
                text_column: text_column_of(&c, a.text_column),
                path: c,
                rows: a.calibration_rows,
            })
        }
        (m, Some(_)) => {
            return Err(Error::Usage(format!(
                "--calibration is for --method static; {} measures activation ranges at run time",
                m.as_str()
            )))
        }
        (_, None) => None,
    };
    Ok(QuantizeJob {
        model: choose_model(a.model.as_deref(), None),
        out: std::path::absolute(&a.out).unwrap_or(a.out),
        recipe: Recipe {
            method: a.method,
            per_channel: !a.per_tensor,
        },
        calibration,
        force: a.force,
    })
}

/// `--seeds K`: the run's seed and the K − 1 after it.
fn seeds_from(first: u64, k: u64) -> Result<Vec<u64>> {
    if k == 0 {
        return Err(Error::Usage("--seeds must be at least 1".into()));
    }
    Ok((0..k).map(|i| first.wrapping_add(i)).collect())
}

fn curve_job(a: CurveArgs, ort_lib: Option<PathBuf>) -> Result<CurveJob> {
    let (run, recorded) = a.run.load(&a.run.overrides)?;
    let (settings, _) = a.backbone.resolve(recorded, ort_lib)?;
    let mut fractions = a.fractions;
    if let Some(f) = fractions.iter().find(|f| !(**f > 0.0 && **f <= 1.0)) {
        return Err(Error::Usage(format!(
            "--fractions {f}: each share of train must be in (0, 1]"
        )));
    }
    fractions.sort_by(f64::total_cmp);
    fractions.dedup();
    Ok(CurveJob {
        seeds: seeds_from(run.seed, a.seeds)?,
        run,
        settings,
        fractions,
        out: std::path::absolute(&a.out).unwrap_or(a.out),
        force: a.force,
    })
}

fn fewshot_job(a: FewshotArgs, ort_lib: Option<PathBuf>) -> Result<FewshotJob> {
    let (mut run, recorded) = a.run.load(&a.run.overrides)?;
    let (settings, _) = a.backbone.resolve(recorded, ort_lib)?;
    if a.k == 0 {
        return Err(Error::Usage(
            "--k must be at least 1 (rows per label)".into(),
        ));
    }
    if let Some(t) = run.tasks.iter().find(|t| t.test.is_none()) {
        return Err(Error::Usage(format!(
            "task {:?} has no test split: fewshot scores every regime on the full test split; give {}",
            t.name,
            t.setter("test")
        )));
    }
    // The few-shot protocol: k rows of each label and nothing else, no dev rows held out.
    for t in &mut run.tasks {
        t.per_label = Some(a.k);
        t.train_fraction = 1.0;
        t.dev = None;
        t.dev_fraction = 0.0;
    }
    let regimes = if a.regimes.is_empty() {
        let layers = ModelFolder::open(&settings.model_dir)?.num_layers;
        vec![
            Regime::FrozenBackbone,
            Regime::Contrastive { frost_line: 0 },
            Regime::Contrastive {
                frost_line: layers / 2,
            },
        ]
    } else {
        a.regimes
    };
    // Every regime is checked against the tasks before the first run starts.
    for r in &regimes {
        let mut probe = run.clone();
        probe.train.regime = r.clone();
        TrainSpec::new(probe, settings.clone(), None, false)?;
    }
    Ok(FewshotJob {
        seeds: seeds_from(run.seed, a.seeds)?,
        k: a.k,
        regimes,
        run,
        settings,
        out: std::path::absolute(&a.out).unwrap_or(a.out),
        force: a.force,
    })
}

fn mteb_job(a: MtebArgs, ort_lib: Option<PathBuf>) -> Result<MtebJob> {
    let (settings, _) = a.backbone.resolve(None, ort_lib)?;
    if a.k == 0 || a.experiments == 0 {
        return Err(Error::Usage(
            "--k and --experiments must be at least 1".into(),
        ));
    }
    Ok(MtebJob {
        settings,
        train: a.train,
        test: a.test,
        text_column: a.text_column,
        label_column: a.label_column,
        k: a.k,
        experiments: a.experiments,
        seed: a.seed,
        out: a.out,
        force: a.force,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// A minimal model folder (config + tokenizer + graph files present; contents unused here).
    fn fake_model(dir: &Path, max_positions: usize) {
        std::fs::create_dir_all(dir).unwrap();
        for f in ["model.onnx", "tokenizer.json"] {
            std::fs::write(dir.join(f), b"x").unwrap();
        }
        std::fs::write(
            dir.join("config.json"),
            format!(r#"{{"hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": {max_positions}}}"#),
        )
        .unwrap();
        std::fs::write(
            dir.join("sentence_bert_config.json"),
            r#"{"max_seq_length": 16}"#,
        )
        .unwrap();
    }

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("frostline").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn embed_job_settles_every_default() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m");
        fake_model(&model, 32);
        let m = model.to_str().unwrap();
        let Resolved {
            job: Job::Embed(job),
            json,
        } = resolve(parse(&[
            "embed", "--model", m, "--input", "in.txt", "--output", "o.npy", "--json",
        ]))
        .ok()
        .unwrap()
        else {
            panic!("an embed job")
        };
        assert!(json);
        assert_eq!(
            job.settings.max_length, 16,
            "the folder's sentence_bert_config.json"
        );
        assert_eq!(job.text_column, "text");
        assert_eq!(job.output, EmbedOutput::File("o.npy".into()));
        assert!(job.settings.model_dir.is_absolute());
        // Above the position table: refused up front, naming the limit.
        let err = resolve(parse(&[
            "embed",
            "--model",
            m,
            "--input",
            "a.csv",
            "--output",
            "o.npy",
            "--max-length",
            "33",
        ]))
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("position limit 32"), "{err}");
    }

    #[test]
    fn train_job_types_the_regime_and_plans_before_reading_data() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m");
        fake_model(&model, 32);
        let run = dir.path().join("run.toml");
        std::fs::write(
            &run,
            "model = \"m\"\n[[tasks]]\nname = \"a\"\ntrain = \"missing.csv\"\n[[tasks]]\nname = \"b\"\ntrain = \"missing.csv\"\n",
        )
        .unwrap();
        let r = run.to_str().unwrap();
        let Resolved {
            job: Job::Train(spec, source),
            ..
        } = resolve(parse(&["train", "--run", r, "--regime", "frost-line=1"]))
            .ok()
            .unwrap()
        else {
            panic!("a train job")
        };
        assert_eq!(source, ModelSource::RunFile(run.clone()));
        assert_eq!(spec.plan.frost_line, Some(1));
        assert_eq!(
            spec.settings.model_dir,
            std::path::absolute(&model).unwrap()
        );
        // freeze-head without a checkpoint is refused before the (missing) data is read.
        let err = resolve(parse(&["train", "--run", r, "--regime", "freeze-head=b"]))
            .err()
            .unwrap();
        assert_eq!(err.kind(), crate::error::ErrorKind::Usage, "{err}");
        // A regime typo is the flag's error (clap's, before the run file is read).
        let err = Cli::try_parse_from(["frostline", "train", "--run", r, "--regime", "thawed"])
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("--regime") && err.contains("unknown regime \"thawed\""),
            "{err}"
        );
        let err = Cli::try_parse_from(["frostline", "train", "--run", r, "--regime", "frost-line"])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("needs =N"), "{err}");
    }
}
