//! Reports: `eval` tables read back with polars (columns and dtypes as documented), plots and
//! Markdown present, unknown labels counted, `compare` end to end on the shipped subsets, and
//! bad input (incomplete checkpoint, unwritable output) leaving nothing behind.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use polars::prelude::*;

fn cache() -> PathBuf {
    shared_cache("report")
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
    let (ok, out, err) = run(&mut frostline(&[
        &"train --no-progress --run",
        &run_file(dir),
        &"--out",
        &ck,
        &"--cache-dir",
        &cache(),
    ]));
    assert!(ok, "{out}{err}");
    ck
}

/// `eval --no-progress` and `flags`, of the checkpoint `ck` with this file's cache.
fn eval(flags: &str, ck: &Path) -> (bool, String, String) {
    run(&mut frostline(&[
        &"eval --no-progress",
        &flags,
        &"--checkpoint",
        &ck,
        &"--cache-dir",
        &cache(),
    ]))
}

/// `command` (a report-writing subcommand and its flags) on this file's run file in `dir`,
/// writing `dir/name`, which it returns; panics with the output when it fails.
fn report_run(dir: &Path, command: &str, name: &str) -> PathBuf {
    let out = dir.join(name);
    let (ok, stdout, err) = run(&mut frostline(&[
        &command,
        &"--no-progress --run",
        &run_file(dir),
        &"--out",
        &out,
        &"--cache-dir",
        &cache(),
    ]));
    assert!(ok, "{stdout}{err}");
    out
}

fn schema(df: &DataFrame) -> Vec<(String, DataType)> {
    df.columns()
        .iter()
        .map(|c| (c.name().to_string(), c.dtype().clone()))
        .collect()
}

/// The values of a string column without nulls.
fn strs<'a>(df: &'a DataFrame, col: &str) -> Vec<&'a str> {
    df.column(col)
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.unwrap())
        .collect()
}

/// The off-diagonal count of a long-format confusion table.
fn total_wrong(confusion: &DataFrame) -> u64 {
    let (t, p) = (strs(confusion, "true"), strs(confusion, "predicted"));
    let counts = confusion.column("count").unwrap().u64().unwrap();
    (0..confusion.height())
        .filter(|&i| t[i] != p[i])
        .map(|i| counts.get(i).unwrap())
        .sum()
}

fn s(name: &str, dt: DataType) -> (String, DataType) {
    (name.to_string(), dt)
}

#[test]
fn eval_writes_documented_tables_plots_and_markdown() {
    let Some(_) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ck = trained_checkpoint(dir.path());
    let (ok, out, err) = eval("", &ck);
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
            s("row", UInt64),
            s("text", String),
            s("true", String),
            s("predicted", String),
            s("probability", Float32)
        ]
    );
    let predictions = read_parquet(&rep.join("predictions.parquet"));
    assert_eq!(
        schema(&predictions),
        [
            s("task", String),
            s("row", UInt64),
            s("text", String),
            s("true", String),
            s("predicted", String),
            s("probability", Float32),
            s("correct", Boolean)
        ]
    );
    assert_eq!(predictions.height(), 616 + 500, "every test row");
    let right = predictions.column("correct").unwrap().bool().unwrap().sum();
    assert_eq!(right, Some(616 + 500 - total_wrong(&confusion) as u32));
    // Errors are sorted most confident first within each task.
    let probs: Vec<f32> = errors
        .column("probability")
        .unwrap()
        .f32()
        .unwrap()
        .into_no_null_iter()
        .collect();
    let tasks = strs(&errors, "task");
    for i in 1..probs.len() {
        if tasks[i] == tasks[i - 1] {
            assert!(probs[i] <= probs[i - 1]);
        }
    }
    // Accuracy in the table agrees with the checkpoint's own test score.
    let manifest = manifest(&ck);
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
        "predictions.csv",
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
    // Banking77's look-alike intents are named as pairs to merge or relabel; SST-2's two
    // labels never are (merging them leaves no task).
    let (intent, sentiment) = md.split_once("## Task `sentiment`").unwrap();
    assert!(
        intent.contains("are mistaken for each other")
            && intent.contains("consider merging them, or relabelling their examples"),
        "{md}"
    );
    assert!(!sentiment.contains("mistaken for each other"), "{md}");
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
    let (ok, _, err) = eval("", &ck);
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
    let (ok, _, err) = eval("--out /proc/frostline-report", &ck);
    assert!(!ok && err.contains("/proc/frostline-report"), "{err}");
    // Checkpoint without its weights.
    std::fs::remove_file(ck.join("heads.safetensors")).unwrap();
    let (ok, _, err) = eval("", &ck);
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
    let (ok, stdout, err) = run(&mut frostline(&[
        &"compare --no-progress --run",
        &run_file(dir.path()),
        &"--out",
        &out,
        &"--cache-dir",
        &cache(),
        &"--set train.precision=auto",
    ]));
    assert!(ok, "{stdout}{err}");
    // `auto` says what it took, once for the whole comparison.
    assert_eq!(stdout.matches("precision auto:").count(), 1, "{stdout}");
    // The slow variants' time is said before the first of them starts, and each is measured
    // against it after.
    let said = err
        .find("compare: next, 5 variant(s) train layers ≥ 5 natively: each about")
        .unwrap_or_else(|| panic!("{err}"));
    let done = err
        .find("compare: frost-line=5/linear trained in")
        .unwrap_or_else(|| panic!("{err}"));
    assert!(said < done, "{err}");
    assert_eq!(err.matches("estimated about").count(), 5, "{err}");
    let df = read_parquet(&out.join("compare.parquet"));
    use DataType::*;
    assert_eq!(
        schema(&df),
        [
            s("seed", UInt64),
            s("variant", String),
            s("regime", String),
            s("head", String),
            s("task", String),
            s("head_training", String),
            s("dev_score", Float64),
            s("dev_macro_f1", Float64),
            s("dev_rows", UInt64),
            s("split", String),
            s("accuracy", Float64),
            s("entity_f1", Float64),
            s("macro_f1", Float64),
            s("train_seconds", Float64),
            s("embed_seconds", Float64),
            s("cache_hit", Boolean),
            s("trainable_params", UInt64),
            s("checkpoint_bytes", UInt64),
            s("peak_rss_mib", Float64),
            s("cache_bytes", UInt64),
        ]
    );
    // 6 variants on the cache + 5 at the default frost line (the top layer, N = 5), × 2 tasks.
    assert_eq!(df.height(), 22);
    let variants = strs(&df, "variant");
    for v in [
        "frozen-backbone/linear",
        "frozen-backbone/mlp",
        "fully-frozen/centroid",
        "fully-frozen/zero-shot",
        "freeze-head=intent/linear",
        "freeze-head=sentiment/linear",
        "frost-line=5/linear",
        "bitfit,frost-line=5/linear",
        "lora,frost-line=5/linear",
        "freeze-head=intent,frost-line=5/linear",
        "freeze-head=sentiment,frost-line=5/linear",
    ] {
        assert!(variants.contains(&v), "{v} missing");
    }
    // Each row says what its head did: in freeze-head=intent, intent's head is frozen and
    // sentiment's continued from the linear run.
    let tasks = strs(&df, "task");
    let states = strs(&df, "head_training");
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
    // The adapters train a sliver of the full layer's parameters and store a sliver of its bytes.
    let bytes: Vec<u64> = df
        .column("checkpoint_bytes")
        .unwrap()
        .u64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    let at = |variant: &str| {
        let i = (0..variants.len())
            .find(|&i| variants[i] == variant && tasks[i] == "intent")
            .unwrap();
        (params[i], bytes[i])
    };
    let (full, lora, bitfit) = (
        at("frost-line=5/linear"),
        at("lora,frost-line=5/linear"),
        at("bitfit,frost-line=5/linear"),
    );
    assert!(
        lora.0 * 20 < full.0 && bitfit.0 * 20 < full.0,
        "{full:?} {lora:?} {bitfit:?}"
    );
    assert!(
        lora.1 * 10 < full.1 && bitfit.1 * 10 < full.1,
        "{full:?} {lora:?} {bitfit:?}"
    );
    let md = std::fs::read_to_string(out.join("compare.md")).unwrap();
    // One recommendation per task, chosen on dev (one seed: weighed against the dev score's
    // standard error); the trade-offs; the resources in a table of their own.
    let recommendation = md
        .split("## Recommendation")
        .nth(1)
        .and_then(|r| r.split("## Trade-offs").next())
        .unwrap_or_else(|| panic!("{md}"));
    for task in ["intent", "sentiment"] {
        assert!(
            recommendation.contains(&format!("- `{task}`: use ")),
            "{md}"
        );
    }
    assert!(recommendation.contains("standard error on dev"), "{md}");
    assert!(
        md.contains("`intent` (against frozen-backbone/linear"),
        "{md}"
    );
    let resources = md
        .split("## Resources")
        .nth(1)
        .unwrap_or_else(|| panic!("{md}"));
    assert!(
        resources.contains("peak RSS MiB")
            && !md
                .split("## Resources")
                .next()
                .unwrap()
                .contains("peak RSS"),
        "{md}"
    );
    // Every row has a dev score: the sentiment task's dev file, intent's carved dev split.
    assert_eq!(df.column("dev_score").unwrap().null_count(), 0);
    assert!(out.join("plots/accuracy_vs_time.svg").is_file());
    assert!(out
        .join("checkpoints/seed-3/frozen-backbone-linear/manifest.json")
        .is_file());
    assert_only(dir.path(), &["cmp", "run.toml"]);
}

/// `eval --keep-columns id`: every error and every prediction carries the input's id, the one
/// at its `row` of the test file; a column the file lacks is named with the file's columns.
#[test]
fn eval_keeps_the_input_s_id_column() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let r = repo();
    let ck = d.join("ck");
    let (ok, out, err) = run(&mut frostline(&[
        &"train --no-progress --model",
        &model,
        &"--train",
        &r.join("data/tickets/train.csv"),
        &"--test",
        &r.join("data/tickets/test.csv"),
        &"--text-column body --label-column category --set train.epochs=3 --out",
        &ck,
        &"--cache-dir",
        &cache(),
    ]));
    assert!(ok, "{out}{err}");
    let (ok, out, err) = eval("--keep-columns id", &ck);
    assert!(ok, "{out}{err}");
    let rep = ck.join("eval-test");
    let ids: Vec<String> = std::fs::read_to_string(r.join("data/tickets/test.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().to_string())
        .collect();
    for table in ["predictions", "errors"] {
        let df = read_parquet(&rep.join(format!("{table}.parquet")));
        let names: Vec<String> = df
            .get_column_names()
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(
            names[names.iter().position(|n| n == "row").unwrap() + 1],
            "id",
            "{table}"
        );
        let rows = df.column("row").unwrap().u64().unwrap();
        let got = strs(&df, "id");
        assert!(df.height() > 0, "{table}");
        for (i, id) in got.iter().enumerate() {
            assert_eq!(*id, ids[rows.get(i).unwrap() as usize], "{table} row {i}");
        }
    }
    let md = std::fs::read_to_string(rep.join("report.md")).unwrap();
    assert!(md.contains("| row | text |"), "{md}");

    let (ok, _, err) = eval("--keep-columns ticket_id --force --out again", &ck);
    assert!(!ok);
    assert!(
        err.contains("test.csv") && err.contains("\"ticket_id\"") && err.contains("id, body"),
        "{err}"
    );
}

/// `compare --seeds 2`: every variant twice (seeds 3 and 4), scores as mean ± std, and the
/// recommendation weighed against the spread over seeds.
#[test]
fn compare_with_seeds_reports_mean_and_std() {
    let Some(_) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = report_run(dir.path(), "compare --no-frost-line --seeds 2", "cmp");
    let df = read_parquet(&out.join("compare.parquet"));
    // 6 variants on the cache × 2 tasks × 2 seeds.
    assert_eq!(df.height(), 24);
    let seeds: Vec<u64> = df
        .column("seed")
        .unwrap()
        .u64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert_eq!(seeds.iter().filter(|&&s| s == 3).count(), 12);
    assert_eq!(seeds.iter().filter(|&&s| s == 4).count(), 12);
    let md = std::fs::read_to_string(out.join("compare.md")).unwrap();
    assert!(
        md.contains("mean ± std over 2 seeds") && md.contains(" ± "),
        "{md}"
    );
    assert!(md.contains("std over seeds"), "{md}");
    for seed in [3, 4] {
        assert!(out
            .join(format!(
                "checkpoints/seed-{seed}/frozen-backbone-linear/manifest.json"
            ))
            .is_file());
    }
}

/// `curve`: each task trained on stratified samples of its train rows (every label keeps one),
/// per share and seed, from the cache; a table, a verdict per task, a plot.
#[test]
fn curve_trains_on_shares_of_train_and_says_whether_more_labels_help() {
    let Some(_) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = report_run(dir.path(), "curve --fractions 1,0.1 --seeds 2", "curve");
    let df = read_parquet(&out.join("curve.parquet"));
    assert_eq!(df.height(), 2 * 2 * 2, "tasks × shares × seeds");
    let tasks = strs(&df, "task");
    let fractions: Vec<f64> = df
        .column("fraction")
        .unwrap()
        .f64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    let rows: Vec<u64> = df
        .column("train_rows")
        .unwrap()
        .u64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    let at = |task: &str, f: f64| -> Vec<u64> {
        (0..df.height())
            .filter(|&i| tasks[i] == task && fractions[i] == f)
            .map(|i| rows[i])
            .collect()
    };
    // About 10 % of intent's train rows (after the dev carve), never under one per label (77).
    let full = at("intent", 1.0);
    assert!(full.iter().all(|&n| n > 1600), "{full:?}");
    for n in at("intent", 0.1) {
        assert!(n >= 77 && (n as f64) < 0.15 * full[0] as f64, "{n}");
    }
    assert!(
        at("sentiment", 0.1).iter().all(|&n| n == 120),
        "{:?}",
        at("sentiment", 0.1)
    );
    let md = std::fs::read_to_string(out.join("curve.md")).unwrap();
    for task in ["intent", "sentiment"] {
        assert!(md.contains(&format!("- `{task}`: ")), "{md}");
    }
    // The report says what made it: the run, as a run file that loads.
    let run_toml = std::fs::read_to_string(out.join("run.toml")).unwrap();
    assert!(run_toml.contains("name = \"intent\""), "{run_toml}");
    assert!(
        run_toml
            .starts_with("# made by: frostline curve --run run.toml --fractions 0.1,1 --seeds 2\n"),
        "{run_toml}"
    );
    assert!(run_toml.contains("\nmodel = "), "{run_toml}");
    let svg = std::fs::read_to_string(out.join("plots/curve.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("intent") && svg.contains("sentiment"));
}
