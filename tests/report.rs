//! Reports: `eval` tables read back with polars (columns and dtypes as documented), plots and
//! Markdown present, unknown labels counted, `compare` end to end on the shipped subsets, and
//! bad input (incomplete checkpoint, unwritable output) leaving nothing behind.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use polars::prelude::*;

fn cache() -> PathBuf {
    let p = std::env::temp_dir().join("frostline-test-cache-report");
    std::fs::create_dir_all(&p).unwrap();
    p
}

fn run_file(dir: &Path) -> PathBuf {
    let repo = repo();
    let text = format!(
        "model = \"{m}\"\nseed = 3\n[train]\nepochs = 4\nmlp_hidden = 32\n[[tasks]]\nname = \"intent\"\ntrain = \"{r}/data/banking77/train.csv\"\ntest = \"{r}/data/banking77/test.csv\"\n[[tasks]]\nname = \"sentiment\"\ntrain = \"{r}/data/sst2/train.csv\"\ndev = \"{r}/data/sst2/dev.csv\"\ntest = \"{r}/data/sst2/test.csv\"\n",
        m = repo.join("models/all-MiniLM-L6-v2").display(),
        r = repo.display()
    );
    let p = dir.join("run.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn trained_checkpoint(dir: &Path) -> PathBuf {
    let ck = dir.join("ck");
    let mut cmd = frostline(&["train", "--no-progress", "--run"]);
    cmd.arg(run_file(dir))
        .arg("--out")
        .arg(&ck)
        .arg("--cache-dir")
        .arg(cache());
    let (ok, out, err) = run(&mut cmd);
    assert!(ok, "{out}{err}");
    ck
}

fn read_parquet(path: &Path) -> DataFrame {
    ParquetReader::new(std::fs::File::open(path).unwrap())
        .finish()
        .unwrap()
}

fn schema(df: &DataFrame) -> Vec<(String, DataType)> {
    df.columns()
        .iter()
        .map(|c| (c.name().to_string(), c.dtype().clone()))
        .collect()
}

fn s(name: &str, dt: DataType) -> (String, DataType) {
    (name.to_string(), dt)
}

#[test]
fn eval_writes_documented_tables_plots_and_markdown() {
    let Some(_) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ck = trained_checkpoint(dir.path());
    let mut cmd = frostline(&["eval", "--no-progress", "--checkpoint"]);
    cmd.arg(&ck).arg("--cache-dir").arg(cache());
    let (ok, out, err) = run(&mut cmd);
    assert!(ok, "{out}{err}");
    let rep = ck.join("eval-test");

    let overall = read_parquet(&rep.join("overall.parquet"));
    use DataType::*;
    assert_eq!(
        schema(&overall),
        [
            s("task", String),
            s("split", String),
            s("accuracy", Float64),
            s("micro_f1", Float64),
            s("entity_f1", Float64),
            s("macro_f1", Float64),
            s("weighted_f1", Float64),
            s("support", UInt64),
            s("unseen_label_rows", UInt64)
        ]
    );
    assert_eq!(overall.height(), 2);
    let per_class = read_parquet(&rep.join("per_class.parquet"));
    assert_eq!(
        schema(&per_class),
        [
            s("task", String),
            s("label", String),
            s("precision", Float64),
            s("recall", Float64),
            s("f1", Float64),
            s("support", UInt64),
            s("predicted", UInt64)
        ]
    );
    assert_eq!(per_class.height(), 77 + 2);
    let confusion = read_parquet(&rep.join("confusion.parquet"));
    assert_eq!(
        schema(&confusion),
        [
            s("task", String),
            s("true", String),
            s("predicted", String),
            s("count", UInt64)
        ]
    );
    let total: u64 = confusion
        .column("count")
        .unwrap()
        .u64()
        .unwrap()
        .into_no_null_iter()
        .sum();
    assert_eq!(
        total,
        616 + 500,
        "every test row lands in one confusion cell"
    );
    let errors = read_parquet(&rep.join("errors.parquet"));
    assert_eq!(
        schema(&errors),
        [
            s("task", String),
            s("rank", UInt32),
            s("text", String),
            s("true", String),
            s("predicted", String),
            s("probability", Float32)
        ]
    );
    // Errors are sorted most confident first within each task.
    let probs: Vec<f32> = errors
        .column("probability")
        .unwrap()
        .f32()
        .unwrap()
        .into_no_null_iter()
        .collect();
    let tasks: Vec<&str> = errors
        .column("task")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.unwrap())
        .collect();
    for i in 1..probs.len() {
        if tasks[i] == tasks[i - 1] {
            assert!(probs[i] <= probs[i - 1]);
        }
    }
    // Accuracy in the table agrees with the checkpoint's own test score.
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ck.join("manifest.json")).unwrap()).unwrap();
    let acc = overall
        .column("accuracy")
        .unwrap()
        .f64()
        .unwrap()
        .get(0)
        .unwrap();
    assert!((acc - manifest["tasks"][0]["test"]["accuracy"].as_f64().unwrap()).abs() < 1e-12);

    for f in [
        "overall.csv",
        "per_class.csv",
        "confusion.csv",
        "errors.csv",
        "plots/learning_intent.svg",
        "plots/confusion_intent.svg",
        "plots/confusion_sentiment.svg",
    ] {
        assert!(rep.join(f).is_file(), "{f} missing");
    }
    let svg = std::fs::read_to_string(rep.join("plots/confusion_intent.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("25 of 77 classes"),
        "heat map keeps 77 classes legible"
    );
    let md = std::fs::read_to_string(rep.join("report.md")).unwrap();
    assert!(
        md.contains("## Task `intent`")
            && md.contains("plots/confusion_intent.svg")
            && md.contains("Most confident errors")
    );
    assert_only(dir.path(), &["ck", "run.toml"]);
}

#[test]
fn eval_counts_labels_the_checkpoint_lacks() {
    let Some(_) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ck = trained_checkpoint(dir.path());
    // Point the sentiment task's test file at one with an extra label.
    let mut test = std::fs::read_to_string(repo().join("data/sst2/test.csv")).unwrap();
    test.push_str("a perfectly flat sentence,neutral\n");
    let test_path = dir.path().join("test_extra.csv");
    std::fs::write(&test_path, test).unwrap();
    let manifest = std::fs::read_to_string(ck.join("manifest.json")).unwrap();
    let fixed = manifest.replace(
        &repo().join("data/sst2/test.csv").display().to_string(),
        &test_path.display().to_string(),
    );
    assert_ne!(manifest, fixed);
    std::fs::write(ck.join("manifest.json"), fixed).unwrap();
    reseal(&ck.join("manifest.json"));
    let mut cmd = frostline(&["eval", "--no-progress", "--checkpoint"]);
    cmd.arg(&ck).arg("--cache-dir").arg(cache());
    let (ok, _, err) = run(&mut cmd);
    assert!(ok, "{err}");
    assert!(
        err.contains(
            "task \"sentiment\": 1 test rows carry labels the checkpoint does not know (neutral)"
        ),
        "{err}"
    );
    let overall = read_parquet(&ck.join("eval-test/overall.parquet"));
    assert_eq!(
        overall
            .column("unseen_label_rows")
            .unwrap()
            .u64()
            .unwrap()
            .get(1),
        Some(1)
    );
}

#[test]
fn eval_bad_input_leaves_nothing_behind() {
    let Some(_) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ck = trained_checkpoint(dir.path());
    // Unwritable report folder.
    let mut cmd = frostline(&[
        "eval",
        "--no-progress",
        "--out",
        "/proc/frostline-report",
        "--checkpoint",
    ]);
    cmd.arg(&ck).arg("--cache-dir").arg(cache());
    let (ok, _, err) = run(&mut cmd);
    assert!(!ok && err.contains("/proc/frostline-report"), "{err}");
    // Checkpoint without its weights.
    std::fs::remove_file(ck.join("heads.safetensors")).unwrap();
    let mut cmd = frostline(&["eval", "--no-progress", "--checkpoint"]);
    cmd.arg(&ck).arg("--cache-dir").arg(cache());
    let (ok, _, err) = run(&mut cmd);
    assert!(
        !ok && err.contains("heads.safetensors")
            && err.contains("missing from the checkpoint folder"),
        "{err}"
    );
    let left: Vec<String> = std::fs::read_dir(&ck)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !left
            .iter()
            .any(|n| n.starts_with("eval") || (n.starts_with('.') && n != ".frostline-output")),
        "{left:?}"
    );
}

#[test]
fn compare_runs_every_regime_and_states_tradeoffs() {
    let Some(_) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cmp");
    let mut cmd = frostline(&["compare", "--no-progress", "--run"]);
    cmd.arg(run_file(dir.path()))
        .arg("--out")
        .arg(&out)
        .arg("--cache-dir")
        .arg(cache())
        .args(["--set", "train.precision=auto"]);
    let (ok, stdout, err) = run(&mut cmd);
    assert!(ok, "{stdout}{err}");
    // `auto` says what it took, once for the whole comparison.
    assert_eq!(stdout.matches("precision auto:").count(), 1, "{stdout}");
    let df = read_parquet(&out.join("compare.parquet"));
    use DataType::*;
    assert_eq!(
        schema(&df),
        [
            s("variant", String),
            s("regime", String),
            s("head", String),
            s("task", String),
            s("head_training", String),
            s("split", String),
            s("accuracy", Float64),
            s("entity_f1", Float64),
            s("macro_f1", Float64),
            s("train_seconds", Float64),
            s("embed_seconds", Float64),
            s("cache_hit", Boolean),
            s("trainable_params", UInt64),
            s("peak_rss_mib", Float64),
            s("cache_bytes", UInt64),
        ]
    );
    // 6 variants on the cache + 3 at the default frost line (the top layer, N = 5), × 2 tasks.
    assert_eq!(df.height(), 18);
    let variants: Vec<&str> = df
        .column("variant")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.unwrap())
        .collect();
    for v in [
        "frozen-backbone/linear",
        "frozen-backbone/mlp",
        "fully-frozen/centroid",
        "fully-frozen/zero-shot",
        "freeze-head=intent/linear",
        "freeze-head=sentiment/linear",
        "frost-line=5/linear",
        "freeze-head=intent,frost-line=5/linear",
        "freeze-head=sentiment,frost-line=5/linear",
    ] {
        assert!(variants.contains(&v), "{v} missing");
    }
    // Each row says what its head did: in freeze-head=intent, intent's head is frozen and
    // sentiment's continued from the linear run.
    let tasks: Vec<&str> = df
        .column("task")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.unwrap())
        .collect();
    let states: Vec<&str> = df
        .column("head_training")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.unwrap())
        .collect();
    let state = |variant: &str, task: &str| {
        (0..variants.len())
            .find(|&i| variants[i] == variant && tasks[i] == task)
            .map(|i| states[i])
            .unwrap()
    };
    assert_eq!(state("freeze-head=intent/linear", "intent"), "frozen");
    assert_eq!(state("freeze-head=intent/linear", "sentiment"), "continued");
    assert_eq!(
        state("freeze-head=sentiment,frost-line=5/linear", "sentiment"),
        "frozen"
    );
    assert_eq!(state("frozen-backbone/linear", "intent"), "trained");
    assert_eq!(state("fully-frozen/centroid", "intent"), "training-free");
    let params: Vec<u64> = df
        .column("trainable_params")
        .unwrap()
        .u64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    let secs: Vec<f64> = df
        .column("train_seconds")
        .unwrap()
        .f64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    for ((v, p), t) in variants.iter().zip(&params).zip(&secs) {
        if v.starts_with("fully-frozen") {
            assert_eq!((*p, *t), (0, 0.0), "{v} trains nothing");
        } else {
            assert!(*p > 0 && *t > 0.0, "{v}");
        }
    }
    let md = std::fs::read_to_string(out.join("compare.md")).unwrap();
    assert!(
        md.contains("## Trade-offs")
            && md.contains("`intent`: best is")
            && md.contains("`sentiment`: best is"),
        "{md}"
    );
    assert!(out.join("plots/accuracy_vs_time.svg").is_file());
    assert!(out
        .join("checkpoints/frozen-backbone-linear/manifest.json")
        .is_file());
    assert_only(dir.path(), &["cmp", "run.toml"]);
}
