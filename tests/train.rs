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
    shared_cache("train")
}

fn train(run_toml: &Path, parts: &[&dyn AsArgs]) -> (bool, String, String) {
    run(&mut frostline(&[
        &"train --no-progress --run",
        &run_toml,
        &"--cache-dir",
        &cache(),
        &parts,
    ]))
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
        let (ok, out, err) = train(&runf, &[&"--out", ck, &"--seed", &seed]);
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
    let (ok, out, err) = train(&runf, &[&"--out", &base]);
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
            &"--out",
            &frozen,
            &"--regime freeze-head=a --from",
            &base,
            &"--seed 99",
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
    let (ok, _, err) = train(&runf, &[&"--regime freeze-head=b"]);
    assert!(!ok && err.contains("give train.from"), "{err}");
}

#[test]
fn fully_frozen_regimes_report_zero_training_time() {
    let Some(_) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let runf = run_file(dir.path(), "");
    let base = dir.path().join("base");
    assert!(train(&runf, &[&"--out", &base]).0);
    let reused = dir.path().join("reused");
    let (ok, out, err) = train(
        &runf,
        &[&"--regime fully-frozen --from", &base, &"--out", &reused],
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
        let (ok, out, err) = train(&runf, &[&"--regime fully-frozen --head", &head]);
        assert!(ok, "{out}{err}");
        assert!(
            out.contains("training 0.00 s (0 trainable parameters"),
            "{out}"
        );
        assert!(
            out.contains(if head == "centroid" {
                "centroid"
            } else {
                "zero-shot"
            }),
            "{out}"
        );
    }
    let (ok, _, err) = train(&runf, &[&"--regime fully-frozen"]);
    assert!(!ok && err.contains("fully-frozen trains nothing"), "{err}");
}

#[test]
fn predict_writes_labels_and_probabilities() {
    let Some(_) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let runf = run_file(dir.path(), "");
    let ck = dir.path().join("ck");
    assert!(train(&runf, &[&"--out", &ck]).0);
    for out_name in ["pred.csv", "pred.parquet"] {
        let out = dir.path().join(out_name);
        let input = repo().join("data/sst2/test.csv");
        let (ok, _, err) = run(&mut predict_cmd(&ck, &input, &out, &cache()));
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
    assert!(train(&runf, &[&"--out", &ck]).0);
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "hello\n").unwrap();
    let predict = |ck: &Path, extra: &[&dyn AsArgs]| {
        run(predict_cmd(ck, &input, &dir.path().join("out.csv"), &cache()).args(args(extra)))
    };

    // The same model in a folder whose own max length is 128: the checkpoint's 256 is used
    // (a checkpoint describes itself), so the vectors are the ones the heads were trained on.
    let m2 = dir.path().join("model128");
    link_model(&model, &m2, &["sentence_bert_config.json"]);
    std::fs::write(
        m2.join("sentence_bert_config.json"),
        r#"{"max_seq_length": 128}"#,
    )
    .unwrap();
    let (ok, _, err) = predict(&ck, &[&"--model", &m2]);
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

    // Train on a file `name` holding `content`: (success, stderr).
    let train_on = |name: &str, content: &str| {
        std::fs::write(d.join(name), content).unwrap();
        let set = format!("tasks.sentiment.train=\"{}\"", d.join(name).display());
        let (ok, _, err) = train(&runf, &[&"--set", &set]);
        (ok, err)
    };

    // Label column missing: the error names the run-file key that sets the column, not a flag
    // train does not take.
    let (ok, err) = train_on("nolabel.csv", "text,category\nhello,a\nbye,b\n");
    assert!(
        !ok && err.contains("nolabel.csv")
            && err.contains("no column \"label\"")
            && err.contains("set it with tasks.sentiment.label_column")
            && !err.contains("--text-column"),
        "{err}"
    );
    // A column that differs only in case is suggested.
    let (ok, err) = train_on("cased.csv", "Text,Label\nhello,a\nbye,b\n");
    assert!(
        !ok && err.contains("no column \"text\"")
            && err.contains("did you mean \"Text\"?")
            && err.contains("set it with tasks.sentiment.text_column"),
        "{err}"
    );

    // One class.
    let (ok, err) = train_on("one.csv", "text,label\nhello,a\nbye,a\nyes,a\n");
    assert!(
        !ok && err.contains("one.csv") && err.contains("only one class (\"a\")"),
        "{err}"
    );

    // A label in test that train never saw: counted and reported, not a crash.
    let mut test = std::fs::read_to_string(repo().join("data/sst2/test.csv")).unwrap();
    test.push_str("an utterly neutral sentence,neutral\nanother one,neutral\n");
    std::fs::write(d.join("test_unseen.csv"), test).unwrap();
    let unseen = format!(
        "tasks.sentiment.test=\"{}\"",
        d.join("test_unseen.csv").display()
    );
    let (ok, out, err) = train(&runf, &[&"--set", &unseen]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains(
            "task \"sentiment\": 0 dev and 2 test rows have labels that never occur in train"
        ),
        "{out}"
    );

    // Divergence: an absurd learning rate makes the loss overflow; the epoch and task are named.
    let (ok, _, err) = train(&runf, &[&"--set train.lr=1e38 --set train.clip_norm=0"]);
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
    let (ok, _, err) = train(&runf, &[&"--regime half-frozen"]);
    assert!(
        !ok && err.contains("unknown regime \"half-frozen\""),
        "{err}"
    );
}

#[test]
fn mteb_replay_is_deterministic_and_reports_mean_and_sd() {
    let Some(_) = model_dir() else { return };
    let mut cmd = frostline(&[
        &"mteb --no-progress --k 4 --experiments 3 --train",
        &repo().join("data/banking77/train.csv"),
        &"--test",
        &repo().join("data/banking77/test.csv"),
        &"--cache-dir",
        &cache(),
    ]);
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
    let (ok, out, err) = run(&mut frostline(&[
        &"train --run",
        &runf,
        &"--cache-dir",
        &cache(),
    ]));
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

#[test]
fn no_progress_hides_the_bars_but_keeps_each_epoch_s_results() {
    let Some(_) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let runf = run_file(dir.path(), "epochs = 3");
    let (ok, out, err) = train(&runf, &[]);
    assert!(ok, "{out}{err}");
    for epoch in 1..=3 {
        let line = err
            .lines()
            .find(|l| l.starts_with(&format!("epoch {epoch}/3: ")))
            .unwrap_or_else(|| panic!("no summary line for epoch {epoch} in {err}"));
        assert!(
            line.contains("intent loss")
                && line.contains("sentiment loss")
                && line.contains("dev F1"),
            "{line}"
        );
    }
    // The bars (their names and rates) are what --no-progress hides.
    assert!(!err.contains("training epoch"), "{err}");
}

#[test]
fn labels_that_are_one_number_written_two_ways_are_named_or_refused() {
    let Some(_) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let numbered = |from: &str, to: &str, pos: &str, neg: &str| {
        let text = std::fs::read_to_string(repo().join("data/sst2").join(from)).unwrap();
        let text = text
            .replace(",positive\n", &format!(",{pos}\n"))
            .replace(",negative\n", &format!(",{neg}\n"));
        std::fs::write(d.join(to), text).unwrap();
        format!("{}", d.join(to).display())
    };
    let train_csv = numbered("train.csv", "train.csv", "1.0", "0.0");
    let dev_csv = numbered("dev.csv", "dev.csv", "1.0", "0.0");
    let runf = run_file(d, "epochs = 2");
    let set = |key: &str, path: &str| format!("tasks.sentiment.{key}=\"{path}\"");
    let sets = [set("train", &train_csv), set("dev", &dev_csv)];
    let train_with_test = |test: &str| {
        let test = set("test", test);
        train(
            &runf,
            &[&"--set", &sets[0], &"--set", &sets[1], &"--set", &test],
        )
    };

    // Every test label spelled another way: refused before training, both spellings named.
    let test_csv = numbered("test.csv", "test_int.csv", "1", "0");
    let (ok, _, err) = train_with_test(&test_csv);
    assert!(!ok, "{err}");
    assert!(
        err.contains("test_int.csv")
            && err.contains("none of the 500 test rows")
            && err.contains("\"1.0\"")
            && err.contains("write the labels the same way"),
        "{err}"
    );

    // Some rows spelled another way: trained, with a warning naming both spellings.
    let ints = std::fs::read_to_string(d.join("test_int.csv")).unwrap();
    let lines: Vec<&str> = ints.lines().collect();
    let (head, tail) = lines.split_at(lines.len() / 2);
    let tail = format!("{}\n", tail.join("\n"))
        .replace(",1\n", ",1.0\n")
        .replace(",0\n", ",0.0\n");
    std::fs::write(
        d.join("test_mixed.csv"),
        format!("{}\n{tail}", head.join("\n")),
    )
    .unwrap();
    let mixed_csv = format!("{}", d.join("test_mixed.csv").display());
    let (ok, out, err) = train_with_test(&mixed_csv);
    assert!(ok, "{out}{err}");
    assert!(
        err.contains("one number written two ways")
            && err.contains("\"1\" in test, \"1.0\" in train"),
        "{err}"
    );
}

#[test]
fn replacing_a_checkpoint_is_announced_and_one_of_other_tasks_needs_force() {
    let Some(_) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let runf = run_file(d, "epochs = 1");
    let ck = d.join("ck");
    let (ok, _, err) = train(&runf, &[&"--out", &ck]);
    assert!(ok, "{err}");
    assert!(!err.contains("replacing"), "{err}");

    // The same tasks again: replaced, and said so with what was there.
    let (ok, _, err) = train(&runf, &[&"--out", &ck]);
    assert!(ok, "{err}");
    let note = err
        .lines()
        .find(|l| l.starts_with("note: replacing the checkpoint"))
        .unwrap_or_else(|| panic!("no replacement note in {err}"));
    assert!(
        note.contains("tasks intent, sentiment") && note.contains(" UTC"),
        "{note}"
    );

    // Other tasks: refused (the old checkpoint untouched) unless --force.
    let other = d.join("other.toml");
    let text = std::fs::read_to_string(&runf).unwrap();
    std::fs::write(
        &other,
        text.replace("name = \"intent\"", "name = \"topic\""),
    )
    .unwrap();
    let before = std::fs::read(ck.join("manifest.json")).unwrap();
    let (ok, _, err) = train(&other, &[&"--out", &ck]);
    assert!(!ok, "{err}");
    assert!(
        err.contains("holds a checkpoint of other tasks (tasks intent, sentiment")
            && err.contains("this run trains topic, sentiment")
            && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read(ck.join("manifest.json")).unwrap(), before);
    let (ok, _, err) = train(&other, &[&"--out", &ck, &"--force"]);
    assert!(ok, "{err}");
    let manifest = std::fs::read_to_string(ck.join("manifest.json")).unwrap();
    assert!(manifest.contains("\"topic\""));

    // No --out: trained and scored, and told nothing was saved.
    let (ok, _, err) = train(&runf, &[]);
    assert!(ok, "{err}");
    assert!(
        err.contains("no --out: the trained heads were scored but not saved"),
        "{err}"
    );
}
