//! Regression tests for what an adversarial run broke (issue 25): a dataset that poisons the
//! cache, a manifest edited to change meaning, a model folder that cannot work, messages that
//! point the wrong way, input quirks, and a huge sentence's memory. Each reproduces the attack
//! and asserts the refusal (or the fix).

mod common;

use std::path::{Path, PathBuf};

use common::*;
use polars::prelude::*;

fn fl_json(cwd: &Path, parts: &[&dyn AsArgs]) -> (i32, String, String) {
    code(&mut fl(cwd, &cwd.join("cache"), parts))
}

/// `embed --json` of `input` into `output` with the cache folder `cache` (under `cwd`).
fn embed_with(
    cwd: &Path,
    model: &str,
    input: &str,
    output: &str,
    cache: &str,
) -> (i32, String, String) {
    fl_json(
        cwd,
        &[
            &"embed --json --no-progress --model",
            &whole(model),
            &"--input",
            &whole(input),
            &"--output",
            &whole(output),
            &"--cache-dir",
            &whole(cache),
        ],
    )
}

/// 40 SST-2 texts as a CSV (id, text).
fn texts_csv(dir: &Path) -> PathBuf {
    let table = frostline::data::read_table(&repo().join("data/sst2/train.csv")).unwrap();
    let texts = table.texts("text").unwrap();
    let path = dir.join("texts.csv");
    let mut w = csv::Writer::from_path(&path).unwrap();
    w.write_record(["id", "text"]).unwrap();
    for (i, t) in texts.iter().take(40).enumerate() {
        w.write_record([format!("r{i}"), t.clone()]).unwrap();
    }
    w.flush().unwrap();
    path
}

/// Rewrites the one part of dataset `ds` with its embeddings changed by `poison`, then puts the
/// part's new checksum into its sidecar and `_SUCCESS` — what someone who forges a dataset does.
fn forge(ds: &Path, poison: impl Fn(usize, &mut Vec<f32>)) {
    let part = ds.join("part-00000-of-00001.parquet");
    let mut df = ParquetReader::new(std::fs::File::open(&part).unwrap())
        .finish()
        .unwrap();
    let emb = df.column("embedding").unwrap().array().unwrap().clone();
    let dim = emb.width();
    let mut rows: Vec<Vec<f32>> = (0..emb.len())
        .map(|r| {
            emb.get_as_series(r)
                .unwrap()
                .f32()
                .unwrap()
                .into_no_null_iter()
                .collect()
        })
        .collect();
    for (r, v) in rows.iter_mut().enumerate() {
        poison(r, v);
    }
    let flat: Vec<f32> = rows.concat();
    let values = Series::new("embedding".into(), flat);
    let array = values
        .reshape_array(&[
            ReshapeDimension::new(rows.len() as i64),
            ReshapeDimension::new(dim as i64),
        ])
        .unwrap();
    df.replace("embedding", array.into()).unwrap();
    ParquetWriter::new(std::fs::File::create(&part).unwrap())
        .finish(&mut df)
        .unwrap();
    let sum = frostline::data::checksum(&part).unwrap();
    for name in ["_part-00000-of-00001.json", "_SUCCESS"] {
        let path = ds.join(name);
        let mut v = read_json(&path);
        if name == "_SUCCESS" {
            v["parts"][0]["checksum"] = sum.clone().into();
        } else {
            v["checksum"] = sum.clone().into();
        }
        std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    }
}

#[test]
fn a_forged_dataset_is_refused_and_never_poisons_the_cache() {
    let Some(model) = model_dir() else { return };
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    let m = model.to_str().unwrap();
    texts_csv(d);
    let (rc, _, err) = embed_with(d, m, "texts.csv", "want.npy", "clean");
    assert_eq!(rc, 0, "{err}");
    let (_, _, want) = read_npy(&d.join("want.npy"));
    let (rc, _, err) = embed_with(d, m, "texts.csv", "ds/", "maker");
    assert_eq!(rc, 0, "{err}");
    let pristine = d.join("pristine");
    std::fs::create_dir(&pristine).unwrap();
    for e in std::fs::read_dir(d.join("ds")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), pristine.join(e.file_name())).unwrap();
    }

    type Poison = Box<dyn Fn(usize, &mut Vec<f32>)>;
    let attacks: Vec<(&str, Poison)> = vec![
        ("NaN", Box::new(|_, v| v.fill(f32::NAN))),
        ("zeros", Box::new(|_, v| v.fill(0.0))),
        ("3e38", Box::new(|_, v| v.fill(3e38))),
        // Plausible vectors (unit length) of other texts: only the spot check can see it.
        ("rotated", Box::new(|_, v| v.rotate_left(1))),
    ];
    for (name, poison) in attacks {
        let ds = d.join(format!("ds-{name}"));
        std::fs::create_dir(&ds).unwrap();
        for e in std::fs::read_dir(&pristine).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), ds.join(e.file_name())).unwrap();
        }
        forge(&ds, poison);
        let cache = format!("cache-{name}");
        let (rc, _, err) = embed_with(d, m, ds.to_str().unwrap(), "a.npy", &cache);
        assert_eq!(rc, 3, "{name}: {err}");
        assert!(
            err.contains("part-00000-of-00001.parquet") && err.contains("row "),
            "{name}: {err}"
        );
        assert!(!d.join("a.npy").exists(), "{name}");
        // The same cache then gives the model's own vectors for those texts.
        let (rc, _, err) = embed_with(d, m, "texts.csv", "after.npy", &cache);
        assert_eq!(rc, 0, "{name}: {err}");
        let (_, _, got) = read_npy(&d.join("after.npy"));
        for (a, b) in got.chunks(384).zip(want.chunks(384)) {
            assert!(
                cosine(a, b) > 0.9999,
                "{name}: a poisoned vector was served"
            );
        }
    }
    // The untouched dataset is still taken as it is.
    let (rc, out, err) = embed_with(d, m, "pristine", "ok.npy", "fresh");
    assert_eq!(rc, 0, "{err}");
    assert_eq!(json_of(&out)["imported_from_dataset"], 40, "{out}");
}

/// A frost-line checkpoint (layer 5 tuned, max length 32) of the two-task project, and the
/// project's folder.
fn frost_checkpoint(root: &Path, model: &Path) -> PathBuf {
    project(root, model);
    let train = "train --no-progress --run runs/run.toml --regime frost-line=5 --max-length 32";
    let (rc, _, err) = fl_json(root, &[&train, &"--out ck"]);
    assert_eq!(rc, 0, "{err}");
    root.join("ck")
}

fn predict(root: &Path, ck: &Path) -> (i32, String, String) {
    std::fs::write(
        root.join("new.txt"),
        "where is my card\nthis film is great\n",
    )
    .unwrap();
    fl_json(
        root,
        &[
            &"predict --no-progress --checkpoint",
            &ck,
            &"--input new.txt --output p.csv",
        ],
    )
}

#[test]
fn an_edited_manifest_is_refused_sealed_or_resealed() {
    let Some(model) = model_dir() else { return };
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let ck = frost_checkpoint(root, &model);
    let (rc, _, err) = predict(root, &ck);
    assert_eq!(rc, 0, "{err}");

    // Edited by hand (the seal not made again): refused, whatever the edit.
    let edited = root.join("edited");
    copy_dir(&ck, &edited);
    let path = edited.join("manifest.json");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("{\n  \"seal\": \"xxh3-128:"), "{text}");
    std::fs::write(
        &path,
        text.replace("\"frost_line\": 5", "\"frost_line\": 4"),
    )
    .unwrap();
    let (rc, _, err) = predict(root, &edited);
    assert_eq!(rc, 3, "{err}");
    assert!(err.contains("seal does not match"), "{err}");

    // Resealed edits that change meaning: each refused by what it breaks.
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "frost line 5 -> 4",
            Box::new(|m| m["frost_line"] = 4.into()),
            "disagrees with regime",
        ),
        (
            "frost line and regime 5 -> 4",
            Box::new(|m| {
                m["frost_line"] = 4.into();
                m["regime"] = "frost-line=4".into();
            }),
            "tensor encoder.layer.4.attention.self.query.weight missing",
        ),
        (
            "duplicate class names",
            Box::new(|m| {
                let c = m["tasks"][1]["classes"][0].clone();
                m["tasks"][1]["classes"][1] = c;
            }),
            "is listed twice",
        ),
        (
            "classification -> token-classification",
            Box::new(|m| m["tasks"][1]["config"]["kind"] = "token-classification".into()),
            "without its token_layer",
        ),
        (
            "token_layer on a sentence task",
            Box::new(|m| m["tasks"][0]["config"]["token_layer"] = 99.into()),
            "token_layer 99 is recorded for a",
        ),
        (
            "frost line above the model",
            Box::new(|m| {
                m["frost_line"] = 6.into();
                m["regime"] = "frost-line=6".into();
            }),
            "leaves no layer to tune",
        ),
        (
            "no encoder file listed",
            Box::new(|m| {
                m["files"]
                    .as_object_mut()
                    .unwrap()
                    .remove("encoder.safetensors");
            }),
            "but a checkpoint with frost line 5 holds",
        ),
    ];
    for (name, edit, says) in cases {
        let ck2 = root.join("case");
        let _ = std::fs::remove_dir_all(&ck2);
        copy_dir(&ck, &ck2);
        edit_manifest(&ck2.join("manifest.json"), edit);
        let (rc, _, err) = predict(root, &ck2);
        assert_eq!(rc, 3, "{name}: {err}");
        assert!(err.contains(says), "{name}: {err}");
    }

    // A max length the model cannot take is blamed on the manifest, not on a flag never given.
    let ck2 = root.join("long");
    copy_dir(&ck, &ck2);
    edit_manifest(&ck2.join("manifest.json"), |m| {
        m["backbone"]["max_length"] = 9999.into()
    });
    let (rc, _, err) = predict(root, &ck2);
    assert_eq!(rc, 3, "{err}");
    assert!(
        err.contains("backbone.max_length") && !err.contains("--max-length"),
        "{err}"
    );

    // A manifest that is not UTF-8 is damaged input (exit 3), not an I/O failure.
    let ck3 = root.join("latin1");
    copy_dir(&ck, &ck3);
    let mut bytes = std::fs::read(ck3.join("manifest.json")).unwrap();
    let at = bytes.len() / 2;
    bytes[at] = 0xff;
    std::fs::write(ck3.join("manifest.json"), bytes).unwrap();
    let (rc, _, err) = predict(root, &ck3);
    assert_eq!(rc, 3, "{err}");
    assert!(err.contains("not UTF-8"), "{err}");
}

#[test]
fn a_token_task_manifest_keeps_its_layer_in_range() {
    let Some(model) = model_dir() else { return };
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    head_rows("data/wnut17/train.conll", 600, &root.join("train.conll"));
    head_rows("data/wnut17/test.conll", 300, &root.join("test.conll"));
    std::fs::write(
        root.join("run.toml"),
        format!(
            "model = \"{}\"\n[train]\nepochs = 1\n[[tasks]]\nname = \"ents\"\nkind = \"token-classification\"\ntrain = \"train.conll\"\ntest = \"test.conll\"\n",
            model.display()
        ),
    )
    .unwrap();
    let train = "train --no-progress --run run.toml --max-length 32 --out ck";
    let (rc, _, err) = fl_json(root, &[&train]);
    assert_eq!(rc, 0, "{err}");
    let ck = root.join("ck");
    for (layer, says) in [
        (99, "token_layer 99 is outside 0..=6"),
        (7, "outside 0..=6"),
    ] {
        let ck2 = root.join(format!("ck{layer}"));
        copy_dir(&ck, &ck2);
        edit_manifest(&ck2.join("manifest.json"), |m| {
            m["tasks"][0]["config"]["token_layer"] = layer.into()
        });
        let (rc, _, err) = predict(root, &ck2);
        assert_eq!(rc, 3, "{err}");
        assert!(err.contains(says) && !err.contains("frost line"), "{err}");
    }
    // Classes that are not tags for a token task.
    let ck2 = root.join("notags");
    copy_dir(&ck, &ck2);
    edit_manifest(&ck2.join("manifest.json"), |m| {
        m["tasks"][0]["classes"][0] = "person".into()
    });
    let (rc, _, err) = predict(root, &ck2);
    assert_eq!(rc, 3, "{err}");
    assert!(err.contains("not an IOB2 tag"), "{err}");
}

#[test]
fn a_config_whose_heads_do_not_divide_the_hidden_size_is_refused() {
    let Some(model) = model_dir() else { return };
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let bad = root.join("m7");
    linked_copy(&model, &bad, false);
    let config = bad.join("config.json");
    let mut v = read_json(&config);
    v["num_attention_heads"] = 7.into();
    std::fs::remove_file(&config).unwrap();
    std::fs::write(&config, v.to_string()).unwrap();
    std::fs::write(root.join("t.txt"), "hello\n").unwrap();
    let embed = "embed --no-progress --model m7 --input t.txt --output o.npy";
    let (rc, _, err) = fl_json(root, &[&embed]);
    assert_eq!(rc, 4, "{err}");
    assert!(
        err.contains("config.json") && err.contains("not divisible by num_attention_heads 7"),
        "{err}"
    );
    project(root, &bad);
    let train = "train --no-progress --run runs/run.toml --regime frost-line=5 --out ck";
    let (rc, _, err) = fl_json(root, &[&train]);
    assert_eq!(rc, 4, "{err}");
    assert!(!root.join("ck").exists());
}

#[test]
fn messages_name_the_right_thing() {
    let Some(model) = model_dir() else { return };
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let m = model.to_str().unwrap();
    std::fs::write(root.join("t.txt"), "hello\nworld\n").unwrap();
    let embed = args(&[
        &"embed --no-progress --model",
        &model,
        &"--input t.txt --output",
    ]);
    let (rc, _, err) = fl_json(root, &[&embed, &"o.npy"]);
    assert_eq!(rc, 0, "{err}");
    // An output inside the cache is refused by name (the folder exists).
    let entry = std::fs::read_dir(root.join("cache"))
        .unwrap()
        .flatten()
        .find(|e| e.path().join("chunks").is_dir())
        .unwrap()
        .path();
    let evil = entry.join("chunks/evil.npy");
    let (rc, _, err) = fl_json(root, &[&embed, &evil]);
    assert_eq!(rc, 2, "{err}");
    assert!(err.contains("inside the embedding cache"), "{err}");
    assert!(!evil.exists());

    // A lock left by a killed run is swept with the stale temps.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    std::fs::write(root.join(".o2.npy.lock"), dead.to_string()).unwrap();
    let (rc, _, err) = fl_json(root, &[&embed, &"o2.npy"]);
    assert_eq!(rc, 0, "{err}");
    assert!(!root.join(".o2.npy.lock").exists(), "{err}");

    // Every class once: dev_fraction (default 0.1) carves nothing, and the warning says so
    // instead of blaming a dev_fraction = 0 nobody set.
    let mut w = csv::Writer::from_path(root.join("one-each.csv")).unwrap();
    w.write_record(["text", "label"]).unwrap();
    for i in 0..30 {
        w.write_record([format!("text number {i}"), format!("class{i}")])
            .unwrap();
    }
    w.flush().unwrap();
    std::fs::write(
        root.join("run.toml"),
        format!("model = \"{m}\"\n[train]\nepochs = 1\n[[tasks]]\nname = \"t\"\ntrain = \"one-each.csv\"\n"),
    )
    .unwrap();
    let (rc, _, err) = fl_json(root, &[&"train --no-progress --run run.toml"]);
    assert_eq!(rc, 0, "{err}");
    assert!(
        err.contains("dev_fraction = 0.1 carved no rows") && !err.contains("dev_fraction = 0:"),
        "{err}"
    );
}

#[test]
fn multi_label_rows_may_name_no_label_and_a_trailing_backslash_is_refused() {
    let Some(model) = model_dir() else { return };
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let rows = [
        ("the food was great", "joy"),
        ("I am so angry now", "anger"),
        ("what a lovely surprise", "joy|surprise"),
        ("the bus leaves at nine", ""),
        ("I hate waiting", "anger"),
        ("wonderful news today", "joy"),
        ("nothing to say here", ""),
        ("shocked and furious", "anger|surprise"),
    ];
    let write = |name: &str, rows: &[(&str, &str)]| {
        let mut w = csv::Writer::from_path(root.join(name)).unwrap();
        w.write_record(["text", "labels"]).unwrap();
        for (t, l) in rows {
            w.write_record([*t, *l]).unwrap();
        }
        w.flush().unwrap();
    };
    write("train.csv", &rows);
    let run = |train: &str| {
        std::fs::write(
            root.join("run.toml"),
            format!(
                "model = \"{}\"\n[train]\nepochs = 1\n[[tasks]]\nname = \"emo\"\nkind = \"multi-label\"\nlabel_column = \"labels\"\ntrain = \"{train}\"\ndev_fraction = 0\n",
                model.display()
            ),
        )
        .unwrap();
        fl_json(root, &[&"train --no-progress --run run.toml"])
    };
    let (rc, _, err) = run("train.csv");
    assert_eq!(rc, 0, "{err}");
    assert!(err.contains("2 of 8 train rows name no label"), "{err}");
    let mut escaped = rows.to_vec();
    escaped[2] = ("what a lovely surprise", "joy\\|surprise");
    write("escaped.csv", &escaped);
    let (rc, _, err) = run("escaped.csv");
    assert_eq!(rc, 3, "{err}");
    assert!(err.contains("row 4") && err.contains("backslash"), "{err}");
}

/// One very long sentence: its token-state chunks are bounded by size, not by row count, so
/// memory follows a chunk, not the sentence (bench-results/cracks.md measures the whole run).
#[test]
fn token_state_chunks_of_a_long_sentence_stay_bounded() {
    let Some(model) = model_dir() else { return };
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let words = [
        "the", "storm", "hit", "Paris", "and", "London", "on", "Monday",
    ];
    let mut conll = String::new();
    // Words drawn at random, so that no two windows are the same text (the cache would keep one).
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    for _ in 0..24_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let w = words[(state % words.len() as u64) as usize];
        let tag = if w == "Paris" || w == "London" {
            "B-location"
        } else {
            "O"
        };
        conll.push_str(&format!("{w}\t{tag}\n"));
    }
    std::fs::write(root.join("long.conll"), conll).unwrap();
    let (rc, _, err) = fl_json(
        root,
        &[
            &"embed --no-progress --model",
            &model,
            &"--input long.conll --output words.npy",
        ],
    );
    assert_eq!(rc, 0, "{err}");
    let (rows, cols, _) = read_npy(&root.join("words.npy"));
    assert_eq!((rows, cols), (24_000, 384));
    let mut sizes = Vec::new();
    for entry in std::fs::read_dir(root.join("cache")).unwrap().flatten() {
        if let Ok(chunks) = std::fs::read_dir(entry.path().join("chunks")) {
            for c in chunks.flatten() {
                sizes.push(c.metadata().unwrap().len());
            }
        }
    }
    assert!(sizes.len() >= 2, "{sizes:?}");
    assert!(
        sizes.iter().all(|&s| s <= (64 << 20) + (1 << 20)),
        "a chunk over 65 MiB: {sizes:?}"
    );
}

/// A full disk while `quantize` copies the model folder's files: the error names the file being
/// written (in the output's temp folder), not the source it was read from, and leaves nothing.
/// The full disk is a file-size limit (`ulimit -f`, SIGXFSZ ignored so writes fail with EFBIG).
#[test]
fn a_failed_copy_names_the_destination_not_the_source() {
    let Some(model) = model_dir() else { return };
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let script = format!(
        "trap '' XFSZ; ulimit -f 64; exec {} quantize --model {} --out {}",
        env!("CARGO_BIN_EXE_frostline"),
        model.display(),
        root.join("q").display()
    );
    let mut cmd = std::process::Command::new("bash");
    cmd.arg("-c")
        .arg(script)
        .current_dir(root)
        .env("FROSTLINE_CACHE", root.join("cache"));
    let (rc, _, err) = code(&mut cmd);
    assert_eq!(rc, 1, "{err}");
    assert!(
        err.contains(".q.tmp-") && !err.contains(&format!("{}/", model.display())),
        "{err}"
    );
    assert!(!root.join("q").exists());
}
