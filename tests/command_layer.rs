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
    let train = "train --json --no-progress --run runs/run.toml --regime frost-line=5 \
                 --max-length 32 --set train.lr=1e-2 --out ck";
    let (ok, out, err) = run(&mut fl(&a, &cache, &[&train]));
    assert!(ok, "{err}");
    let trained = json_of(&out);
    assert_eq!(trained["max_length"], 32);
    assert_eq!(
        trained["model_source"],
        format!("the run file {}", "runs/run.toml")
    );
    let ck = a.join("ck");
    let manifest = manifest(&ck);
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
    let (ok, out, err) = run(&mut fl(
        &b,
        &cache,
        &[&"eval --json --no-progress --checkpoint", &ck],
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
            &"predict --json --no-progress --checkpoint",
            &ck,
            &"--input new.csv --output p.csv",
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
            &"eval --no-progress --checkpoint",
            &ck,
            &"--max-length 48 --out e48",
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
    let train = args(&[&"train --no-progress --run", &run_toml]);
    let (ok, _, err) = run(&mut fl(
        d,
        &cache,
        &[&train, &"--max-length 48 --out linear"],
    ));
    assert!(ok, "{err}");

    // A warm start at another max length: a warning, not a refusal.
    let (ok, _, err) = run(&mut fl(
        d,
        &cache,
        &[
            &train,
            &"--regime frost-line=5 --from linear --max-length 32 --out warm",
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
            &train,
            &"--model",
            &other,
            &"--regime frost-line=5 --from linear --out bad",
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
    let predict = "predict --no-progress --checkpoint linear";
    let (c, _, err) = code(&mut fl(
        d,
        &cache,
        &[
            &predict,
            &"--model",
            &other,
            &"--input new.txt --output x.csv",
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
            &predict,
            &"--model",
            &moved,
            &"--input new.txt --output y.csv",
        ],
    ));
    assert!(ok, "{err}");
    let (ok, _, err) = run(
        fl(d, &cache, &[&predict, &"--input new.txt --output z.csv"])
            .env("FROSTLINE_MODEL", &moved),
    );
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
            &"compare --no-progress --run",
            &run_toml,
            &"--model /nonexistent/model",
        ],
    ));
    assert_eq!(c, 4, "{err}");
    assert!(
        err.contains("/nonexistent/model") && err.contains("named by --model"),
        "{err}"
    );

    // Outside the repository with nothing set: the default under the current directory, said so.
    let embed = "embed --input in.txt --output o.npy";
    let (c, _, err) = code(&mut fl(d, &cache, &[&embed]));
    assert_eq!(c, 4, "{err}");
    assert!(
        err.contains("named by the default models/all-MiniLM-L6-v2 under the current directory"),
        "{err}"
    );
    assert!(err.contains("FROSTLINE_MODEL"), "{err}");
    // An empty variable means unset.
    let (c, _, _) = code(fl(d, &cache, &[&embed]).env("FROSTLINE_MODEL", ""));
    assert_eq!(c, 4);

    // $FROSTLINE_MODEL serves embed, mteb and doctor alike; --json gives the figures.
    let embed = "embed --json --no-progress --input in.txt --output o.npy";
    let (ok, out, err) = run(fl(d, &cache, &[&embed]).env("FROSTLINE_MODEL", &model));
    assert!(ok, "{err}");
    let stats = json_of(&out);
    assert_eq!(
        (stats["rows"].as_u64(), stats["embedded"].as_u64()),
        (Some(3), Some(3))
    );
    assert_eq!(stats["provider"], "CPUExecutionProvider");
    let (ok, out, err) = run(fl(d, &cache, &[&"doctor"]).env("FROSTLINE_MODEL", &model));
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
    let run_toml = project(&d.join("p"), &model);
    let exit = |parts: &[&dyn AsArgs]| code(&mut fl(d, &cache, parts));
    let train = args(&[&"train --run", &run_toml]);
    let embed = args(&[&"embed --model", &model]);

    // 2: usage — a clap error, an unknown regime, a regime that needs --from.
    assert_eq!(exit(&[&"embed --bogus"]).0, 2);
    let (c, _, err) = exit(&[&train, &"--regime thawed"]);
    assert_eq!(c, 2, "{err}");
    let (c, _, err) = exit(&[&train, &"--regime freeze-head=a"]);
    assert_eq!(c, 2, "{err}");
    assert!(err.contains("--from"), "{err}");
    // 2: a max length past the model's position table, refused up front.
    let (c, _, err) = exit(&[&embed, &"--input x.csv --output o.npy --max-length 513"]);
    assert_eq!(c, 2, "{err}");
    assert!(err.contains("position limit 512"), "{err}");
    // 3: input data — a missing input file, a checkpoint from an older manifest format.
    let (c, _, err) = exit(&[&embed, &"--input missing.csv --output o.npy"]);
    assert_eq!(c, 3, "{err}");
    std::fs::create_dir(d.join("old")).unwrap();
    std::fs::write(
        d.join("old/manifest.json"),
        r#"{"frostline_version": "0.1.0", "tasks": []}"#,
    )
    .unwrap();
    let (c, _, err) = exit(&[&"eval --checkpoint old"]);
    assert_eq!(c, 3, "{err}");
    assert!(err.contains("manifest format 1 (unversioned)"), "{err}");
    // 4: model or runtime.
    let nowhere = "embed --model /nonexistent --input x.csv --output o.npy";
    assert_eq!(exit(&[&nowhere]).0, 4);
    let (c, _, err) = exit(&[
        &embed,
        &"--ort-lib /nonexistent/libonnxruntime.so --input p/data/s-test.csv --output o.npy",
        &"--no-progress",
    ]);
    assert_eq!(c, 4, "{err}");
}

#[test]
fn every_help_example_names_files_that_exist() {
    let commands = [
        "doctor", "embed", "train", "predict", "mteb", "eval", "compare", "curve", "export",
        "quantize",
    ];
    let mut checked = 0;
    for command in commands {
        let (ok, help, err) = run(&mut frostline(&[&command, &"--help"]));
        assert!(ok, "{err}");
        let examples = help
            .split_once("Example")
            .unwrap_or_else(|| panic!("`{command} --help` has no examples"))
            .1;
        for line in examples
            .lines()
            .filter(|l| l.trim_start().starts_with("frostline "))
        {
            let words: Vec<&str> = line.split_whitespace().collect();
            for pair in words.windows(2) {
                // What an example reads from the repository; placeholders (new.csv,
                // 'corpus/*.csv') and outputs are the user's to name.
                let reads_repo = matches!(pair[0], "--run" | "--calibration" | "--model")
                    || (matches!(pair[0], "--input" | "--train" | "--test")
                        && pair[1].starts_with("data/"));
                if reads_repo {
                    assert!(
                        repo().join(pair[1]).exists(),
                        "`{command} --help` example names {} {}, which does not exist: {line}",
                        pair[0],
                        pair[1]
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 6, "only {checked} example paths checked");
}

#[test]
fn a_missing_run_file_is_missing_input() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = frostline(&[&"train --run nope.toml --out ck"]);
    let out = cmd.current_dir(dir.path()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("nope.toml") && err.contains("run file not found"),
        "{err}"
    );
}

/// Support tickets with two targets, in the user's own column names: `data/banking77` rows as
/// `body,category,priority` (priority derived from the intent).
fn tickets(path: &Path, src: &str, rows: usize) {
    let text = std::fs::read_to_string(repo().join(src)).unwrap();
    let mut out = String::from("body,category,priority\n");
    for line in text.lines().skip(1).take(rows) {
        let (body, label) = line.rsplit_once(',').unwrap();
        let body = body.trim_matches('"').replace('"', "\"\"");
        let priority = if label.contains("card") {
            "high"
        } else {
            "low"
        };
        out += &format!("\"{body}\",{label},{priority}\n");
    }
    std::fs::write(path, out).unwrap();
}

/// README's opening: your own data, no run file. The flags resolve to the same job as the run
/// file `--print-run` prints for them (same seed → the same test scores), and a wrong column
/// is blamed on the flag that names it, with the closest column.
#[test]
fn train_from_flags_alone_equals_the_run_file_it_prints() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cache = d.join("cache");
    tickets(&d.join("t.csv"), "data/banking77/train.csv", 300);
    tickets(&d.join("s.csv"), "data/banking77/test.csv", 80);
    let flags = args(&[
        &"train --no-progress --model",
        &model,
        &"--train t.csv --test s.csv --text-column body --label-column category,priority",
        &"--set train.epochs=3",
    ]);

    let (ok, printed, err) = run(&mut fl(d, &cache, &[&flags, &"--print-run"]));
    assert!(ok, "{err}");
    assert!(
        printed.contains("name = \"category\"")
            && printed.contains("name = \"priority\"")
            && printed.contains("text_column = \"body\"")
            && printed.contains("epochs = 3"),
        "{printed}"
    );
    assert!(!d.join("ck").exists(), "--print-run trains nothing");
    std::fs::create_dir(d.join("elsewhere")).unwrap();
    std::fs::write(d.join("elsewhere/run.toml"), &printed).unwrap();

    let (ok, out, err) = run(&mut fl(d, &cache, &[&flags, &"--out ck --json"]));
    assert!(ok, "{err}");
    let from_flags = json_of(&out);
    // The printed file, run from another folder (its paths are absolute).
    let (ok, out, err) = run(&mut fl(
        &d.join("elsewhere"),
        &cache,
        &[&"train --no-progress --run run.toml --out ../ck2 --json"],
    ));
    assert!(ok, "{err}");
    let from_file = json_of(&out);
    for (i, task) in ["category", "priority"].into_iter().enumerate() {
        assert_eq!(from_flags["tasks"][i]["name"], task, "{from_flags}");
        let score = |j: &serde_json::Value| j["tasks"][i]["test"].clone();
        assert!(score(&from_flags)["accuracy"].is_f64(), "{from_flags}");
        assert_eq!(score(&from_flags), score(&from_file), "{task}");
    }

    // A wrong label column names the flag and the closest column, case-insensitively.
    let (c, _, err) = code(&mut fl(
        d,
        &cache,
        &[
            &"train --model",
            &model,
            &"--train t.csv --text-column body --label-column Category",
        ],
    ));
    assert_eq!(c, 3, "{err}");
    assert!(
        err.contains("--label-column") && err.contains("\"category\""),
        "{err}"
    );
    // Data flags beside a run file are refused: one source of tasks.
    let (c, _, err) = code(&mut fl(
        d,
        &cache,
        &[&"train --run elsewhere/run.toml --train t.csv"],
    ));
    assert_eq!(c, 2, "{err}");
    assert!(err.contains("--train") && err.contains("--run"), "{err}");
}

/// The README's opening flow ("Your own data in three commands"), its `frostline` lines run as
/// written from a folder that holds the repository's data and model.
#[test]
fn the_readme_opening_flow_runs_as_written() {
    let Some(model) = model_dir() else { return };
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = readme
        .split("## Your own data in three commands")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README opens with 'Your own data in three commands'");
    let commands: Vec<&str> = section
        .lines()
        .filter_map(|l| l.trim().strip_prefix("target/release/frostline "))
        .collect();
    assert_eq!(commands.len(), 2, "{section}");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::os::unix::fs::symlink(repo().join("data"), d.join("data")).unwrap();
    std::fs::create_dir(d.join("models")).unwrap();
    std::os::unix::fs::symlink(&model, d.join("models/all-MiniLM-L6-v2")).unwrap();
    let cache = d.join("cache");
    for c in &commands {
        let (ok, _, err) = run(&mut fl(d, &cache, &[c, &"--no-progress"]));
        assert!(ok, "`frostline {c}`: {err}");
    }
    let out = std::fs::read_to_string(d.join("tickets-predictions.csv")).unwrap();
    let mut lines = out.lines();
    assert_eq!(
        lines.next().unwrap(),
        "id,category_label,category_prob,priority_label,priority_prob"
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 3, "{out}");
    // The first new ticket is a card used by someone else: an urgent one.
    assert!(
        rows[0].starts_with("new-0,") && rows[0].contains(",urgent,"),
        "{out}"
    );
}
