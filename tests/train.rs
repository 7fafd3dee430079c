//! Heads and regimes end to end on the shipped subsets (data/): determinism, freeze-head keeping a
//! head bit for bit, fully-frozen heads, checkpoints, predict, MTEB replay, and bad input.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// A run file over the shipped subsets with a private cache, fewer epochs for speed.
fn run_file(dir: &Path, extra: &str) -> PathBuf {
    let repo = repo();
    let extra = if extra.contains("epochs") {
        extra.to_string()
    } else {
        format!("epochs = 6\n{extra}")
    };
    let text = format!(
        r#"model = "{model}"
seed = 7
[train]
{extra}
[[tasks]]
name = "intent"
train = "{repo}/data/banking77/train.csv"
test = "{repo}/data/banking77/test.csv"
[[tasks]]
name = "sentiment"
train = "{repo}/data/sst2/train.csv"
dev = "{repo}/data/sst2/dev.csv"
test = "{repo}/data/sst2/test.csv"
"#,
        model = repo.join("models/all-MiniLM-L6-v2").display(),
        repo = repo.display(),
    );
    let p = dir.join("run.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// A cache shared by the tests in this file (they embed the same texts).
fn cache() -> PathBuf {
    let p = std::env::temp_dir().join("frostline-test-cache-train");
    std::fs::create_dir_all(&p).unwrap();
    p
}

fn train(run_toml: &Path, args: &[&str]) -> (bool, String, String) {
    let mut cmd = frostline(&["train", "--no-progress", "--run"]);
    cmd.arg(run_toml).arg("--cache-dir").arg(cache()).args(args);
    run(&mut cmd)
}

fn manifest(ck: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(ck.join("manifest.json")).unwrap()).unwrap()
}

fn tensors(ck: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    tensor_bytes(&ck.join("heads.safetensors"))
}

#[test]
fn same_seed_same_weights_and_metrics_other_seed_differs() {
    let Some(_) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let runf = run_file(dir.path(), "head = \"mlp\"\nmlp_hidden = 64");
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    for (ck, seed) in [(&a, "7"), (&b, "7"), (&c, "8")] {
        let (ok, out, err) = train(&runf, &["--out", ck.to_str().unwrap(), "--seed", seed]);
        assert!(ok, "{out}{err}");
    }
    assert_eq!(tensors(&a), tensors(&b));
    assert_eq!(manifest(&a)["tasks"], manifest(&b)["tasks"]);
    assert_ne!(tensors(&a), tensors(&c));
    let log = std::fs::read_to_string(a.join("training_log.csv")).unwrap();
    assert!(
        log.starts_with(
            "epoch,task,steps,train_loss,dev_accuracy,dev_macro_f1,dev_entity_f1,lr,train_seconds,seconds"
        ),
        "{log}"
    );
    assert!(log.lines().count() > 2);
}

#[test]
fn frozen_backbone_learns_and_freeze_head_keeps_the_other_head_bit_for_bit() {
    let Some(_) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let runf = run_file(dir.path(), "");
    let base = dir.path().join("base");
    let (ok, out, err) = train(&runf, &["--out", base.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    let m = manifest(&base);
    let intent_acc = m["tasks"][0]["test"]["accuracy"].as_f64().unwrap();
    let sentiment_acc = m["tasks"][1]["test"]["accuracy"].as_f64().unwrap();
    // 77 intents from 22 examples each and 2-way sentiment: far above chance (1.3 % and 50 %).
    assert!(intent_acc > 0.6, "intent accuracy {intent_acc}");
    assert!(sentiment_acc > 0.7, "sentiment accuracy {sentiment_acc}");
    assert!(m["trainable_params"].as_u64().unwrap() == 384 * 77 + 77 + 384 * 2 + 2);

    let frozen = dir.path().join("freeze-a");
    let (ok, out, err) = train(
        &runf,
        &[
            "--out",
            frozen.to_str().unwrap(),
            "--regime",
            "freeze-head=a",
            "--from",
            base.to_str().unwrap(),
            "--seed",
            "99",
        ],
    );
    assert!(ok, "{out}{err}");
    let (tb, tf) = (tensors(&base), tensors(&frozen));
    for name in ["heads.intent.0.weight", "heads.intent.0.bias"] {
        assert_eq!(tb[name], tf[name], "{name} must be unchanged bit for bit");
    }
    assert_ne!(
        tb["heads.sentiment.0.weight"],
        tf["heads.sentiment.0.weight"]
    );
    let mf = manifest(&frozen);
    assert_eq!(mf["regime"], "freeze-head=a");
    assert_eq!(mf["tasks"][0]["trained"], false);
    assert_eq!(mf["tasks"][1]["trained"], true);
    assert_eq!(mf["trainable_params"].as_u64().unwrap(), 384 * 2 + 2);
    // The frozen head still reports, with the same scores as before.
    assert_eq!(mf["tasks"][0]["test"], m["tasks"][0]["test"]);

    // freeze-head without a checkpoint to take the head from is an error that says so.
    let (ok, _, err) = train(&runf, &["--regime", "freeze-head=b"]);
    assert!(!ok && err.contains("give train.from"), "{err}");
}

#[test]
fn fully_frozen_regimes_report_zero_training_time() {
    let Some(_) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let runf = run_file(dir.path(), "");
    let base = dir.path().join("base");
    assert!(train(&runf, &["--out", base.to_str().unwrap()]).0);
    let reused = dir.path().join("reused");
    let (ok, out, err) = train(
        &runf,
        &[
            "--regime",
            "fully-frozen",
            "--from",
            base.to_str().unwrap(),
            "--out",
            reused.to_str().unwrap(),
        ],
    );
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("training 0.00 s (0 trainable parameters"),
        "{out}"
    );
    assert_eq!(tensors(&base), tensors(&reused));
    assert_eq!(
        manifest(&reused)["tasks"][1]["test"],
        manifest(&base)["tasks"][1]["test"]
    );

    for head in ["centroid", "zero-shot"] {
        let (ok, out, err) = train(&runf, &["--regime", "fully-frozen", "--head", head]);
        assert!(ok, "{out}{err}");
        assert!(
            out.contains("training 0.00 s (0 trainable parameters"),
            "{out}"
        );
        assert!(
            out.contains(if head == "centroid" {
                "nearest-centroid"
            } else {
                "zero-shot"
            }),
            "{out}"
        );
    }
    let (ok, _, err) = train(&runf, &["--regime", "fully-frozen"]);
    assert!(!ok && err.contains("fully-frozen trains nothing"), "{err}");
}

#[test]
fn predict_writes_labels_and_probabilities() {
    let Some(_) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let runf = run_file(dir.path(), "");
    let ck = dir.path().join("ck");
    assert!(train(&runf, &["--out", ck.to_str().unwrap()]).0);
    for out_name in ["pred.csv", "pred.parquet"] {
        let out = dir.path().join(out_name);
        let mut cmd = frostline(&["predict", "--no-progress", "--checkpoint"]);
        cmd.arg(&ck)
            .arg("--input")
            .arg(repo().join("data/sst2/test.csv"))
            .arg("--output")
            .arg(&out)
            .arg("--cache-dir")
            .arg(cache());
        let (ok, _, err) = run(&mut cmd);
        assert!(ok, "{err}");
        assert!(err.contains("cache hits 500, embedded 0"), "{err}");
    }
    let text = std::fs::read_to_string(dir.path().join("pred.csv")).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_string)
        .collect();
    assert_eq!(
        headers,
        [
            "text",
            "label",
            "intent_label",
            "intent_prob",
            "sentiment_label",
            "sentiment_prob"
        ],
        "every input column is carried, then each task's label and probability"
    );
    let truth = frostline::data::read_table(&repo().join("data/sst2/test.csv"))
        .unwrap()
        .required_strings("label")
        .unwrap();
    let mut correct = 0;
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 500);
    for (row, t) in rows.iter().zip(&truth) {
        let p: f64 = row[5].parse().unwrap();
        assert!(
            (0.5..=1.0).contains(&p),
            "top probability of 2 classes is ≥ 0.5: {p}"
        );
        assert!(["negative", "positive"].contains(&&row[4]));
        correct += (&row[4] == t) as usize;
    }
    let acc = manifest(&ck)["tasks"][1]["test"]["accuracy"]
        .as_f64()
        .unwrap();
    assert!(
        (correct as f64 / 500.0 - acc).abs() < 1e-9,
        "predict agrees with the checkpoint's test score"
    );
}

#[test]
fn checkpoint_of_another_backbone_or_corrupt_is_refused() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let runf = run_file(dir.path(), "epochs = 1");
    let ck = dir.path().join("ck");
    assert!(train(&runf, &["--out", ck.to_str().unwrap()]).0);
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "hello\n").unwrap();
    let predict = |ck: &Path, extra: &[&str]| {
        let mut cmd = frostline(&["predict", "--no-progress", "--checkpoint"]);
        cmd.arg(ck)
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(dir.path().join("out.csv"))
            .arg("--cache-dir")
            .arg(cache())
            .args(extra);
        run(&mut cmd)
    };

    // The same model in a folder whose own max length is 128: the checkpoint's 256 is used
    // (a checkpoint describes itself), so the vectors are the ones the heads were trained on.
    let m2 = dir.path().join("model128");
    std::fs::create_dir_all(m2.join("1_Pooling")).unwrap();
    for f in [
        "model.onnx",
        "model.safetensors",
        "tokenizer.json",
        "config.json",
        "modules.json",
        "1_Pooling/config.json",
    ] {
        std::os::unix::fs::symlink(model.join(f), m2.join(f)).unwrap();
    }
    std::fs::write(
        m2.join("sentence_bert_config.json"),
        r#"{"max_seq_length": 128}"#,
    )
    .unwrap();
    let (ok, _, err) = predict(&ck, &["--model", m2.to_str().unwrap()]);
    assert!(ok && !err.contains("warning"), "{err}");
    std::fs::remove_file(dir.path().join("out.csv")).unwrap();

    // A checkpoint of a deeper backbone (consistent in itself, resealed): refused, naming the
    // field and both values. (A wider one is refused sooner: its heads' shapes do not match.)
    let other = dir.path().join("dim");
    copy_dir(&ck, &other);
    edit_manifest(&other.join("manifest.json"), |m| {
        m["backbone"]["num_layers"] = 12.into()
    });
    let (ok, _, err) = predict(&other, &[]);
    assert!(
        !ok && err.contains("layers: checkpoint 12, model folder 6"),
        "{err}"
    );
    edit_manifest(&other.join("manifest.json"), |m| {
        m["backbone"]["num_layers"] = 6.into();
        m["backbone"]["hidden_size"] = 768.into();
    });
    let (ok, _, err) = predict(&other, &[]);
    assert!(
        !ok && err.contains("head input 384 differs from the backbone's hidden size 768"),
        "{err}"
    );

    // Truncated weights: the manifest's checksum catches them before they are parsed.
    let trunc = dir.path().join("trunc");
    copy_dir(&ck, &trunc);
    let bytes = std::fs::read(trunc.join("heads.safetensors")).unwrap();
    std::fs::write(trunc.join("heads.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let (ok, _, err) = predict(&trunc, &[]);
    assert!(
        !ok && err.contains("heads.safetensors") && err.contains("checksum mismatch"),
        "{err}"
    );

    // Missing manifest.
    let bare = dir.path().join("bare");
    copy_dir(&ck, &bare);
    std::fs::remove_file(bare.join("manifest.json")).unwrap();
    let (ok, _, err) = predict(&bare, &[]);
    assert!(
        !ok && err.contains("manifest.json") && err.contains("missing"),
        "{err}"
    );
    assert!(!dir.path().join("out.csv").exists());
}

#[test]
fn bad_training_input_is_named() {
    let Some(_) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let runf = run_file(dir.path(), "epochs = 2");
    let d = dir.path();

    // Label column missing.
    std::fs::write(d.join("nolabel.csv"), "text,category\nhello,a\nbye,b\n").unwrap();
    let (ok, _, err) = train(
        &runf,
        &[
            "--set",
            &format!(
                "tasks.sentiment.train=\"{}\"",
                d.join("nolabel.csv").display()
            ),
        ],
    );
    assert!(
        !ok && err.contains("nolabel.csv") && err.contains("no column \"label\""),
        "{err}"
    );

    // One class.
    std::fs::write(d.join("one.csv"), "text,label\nhello,a\nbye,a\nyes,a\n").unwrap();
    let (ok, _, err) = train(
        &runf,
        &[
            "--set",
            &format!("tasks.sentiment.train=\"{}\"", d.join("one.csv").display()),
        ],
    );
    assert!(
        !ok && err.contains("one.csv") && err.contains("only one class (\"a\")"),
        "{err}"
    );

    // A label in test that train never saw: counted and reported, not a crash.
    let mut test = std::fs::read_to_string(repo().join("data/sst2/test.csv")).unwrap();
    test.push_str("an utterly neutral sentence,neutral\nanother one,neutral\n");
    std::fs::write(d.join("test_unseen.csv"), test).unwrap();
    let (ok, out, err) = train(
        &runf,
        &[
            "--set",
            &format!(
                "tasks.sentiment.test=\"{}\"",
                d.join("test_unseen.csv").display()
            ),
        ],
    );
    assert!(ok, "{out}{err}");
    assert!(
        out.contains(
            "task \"sentiment\": 0 dev and 2 test rows have labels that never occur in train"
        ),
        "{out}"
    );

    // Divergence: an absurd learning rate makes the loss overflow; the epoch and task are named.
    let (ok, _, err) = train(
        &runf,
        &["--set", "train.lr=1e38", "--set", "train.clip_norm=0"],
    );
    assert!(
        !ok && err.contains("training: diverged") && err.contains("epoch") && err.contains("task"),
        "{err}"
    );

    // Unknown key in the run file.
    let bad = d.join("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&runf)
            .unwrap()
            .replace("epochs = 2", "epochs = 2\nlearning_rate = 0.1"),
    )
    .unwrap();
    let (ok, _, err) = train(&bad, &[]);
    assert!(
        !ok && err.contains("bad.toml") && err.contains("unknown field `learning_rate`"),
        "{err}"
    );

    // Unknown regime.
    let (ok, _, err) = train(&runf, &["--regime", "half-frozen"]);
    assert!(
        !ok && err.contains("unknown regime \"half-frozen\""),
        "{err}"
    );
}

#[test]
fn mteb_replay_is_deterministic_and_reports_mean_and_sd() {
    let Some(_) = model_dir() else { return };
    let mut cmd = frostline(&[
        "mteb",
        "--no-progress",
        "--k",
        "4",
        "--experiments",
        "3",
        "--train",
    ]);
    cmd.arg(repo().join("data/banking77/train.csv"))
        .arg("--test")
        .arg(repo().join("data/banking77/test.csv"))
        .arg("--cache-dir")
        .arg(cache());
    let (ok, first, err) = run(&mut cmd);
    assert!(ok, "{err}");
    assert!(
        first.contains("| banking77 | 4 | 3 | 77 | 1848 / 616 |"),
        "{first}"
    );
    let (_, second, _) = run(&mut cmd);
    assert_eq!(first, second);
}

#[test]
fn progress_off_a_terminal_is_plain_and_early_stopping_names_the_kept_epoch() {
    let Some(_) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    // A high learning rate overfits quickly, so patience 1 stops long before epoch 60.
    let runf = run_file(dir.path(), "epochs = 60\npatience = 1\nlr = 0.5");
    let mut cmd = frostline(&["train", "--run"]);
    cmd.arg(&runf).arg("--cache-dir").arg(cache());
    let (ok, out, err) = run(&mut cmd);
    assert!(ok, "{out}{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("early stopping after epoch"))
        .unwrap_or_else(|| panic!("no early-stopping line in {err}"));
    let kept: usize = line
        .split("keeping epoch ")
        .nth(1)
        .and_then(|r| r.split('\'').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    let stopped: usize = line["early stopping after epoch ".len()..]
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(stopped, kept + 1, "patience 1: {line}");
    assert!(out.contains(&format!("best epoch {kept}")), "{out}");
    // stderr is a pipe here: no bar drawing (carriage returns / escape codes) in it.
    assert!(!err.contains('\r') && !err.contains('\u{1b}'), "{err:?}");
}
