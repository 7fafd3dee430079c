//! The command layer: every setting decided once, checkpoints that describe themselves, the model
//! folder's source named, exit codes by error kind, `--json` summaries. One regression test per
//! problem the "one place decides" issue listed.

mod common;

use std::path::Path;

use common::*;

#[test]
fn a_frost_line_checkpoint_is_used_from_any_directory_with_no_flag_repeated() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (a, b, cache) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("cache"),
    );
    std::fs::create_dir_all(&b).unwrap();
    let run_toml = project(&a, &model);

    // Trained the README's way (a short max length), from the project folder, with relative paths.
    let (ok, out, err) = run(&mut fl(
        &a,
        &cache,
        &[
            "train",
            "--json",
            "--no-progress",
            "--run",
            "runs/run.toml",
            "--regime",
            "frost-line=5",
            "--max-length",
            "32",
            "--set",
            "train.lr=1e-2",
            "--out",
            "ck",
        ],
    ));
    assert!(ok, "{err}");
    let trained = json_of(&out);
    assert_eq!(trained["max_length"], 32);
    assert_eq!(
        trained["model_source"],
        format!("the run file {}", "runs/run.toml")
    );
    let ck = a.join("ck");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ck.join("manifest.json")).unwrap()).unwrap();
    let backbone = &manifest["backbone"];
    assert_eq!(backbone["max_length"], 32);
    assert!(
        Path::new(backbone["model_dir"].as_str().unwrap()).is_absolute(),
        "{backbone}"
    );
    assert!(backbone["content_hash"]
        .as_str()
        .unwrap()
        .starts_with("xxh3-128:"));
    let data_file = manifest["tasks"][0]["config"]["train"].as_str().unwrap();
    assert!(Path::new(data_file).is_absolute(), "{data_file}");
    assert_eq!(manifest["regime"], "frost-line=5");

    // From another directory, naming only the checkpoint: eval re-reads the same test rows at the
    // same max length and reproduces the scores training reported.
    let ck_arg = ck.to_str().unwrap();
    let (ok, out, err) = run(&mut fl(
        &b,
        &cache,
        &["eval", "--json", "--no-progress", "--checkpoint", ck_arg],
    ));
    assert!(ok, "{err}");
    assert!(
        !err.contains("warning"),
        "no max-length warning when none was typed: {err}"
    );
    let eval = json_of(&out);
    for (t, task) in trained["tasks"].as_array().unwrap().iter().enumerate() {
        let trained_acc = task["test"]["accuracy"].as_f64().unwrap();
        let eval_acc = eval["tasks"][t]["metrics"]["accuracy"].as_f64().unwrap();
        assert!(
            (trained_acc - eval_acc).abs() < 1e-9,
            "task {t}: {trained_acc} vs {eval_acc}"
        );
    }

    std::fs::write(
        b.join("new.csv"),
        "text\nI lost my card yesterday\nA lovely film.\n",
    )
    .unwrap();
    let (ok, out, err) = run(&mut fl(
        &b,
        &cache,
        &[
            "predict",
            "--json",
            "--no-progress",
            "--checkpoint",
            ck_arg,
            "--input",
            "new.csv",
            "--output",
            "p.csv",
        ],
    ));
    assert!(ok, "{err}");
    assert_eq!(json_of(&out)["rows"], 2);
    let predictions = std::fs::read_to_string(b.join("p.csv")).unwrap();
    assert!(
        predictions.starts_with("text,intent_label,intent_prob,sentiment_label"),
        "{predictions}"
    );

    // Another max length is a setting, not another backbone: allowed, and said.
    let (ok, _, err) = run(&mut fl(
        &b,
        &cache,
        &[
            "eval",
            "--no-progress",
            "--checkpoint",
            ck_arg,
            "--max-length",
            "48",
            "--out",
            "e48",
        ],
    ));
    assert!(ok, "{err}");
    assert!(
        err.contains("warning: max length 48 differs from the 32"),
        "{err}"
    );
    drop(run_toml);
}

#[test]
fn warm_starts_check_the_backbone_before_embedding_and_a_moved_folder_is_found_by_hash() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cache = d.join("cache");
    let run_toml = project(&d.join("p"), &model);
    let run_arg = run_toml.to_str().unwrap();
    let (ok, _, err) = run(&mut fl(
        d,
        &cache,
        &[
            "train",
            "--no-progress",
            "--run",
            run_arg,
            "--max-length",
            "48",
            "--out",
            "linear",
        ],
    ));
    assert!(ok, "{err}");

    // A warm start at another max length: a warning, not a refusal.
    let (ok, _, err) = run(&mut fl(
        d,
        &cache,
        &[
            "train",
            "--no-progress",
            "--run",
            run_arg,
            "--regime",
            "frost-line=5",
            "--from",
            "linear",
            "--max-length",
            "32",
            "--out",
            "warm",
        ],
    ));
    assert!(ok, "{err}");
    assert!(
        err.contains("warning: max length 32 differs from the 48"),
        "{err}"
    );

    // Another backbone (one tokenizer byte changed) is refused before any embedding: the fresh
    // cache stays empty, and the message names the field and both values.
    let other = d.join("other-model");
    linked_copy(&model, &other, true);
    let fresh = d.join("fresh-cache");
    let (c, _, err) = code(&mut fl(
        d,
        &fresh,
        &[
            "train",
            "--no-progress",
            "--run",
            run_arg,
            "--model",
            other.to_str().unwrap(),
            "--regime",
            "frost-line=5",
            "--from",
            "linear",
            "--out",
            "bad",
        ],
    ));
    assert_eq!(c, 3, "{err}");
    assert!(
        err.contains("content hash (graph, weights, tokenizer): checkpoint xxh3-128:"),
        "{err}"
    );
    assert!(
        !fresh.exists() || std::fs::read_dir(&fresh).unwrap().next().is_none(),
        "nothing was embedded"
    );
    assert!(!d.join("bad").exists());
    std::fs::write(d.join("new.txt"), "hello there\n").unwrap();
    let (c, _, err) = code(&mut fl(
        d,
        &cache,
        &[
            "predict",
            "--no-progress",
            "--checkpoint",
            "linear",
            "--model",
            other.to_str().unwrap(),
            "--input",
            "new.txt",
            "--output",
            "x.csv",
        ],
    ));
    assert_eq!(c, 3, "{err}");
    assert!(
        err.contains("content hash") && !d.join("x.csv").exists(),
        "{err}"
    );

    // The same model in another place: found by --model (or $FROSTLINE_MODEL), checked by hash.
    let moved = d.join("moved-model");
    linked_copy(&model, &moved, false);
    let (ok, _, err) = run(&mut fl(
        d,
        &cache,
        &[
            "predict",
            "--no-progress",
            "--checkpoint",
            "linear",
            "--model",
            moved.to_str().unwrap(),
            "--input",
            "new.txt",
            "--output",
            "y.csv",
        ],
    ));
    assert!(ok, "{err}");
    let (ok, _, err) = run(fl(
        d,
        &cache,
        &[
            "predict",
            "--no-progress",
            "--checkpoint",
            "linear",
            "--input",
            "new.txt",
            "--output",
            "z.csv",
        ],
    )
    .env("FROSTLINE_MODEL", &moved));
    assert!(ok, "{err}");
}

#[test]
fn the_model_folder_comes_from_flag_env_run_file_or_default_and_errors_name_the_source() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cache = d.join("cache");
    let run_toml = project(&d.join("p"), &model);
    std::fs::write(d.join("in.txt"), "one\ntwo\nthree\n").unwrap();

    // compare --model is honoured (it used to run on the run file's model silently).
    let (c, _, err) = code(&mut fl(
        d,
        &cache,
        &[
            "compare",
            "--no-progress",
            "--run",
            run_toml.to_str().unwrap(),
            "--model",
            "/nonexistent/model",
        ],
    ));
    assert_eq!(c, 4, "{err}");
    assert!(
        err.contains("/nonexistent/model") && err.contains("named by --model"),
        "{err}"
    );

    // Outside the repository with nothing set: the default under the current directory, said so.
    let (c, _, err) = code(&mut fl(
        d,
        &cache,
        &["embed", "--input", "in.txt", "--output", "o.npy"],
    ));
    assert_eq!(c, 4, "{err}");
    assert!(
        err.contains("named by the default models/all-MiniLM-L6-v2 under the current directory"),
        "{err}"
    );
    assert!(err.contains("FROSTLINE_MODEL"), "{err}");
    // An empty variable means unset.
    let (c, _, _) = code(
        fl(
            d,
            &cache,
            &["embed", "--input", "in.txt", "--output", "o.npy"],
        )
        .env("FROSTLINE_MODEL", ""),
    );
    assert_eq!(c, 4);

    // $FROSTLINE_MODEL serves embed, mteb and doctor alike; --json gives the figures.
    let (ok, out, err) = run(fl(
        d,
        &cache,
        &[
            "embed",
            "--json",
            "--no-progress",
            "--input",
            "in.txt",
            "--output",
            "o.npy",
        ],
    )
    .env("FROSTLINE_MODEL", &model));
    assert!(ok, "{err}");
    let stats = json_of(&out);
    assert_eq!(
        (stats["rows"].as_u64(), stats["embedded"].as_u64()),
        (Some(3), Some(3))
    );
    assert_eq!(stats["provider"], "CPUExecutionProvider");
    let (ok, out, err) = run(fl(d, &cache, &["doctor"]).env("FROSTLINE_MODEL", &model));
    assert!(ok, "{err}");
    assert!(out.contains("(from $FROSTLINE_MODEL)"), "{out}");
    assert!(out.contains("pooling: mean+l2 (from"), "{out}");
}

#[test]
fn exit_codes_follow_the_kind_of_error() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cache = d.join("cache");
    let m = model.to_str().unwrap();
    let run_toml = project(&d.join("p"), &model);
    let r = run_toml.to_str().unwrap();
    let exit = |args: &[&str]| code(&mut fl(d, &cache, args));

    // 2: usage — a clap error, an unknown regime, a regime that needs --from.
    assert_eq!(exit(&["embed", "--bogus"]).0, 2);
    let (c, _, err) = exit(&["train", "--run", r, "--regime", "thawed"]);
    assert_eq!(c, 2, "{err}");
    let (c, _, err) = exit(&["train", "--run", r, "--regime", "freeze-head=a"]);
    assert_eq!(c, 2, "{err}");
    assert!(err.contains("--from"), "{err}");
    // 2: a max length past the model's position table, refused up front.
    let (c, _, err) = exit(&[
        "embed",
        "--model",
        m,
        "--input",
        "x.csv",
        "--output",
        "o.npy",
        "--max-length",
        "513",
    ]);
    assert_eq!(c, 2, "{err}");
    assert!(err.contains("position limit 512"), "{err}");
    // 3: input data — a missing input file, a checkpoint from an older manifest format.
    let (c, _, err) = exit(&[
        "embed",
        "--model",
        m,
        "--input",
        "missing.csv",
        "--output",
        "o.npy",
    ]);
    assert_eq!(c, 3, "{err}");
    std::fs::create_dir(d.join("old")).unwrap();
    std::fs::write(
        d.join("old/manifest.json"),
        r#"{"frostline_version": "0.1.0", "tasks": []}"#,
    )
    .unwrap();
    let (c, _, err) = exit(&["eval", "--checkpoint", "old"]);
    assert_eq!(c, 3, "{err}");
    assert!(err.contains("manifest format 1 (unversioned)"), "{err}");
    // 4: model or runtime.
    assert_eq!(
        exit(&[
            "embed",
            "--model",
            "/nonexistent",
            "--input",
            "x.csv",
            "--output",
            "o.npy"
        ])
        .0,
        4
    );
    let (c, _, err) = exit(&[
        "embed",
        "--model",
        m,
        "--ort-lib",
        "/nonexistent/libonnxruntime.so",
        "--input",
        "p/data/s-test.csv",
        "--output",
        "o.npy",
        "--no-progress",
    ]);
    assert_eq!(c, 4, "{err}");
}
