//! `frostline compare`: every available regime on the same tasks and data, one table.
//!
//! Variants: fully-frozen (nearest centroid, zero-shot), frozen-backbone (linear, MLP),
//! freeze-head for each task (the frozen head from the frozen-backbone linear run), and for each
//! frost line N (default: the top layer) frost-line=N and freeze-head=<task>,frost-line=N — one
//! head frozen while the layers above N and the other head train. Each row: regime, head, task,
//! what the head did (trained, training-free, frozen, continued), test accuracy and macro-F1,
//! training seconds, embedding seconds (and whether the cache already held everything),
//! trainable parameters, peak memory, cache bytes.

use std::path::{Path, PathBuf};

use crate::backbone::ModelFolder;
use crate::commands::Outcome;
use crate::embedder::EmbedSettings;
use crate::error::{Error, Result};
use crate::heads::HeadKind;
use crate::io::fsutil;
use crate::io::outfolder::{FolderKind, OutputFolder};
use crate::kind::Input;
use crate::nn::adapter::Tuning;
use crate::regime::Regime;
use crate::report::compare::{frame, markdown, CompareRow};
use crate::report::{self, plots};
use crate::resources::{dir_bytes, peak_rss_mib, reset_peak_rss};
use crate::runfile::RunFile;
use crate::train::estimate::Estimate;
use crate::train::{self, Narration, TrainSpec};

/// What `frostline compare` was asked to do, every setting decided.
pub(crate) struct CompareJob {
    pub run: RunFile,
    pub settings: EmbedSettings,
    /// Also train layers ≥ N natively for each N.
    pub frost_lines: Vec<usize>,
    /// The model's layer count: a token task's frozen head is also measured at every layer.
    pub layers: usize,
    /// Every variant trains once per seed.
    pub seeds: Vec<u64>,
    pub out: PathBuf,
    pub force: bool,
}

struct Variant {
    name: String,
    regime: Regime,
    head: HeadKind,
    /// Starts from the frozen-backbone linear run's checkpoint.
    from_linear: bool,
    /// A layer sweep variant: token tasks read their word features at this layer (only their
    /// rows are reported).
    token_layer: Option<usize>,
}

/// The variants, in order: each a typed regime with a head; the ones that freeze a head start
/// from the first variant's (frozen-backbone linear) checkpoint.
fn variants(run: &RunFile, frost_lines: &[usize], layers: usize) -> Vec<Variant> {
    let v = |regime: Regime, head: HeadKind, from_linear: bool| Variant {
        token_layer: None,
        name: format!("{regime}/{}", head.name()),
        regime,
        head,
        from_linear,
    };
    let freeze_each = |frost_line: Option<usize>| -> Vec<Variant> {
        if run.tasks.len() < 2 {
            return Vec::new();
        }
        run.tasks
            .iter()
            .map(|t| {
                let regime = Regime::FreezeHead {
                    head: t.name.clone(),
                    frost_line,
                    tuning: Tuning::Full,
                };
                v(regime, HeadKind::Linear, true)
            })
            .collect()
    };
    let has_token_task = run.tasks.iter().any(|t| t.kind.input() == Input::Words);
    let mut out = vec![
        v(Regime::FrozenBackbone, HeadKind::Linear, false),
        v(Regime::FrozenBackbone, HeadKind::Mlp, false),
        v(Regime::FullyFrozen, HeadKind::Centroid, false),
    ];
    // Zero-shot label prompts are for sentences; a run with a token task leaves them out.
    if !has_token_task {
        out.push(v(Regime::FullyFrozen, HeadKind::ZeroShot, false));
    }
    out.extend(freeze_each(None));
    // The frozen word features at every layer (the run's own layer is the first variant).
    if has_token_task {
        for layer in 0..=layers {
            let mut sweep = v(Regime::FrozenBackbone, HeadKind::Linear, false);
            sweep.name = format!("frozen-backbone/linear, token layer {layer}");
            sweep.token_layer = Some(layer);
            out.push(sweep);
        }
    }
    for &n in frost_lines {
        // Full layers, then the parameter-efficient tunings of the same layers.
        for tuning in [Tuning::Full, Tuning::BitFit, Tuning::Lora] {
            let regime = Regime::FrostLine { line: n, tuning };
            out.push(v(regime, HeadKind::Linear, false));
        }
        out.extend(freeze_each(Some(n)));
    }
    out
}

pub(crate) struct CompareOutcome {
    pub rows: Vec<CompareRow>,
    /// The kernel and precision the variants trained with, in words.
    pub products: String,
    pub markdown: String,
    pub out_dir: PathBuf,
}

/// Runs every variant (plus the frost-line ones for each N in `frost_lines`) and writes the report.
pub(crate) fn run(job: &CompareJob) -> Result<Outcome> {
    let outcome = compare(job)?;
    let text = format!(
        "{}\nproducts: {}\nreport: {}\n",
        outcome.markdown,
        outcome.products,
        outcome.out_dir.join("compare.md").display()
    );
    let json = serde_json::json!({
        "rows": outcome.rows,
        "products": outcome.products,
        "report_dir": outcome.out_dir,
    });
    Ok(Outcome::new(text, json))
}

fn compare(job: &CompareJob) -> Result<CompareOutcome> {
    let CompareJob {
        run,
        settings,
        frost_lines,
        layers,
        seeds,
        out,
        force,
    } = job;
    let out_dir = out.as_path();
    let progress = settings.progress;
    let out = OutputFolder::claim(out_dir, FolderKind::CompareReport, *force, &[])?;
    let work = out_dir.with_file_name(format!(
        ".{}.work-{}",
        out_dir.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)
        .map_err(|e| Error::output(out_dir, format!("cannot create a work folder: {e}")))?;
    let variants = variants(run, frost_lines, *layers);
    let result = seeds
        .iter()
        .try_fold((Vec::new(), String::new()), |(mut rows, _), &seed| {
            let mut run = run.clone();
            run.seed = seed;
            let dir = work.join(format!("seed-{seed}"));
            let (more, products) = run_variants(&run, settings, &variants, &dir, progress)?;
            rows.extend(more);
            Ok::<_, Error>((rows, products))
        });
    let (rows, products) = match result {
        Ok(done) => done,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&work);
            return Err(e);
        }
    };
    let markdown = markdown(&rows)?;
    let written = out.write(|dir| {
        report::write_frame(dir, "compare", &mut frame(&rows)?)?;
        std::fs::rename(&work, dir.join("checkpoints"))
            .map_err(|e| Error::io(dir.join("checkpoints"), e))?;
        let plot_dir = dir.join("plots");
        std::fs::create_dir(&plot_dir).map_err(|e| Error::io(&plot_dir, e))?;
        let points: Vec<plots::ComparePoint> = rows
            .iter()
            .map(|r| plots::ComparePoint {
                label: r.variant.clone(),
                task: r.task.clone(),
                accuracy: r.score(),
                train_seconds: r.train_seconds,
            })
            .collect();
        plots::accuracy_vs_time(&points, &plot_dir.join("accuracy_vs_time.svg"))?;
        fsutil::write_bytes_atomic(&dir.join("compare.md"), markdown.as_bytes())?;
        report::write_html(dir, "frostline compare", &markdown)
    });
    let _ = std::fs::remove_dir_all(&work);
    written?;
    Ok(CompareOutcome {
        rows,
        products,
        markdown,
        out_dir: out_dir.to_path_buf(),
    })
}

/// Every variant once with `run`'s seed, checkpoints under `work`.
fn run_variants(
    run: &RunFile,
    settings: &EmbedSettings,
    variants: &[Variant],
    work: &Path,
    progress: bool,
) -> Result<(Vec<CompareRow>, String)> {
    let mut rows = Vec::new();
    // Every variant resolves the same train.precision; the first one's words are reported.
    let mut products = String::new();
    let linear_ck = work.join("frozen-backbone-linear");
    let folder = ModelFolder::open(&settings.model_dir)?;
    // One estimate per frost line (the data and the layers are the same for its variants),
    // said before the first of its variants.
    let mut estimates: Vec<(usize, Estimate)> = Vec::new();
    for v in variants {
        let mut r = run.clone();
        r.train.regime = v.regime.clone();
        r.train.head = v.head;
        r.train.from = v.from_linear.then(|| linear_ck.clone());
        if let Some(layer) = v.token_layer {
            for t in r
                .tasks
                .iter_mut()
                .filter(|t| t.kind.input() == Input::Words)
            {
                t.token_layer = Some(layer);
            }
        }
        let ck_dir = work.join(v.name.replace(['/', '=', ',', ' '], "-"));
        std::fs::create_dir_all(work).map_err(|e| Error::io(work, e))?;
        let spec = TrainSpec::new(r, settings.clone(), Some(ck_dir), false)?;
        if products.is_empty() {
            products = spec.products();
        }
        // The slow variants: their time said before the first of them starts.
        if let Some(n) = spec.plan.frost_line {
            if !estimates.iter().any(|(m, _)| *m == n) {
                let e = Estimate::of(&spec, &folder)?.expect("a frost line has an estimate");
                let count = variants
                    .iter()
                    .filter(|w| w.regime.frost_line() == Some(n))
                    .count();
                eprintln!(
                    "compare: next, {count} variant(s) train layers ≥ {n} natively: each {}",
                    e.describe(folder.hidden_size)
                );
                estimates.push((n, e));
            }
        }
        let estimate = spec
            .plan
            .frost_line
            .and_then(|n| estimates.iter().find(|(m, _)| *m == n))
            .map(|(_, e)| e);
        let peak_ok = reset_peak_rss();
        if progress {
            eprintln!("compare: {} (seed {})", v.name, run.seed);
        }
        let quiet = Narration {
            bars: false,
            epoch_lines: false,
        };
        let res = train::run(&spec, quiet)?;
        if let Some(e) = estimate {
            let epochs = res.report.log.iter().map(|l| l.epoch).max().unwrap_or(0);
            eprintln!(
                "compare: {} trained in {:.1} s ({epochs} epochs; estimated about {:.1} s for them)",
                v.name,
                res.report.seconds,
                e.seconds_per_epoch(folder.hidden_size, spec.plan.tuning) * epochs as f64
            );
        }
        let peak = if peak_ok { peak_rss_mib() } else { None };
        let cache_bytes = res
            .embed_stats
            .first()
            .map_or(0, |s| dir_bytes(&s.cache_dir.join("chunks")));
        for (i, t) in res.tasks.iter().enumerate() {
            if v.token_layer.is_some() && t.data.config.kind.input() != Input::Words {
                continue;
            }
            let (split, m) = match (&t.test, &t.dev) {
                (Some(m), _) => ("test", m),
                (None, Some(m)) => ("dev", m),
                (None, None) => continue,
            };
            let task = &t.data.config.name;
            let head_training = match spec.plan.frozen_head {
                _ if t.head.spec.is_training_free() => "training-free",
                Some(frozen) if frozen == i => "frozen",
                _ if v.from_linear => "continued",
                _ => "trained",
            };
            let dev = t.dev.as_ref();
            rows.push(CompareRow {
                seed: run.seed,
                dev_score: dev.map(|d| d.entity_f1.unwrap_or(d.accuracy)),
                dev_macro_f1: dev.map(|d| d.macro_f1),
                dev_rows: t.data.dev.len() as u64,
                variant: v.name.clone(),
                regime: v.regime.to_string(),
                head: t.head.spec.name().to_string(),
                task: task.clone(),
                head_training: head_training.into(),
                split: split.into(),
                accuracy: m.accuracy,
                entity_f1: m.entity_f1,
                macro_f1: m.macro_f1,
                train_seconds: res.report.seconds,
                embed_seconds: res.embed_seconds(),
                cache_hit: res.cache_hit(),
                trainable_params: res.trainable_params as u64,
                checkpoint_bytes: res.checkpoint_bytes,
                peak_rss_mib: peak,
                cache_bytes,
            });
        }
    }
    Ok((rows, products))
}
