//! Multi-label tasks end to end on the shipped GoEmotions subset, beside a single-label task:
//! thresholds tuned on dev and kept in the checkpoint, `eval` reproducing training's scores,
//! multi-label reports, `predict`'s sets agreeing with the thresholds, every regime (fully
//! frozen, frozen backbone, frost line), and the fuller `predict` flags.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use polars::prelude::*;

fn cache() -> PathBuf {
    shared_cache("multilabel")
}

/// Emotions (multi-label, 28 labels) + intents (single-label) in one run file.
fn run_file(dir: &Path, extra: &str) -> PathBuf {
    let r = repo();
    let epochs = if extra.contains("epochs") {
        ""
    } else {
        "epochs = 6"
    };
    let text = format!(
        "model = \"{m}\"\nseed = 3\n[train]\n{epochs}\n{extra}\n[[tasks]]\nname = \"emotion\"\nkind = \"multi-label\"\nlabel_column = \"labels\"\ntrain = \"{r}/data/goemotions/train.csv\"\ndev = \"{r}/data/goemotions/dev.csv\"\ntest = \"{r}/data/goemotions/test.csv\"\n[[tasks]]\nname = \"intent\"\ntrain = \"{r}/data/banking77/train.csv\"\ntest = \"{r}/data/banking77/test.csv\"\n",
        m = r.join("models/all-MiniLM-L6-v2").display(),
        r = r.display()
    );
    let p = dir.join("run.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn train(dir: &Path, extra: &str, args: &[&str]) -> (PathBuf, serde_json::Value) {
    let ck = dir.join("ck");
    let (ok, out, err) = run(frostline(&[
        &"train --json --no-progress --run",
        &run_file(dir, extra),
        &"--out",
        &ck,
        &"--cache-dir",
        &cache(),
    ])
    .args(args));
    assert!(ok, "{out}{err}");
    (ck, json_of(&out))
}

/// `eval FLAGS --no-progress` of the checkpoint `ck` with this file's cache.
fn eval(flags: &str, ck: &Path) -> std::process::Command {
    frostline(&[
        &"eval",
        &flags,
        &"--no-progress --checkpoint",
        &ck,
        &"--cache-dir",
        &cache(),
    ])
}

fn strings(df: &DataFrame, col: &str) -> Vec<String> {
    df.column(col)
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.unwrap_or("").to_string())
        .collect()
}

#[test]
fn multi_label_trains_beside_a_single_label_task_and_eval_reproduces_it() {
    let Some(_) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (ck, j) = train(dir.path(), "", &[]);
    let emotion = &j["tasks"][0];
    let test = &emotion["test"];
    let micro = test["micro_f1"]
        .as_f64()
        .expect("multi-label test micro-F1");
    assert!(micro > 0.2 && micro < 1.0, "{test}");
    assert!(
        j["tasks"][1]["test"].get("micro_f1").is_none(),
        "single-label tasks have no micro-F1"
    );
    let m = manifest(&ck);
    let th = m["tasks"][0]["thresholds"].as_array().expect("thresholds");
    assert_eq!(th.len(), 28);
    let t0 = th[0].as_f64().unwrap();
    assert!(
        th.iter().all(|t| t.as_f64() == Some(t0)),
        "one global threshold"
    );
    assert!(t0 > 0.0 && t0 < 1.0);
    assert!(m["tasks"][1].get("thresholds").is_none());

    // eval re-reads the same rows and applies the recorded thresholds: the very same scores.
    let (ok, out, err) = run(&mut eval("--json", &ck));
    assert!(ok, "{out}{err}");
    let e = json_of(&out);
    assert_eq!(e["tasks"][0]["metrics"], m["tasks"][0]["test"]);
    assert_eq!(e["tasks"][1]["metrics"], m["tasks"][1]["test"]);
    let rep = ck.join("eval-test");
    let overall = read_parquet(&rep.join("overall.parquet"));
    let micro_col = overall.column("micro_f1").unwrap().f64().unwrap();
    assert!((micro_col.get(0).unwrap() - micro).abs() < 1e-12);
    assert_eq!(micro_col.get(1), None, "null for the single-label task");
    let per_class = read_parquet(&rep.join("per_class.parquet"));
    let emotion_rows = strings(&per_class, "task")
        .iter()
        .filter(|t| *t == "emotion")
        .count();
    assert_eq!(emotion_rows, 28, "one row per label");
    let confusion = read_parquet(&rep.join("confusion.parquet"));
    let truth = strings(&confusion, "true");
    let pred = strings(&confusion, "predicted");
    assert!(pred.iter().any(|p| p == "(missed)") && truth.iter().any(|t| t == "(none)"));
    let md = std::fs::read_to_string(rep.join("report.md")).unwrap();
    assert!(md.contains("micro_f1"), "{md}");
    // The tuned threshold is in the report, as a person reads it.
    let decision = format!("Decision (tuned on dev): threshold {t0:.2} for every label");
    assert!(md.contains(&decision), "{md}");

    // predict: a row's set is exactly the labels at or above their thresholds.
    let out = dir.path().join("p.parquet");
    let (ok, o, err) = run(&mut frostline(&[
        &"predict --no-progress --all-probs --top-k 3 --checkpoint",
        &ck,
        &"--input",
        &repo().join("data/goemotions/test.csv"),
        &"--output",
        &out,
        &"--cache-dir",
        &cache(),
    ]));
    assert!(ok, "{o}{err}");
    let df = read_parquet(&out);
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|c| c.to_string())
        .collect();
    for c in [
        "text",
        "labels",
        "emotion_label",
        "emotion_set_prob",
        "emotion_labels",
        "emotion_top_k",
        "emotion_probs",
        "intent_label",
        "intent_prob",
        "intent_top_k",
        "intent_probs",
    ] {
        assert!(names.iter().any(|n| n == c), "{c} missing from {names:?}");
    }
    assert_eq!(df.height(), 400);
    let probs = df.column("emotion_probs").unwrap().struct_().unwrap();
    let fields = probs.fields_as_series();
    assert_eq!(fields.len(), 28);
    let classes: Vec<String> = m["tasks"][0]["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    let labels = strings(&df, "emotion_label");
    let mut nonempty = 0;
    for (i, label) in labels.iter().enumerate() {
        let want: Vec<&str> = classes
            .iter()
            .zip(&fields)
            .filter(|(_, f)| f.f32().unwrap().get(i).unwrap() >= t0 as f32)
            .map(|(c, _)| c.as_str())
            .collect();
        assert_eq!(label, &want.join("|"), "row {i}");
        nonempty += usize::from(!want.is_empty());
    }
    assert!(nonempty > 100, "most rows get a label ({nonempty})");
    // Each row's set, most probable label first.
    let sets = df.column("emotion_labels").unwrap().list().unwrap();
    for set in sets.amortized_iter().flatten() {
        let probs = set
            .as_ref()
            .struct_()
            .unwrap()
            .field_by_name("prob")
            .unwrap();
        let probs: Vec<f32> = probs.f32().unwrap().into_no_null_iter().collect();
        assert!(probs.windows(2).all(|w| w[0] >= w[1]), "{probs:?}");
    }
    let top = df.column("intent_top_k").unwrap().list().unwrap();
    assert!(top.amortized_iter().all(|r| r.unwrap().as_ref().len() == 3));
}

#[test]
fn multi_label_in_every_regime_and_per_label_thresholds() {
    let Some(_) = model_dir() else { return };
    for (extra, args) in [
        ("regime = \"fully-frozen\"\nhead = \"centroid\"", vec![]),
        (
            "regime = \"frost-line=5\"\nepochs = 1",
            vec!["--max-length", "64"],
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (ck, j) = train(dir.path(), extra, &args);
        let micro = j["tasks"][0]["test"]["micro_f1"].as_f64().unwrap();
        assert!(micro > 0.1, "{extra}: {micro}");
        let (ok, out, err) = run(&mut eval("--json", &ck));
        assert!(ok, "{out}{err}");
        assert_eq!(
            json_of(&out)["tasks"][0]["metrics"],
            manifest(&ck)["tasks"][0]["test"],
            "{extra}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let (ck, _) = train(
        dir.path(),
        "",
        &["--set", "tasks.emotion.threshold=per-label"],
    );
    let m = manifest(&ck);
    let th: Vec<f64> = m["tasks"][0]["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_f64().unwrap())
        .collect();
    assert!(
        th.iter().any(|t| (t - th[0]).abs() > 1e-6),
        "per-label thresholds differ: {th:?}"
    );

    // A manifest whose thresholds do not fit the labels is refused by name.
    let path = ck.join("manifest.json");
    edit_manifest(&path, |m| {
        m["tasks"][0]["thresholds"] = serde_json::json!([0.5, 0.5])
    });
    let (c, _, err) = code(&mut eval("", &ck));
    assert_eq!(c, 3, "{err}");
    assert!(err.contains("2 thresholds for 28 labels"), "{err}");
}

#[test]
fn predict_keeps_chosen_columns_runs_chosen_tasks_and_refuses_what_cannot_work() {
    let Some(_) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ck, _) = train(d, "epochs = 2", &[]);
    let input = d.join("in.csv");
    std::fs::write(
        &input,
        "id,source,text\n7,web,I love this so much\n8,app,how do I top up my card?\n",
    )
    .unwrap();
    let predict = |out: &str, extra: &[&str]| {
        code(predict_cmd(&ck, &input, &d.join(out), &cache()).args(extra))
    };
    // Default: every input column carried, in input order, then the predictions.
    let (c, _, err) = predict("all.csv", &["--all-probs"]);
    assert_eq!(c, 0, "{err}");
    let text = std::fs::read_to_string(d.join("all.csv")).unwrap();
    let header = text.lines().next().unwrap();
    assert!(
        header.starts_with(
            "id,source,text,emotion_label,emotion_set_prob,emotion_labels,emotion_probs,intent_label"
        ),
        "{header}"
    );
    let mut rows = csv::Reader::from_path(d.join("all.csv")).unwrap();
    let rec = rows.records().next().unwrap().unwrap();
    assert_eq!((&rec[0], &rec[1]), ("7", "web"));
    let probs: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&rec[6]).expect("JSON object in CSV");
    assert_eq!(probs.len(), 28);
    let set: Vec<serde_json::Value> = serde_json::from_str(&rec[5]).expect("JSON list in CSV");
    assert_eq!(
        set.iter()
            .map(|e| e["label"].as_str().unwrap())
            .collect::<Vec<_>>()
            .join("|"),
        &rec[3]
    );

    // --tasks and --keep-columns choose; "" keeps no input column.
    let (c, _, err) = predict("some.csv", &["--tasks", "intent", "--keep-columns", "id"]);
    assert_eq!(c, 0, "{err}");
    let text = std::fs::read_to_string(d.join("some.csv")).unwrap();
    assert_eq!(text.lines().next().unwrap(), "id,intent_label,intent_prob");
    let (c, _, err) = predict("none.csv", &["--tasks", "emotion", "--keep-columns", ""]);
    assert_eq!(c, 0, "{err}");
    let text = std::fs::read_to_string(d.join("none.csv")).unwrap();
    assert_eq!(
        text.lines().next().unwrap(),
        "emotion_label,emotion_set_prob,emotion_labels"
    );

    // Refused, nothing written: an unknown task, a missing column, a name clash, --top-k 0.
    for (out, args, want_code, want) in [
        (
            "x1.csv",
            vec!["--tasks", "topic"],
            2,
            "its tasks: emotion, intent",
        ),
        ("x2.csv", vec!["--keep-columns", "id,lang"], 3, "\"lang\""),
        ("x3.csv", vec!["--top-k", "0"], 2, "--top-k"),
    ] {
        let (c, _, err) = predict(out, &args);
        assert_eq!(c, want_code, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!d.join(out).exists());
    }
    std::fs::write(&input, "text,intent_label\nhello,x\n").unwrap();
    let (c, _, err) = predict("x4.csv", &[]);
    assert_eq!(c, 2, "{err}");
    assert!(
        err.contains("intent_label") && err.contains("--keep-columns"),
        "{err}"
    );
    assert!(!d.join("x4.csv").exists());
}
