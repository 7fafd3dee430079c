//! `frostline compare`: every available regime on the same tasks and data, one table.
//!
//! Variants: fully-frozen (nearest centroid, zero-shot), frozen-backbone (linear, MLP),
//! freeze-head for each task (the frozen head from the frozen-backbone linear run), and for each
//! frost line N (default: the top layer) frost-line=N and freeze-head=<task>,frost-line=N — one
//! head frozen while the layers above N and the other head train. Each row: regime, head, task,
//! what the head did (trained, training-free, frozen, continued), test accuracy and macro-F1,
//! training seconds, embedding seconds (and whether the cache already held everything),
//! trainable parameters, peak memory, cache bytes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::commands::Outcome;
use crate::embedder::EmbedSettings;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::outfolder::{FolderKind, OutputFolder};
use crate::regime::Regime;
use crate::report::{self, plots};
use crate::runfile::{HeadChoice, RunFile};
use crate::train::{self, TrainSpec};

/// What `frostline compare` was asked to do, every setting decided.
pub(crate) struct CompareJob {
    pub run: RunFile,
    pub settings: EmbedSettings,
    /// Also train layers ≥ N natively for each N.
    pub frost_lines: Vec<usize>,
    /// The model's layer count: a token task's frozen head is also measured at every layer.
    pub layers: usize,
    pub out: PathBuf,
    pub force: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct CompareRow {
    pub variant: String,
    pub regime: String,
    pub head: String,
    pub task: String,
    /// What this task's head did in the variant: `trained`, `training-free`, `frozen` (the
    /// frozen-backbone/linear head, unchanged) or `continued` (started from that head and
    /// trained further while the other head stayed frozen).
    pub head_training: String,
    pub split: String,
    pub accuracy: f64,
    /// Token tasks: entity-level micro F1 (`accuracy` is then token accuracy).
    pub entity_f1: Option<f64>,
    pub macro_f1: f64,
    pub train_seconds: f64,
    pub embed_seconds: f64,
    pub cache_hit: bool,
    pub trainable_params: u64,
    /// Peak resident memory of the process during this variant (Linux VmHWM after a reset), MiB.
    pub peak_rss_mib: Option<f64>,
    pub cache_bytes: u64,
}

/// Resets the kernel's peak-RSS mark for this process (Linux ≥ 4.0); false where unsupported.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

struct Variant {
    name: String,
    regime: Regime,
    head: HeadChoice,
    /// Starts from the frozen-backbone linear run's checkpoint.
    from_linear: bool,
    /// A layer sweep variant: token tasks read their word features at this layer (only their
    /// rows are reported).
    token_layer: Option<usize>,
}

impl CompareRow {
    /// The headline score: entity F1 for a token task, accuracy otherwise.
    pub(crate) fn score(&self) -> f64 {
        self.entity_f1.unwrap_or(self.accuracy)
    }
}

/// The variants, in order: each a typed regime with a head; the ones that freeze a head start
/// from the first variant's (frozen-backbone linear) checkpoint.
fn variants(run: &RunFile, frost_lines: &[usize], layers: usize) -> Vec<Variant> {
    let v = |regime: Regime, head: HeadChoice, from_linear: bool| Variant {
        token_layer: None,
        name: format!(
            "{regime}/{}",
            match head {
                HeadChoice::Linear => "linear",
                HeadChoice::Mlp => "mlp",
                HeadChoice::Centroid => "centroid",
                HeadChoice::ZeroShot => "zero-shot",
            }
        ),
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
                };
                v(regime, HeadChoice::Linear, true)
            })
            .collect()
    };
    let has_token_task = run.tasks.iter().any(|t| t.is_token_task());
    let mut out = vec![
        v(Regime::FrozenBackbone, HeadChoice::Linear, false),
        v(Regime::FrozenBackbone, HeadChoice::Mlp, false),
        v(Regime::FullyFrozen, HeadChoice::Centroid, false),
    ];
    // Zero-shot label prompts are for sentences; a run with a token task leaves them out.
    if !has_token_task {
        out.push(v(Regime::FullyFrozen, HeadChoice::ZeroShot, false));
    }
    out.extend(freeze_each(None));
    // The frozen word features at every layer (the run's own layer is the first variant).
    if has_token_task {
        for layer in 0..=layers {
            let mut sweep = v(Regime::FrozenBackbone, HeadChoice::Linear, false);
            sweep.name = format!("frozen-backbone/linear, token layer {layer}");
            sweep.token_layer = Some(layer);
            out.push(sweep);
        }
    }
    for &n in frost_lines {
        out.push(v(Regime::FrostLine(n), HeadChoice::Linear, false));
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
    let result = run_variants(run, settings, frost_lines, *layers, &work, progress);
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
        fsutil::write_bytes_atomic(&dir.join("compare.md"), markdown.as_bytes())
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

fn run_variants(
    run: &RunFile,
    settings: &EmbedSettings,
    frost_lines: &[usize],
    layers: usize,
    work: &Path,
    progress: bool,
) -> Result<(Vec<CompareRow>, String)> {
    let mut rows = Vec::new();
    // Every variant resolves the same train.precision; the first one's words are reported.
    let mut products = String::new();
    let linear_ck = work.join("frozen-backbone-linear");
    for v in variants(run, frost_lines, layers) {
        let mut r = run.clone();
        r.train.regime = v.regime.clone();
        r.train.head = v.head;
        r.train.from = v.from_linear.then(|| linear_ck.clone());
        if let Some(layer) = v.token_layer {
            for t in r.tasks.iter_mut().filter(|t| t.is_token_task()) {
                t.token_layer = Some(layer);
            }
        }
        let ck_dir = work.join(v.name.replace(['/', '=', ',', ' '], "-"));
        let spec = TrainSpec::new(r, settings.clone(), Some(ck_dir), false)?;
        if products.is_empty() {
            products = spec.products();
        }
        let peak_ok = reset_peak_rss();
        if progress {
            eprintln!("compare: {}", v.name);
        }
        let res = train::run(&spec, false)?;
        let peak = if peak_ok { peak_rss_mib() } else { None };
        let cache_bytes = res
            .embed_stats
            .first()
            .map_or(0, |s| dir_bytes(&s.cache_dir.join("chunks")));
        for t in &res.tasks {
            if v.token_layer.is_some() && !t.data.is_token_task() {
                continue;
            }
            let (split, m) = match (&t.test, &t.dev) {
                (Some(m), _) => ("test", m),
                (None, Some(m)) => ("dev", m),
                (None, None) => continue,
            };
            let task = &t.data.config.name;
            let head_training = match &v.regime {
                _ if t.head.spec.is_training_free() => "training-free",
                Regime::FreezeHead { head, .. } if head == task => "frozen",
                _ if v.from_linear => "continued",
                _ => "trained",
            };
            rows.push(CompareRow {
                variant: v.name.clone(),
                regime: v.regime.to_string(),
                head: t.head.spec.name(),
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
                peak_rss_mib: peak,
                cache_bytes,
            });
        }
    }
    Ok((rows, products))
}

/// The comparison as a DataFrame (schema documented in README.md).
pub(crate) fn frame(rows: &[CompareRow]) -> Result<DataFrame> {
    let col = |name: &str, f: &dyn Fn(&CompareRow) -> String| {
        Column::new(name.into(), rows.iter().map(f).collect::<Vec<_>>())
    };
    DataFrame::new_infer_height(vec![
        col("variant", &|r| r.variant.clone()),
        col("regime", &|r| r.regime.clone()),
        col("head", &|r| r.head.clone()),
        col("task", &|r| r.task.clone()),
        col("head_training", &|r| r.head_training.clone()),
        col("split", &|r| r.split.clone()),
        Column::new(
            "accuracy".into(),
            rows.iter().map(|r| r.accuracy).collect::<Vec<_>>(),
        ),
        Column::new(
            "entity_f1".into(),
            rows.iter().map(|r| r.entity_f1).collect::<Vec<_>>(),
        ),
        Column::new(
            "macro_f1".into(),
            rows.iter().map(|r| r.macro_f1).collect::<Vec<_>>(),
        ),
        Column::new(
            "train_seconds".into(),
            rows.iter().map(|r| r.train_seconds).collect::<Vec<_>>(),
        ),
        Column::new(
            "embed_seconds".into(),
            rows.iter().map(|r| r.embed_seconds).collect::<Vec<_>>(),
        ),
        Column::new(
            "cache_hit".into(),
            rows.iter().map(|r| r.cache_hit).collect::<Vec<_>>(),
        ),
        Column::new(
            "trainable_params".into(),
            rows.iter().map(|r| r.trainable_params).collect::<Vec<_>>(),
        ),
        Column::new(
            "peak_rss_mib".into(),
            rows.iter().map(|r| r.peak_rss_mib).collect::<Vec<_>>(),
        ),
        Column::new(
            "cache_bytes".into(),
            rows.iter().map(|r| r.cache_bytes).collect::<Vec<_>>(),
        ),
    ])
    .map_err(|e| Error::Internal(format!("building the comparison table: {e}")))
}

/// One line per task stating the trade-off the numbers show (generated from them).
pub(crate) fn tradeoffs(rows: &[CompareRow]) -> Vec<String> {
    let mut tasks: Vec<&str> = Vec::new();
    for r in rows {
        if !tasks.contains(&r.task.as_str()) {
            tasks.push(&r.task);
        }
    }
    tasks
        .iter()
        .map(|task| {
            let of: Vec<&CompareRow> = rows.iter().filter(|r| r.task == *task).collect();
            // A head frozen in a variant was not trained there (its score is the checkpoint's),
            // so it does not compete for "best"; ties go to the earlier variant.
            let best = of
                .iter()
                .filter(|r| r.head_training != "frozen")
                .fold(None::<&&CompareRow>, |b, r| match b {
                    Some(b) if b.score() >= r.score() => Some(b),
                    _ => Some(r),
                })
                .expect("rows for the task");
            let what = if best.entity_f1.is_some() { "entity F1 " } else { "" };
            let mut line = format!(
                "`{task}`: best is {} at {what}{:.1} % ({:.2} s training, {} trainable parameters{})",
                best.variant,
                100.0 * best.score(),
                best.train_seconds,
                best.trainable_params,
                if best.head_training == "continued" {
                    format!(
                        "; there the other head was frozen and `{task}`'s head continued training from frozen-backbone/linear, so the gain is more training, not the freezing"
                    )
                } else {
                    String::new()
                }
            );
            if let Some(free) = of.iter().filter(|r| r.trainable_params == 0).max_by(|a, b| a.score().total_cmp(&b.score())) {
                if free.variant != best.variant {
                    let _ = write!(line, "; without any training, {} reaches {:.1} % ({:+.1} points)", free.variant, 100.0 * free.score(), 100.0 * (free.score() - best.score()));
                }
            }
            let find = |v: &str| of.iter().find(|r| r.variant == v);
            if let (Some(lin), Some(mlp)) = (find("frozen-backbone/linear"), find("frozen-backbone/mlp")) {
                let ratio = if lin.train_seconds > 0.0 { mlp.train_seconds / lin.train_seconds } else { f64::NAN };
                let _ = write!(line, "; the MLP head moves {} {:+.1} points for {:.1}× the linear head's training time", if lin.entity_f1.is_some() { "entity F1" } else { "accuracy" }, 100.0 * (mlp.score() - lin.score()), ratio);
                if let Some(fz) = find(&format!("freeze-head={task}/linear")) {
                    let _ = write!(
                        line,
                        "; with its head frozen (freeze-head={task}) it stays at {:.1} % ({:+.1}) while the other head trains on the fixed cache",
                        100.0 * fz.score(),
                        100.0 * (fz.score() - lin.score())
                    );
                }
            }
            line.push('.');
            line
        })
        .collect()
}

fn markdown(rows: &[CompareRow]) -> Result<String> {
    let mut s = String::from("# frostline compare\n\n");
    let df = frame(rows)?;
    s.push_str(&report::markdown_table(
        &df,
        &["accuracy", "entity_f1", "macro_f1"],
    ));
    s.push_str("\nAccuracy, entity F1 and macro-F1 in % (a token task's accuracy is token accuracy, its F1s over entity types, and its trade-off line speaks of entity F1); seconds are wall time on this machine; peak_rss_mib is the process's peak resident memory while the variant ran; cache_bytes is the embedding cache entry on disk.\n\n## Trade-offs\n\n");
    for l in tradeoffs(rows) {
        let _ = writeln!(s, "- {l}");
    }
    s.push_str("\n![accuracy vs training time](plots/accuracy_vs_time.svg)\n");
    Ok(s)
}
